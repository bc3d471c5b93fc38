"""Settings of the service: one typed object from four sources, each value knowing where it came from.

Precedence: defaults < YAML config file < ``ASST_*`` environment variables <
command-line flags. An unknown key or a bad value stops start-up with a
message naming the key and its source.
"""
from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping

import platformdirs
import yaml

from .contract.limits import MAX_BULK_ITEMS

__all__ = ["ServiceConfig", "ConfigError", "TokenEntry", "default_data_dir", "default_config_paths",
           "load_config", "SETTINGS", "add_setting_flags", "flags_given", "flag_name", "flag_help"]


class ConfigError(ValueError):
    """A setting is unknown or has a bad value; the message names the key and its source."""


def default_data_dir() -> Path:
    """Where the embedded database keeps its files unless told otherwise."""
    return Path(platformdirs.user_data_dir("analysisstore")) / "db"


def default_config_paths() -> list[Path]:
    """Where a config file is looked for when none is named: the user's, then the system's."""
    return [Path(platformdirs.user_config_dir("analysisstore")) / "config.yaml",
            Path("/etc/analysisstore/config.yaml")]


@dataclass(frozen=True)
class TokenEntry:
    """One accepted bearer token: its sha256 (never the token itself) and its scopes."""

    name: str
    sha256: str
    scopes: frozenset[str]


# ---- value parsers: each takes a raw value (str from env/flags, typed from YAML) ----

def _int(low: int, high: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected an integer")
        number = int(value)
        if number < low or (high is not None and number > high):
            raise ValueError(f"expected {low}..{high if high is not None else '∞'}")
        return number
    return parse


def _float(low: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        number = float(value)
        if not math.isfinite(number):  # nan slips past `< low`, and neither means a usable limit
            raise ValueError(f"expected a finite number of at least {low}")
        if number < low:
            raise ValueError(f"expected at least {low}")
        return number
    return parse


#: Suffixes a duration may carry instead of being a number of seconds (``90m``, ``24h``, ``7d``).
DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3_600.0, "d": 86_400.0, "w": 604_800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


class _Seconds:
    """A duration: a number of seconds, or a number with a unit (``s``, ``m``, ``h``, ``d``, ``w``)."""

    def __init__(self, low: float) -> None:
        self.as_number = _float(low)

    def __call__(self, value: Any) -> float:
        if isinstance(value, str):
            match = _DURATION.match(value)
            if match is not None:
                return self.as_number(float(match.group(1)) * DURATION_UNITS[match.group(2)])
            try:
                float(value)
            except ValueError:
                raise ValueError("expected seconds, or a number with a unit such as 90m, 24h, 7d") from None
        return self.as_number(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _optional_bool(value: Any) -> bool | None:
    if value is None or str(value).strip().lower() in ("auto", ""):
        return None
    return _bool(value)


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value


def _optional_str(value: Any) -> str | None:
    return None if value in (None, "") else _str(value)


def _optional_path(value: Any) -> Path | None:
    return None if value in (None, "") else Path(os.path.expanduser(_str(value)))


#: Shorter secrets can be guessed; ``python -c "import secrets; print(secrets.token_hex(32))"`` makes a good one.
MIN_SECRET_CHARS = 32


def _optional_secret(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) < MIN_SECRET_CHARS:
        raise ValueError(f"expected at least {MIN_SECRET_CHARS} characters, e.g. the output of "
                         "python -c \"import secrets; print(secrets.token_hex(32))\"")
    return value


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).lower()
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return text
    return parse


def _str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        raise ValueError("expected a list of strings (comma-separated in the environment)")
    return tuple(items)


def _host_names(value: Any) -> tuple[str, ...]:
    """Host names without a port: ``store.example``, ``.lab.example`` (it and every name under it), or ``*``."""
    names = tuple(name.lower().rstrip(".") if name != "*" else name for name in _str_list(value))
    for name in names:
        if name != "*" and not re.fullmatch(r"\.?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?", name):
            raise ValueError(f"{name!r} is not a host name: list names without scheme or port, "
                             "'.lab.example' for every name under lab.example, or '*' for any")
    return names


def _tokens(value: Any) -> tuple[TokenEntry, ...]:
    if not isinstance(value, list):
        raise ValueError("expected a list of {name, sha256, scopes}")
    entries = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) - {"name", "sha256", "scopes"}:
            raise ValueError(f"entry {i}: expected {{name, sha256, scopes}}")
        digest = str(item.get("sha256", "")).lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"entry {i}: sha256 must be 64 hex digits (see `analysisstore token create`)")
        scopes = frozenset(_str_list(item.get("scopes", ["read"])))
        if not scopes or scopes - {"read", "write", "restore"}:
            raise ValueError(f"entry {i}: scopes are read, write and/or restore")
        entries.append(TokenEntry(str(item.get("name", f"token-{i}")), digest, scopes))
    return tuple(entries)


