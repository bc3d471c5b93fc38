"""The analysis bundle: one analysis as a directory (or a ``.zip`` of it).

::

    manifest.json                      format, version, uids, counts, sha256 of every member
    analysis_header.json
    data_reference_header/<uid>.json
    data_reference/<stream uid>.jsonl  one record per line
    analysis_tail.json                 absent while the analysis runs

One format, three uses: the client's offline spool, the sync driver's input,
and the archive for export/import. Standard library, ujson and jsonschema
only, so the thin client can write and read bundles.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import ujson

from ._transport import dumps_text, loads

__all__ = [
    "FORMAT",
    "VERSION",
    "BundleError",
    "BundleLimits",
    "BundleWriter",
    "Bundle",
    "read_bundle",
    "write_atomic",
    "zip_bundle",
]

FORMAT = "analysisstore-bundle"
VERSION = 1
MANIFEST = "manifest.json"
HEADER = "analysis_header.json"
TAIL = "analysis_tail.json"
STREAMS_DIR = "data_reference_header"
RECORDS_DIR = "data_reference"


@dataclass(frozen=True)
class BundleLimits:
    """How far a bundle may expand when read: a zip bomb is refused before it is unpacked.

    JSON members are read whole, so each is capped; record files are read
    line by line, so only a line is capped; the sum of every member's size
    (as the zip's directory states it, which ``zipfile`` holds each member to)
    is capped too.
    """

    max_document_bytes: int = 16 * 1024 * 1024
    max_line_bytes: int = 16 * 1024 * 1024
    max_expanded_bytes: int = 32 * 1024 ** 3


DEFAULT_LIMITS = BundleLimits()


class BundleError(ValueError):
    """A bundle is incomplete or corrupt; ``member`` names the file at fault."""

    def __init__(self, member: str, message: str) -> None:
        super().__init__(f"{member}: {message}")
        self.member = member


def _dumps(doc: Any) -> str:
    """Members are strict JSON: NaN/±Infinity tagged as on the wire (readers also take bare NaN tokens)."""
    return dumps_text(doc, escape_forward_slashes=False)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


#: Longest uid kept verbatim as a file name, in UTF-8 bytes: with ".jsonl", a temporary file's
#: affixes and an enclosing ".zip" it stays under the 255-byte name limit of common file systems.
MAX_NAME_BYTES = 160
_HASHED_NAME = re.compile(r"uid-[0-9a-f]{32}")
_UNSAFE_NAME_CHAR = re.compile("[/\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _safe_name(uid: str) -> str:
    """A uid as a file name: the uid itself when that is a safe, short name, else ``uid-<sha256>``.

    Uids are free text; the real uid always lives inside the member's JSON,
    so the name only has to be stable, unique and writable: no path
    separators, control characters, hidden (dot) names or over-long names,
    and nothing that could be mistaken for another uid's hashed name.
    """
    raw = uid.encode("utf-8", "surrogatepass")
    if (uid in ("", ".", "..") or uid.startswith(".") or _UNSAFE_NAME_CHAR.search(uid)
            or len(raw) > MAX_NAME_BYTES or _HASHED_NAME.fullmatch(uid)):
        return "uid-" + hashlib.sha256(raw).hexdigest()[:32]
    return uid


class BundleWriter:
    """Writes one analysis into a bundle directory, appending records as they come.

    Every write is flushed and fsynced, so a crash loses at most the call in
    progress. ``finish()`` writes the manifest (atomically) last.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        (self.path / STREAMS_DIR).mkdir(parents=True, exist_ok=True)
        (self.path / RECORDS_DIR).mkdir(parents=True, exist_ok=True)

    def _write_doc(self, member: str, doc: dict[str, Any]) -> None:
        write_atomic(self.path / member, (_dumps(doc) + "\n").encode())

    def write_header(self, doc: dict[str, Any]) -> None:
        self._write_doc(HEADER, doc)

    def write_stream(self, doc: dict[str, Any]) -> None:
        self._write_doc(f"{STREAMS_DIR}/{_safe_name(doc['uid'])}.json", doc)

    def append_records(self, stream_uid: str, docs: list[dict[str, Any]]) -> None:
        if not docs:
            return
        with open(self.path / RECORDS_DIR / f"{_safe_name(stream_uid)}.jsonl", "ab") as out:
            out.write("".join(_dumps(d) + "\n" for d in docs).encode())
            out.flush()
            os.fsync(out.fileno())

    def write_tail(self, doc: dict[str, Any]) -> None:
        self._write_doc(TAIL, doc)

    def finish(self, priority: int = 0) -> dict[str, Any]:
        """Write the manifest describing every member; returns it."""
        bundle = Bundle(self.path)
        header = bundle.header
        streams = {s["uid"]: sum(1 for _ in bundle.records(s["uid"])) for s in bundle.streams}
        members = {name: bundle.checksum(name) for name in bundle.member_names() if name != MANIFEST}
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "analysis_header": header["uid"],
            "analysis_tail": bundle.tail["uid"] if bundle.tail else None,
            "streams": streams,
            "counts": {"data_reference_header": len(streams), "data_reference": sum(streams.values())},
            "priority": priority,
            "members": members,
        }
        write_atomic(self.path / MANIFEST, (ujson.dumps(manifest, indent=2) + "\n").encode())
        return manifest


