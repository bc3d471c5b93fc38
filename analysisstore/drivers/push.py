"""Push one bundle through the client in order, resumably.

Header (then its earlier versions replayed), streams, records in chunks,
attached files, tail (then its earlier versions). A header or tail with
revisions is first stored as its oldest version, and each later version is
replayed as the PATCH that made it, carrying the original time and request
id and applied only to the revision it replaced: re-running after a kill
resumes at the revision the service has, never applying a step twice.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import ujson

from ..client import AnalysisClient, Conflict, ServiceError
from ..client.bundle import Bundle, write_atomic
from ..client.limits import MAX_BULK_ITEMS

__all__ = ["Progress", "NewlyStored", "load_progress", "save_progress", "push_bundle", "send_with_history",
           "changes_between"]

#: A replayed PATCH sets at most this many fields (the service's limit); a larger change sets whole top fields.
_MAX_CHANGES = 100

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """How far a bundle got; saved after every step so a restart resumes there."""

    header: bool = False
    streams: list[str] = field(default_factory=list)
    skipped_streams: list[str] = field(default_factory=list)
    records: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # uids of the attached files delivered
    tail: bool = False
    attempts: int = 0
    last_error: str | None = None

    @property
    def complete(self) -> bool:
        return self.tail


@dataclass
class NewlyStored:
    """What a push changed on the service: documents, files and replayed revisions new to it, and those
    it already held (an import run twice writes nothing new, and says so)."""

    new: int = 0
    already: int = 0

    def add_bulk_answer(self, answer: Any, sent: int) -> None:
        """Count the service's per-item answer to a bulk insert; one without counts is taken as all new."""
        if isinstance(answer, dict) and isinstance(answer.get("inserted"), int):
            self.new += answer["inserted"]
            self.already += int(answer.get("already_stored") or 0)
        else:
            self.new += sent


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
    restore_times: bool = False,
    stored: NewlyStored | None = None,
) -> Progress:
    """Send what ``progress`` says is not yet sent; ``save`` is called after each step.

    Without ``on_conflict`` a uid conflict raises. With it (import), the
    conflict is handed over and the push goes on: a conflicting stream's
    records are skipped (they would join someone else's stream); a
    conflicting header always raises, since nothing of the bundle belongs there.
    ``restore_times`` keeps each file's original time (an import; needs the
    restore scope); revisions always keep theirs. An attached file whose
    content does not match the manifest raises BundleError before the tail.
    ``stored`` counts what was new to the service and what it already held.
    """
    chunk_size = min(chunk_size, MAX_BULK_ITEMS)  # what the client sends in one request

    def send(doc_type: str, docs: list[dict[str, Any]]) -> bool:
        try:
            answer = client.insert_many(doc_type, docs)
        except Conflict as exc:
            if on_conflict is None or doc_type == "analysis_header":
                raise
            on_conflict(exc)
            return False
        if stored is not None:
            stored.add_bulk_answer(answer, len(docs))
        return True

    if not progress.header:
        send_with_history(client, "analysis_header", bundle.header, list(bundle.revisions("analysis_header")),
                          stored)
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
    held = _files_held(client, bundle) if stored is not None and bundle.files else (set(), set())
    for entry in bundle.files:
        if entry["uid"] not in progress.files:
            if _send_file(client, bundle, entry, restore_times, on_conflict):
                progress.files.append(entry["uid"])
                save(progress)
                if stored is not None:
                    known = entry["uid"] in held[0] or (entry["name"], entry["sha256"]) in held[1]
                    stored.already += known
                    stored.new += not known
    if bundle.tail is not None and not progress.tail:
        send_tail(client, bundle, stored)
        progress.tail = True
        save(progress)
    return progress


def send_tail(client: AnalysisClient, bundle: Bundle, stored: NewlyStored | None = None) -> None:
    """Store the bundle's tail with its earlier versions (the step that finalises the analysis)."""
    tail = bundle.tail
    if tail is not None:
        send_with_history(client, "analysis_tail", tail, list(bundle.revisions("analysis_tail")), stored)


def _files_held(client: AnalysisClient, bundle: Bundle) -> tuple[set[str], set[tuple[str, str]]]:
    """The uids, and (name, sha256) pairs, of the files the service holds for the bundle's analysis.

    A file upload answers only a uid, so whether a file was new is told by what was there before.
    """
    files = client.files(bundle.header["uid"])
    return {f["uid"] for f in files}, {(f["name"], f["sha256"]) for f in files}


