"""The offline spool: analyses the service could not take, kept as bundles until ``sync`` delivers them.

``spool_dir/RUNS_ACTIVE/<analysis>/`` while the analysis runs,
``spool_dir/RUNS_FINISHED/<analysis>/`` once its tail is written (ready for
``analysisstore sync``). Files attached meanwhile are kept in the bundle's ``files/``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

from ..contract.bundle import Bundle, BundleWriter, safe_name
from ..contract.validation import DocumentProblem, check_record_keys, schema_problem
from .errors import TRANSIENT_ERRORS, Conflict, ValidationError

__all__ = ["Spool", "SpoolingWrites", "with_time", "AbandonedBundle", "is_spool", "ACTIVE", "FINISHED", "SYNCED", "QUARANTINED",
           "ABANDONED_REASON"]

log = logging.getLogger(__name__)

ACTIVE = "RUNS_ACTIVE"
FINISHED = "RUNS_FINISHED"
SYNCED = "RUNS_SYNCED"
QUARANTINED = "RUNS_QUARANTINED"
#: The reason on the abort tail that closes a bundle its script left in RUNS_ACTIVE.
ABANDONED_REASON = "abandoned in the spool; closed by sync --finish-abandoned"


def is_spool(root: Path | str) -> bool:
    """Is ``root`` a spool directory (made by a spooling client, a sync, or ``sync --create``)?"""
    root = Path(root)
    return root.is_dir() and any((root / name).is_dir() for name in (ACTIVE, FINISHED, SYNCED, QUARANTINED))


@dataclass
class AbandonedBundle:
    """A bundle in RUNS_ACTIVE that nothing has written to for a while: its script died offline."""

    name: str
    path: Path
    last_write: float  # epoch seconds of the newest file in it

    @property
    def age(self) -> float:
        return time.time() - self.last_write


def _last_write(path: Path) -> float:
    times = [p.stat().st_mtime for p in path.rglob("*") if p.is_file()]
    return max(times, default=path.stat().st_mtime)


class Spool:
    """Bundles under one spool directory, one per analysis."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        for name in (ACTIVE, FINISHED):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    def abandoned(self, older_than: float) -> list[AbandonedBundle]:
        """Bundles in RUNS_ACTIVE not written to for ``older_than`` seconds, oldest first."""
        now, found = time.time(), []
        for path in (self.root / ACTIVE).iterdir():
            if not path.is_dir() or path.name.startswith("."):
                continue
            try:
                found.append(AbandonedBundle(path.name, path, _last_write(path)))
            except FileNotFoundError:
                continue  # its script just finished it (moved to RUNS_FINISHED): not abandoned
        return sorted((b for b in found if now - b.last_write >= older_than), key=lambda b: b.last_write)

    def close_abandoned(self, bundle: AbandonedBundle, reason: str = ABANDONED_REASON) -> Path:
        """End an abandoned analysis with an ``abort`` tail and move it to RUNS_FINISHED, ready to sync.

        Raises BundleError (or OSError) if the bundle cannot be read; it then stays where it is.
        """
        with Bundle(bundle.path) as existing:
            header, tail = existing.header, existing.tail
        writer = BundleWriter(bundle.path)
        if tail is None:  # a tail written just before a crash is the analysis's own ending: keep it
            writer.write_tail({"uid": str(uuid.uuid4()), "time": time.time(), "analysis_header": header["uid"],
                               "exit_status": "abort", "reason": reason})
        writer.finish()
        target = self.root / FINISHED / bundle.name
        os.replace(bundle.path, target)
        log.info("closed abandoned analysis %s with an abort tail", header["uid"])
        return target

    def _active(self, header_uid: str) -> Path:
        return self.root / ACTIVE / safe_name(header_uid)

    def holds(self, header_uid: str) -> bool:
        """Is this analysis being spooled (so all its later writes must follow it)?"""
        return self._active(header_uid).is_dir()

    def begin(self, header: dict[str, Any], streams: list[dict[str, Any]]) -> None:
        """Start spooling an analysis with what is known of it so far (re-sent later, harmlessly)."""
        writer = BundleWriter(self._active(header["uid"]))
        writer.write_header(header)
        for stream in streams:
            writer.write_stream(stream)
        log.warning("service unreachable: spooling analysis %s to %s", header["uid"], self._active(header["uid"]))

    def add_file(self, header_uid: str, uid: str, name: str, content_type: str, source: BinaryIO) -> str:
        """Keep a file of a spooled analysis in its bundle (``files/``); its uid.

        As the service would: the same name with the same content again is the stored file, another
        content under that name is a Conflict.
        """
        writer = BundleWriter(self._active(header_uid))
        files = writer.files()
        earlier = next((f for f in files if f["name"] == name), None)
        if earlier is not None:
            digest, size = hashlib.sha256(), 0
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
            if (digest.hexdigest(), size) == (earlier["sha256"], earlier["size"]):
                return earlier["uid"]
            raise Conflict(409, "Conflict", f"analysis {header_uid!r} already has a different file named "
                           f"{name!r}; file names are immutable, use another name")
        if any(f["uid"] == uid for f in files):
            raise Conflict(409, "Conflict", f"another file already has the uid {uid!r}; file uids are unique")
        writer.add_file(uid, name, content_type, time.time(), lambda out: shutil.copyfileobj(source, out, 1 << 20))
        log.warning("service unreachable: file %r of analysis %s kept in the spool", name, header_uid)
        return uid

    def add(self, header_uid: str, doc_type: str, docs: list[dict[str, Any]]) -> None:
        if doc_type == "data_reference":
            self._check_records(header_uid, docs)
        writer = BundleWriter(self._active(header_uid))
        if doc_type == "data_reference_header":
            for doc in docs:
                writer.write_stream(doc)
        elif doc_type == "data_reference":
            by_stream: dict[str, list[dict[str, Any]]] = {}
            for doc in docs:
                by_stream.setdefault(doc["data_reference_header"], []).append(doc)
            for stream_uid, records in by_stream.items():
                writer.append_records(stream_uid, records)
        elif doc_type == "analysis_tail":
            (tail,) = docs
            writer.write_tail(tail)
            writer.finish()
            target = self.root / FINISHED / self._active(header_uid).name
            os.replace(self._active(header_uid), target)
            log.warning("analysis %s finished offline; run `analysisstore sync %s` to deliver it",
                        header_uid, self.root)
        elif doc_type == "analysis_header":
            (header,) = docs
            writer.write_header(header)

    def _check_records(self, header_uid: str, docs: list[dict[str, Any]]) -> None:
        """Refuse, whole, records the service would refuse: kept, they would quarantine the analysis at sync."""
        with Bundle(self._active(header_uid)) as bundle:
            streams = {s["uid"]: s for s in bundle.streams}
        for index, doc in enumerate(docs):
            problem = schema_problem("data_reference", doc)
            stream = streams.get(doc.get("data_reference_header"))
            try:
                if problem is None and stream is not None:
                    check_record_keys(doc, stream)
            except DocumentProblem as refused:
                problem = refused.message
            if problem is not None:
                raise ValidationError(422, "ValidationError", f"item {index}: {problem}; nothing of this request "
                                      "was kept in the spool")


