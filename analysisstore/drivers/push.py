"""Push one bundle through the client in order — header, streams, records in chunks, tail — resumably."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import ujson

from ..client import AnalysisClient, Conflict
from ..client.bundle import Bundle, write_atomic

__all__ = ["Progress", "load_progress", "save_progress", "push_bundle"]

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """How far a bundle got; saved after every step so a restart resumes there."""

    header: bool = False
    streams: list[str] = field(default_factory=list)
    skipped_streams: list[str] = field(default_factory=list)
    records: dict[str, int] = field(default_factory=dict)
    tail: bool = False
    attempts: int = 0
    last_error: str | None = None

    @property
    def complete(self) -> bool:
        return self.tail


def load_progress(path: Path) -> Progress:
    if not path.exists():
        return Progress()
    try:
        return Progress(**ujson.loads(path.read_bytes()))
    except (ValueError, TypeError):
        log.warning("progress file %s is unreadable; starting the bundle over (re-sending is harmless)", path)
        return Progress()


def save_progress(path: Path, progress: Progress) -> None:
    write_atomic(path, ujson.dumps(asdict(progress)).encode())


def push_bundle(
    client: AnalysisClient,
    bundle: Bundle,
    progress: Progress,
    save: Callable[[Progress], None],
    chunk_size: int = 2_000,
    on_records: Callable[[int], None] = lambda n: None,
    on_conflict: Callable[[Conflict], None] | None = None,
) -> Progress:
    """Send what ``progress`` says is not yet sent; ``save`` is called after each step.

    Without ``on_conflict`` a uid conflict raises. With it (import), the
    conflict is handed over and the push goes on: a conflicting stream's
    records are skipped (they would join someone else's stream); a
    conflicting header always raises, since nothing of the bundle belongs there.
    """
    def send(doc_type: str, docs: list[dict[str, Any]]) -> bool:
        try:
            client.insert_many(doc_type, docs)
            return True
        except Conflict as exc:
            if on_conflict is None or doc_type == "analysis_header":
                raise
            on_conflict(exc)
            return False

    if not progress.header:
        send("analysis_header", [bundle.header])
        progress.header = True
        save(progress)
    streams = bundle.streams
    for stream in streams:
        if stream["uid"] not in progress.streams:
            if not send("data_reference_header", [stream]):
                progress.skipped_streams.append(stream["uid"])
            progress.streams.append(stream["uid"])
            save(progress)
    for stream in streams:
        uid = stream["uid"]
        if uid in progress.skipped_streams:
            continue
        done = progress.records.get(uid, 0)
        chunk: list[dict[str, Any]] = []
        for record in bundle.records(uid, start=done):
            chunk.append(record)
            if len(chunk) == chunk_size:
                done = _send_records(send, chunk, progress, uid, done, save, on_records)
                chunk = []
        if chunk:
            _send_records(send, chunk, progress, uid, done, save, on_records)
    tail = bundle.tail
    if tail is not None and not progress.tail:
        send("analysis_tail", [tail])
        progress.tail = True
        save(progress)
    return progress


def _send_records(send: Callable[[str, list[dict[str, Any]]], bool], chunk: list[dict[str, Any]],
                  progress: Progress, uid: str, done: int, save: Callable[[Progress], None],
                  on_records: Callable[[int], None]) -> int:
    send("data_reference", chunk)  # on a tolerated conflict the service stored the rest of the chunk
    done += len(chunk)
    progress.records[uid] = done
    save(progress)
    on_records(len(chunk))
    return done