def _send_file(client: AnalysisClient, bundle: Bundle, entry: dict[str, Any], restore_times: bool,
               on_conflict: Callable[[Conflict], None] | None) -> bool:
    """Upload one attached file, streamed from the bundle and held to its manifest entry; False on a
    tolerated conflict."""
    with bundle.open_file(entry) as reader:
        try:
            stored = client.insert_file(bundle.header["uid"], reader, entry["name"], entry["content_type"],
                                        uid=entry["uid"], sha256=entry["sha256"],
                                        restore_time=entry.get("time") if restore_times else None)
        except Conflict as exc:
            if on_conflict is None:
                raise
            on_conflict(exc)
            return False
        except ServiceError:
            if reader.remaining == 0:  # all of it went out: a refused sha256 is the member's fault, say which
                reader.check()
            raise
        reader.check()
    if stored != entry["uid"]:
        log.info("file %r of analysis %s was already stored as %s", entry["name"], bundle.header["uid"], stored)
    return True


def send_with_history(client: AnalysisClient, doc_type: str, current: dict[str, Any],
                      history: list[dict[str, Any]], tally: NewlyStored | None = None) -> None:
    """Store a header or tail so that the service holds ``current`` with exactly ``history`` before it.

    ``history`` is the revision records as ``GET …/revisions`` lists them, oldest first. Resumes
    from whatever revision the service already has; Conflict if the service's history differs.
    ``tally`` counts the first version and each revision replayed now.
    """
    versions = [_version(r["document"]) for r in history] + [current]
    try:
        answer = client.insert_many(doc_type, [versions[0]])
        if tally is not None:
            tally.add_bulk_answer(answer, 1)
    except Conflict:
        if not history:
            raise
        # A later version may be stored already (an earlier run of this push): checked below.
    if not history:
        return
    uid = current["uid"]
    stored = client.document(doc_type, uid)
    at = int(stored.get("_revision", 0))
    if at >= len(versions) or _version(stored) != versions[at] or (
            at and [_version(r["document"]) for r in client.revisions(doc_type, uid)] != versions[:at]):
        raise Conflict(409, "Conflict", f"{doc_type} {uid!r} is stored with another history than the bundle's "
                       "revisions; it was left as it is", [{"uid": uid, "revision": at}])
    for number in range(at, len(history)):
        record = history[number]
        client.restore_revision(doc_type, uid, changes_between(versions[number], versions[number + 1]),
                                revision=number, replaced_at=record["replaced_at"], request_id=record["request_id"])
        if tally is not None:
            tally.new += 1
    if at < len(history):
        log.info("%s %s: replayed %d revisions", doc_type, uid, len(history) - at)


def _version(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dict(doc).items() if k not in ("_revision", "_name")}


def changes_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The PATCH body (``$set``/``$unset`` of dotted paths) that turns ``before`` into ``after``."""
    to_set: dict[str, Any] = {}
    to_unset: list[str] = []

    def walk(old: dict[str, Any], new: dict[str, Any], prefix: str) -> None:
        for key in old.keys() - new.keys():
            to_unset.append(prefix + key)
        for key, value in new.items():
            if key not in old:
                to_set[prefix + key] = value
            elif isinstance(value, dict) and isinstance(old[key], dict) and value and old[key]:
                walk(old[key], value, f"{prefix}{key}.")
            elif old[key] != value or type(old[key]) is not type(value):
                to_set[prefix + key] = value

    walk(before, after, "")
    if len(to_set) + len(to_unset) > _MAX_CHANGES:  # many small changes: replace whole top-level fields
        to_set = {k: v for k, v in after.items() if before.get(k, _MISSING) != v}
        to_unset = sorted(before.keys() - after.keys())
    body: dict[str, Any] = {}
    if to_set:
        body["$set"] = to_set
    if to_unset:
        body["$unset"] = sorted(to_unset)
    return body


_MISSING = object()


def _send_records(send: Callable[[str, list[dict[str, Any]]], bool], chunk: list[dict[str, Any]],
                  progress: Progress, uid: str, done: int, save: Callable[[Progress], None],
                  on_records: Callable[[int], None]) -> int:
    send("data_reference", chunk)  # on a tolerated conflict the service stored the rest of the chunk
    done += len(chunk)
    progress.records[uid] = done
    save(progress)
    on_records(len(chunk))
    return done