def with_time(doc: dict[str, Any]) -> dict[str, Any]:
    """A spooled document carries its own time (no server is there to fill it)."""
    return doc if doc.get("time") is not None else {**doc, "time": time.time()}


class SpoolingWrites:
    """A spooling client's side of the spool: what it sent of each running analysis, and when to divert.

    While an analysis runs, its header and streams are remembered, so an
    analysis interrupted by an outage can be spooled whole; once its tail is
    sent they are forgotten. Every later write of an analysis being spooled
    follows it into the spool.
    """

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._headers: dict[str, dict[str, Any]] = {}
        self._streams: dict[str, dict[str, Any]] = {}

    def send(self, doc_type: str, docs: list[dict[str, Any]], post: Callable[[], Any]) -> None:
        """``post()`` the documents, or keep them in the spool: their analysis is spooled or the service is away."""
        header_uid = self._analysis_of(doc_type, docs[0])
        self._remember(doc_type, docs)
        if header_uid is not None and self.spool.holds(header_uid):
            self.spool.add(header_uid, doc_type, [with_time(d) for d in docs])
            return
        try:
            post()
        except TRANSIENT_ERRORS:
            if header_uid is None or not self.begin(header_uid):
                raise  # nothing known of this analysis to spool it with
            if doc_type != "analysis_header":
                self.spool.add(header_uid, doc_type, [with_time(d) for d in docs])

    def holds(self, header_uid: str) -> bool:
        return self.spool.holds(header_uid)

    def begin(self, header_uid: str) -> bool:
        """Start spooling an analysis with its header and streams as sent; False if its header was not sent here."""
        header = self._headers.get(header_uid)
        if header is None:
            return False
        streams = [s for s in self._streams.values() if s["analysis_header"] == header_uid]
        self.spool.begin(with_time(header), [with_time(s) for s in streams])
        return True

    def add_file(self, header_uid: str, uid: str, name: str, content_type: str, source: BinaryIO) -> str:
        return self.spool.add_file(header_uid, uid, name, content_type, source)

    def _analysis_of(self, doc_type: str, doc: dict[str, Any]) -> str | None:
        if doc_type == "analysis_header":
            return doc["uid"]
        if doc_type == "data_reference":
            stream_uid = doc.get("data_reference_header")
            stream = self._streams.get(stream_uid) if isinstance(stream_uid, str) else None
            return stream["analysis_header"] if stream else None
        return doc.get("analysis_header")

    def _remember(self, doc_type: str, docs: list[dict[str, Any]]) -> None:
        if doc_type == "analysis_header":
            self._headers[docs[0]["uid"]] = with_time(docs[0])
        elif doc_type == "data_reference_header":
            self._streams[docs[0]["uid"]] = with_time(docs[0])
        elif doc_type == "analysis_tail":
            header_uid = docs[0]["analysis_header"]
            self._headers.pop(header_uid, None)
            for uid in [u for u, s in self._streams.items() if s["analysis_header"] == header_uid]:
                del self._streams[uid]
