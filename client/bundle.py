"""The analysis bundle: one analysis as a directory (or a ``.zip`` of it).

::

    manifest.json                      format, version, creation info, uids, counts, sha256 of every
                                       document member, and the table of attached files
    analysis_header.json               the current version
    data_reference_header/<uid>.json
    data_reference/<stream uid>.jsonl  one record per line
    analysis_tail.json                 absent while the analysis runs
    revisions/analysis_header.jsonl    earlier versions of the header, oldest first (version 2; only if any)
    revisions/analysis_tail.jsonl      earlier versions of the tail (version 2; only if any)
    files/<file uid>/<name>            attached files, byte for byte (version 2)

One format, three uses: the client's offline spool, the sync driver's input,
and the archive for export/import. Standard library, ujson and jsonschema
only, so the thin client can write and read bundles. Version 1 bundles (no
files, revisions or creation info) are still read.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

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
    "creation_info",
    "FileReader",
]

FORMAT = "analysisstore-bundle"
#: The version written; every version in READABLE_VERSIONS is read.
VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
HEADER = "analysis_header.json"
TAIL = "analysis_tail.json"
STREAMS_DIR = "data_reference_header"
RECORDS_DIR = "data_reference"
REVISIONS_DIR = "revisions"
FILES_DIR = "files"
#: While a bundle is being written, each file's document waits beside it in this (hidden) sidecar;
#: ``finish()`` gathers them into the manifest's ``files`` table.
_FILE_SIDECAR = ".file.json"
#: Software named in the manifest's creation info.
SOFTWARE = "analysisstore"
#: Request headers that let a replayed bundle keep its history (docs/bundles.md): the original time of
#: what a request recreates (a revision's ``replaced_at``, a file's ``time``; needs the ``restore`` scope)
#: and the revision a PATCH expects to replace (409 otherwise).
RESTORE_TIME_HEADER = "X-Restore-Time"
EXPECT_REVISION_HEADER = "X-Expect-Revision"


def _software_version() -> str:
    from .. import __version__  # the package's own version module: imports nothing heavy

    return __version__


def creation_info(source: str) -> dict[str, Any]:
    """Who made a bundle, when and from what: ``source`` is the service's URL (credentials removed) or "spool"."""
    if source != "spool":
        parts = urlsplit(source)
        netloc = parts.netloc.rpartition("@")[2]  # never a user:password of the URL
        source = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return {"software": SOFTWARE, "software_version": _software_version(),
            "time": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            "source": source, "host": socket.gethostname()}


def revisions_member(doc_type: str) -> str:
    return f"{REVISIONS_DIR}/{doc_type}.jsonl"


def file_member(uid: str, name: str) -> str:
    return f"{FILES_DIR}/{_safe_name(uid)}/{_safe_name(name)}"


@dataclass(frozen=True)
class BundleLimits:
    """How far a bundle may expand when read: a zip bomb is refused before it is unpacked.

    JSON members are read whole, so each is capped; record files are read
    line by line, so only a line is capped; the sum of every member's size
    (as the zip's directory states it, which ``zipfile`` holds each member to)
    is capped too. Attached files are streamed, never read whole: each is
    held to the size and sha256 its manifest entry states while it is sent.
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

    def write_revisions(self, doc_type: str, revisions: list[dict[str, Any]]) -> None:
        """The earlier versions of the header or tail, as the service lists them (oldest first)."""
        if not revisions:
            return
        (self.path / REVISIONS_DIR).mkdir(exist_ok=True)
        write_atomic(self.path / revisions_member(doc_type), "".join(_dumps(r) + "\n" for r in revisions).encode())

    def add_file(self, uid: str, name: str, content_type: str, time: float,
                 fill: Callable[[BinaryIO], Any]) -> dict[str, Any]:
        """Attach a file: ``fill(out)`` writes its content to ``out``; returns its manifest entry.

        The content goes to a (hidden) temporary name and is fsynced; its
        document is written beside it; only then is the content renamed to its
        member name. A file counts once both are there, so a crash at any
        point leaves it whole or not attached, never half of it.
        """
        member = file_member(uid, name)
        target = self.path / member
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name[:40]}.tmp-{os.getpid()}")
        with open(tmp, "wb") as raw:
            out = _HashingWriter(raw)
            fill(out)  # type: ignore[arg-type]
            raw.flush()
            os.fsync(raw.fileno())
        entry = {"uid": uid, "name": name, "member": member, "size": out.size, "sha256": out.digest.hexdigest(),
                 "content_type": content_type, "time": time}
        write_atomic(target.parent / _FILE_SIDECAR, (_dumps(entry) + "\n").encode())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        return entry

    def files(self) -> list[dict[str, Any]]:
        """The files attached so far, by name."""
        found = []
        for sidecar in sorted((self.path / FILES_DIR).glob(f"*/{_FILE_SIDECAR}")):
            entry = loads(sidecar.read_bytes())
            if (self.path / entry["member"]).is_file():
                found.append(entry)
        return sorted(found, key=lambda e: e["name"])

    def finish(self, priority: int = 0, source: str = "spool") -> dict[str, Any]:
        """Write the manifest describing every member; returns it.

        ``source`` is where the documents came from: the service's URL, or "spool".
        """
        bundle = Bundle(self.path)
        header = bundle.header
        streams = {s["uid"]: sum(1 for _ in bundle.records(s["uid"])) for s in bundle.streams}
        files = self.files()
        attached = {f["member"] for f in files}
        members = {name: bundle.checksum(name) for name in bundle.member_names()
                   if name != MANIFEST and name not in attached}
        revisions = sum(1 for t in ("analysis_header", "analysis_tail") for _ in bundle.revisions(t))
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "created": creation_info(source),
            "analysis_header": header["uid"],
            "analysis_tail": bundle.tail["uid"] if bundle.tail else None,
            "streams": streams,
            "counts": {"data_reference_header": len(streams), "data_reference": sum(streams.values()),
                       "files": len(files), "revisions": revisions},
            "priority": priority,
            "members": members,
            "files": [{k: f[k] for k in ("uid", "name", "member", "size", "sha256", "content_type", "time")}
                      for f in files],
        }
        write_atomic(self.path / MANIFEST, (ujson.dumps(manifest, indent=2) + "\n").encode())
        return manifest


class _HashingWriter:
    """A binary sink that counts and hashes what passes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.size += len(data)
        self.digest.update(data)
        return len(data)


