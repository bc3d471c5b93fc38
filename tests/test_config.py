"""Configuration: four sources in order, failures that name the key and where it came from."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from analysisstore.auth import digest
from analysisstore.cli import build_parser
from analysisstore.config import SETTINGS, ConfigError, flag_name, flags_given, load_config


def test_precedence_default_file_env_flag(tmp_path):
    """Each source overrides the one before; sources are reported per setting."""
    config_file = tmp_path / "config.yaml"
    config_file.write_text("port: 9100\ndatabase: from_file\nlog_level: warning\nmax_bulk_items: 10\n")
    env = {"ASST_DATABASE": "from_env", "ASST_LOG_LEVEL": "error"}
    config = load_config({"log_level": "debug"}, config_file, env)
    assert (config.host, config.port, config.database, config.log_level, config.max_bulk_items) == \
        ("127.0.0.1", 9100, "from_env", "debug", 10)
    assert config.sources == {"port": f"file:{config_file}", "database": "env:ASST_DATABASE",
                              "log_level": "flag:--log-level", "max_bulk_items": f"file:{config_file}"}
    assert dict((k, s) for k, _, s in config.describe())["host"] == "default"


def test_config_file_from_environment(tmp_path):
    """ASST_CONFIG names the file when --config does not."""
    config_file = tmp_path / "c.yaml"
    config_file.write_text("port: 9200\n")
    assert load_config({}, None, {"ASST_CONFIG": str(config_file)}).port == 9200


@pytest.mark.parametrize("file_text, env, flags, needle", [
    ("prot: 1\n", {}, {}, "unknown setting 'prot' in file:"),
    ("port: many\n", {}, {}, "bad value for 'port' in file:"),
    ("", {"ASST_PORT": "-5"}, {}, "bad value for 'port' in env:ASST_PORT"),
    ("", {"ASST_COLOUR": "red"}, {}, "ASST_COLOUR"),
    ("", {}, {"processes": "0"}, "bad value for 'processes' in flag:--processes"),
    ("tokens: [{name: x, sha256: nothex, scopes: [read]}]\n", {}, {}, "sha256"),
    ("tokens: [{name: x, sha256: " + "a" * 64 + ", scopes: [admin]}]\n", {}, {}, "scopes"),
    ("- just\n- a list\n", {}, {}, "mapping"),
    ("port: [unclosed\n", {}, {}, "not valid YAML"),
    ("host: 0.0.0.0\n", {}, {}, "no tokens are configured"),
    ("stale_after_seconds: 12x\n", {}, {}, "bad value for 'stale_after_seconds' in file:"),
    ("", {"ASST_DRAIN_SECONDS": "-1m"}, {}, "bad value for 'drain_seconds' in env:ASST_DRAIN_SECONDS"),
    # not-a-number passes every `< low` check; it would make no analysis ever stale
    ("", {}, {"stale_after_seconds": "nan"}, "bad value for 'stale_after_seconds' in flag:--stale-after-seconds"),
    ("stale_after_seconds: .nan\n", {}, {}, "bad value for 'stale_after_seconds' in file:"),
    ("", {"ASST_BODY_TIMEOUT_SECONDS": "inf"}, {}, "bad value for 'body_timeout_seconds' in env:"),
    ("", {}, {"drain_seconds": "1e400"}, "bad value for 'drain_seconds' in flag:--drain-seconds"),
])
def test_bad_config_fails_fast_naming_key_and_source(tmp_path, file_text, env, flags, needle):
    """Unknown keys, bad values and unsafe combinations stop start-up with a precise message."""
    config_file = tmp_path / "config.yaml"
    config_file.write_text(file_text)
    with pytest.raises(ConfigError, match=__import__("re").escape(needle)):
        load_config(flags, config_file, env)


def test_auth_is_required_beyond_loopback_unless_disabled(tmp_path):
    """Binding a public address needs tokens, or an explicit require_auth: false."""
    token_hash = digest("secret")
    config = load_config({"host": "0.0.0.0"}, None, {"ASST_REQUIRE_AUTH": "false"})
    assert config.auth_enabled is False
    config_file = tmp_path / "c.yaml"
    config_file.write_text(f"host: 0.0.0.0\ntokens:\n  - name: t\n    sha256: {token_hash}\n    scopes: [read]\n")
    config = load_config({}, config_file, {})
    assert config.auth_enabled and config.tokens[0].scopes == {"read"}
    assert load_config({}, None, {}).auth_enabled is False  # loopback: off unless asked


def test_token_file_adds_tokens(tmp_path):
    """token_file holds more tokens in the same shape."""
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(f"- name: a\n  sha256: {digest('a')}\n  scopes: [read, write]\n")
    config = load_config({"token_file": str(tokens)}, None, {"ASST_REQUIRE_AUTH": "true"})
    assert [t.name for t in config.tokens] == ["a"]


def test_print_config_masks_secrets(tmp_path):
    """--print-config shows values and sources, never passwords or token hashes."""
    config_file = tmp_path / "c.yaml"
    token_hash = digest("secret")
    config_file.write_text(f"mongo_uri: mongodb://user:hunter2@db.example/\n"
                           f"tokens: [{{name: ci, sha256: {token_hash}, scopes: [write]}}]\n")
    result = subprocess.run([sys.executable, "-m", "analysisstore.cli", "serve", "--config", str(config_file),
                             "--print-config", "--port", "9300"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout and token_hash not in result.stdout
    assert "mongodb://***@db.example/" in result.stdout and "ci (write)" in result.stdout
    assert "9300" in result.stdout and "(flag:--port)" in result.stdout


def test_bad_config_on_the_command_line_exits_2(tmp_path):
    """`serve` with a bad setting exits 2 and names it, without starting anything."""
    result = subprocess.run([sys.executable, "-m", "analysisstore.cli", "serve", "--port", "http"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "'port'" in result.stderr and "flag:--port" in result.stderr


def test_token_create_prints_a_usable_config_entry(tmp_path):
    """`token create` prints a token and the config lines holding its hash."""
    result = subprocess.run([sys.executable, "-m", "analysisstore.cli", "token", "create", "--scope", "write",
                             "--name", "beamline"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    token = result.stdout.split("token: ", 1)[1].split()[0]
    config_text = result.stdout[result.stdout.index("tokens:"):]
    (tmp_path / "c.yaml").write_text(config_text)
    config = load_config({}, tmp_path / "c.yaml", {"ASST_REQUIRE_AUTH": "true"})
    assert config.tokens[0].sha256 == digest(token) and config.tokens[0].scopes == {"write"}


def _serve_flags(*argv: str) -> dict[str, object]:
    return flags_given(build_parser().parse_args(["serve", *argv]))


@pytest.mark.parametrize("key", sorted(SETTINGS))
def test_every_setting_is_a_flag_or_says_why_not(key):
    """Each setting has its ``--key-with-dashes`` flag, handed to load_config under its key; the rest say why not."""
    if SETTINGS[key].no_flag is not None:
        with pytest.raises(SystemExit):  # argparse: unrecognized argument
            _serve_flags(flag_name(key), "x")
        return
    assert _serve_flags(flag_name(key), "some-value") == {key: "some-value"}


def test_a_flag_overrides_file_and_environment_through_the_command_line(tmp_path):
    """`serve --print-config`: a generated flag beats the environment, which beats the file; units accepted."""
    config_file = tmp_path / "c.yaml"
    config_file.write_text("drain_seconds: 5\nstale_after_seconds: 100\nmax_bulk_items: 7\n")
    env = {**os.environ, "ASST_DRAIN_SECONDS": "7", "ASST_STALE_AFTER_SECONDS": "2h"}
    result = subprocess.run([sys.executable, "-m", "analysisstore.cli", "serve", "--config", str(config_file),
                             "--print-config", "--drain-seconds", "1m", "--max-file-bytes", "4096"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()}
    assert rows["drain_seconds"][1:] == ["60.0", "(flag:--drain-seconds)"]
    assert rows["stale_after_seconds"][1:] == ["7200.0", "(env:ASST_STALE_AFTER_SECONDS)"]
    assert rows["max_bulk_items"][1:] == ["7", f"(file:{config_file})"]
    assert rows["max_file_bytes"][1:] == ["4096", "(flag:--max-file-bytes)"]


@pytest.mark.parametrize("argv, seconds", [
    (["--stale-after", "12"], 12 * 3600.0),  # the 0.x flag: hours
    (["--stale-after", "1.5"], 1.5 * 3600.0),
    (["--stale-after", "90m"], 90 * 60.0),
    (["--stale-after-seconds", "600"], 600.0),
    (["--stale-after-seconds", "12h"], 12 * 3600.0),
    (["--stale-after-seconds", "2d"], 2 * 86400.0),
])
def test_stale_after_is_seconds_and_the_old_hours_flag_still_works(argv, seconds):
    """--stale-after-seconds takes seconds (or a unit); the old --stale-after keeps meaning hours."""
    assert load_config(_serve_flags(*argv), None, {}).stale_after_seconds == seconds


def _help_entries() -> dict[str, str]:
    """`serve --help`, one entry per flag: the flag -> its whole help text."""
    result = subprocess.run([sys.executable, "-m", "analysisstore.cli", "serve", "--help"], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "COLUMNS": "400"})
    assert result.returncode == 0, result.stderr
    entries: dict[str, str] = {}
    flag = None
    for line in result.stdout.splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
            entries[flag] = line
        elif flag is not None and line.startswith("    "):
            entries[flag] += " " + line.strip()
        else:
            flag = None
    return entries


def test_help_states_each_default_once_with_its_unit():
    """`serve --help`: every flag's default appears once, in the unit its setting is in."""
    entries = _help_entries()
    with_flags = [key for key, setting in SETTINGS.items() if setting.no_flag is None]
    for key in with_flags:
        text = entries[flag_name(key)]
        assert text.count("default:") == 1, text
        for suffix, unit in (("_seconds", "in seconds"), ("_ms", "in milliseconds"), ("_bytes", "in bytes")):
            assert (unit in text) == key.endswith(suffix), text
        assert "hour" not in text, text
    assert sum(text.count("default:") for text in entries.values()) == len(with_flags)
    assert "(default: 86400)" in entries["--stale-after-seconds"]
    assert "(default: 8999)" in entries["--port"] and "(default: 10000)" in entries["--query-max-time-ms"]
    assert "hours" in entries["--stale-after"]  # the old spelling, documented as such