@dataclass(frozen=True)
class Setting:
    """One setting: how its value is parsed, what it means, and how its flag shows it.

    The unit comes from the key's suffix (``_seconds``, ``_ms``, ``_bytes``)
    and the default from :class:`ServiceConfig`, so neither is written twice.
    """

    parse: Callable[[Any], Any]
    help: str
    secret: bool = False
    #: The flag's placeholder; by default the unit (SECONDS, MS, BYTES) or VALUE.
    metavar: str | None = None
    #: What an unset (None) default means, for ``--help``.
    when_unset: str | Callable[[], str] = "not set"
    #: Why this setting has no command-line flag (None: it has one).
    no_flag: str | None = None


#: Every setting: the config-file key; ``ASST_<KEY>`` in the environment; ``--key-with-dashes`` as a flag.
SETTINGS: dict[str, Setting] = {
    "host": Setting(_str, "address to listen on", metavar="ADDRESS"),
    "port": Setting(_int(0, 65535), "port to listen on", metavar="PORT"),
    "mongo_uri": Setting(_optional_str, "MongoDB URI, e.g. mongodb://db.example:27017", secret=True, metavar="URI",
                         when_unset="the embedded database"),
    "database": Setting(_str, "database name", metavar="NAME"),
    "data_dir": Setting(_optional_path, "embedded database directory", metavar="DIR",
                        when_unset=lambda: str(default_data_dir())),
    "processes": Setting(_int(1, 64), "worker processes sharing the port", metavar="N"),
    "pid_file": Setting(_optional_path, "write the main process id to this file", metavar="PATH"),
    "log_level": Setting(_choice("debug", "info", "warning", "error"), "log verbosity: debug, info, warning or error",
                         metavar="LEVEL"),
    "log_format": Setting(_choice("text", "json"), "log line format: text or json", metavar="FORMAT"),
    "log_file": Setting(_optional_path, "log to this file", metavar="PATH", when_unset="stderr"),
    "max_body_bytes": Setting(_int(1024), "largest request body (413 above)"),
    "max_query_bytes": Setting(_int(1024), "largest body of a request that only asks (search, PATCH) (413 above)"),
    "max_bulk_items": Setting(_int(1), "most documents in one bulk request (413 above)", metavar="N"),
    "max_file_bytes": Setting(_int(1), "largest file attached to an analysis (413 above)"),
    "body_timeout_seconds": Setting(_Seconds(0.01), "close a connection whose request body takes longer than this"),
    "idle_timeout_seconds": Setting(_Seconds(0.01), "close a connection idle (or sending headers) this long"),
    "stream_stall_seconds": Setting(_Seconds(0.01), "abort a streamed read, freeing its database cursor, when "
                                    "the client reads nothing for this long"),
    "query_max_time_ms": Setting(_int(1), "database time limit of a query answered as one page"),
    "stream_max_time_ms": Setting(_int(1), "database time limit of a streamed read (NDJSON, bundle download)"),
    "db_timeout_ms": Setting(_int(1), "how long to wait for the database before answering 503"),
    "retry_after_seconds": Setting(_int(1), "Retry-After sent with 503, a whole number"),
    "stale_after_seconds": Setting(_Seconds(1.0), "age after which an analysis without tail is 'stale'"),
    "require_auth": Setting(_optional_bool, "require tokens: true, false or auto", metavar="BOOL",
                            when_unset="auto: when listening beyond loopback"),
    "tokens": Setting(_tokens, "accepted tokens: [{name, sha256, scopes}]", secret=True,
                      no_flag="a list of records: put it in the config file or in --token-file"),
    "token_file": Setting(_optional_path, "YAML file with more tokens (same shape as 'tokens')", metavar="PATH"),
    "metrics_public": Setting(_bool, "serve /metrics without a token when auth is on", metavar="BOOL"),
    "cors_origins": Setting(_str_list, "browser origins allowed to call the API (CORS), comma-separated",
                            metavar="ORIGINS"),
    "allowed_hosts": Setting(_host_names, "more host names (Host header) requests may be addressed to, "
                             "comma-separated; '.lab.example' allows every name under it, '*' any; "
                             "loopback names, IP addresses and --host always are. Checked without tokens "
                             "(against DNS rebinding), and with tokens too once set", metavar="NAMES"),
    "drain_seconds": Setting(_Seconds(0.0), "how long SIGTERM waits for in-flight requests"),
    "cursor_secret": Setting(_optional_secret, "key signing paging cursors", secret=True,
                             when_unset="one generated and kept in the database, shared by every worker and host",
                             no_flag="a secret: on a command line every local user could read it (ps)"),
}