@dataclass
class Bundle:
    """A bundle read from a directory or a ``.zip``; ``prefix`` selects one bundle inside a multi-bundle zip."""

    path: Path
    prefix: str = ""
    limits: BundleLimits = DEFAULT_LIMITS
    _zip: zipfile.ZipFile | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.path.is_file():
            self._zip = zipfile.ZipFile(self.path)

    @property
    def name(self) -> str:
        return self.prefix.rstrip("/") or self.path.name.removesuffix(".zip")

    # ---- members ------------------------------------------------------------

    def member_names(self) -> list[str]:
        if self._zip is not None:
            names = [n[len(self.prefix):] for n in self._zip.namelist()
                     if n.startswith(self.prefix) and not n.endswith("/")]
        else:
            names = [p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()]
        return sorted(n for n in names if not PurePosixPath(n).name.startswith("."))

    def has(self, member: str) -> bool:
        if self._zip is not None:
            try:
                self._zip.getinfo(self.prefix + member)
                return True
            except KeyError:
                return False
        return (self.path / member).is_file()

    def size(self, member: str) -> int:
        """Bytes ``member`` expands to (from the zip directory, which reading is held to)."""
        if self._zip is not None:
            return self._zip.getinfo(self.prefix + member).file_size
        return (self.path / member).stat().st_size

    def check_expansion(self) -> None:
        """BundleError when the members together expand beyond ``limits.max_expanded_bytes``."""
        total = sum(self.size(name) for name in self.member_names())
        if total > self.limits.max_expanded_bytes:
            raise BundleError(self.name, f"expands to {total} bytes, more than the {self.limits.max_expanded_bytes} "
                              "allowed (a zip bomb, or raise the limit)")

    def open(self, member: str) -> io.BufferedIOBase:
        if self._zip is not None:
            return self._zip.open(self.prefix + member)  # type: ignore[return-value]
        return open(self.path / member, "rb")

    def checksum(self, member: str) -> str:
        digest = hashlib.sha256()
        try:
            with self.open(member) as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except zipfile.BadZipFile as exc:  # e.g. more (or other) data than the zip directory states
            raise BundleError(member, f"is corrupt: {exc}") from None
        return digest.hexdigest()

    def _load(self, member: str) -> dict[str, Any]:
        cap = self.limits.max_document_bytes
        try:
            size = self.size(member)
        except (OSError, KeyError) as exc:
            raise BundleError(member, f"cannot be read: {exc}") from None
        if size > cap:
            raise BundleError(member, f"is larger than {cap} bytes, the most a document member may hold")
        try:
            with self.open(member) as handle:
                doc = loads(handle.read(cap + 1))
        except (OSError, KeyError) as exc:
            raise BundleError(member, f"cannot be read: {exc}") from None
        except ValueError as exc:
            raise BundleError(member, f"is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise BundleError(member, "must hold one JSON object")
        return doc

    # ---- documents ------------------------------------------------------------

    @property
    def manifest(self) -> dict[str, Any] | None:
        return self._load(MANIFEST) if self.has(MANIFEST) else None

    @property
    def header(self) -> dict[str, Any]:
        return self._load(HEADER)

    @property
    def tail(self) -> dict[str, Any] | None:
        return self._load(TAIL) if self.has(TAIL) else None

    @property
    def streams(self) -> list[dict[str, Any]]:
        names = [n for n in self.member_names() if n.startswith(STREAMS_DIR + "/") and n.endswith(".json")]
        return sorted((self._load(n) for n in names), key=lambda s: (s.get("time", 0), s.get("uid", "")))

    def records_member(self, stream_uid: str) -> str:
        return f"{RECORDS_DIR}/{_safe_name(stream_uid)}.jsonl"

    def records(self, stream_uid: str, start: int = 0) -> Iterator[dict[str, Any]]:
        """The records of one stream in file order, from line ``start`` (0-based)."""
        member = self.records_member(stream_uid)
        if not self.has(member):
            return
        cap = self.limits.max_line_bytes
        with self.open(member) as handle:
            # Binary lines with a cap: one endless line must not be read whole.
            for number, line in enumerate(iter(lambda: handle.readline(cap + 1), b"")):
                if len(line) > cap and not line.endswith(b"\n"):
                    raise BundleError(member, f"line {number + 1} is longer than {cap} bytes")
                if number < start or not line.strip():
                    continue
                try:
                    doc = loads(line)
                except ValueError as exc:
                    raise BundleError(member, f"line {number + 1} is not valid JSON: {exc}") from None
                if not isinstance(doc, dict):
                    raise BundleError(member, f"line {number + 1} is not a JSON object")
                yield doc

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> "Bundle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- validation -----------------------------------------------------------

    def validate(self) -> dict[str, Any]:
        """Check manifest, checksums, schemas and parent links; return the manifest or raise BundleError."""
        from ._validation import validate_bundle

        self.check_expansion()
        return validate_bundle(self)


def read_bundle(path: Path | str, limits: BundleLimits = DEFAULT_LIMITS) -> list[Bundle]:
    """Every bundle at ``path``: a bundle directory, a bundle ``.zip``, or a ``.zip`` holding several."""
    path = Path(path)
    if path.is_dir():
        return [Bundle(path, limits=limits)]
    if not zipfile.is_zipfile(path):
        raise BundleError(path.name, "is neither a bundle directory nor a zip file")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if MANIFEST in names:
        return [Bundle(path, limits=limits)]
    prefixes = sorted({n[: -len(MANIFEST)] for n in names if n.endswith("/" + MANIFEST) and n.count("/") == 1})
    if not prefixes:
        raise BundleError(path.name, f"holds no {MANIFEST}")
    return [Bundle(path, prefix, limits) for prefix in prefixes]


def zip_bundle(source: Path, target: Path, prefix: str = "") -> None:
    """Zip a bundle directory into ``target`` atomically (temp name, fsync, rename)."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(source.rglob("*")):
            if file.is_file() and not file.name.startswith("."):
                archive.write(file, prefix + file.relative_to(source).as_posix())
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    _fsync_dir(target.parent)
