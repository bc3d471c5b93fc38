"""Writing a bundle directory member by member, durably, and zipping it."""
from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

from ..codec import loads
from .manifest import (
    FILES_DIR, HEADER, MANIFEST, RECORDS_DIR, STREAMS_DIR, TAIL, build_manifest, file_member, manifest_bytes,
    member_line, records_member, revisions_member, stream_member,
)
from .reader import Bundle

__all__ = ["BundleWriter", "write_atomic", "zip_bundle"]

#: While a bundle is being written, each file's document waits beside it in this (hidden) sidecar;
#: ``finish()`` gathers them into the manifest's ``files`` table.
_FILE_SIDECAR = ".file.json"


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
        write_atomic(self.path / member, (member_line(doc) + "\n").encode())

    def write_header(self, doc: dict[str, Any]) -> None:
        self._write_doc(HEADER, doc)

    def write_stream(self, doc: dict[str, Any]) -> None:
        self._write_doc(stream_member(doc["uid"]), doc)

    def append_records(self, stream_uid: str, docs: list[dict[str, Any]]) -> None:
        if not docs:
            return
        with open(self.path / records_member(stream_uid), "ab") as out:
            out.write("".join(member_line(d) + "\n" for d in docs).encode())
            out.flush()
            os.fsync(out.fileno())

    def write_tail(self, doc: dict[str, Any]) -> None:
        self._write_doc(TAIL, doc)

    def write_revisions(self, doc_type: str, revisions: list[dict[str, Any]]) -> None:
        """The earlier versions of the header or tail, as the service lists them (oldest first)."""
        if not revisions:
            return
        (self.path / revisions_member(doc_type)).parent.mkdir(exist_ok=True)
        write_atomic(self.path / revisions_member(doc_type),
                     "".join(member_line(r) + "\n" for r in revisions).encode())

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
        write_atomic(target.parent / _FILE_SIDECAR, (member_line(entry) + "\n").encode())
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
        tail = bundle.tail
        streams = {s["uid"]: sum(1 for _ in bundle.records(s["uid"])) for s in bundle.streams}
        files = self.files()
        attached = {f["member"] for f in files}
        members = {name: bundle.checksum(name) for name in bundle.member_names()
                   if name != MANIFEST and name not in attached}
        revisions = sum(1 for t in ("analysis_header", "analysis_tail") for _ in bundle.revisions(t))
        manifest = build_manifest(header_uid=header["uid"], tail_uid=tail["uid"] if tail else None,
                                  streams=streams, members=members, files=files, revisions=revisions,
                                  source=source, priority=priority)
        write_atomic(self.path / MANIFEST, manifest_bytes(manifest))
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