class FileReader(io.RawIOBase):
    """An attached file's member, read for sending: at most its manifest size, hashed on the way.

    ``len()`` is that size (so it goes out with a Content-Length). After the
    last byte, :meth:`check` raises BundleError unless exactly the stated
    size with the stated sha256 came out.
    """

    def __init__(self, bundle: "Bundle", entry: dict[str, Any]) -> None:
        super().__init__()
        self.entry = entry
        self.member = entry["member"]
        self._bundle = bundle
        self._handle = bundle.open(self.member)
        self._rewind_counters()

    def _rewind_counters(self) -> None:
        self.remaining = int(self.entry["size"])
        self.digest = hashlib.sha256()
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Only back to the start (a retried upload sends the member again from there), or where it is."""
        if whence == io.SEEK_CUR and offset == 0:
            return self.read_bytes
        if (offset, whence) != (0, io.SEEK_SET):
            raise io.UnsupportedOperation("a bundle's file member can only be rewound to its start")
        self._handle.close()
        self._handle = self._bundle.open(self.member)
        self._rewind_counters()
        return 0

    def __len__(self) -> int:
        return int(self.entry["size"])

    def tell(self) -> int:  # requests takes len() - tell() as the Content-Length
        return self.read_bytes

    def read(self, size: int = -1) -> bytes:
        want = self.remaining if size is None or size < 0 else min(size, self.remaining)
        if want <= 0:
            return b""
        try:
            data = self._handle.read(want)
        except zipfile.BadZipFile as exc:  # e.g. a CRC mismatch: the member was altered inside the zip
            raise BundleError(self.member, f"is corrupt: {exc}") from None
        self.remaining -= len(data)
        self.read_bytes += len(data)
        self.digest.update(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def check(self) -> None:
        """BundleError unless the whole member was read and its sha256 is the manifest's."""
        if self.read_bytes != int(self.entry["size"]):
            raise BundleError(self.member, f"holds {self.read_bytes} bytes, the manifest says {self.entry['size']}")
        if self.digest.hexdigest() != self.entry["sha256"]:
            raise BundleError(self.member, "does not match its sha256 in the manifest (tampered or corrupted); "
                              "it was not stored")

    def close(self) -> None:
        self._handle.close()
        super().close()


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
        return self._lines(self.records_member(stream_uid), start)

    def revisions(self, doc_type: str) -> Iterator[dict[str, Any]]:
        """The earlier versions of the header or tail, oldest first (none in a version 1 bundle)."""
        return self._lines(revisions_member(doc_type))

    @property
    def files(self) -> list[dict[str, Any]]:
        """The manifest's table of attached files (empty for a version 1 bundle)."""
        manifest = self.manifest or {}
        files = manifest.get("files") or []
        return files if isinstance(files, list) else []

    def open_file(self, entry: dict[str, Any]) -> FileReader:
        """An attached file for sending, held to its manifest entry; BundleError if its size already differs."""
        actual = self.size(entry["member"])
        if actual != entry["size"]:
            raise BundleError(entry["member"], f"holds {actual} bytes, the manifest says {entry['size']}")
        return FileReader(self, entry)

    def _lines(self, member: str, start: int = 0) -> Iterator[dict[str, Any]]:
        """The JSON objects of a ``.jsonl`` member, one a line, from line ``start`` (0-based)."""
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