#: The unit of a setting, from its key's suffix: stated once, in the flag's help.
_UNITS = {"_seconds": ("SECONDS", "seconds"), "_ms": ("MS", "milliseconds"), "_bytes": ("BYTES", "bytes")}


@dataclass(frozen=True)
class ServiceConfig:
    """Everything the service reads at start-up; created once and shared through app settings."""

    host: str = "127.0.0.1"
    port: int = 8999
    mongo_uri: str | None = None
    database: str = "analysisstore"
    data_dir: Path | None = None
    processes: int = 1
    pid_file: Path | None = None
    log_level: str = "info"
    log_format: str = "text"
    log_file: Path | None = None
    max_body_bytes: int = 64 * 1024 * 1024
    max_query_bytes: int = 1024 * 1024
    #: The client's largest chunk: lower, and the client's bulk calls would be refused (413).
    max_bulk_items: int = MAX_BULK_ITEMS
    max_file_bytes: int = 2 * 1024**3
    body_timeout_seconds: float = 120.0
    idle_timeout_seconds: float = 60.0
    stream_stall_seconds: float = 60.0
    query_max_time_ms: int = 10_000
    stream_max_time_ms: int = 300_000
    db_timeout_ms: int = 5_000
    retry_after_seconds: int = 5
    #: An analysis without a tail older than this is reported as "stale" rather than "running".
    stale_after_seconds: float = 24 * 3600.0
    require_auth: bool | None = None
    tokens: tuple[TokenEntry, ...] = ()
    token_file: Path | None = None
    metrics_public: bool = False
    cors_origins: tuple[str, ...] = ()
    #: Host names beyond loopback, IP literals and ``host`` that requests may name (see ``hosts.py``).
    allowed_hosts: tuple[str, ...] = ()
    drain_seconds: float = 10.0
    #: HMAC key of paging cursors; None: the store generates one and keeps it in the database.
    cursor_secret: str | None = None
    #: Where each setting's value came from: default, file:<path>, env:ASST_X, flag:--x.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    # Computed once per (frozen) config: every request asks whether auth is on.
    @cached_property
    def loopback_only(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"

    @cached_property
    def auth_enabled(self) -> bool:
        return self.loopback_only is False if self.require_auth is None else self.require_auth

    def describe(self) -> list[tuple[str, str, str]]:
        """(key, value, source) for every setting, secrets masked."""
        rows = []
        for key, setting in SETTINGS.items():
            value = getattr(self, key)
            if setting.secret and value:
                shown = _mask(key, value)
            elif isinstance(value, tuple):
                shown = ", ".join(value) or "[]"
            else:
                shown = "" if value is None else str(value)
            rows.append((key, shown, self.sources.get(key, "default")))
        return rows


def _mask(key: str, value: Any) -> str:
    if key == "tokens":
        return ", ".join(f"{t.name} ({'+'.join(sorted(t.scopes))})" for t in value)
    if key == "cursor_secret":
        return "***"
    text = str(value)
    if "@" in text and "://" in text:  # mongodb://user:password@host → mongodb://***@host
        scheme, rest = text.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return text


def _apply(values: dict[str, Any], sources: dict[str, str], raw: Mapping[str, Any], source: str) -> None:
    for key, value in raw.items():
        if key not in SETTINGS:
            raise ConfigError(f"unknown setting {key!r} in {source}; known: {', '.join(SETTINGS)}")
        try:
            values[key] = SETTINGS[key].parse(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"bad value for {key!r} in {source}: {exc}") from None
        sources[key] = source


def _read_yaml(path: Path, what: str) -> Mapping[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must be a mapping of settings")
    return data


def load_config(flags: Mapping[str, Any] | None = None, config_file: Path | None = None,
                environ: Mapping[str, str] | None = None) -> ServiceConfig:
    """Defaults < config file < ASST_* environment < flags (only flags given on the command line)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = config_file or (Path(environ["ASST_CONFIG"]) if environ.get("ASST_CONFIG") else None)
    if path is None:
        path = next((p for p in default_config_paths() if p.is_file()), None)
    elif not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path is not None:
        _apply(values, sources, _read_yaml(path, "config file"), f"file:{path}")
    env = {k[5:].lower(): v for k, v in environ.items()
           if k.startswith("ASST_") and k not in ("ASST_CONFIG", "ASST_URL", "ASST_TOKEN")}
    for key in env:
        if key not in SETTINGS:
            raise ConfigError(f"unknown setting in the environment: ASST_{key.upper()}")
    for key, value in env.items():
        if key == "tokens":
            raise ConfigError("ASST_TOKENS is not supported; put tokens in the config file or token_file")
        _apply(values, sources, {key: value}, f"env:ASST_{key.upper()}")
    for key, value in (flags or {}).items():
        _apply(values, sources, {key: value}, f"flag:--{key.replace('_', '-')}")
    if values.get("token_file"):
        extra = _read_yaml_list(values["token_file"])
        try:
            values["tokens"] = tuple(values.get("tokens", ())) + _tokens(extra)
        except ValueError as exc:
            raise ConfigError(f"bad value in token_file {values['token_file']}: {exc}") from None
    config = replace(ServiceConfig(), **values, sources=sources)
    if config.auth_enabled and not config.tokens:
        raise ConfigError(
            f"authentication is required (host {config.host!r} is not loopback, or require_auth is set) but "
            "no tokens are configured: add tokens (see `analysisstore token create`) or set require_auth: false"
        )
    return config


def _read_yaml_list(path: Path) -> list[Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read token_file {path}: {exc}") from None
    if isinstance(data, dict) and "tokens" in data:
        data = data["tokens"]
    if not isinstance(data, list):
        raise ConfigError(f"token_file {path} must hold a list of tokens")
    return data


def config_fields() -> list[str]:
    return [f.name for f in fields(ServiceConfig) if f.name != "sources"]


# ---- command-line flags, generated from SETTINGS (as JupyterHub derives its aliases from its traits) ----

def flag_name(key: str) -> str:
    """The command-line flag of setting ``key``: ``max_body_bytes`` → ``--max-body-bytes``."""
    return "--" + key.replace("_", "-")


def _unit(key: str) -> tuple[str, str] | None:
    return next((unit for suffix, unit in _UNITS.items() if key.endswith(suffix)), None)


def _shown_default(setting: Setting, value: Any) -> str:
    if value is None:
        return setting.when_unset() if callable(setting.when_unset) else setting.when_unset
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple):
        return ", ".join(value) or "none"
    return str(value)


def flag_help(key: str) -> str:
    """The ``--help`` line of a setting: what it does, its unit, its default (each said once)."""
    setting = SETTINGS[key]
    unit = _unit(key)
    default = _shown_default(setting, next(f.default for f in fields(ServiceConfig) if f.name == key))
    text = f"{setting.help}; in {unit[1]}" if unit else setting.help
    if isinstance(setting.parse, _Seconds):
        text += " (or with a unit: 90m, 24h, 7d)"
    return f"{text} (default: {default})"


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--key-with-dashes`` flag per setting; a flag given overrides the file and the environment.

    Flags keep their raw text (None when not given): :func:`load_config` parses
    them like every other source, so a bad flag is reported naming the flag.
    """
    group = parser.add_argument_group("settings (each also a config-file key and an ASST_<KEY> variable)")
    for key, setting in SETTINGS.items():
        if setting.no_flag is not None:
            continue
        unit = _unit(key)
        metavar = setting.metavar or (unit[0] if unit else "VALUE")
        group.add_argument(flag_name(key), dest=key, metavar=metavar, help=flag_help(key).replace("%", "%%"))


def flags_given(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags on this command line (for :func:`load_config`)."""
    return {key: getattr(args, key) for key in SETTINGS if getattr(args, key, None) is not None}
