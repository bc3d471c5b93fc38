"""Reading a bundle: from a directory, a ``.zip``, or one of several bundles in a ``.zip``.

Every member is read within :class:`~.manifest.BundleLimits`, so a zip bomb is
refused before it is unpacked; :meth:`Bundle.validate` checks the whole
bundle (see :mod:`.checks`) before anything of it is sent.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from ..codec import loads
from .checks import validate_bundle
from .manifest import (
    DEFAULT_LIMITS, HEADER, MANIFEST, STREAMS_DIR, TAIL, BundleError, BundleLimits, records_member, revisions_member,
)

__all__ = ["Bundle", "FileReader", "read_bundle"]


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
        return records_member(stream_uid)

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
