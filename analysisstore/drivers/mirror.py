"""``analysisstore pull``: copy a remote service's analyses into a local one, through their HTTP APIs.

The remote's change feed (``GET /api/v1/changes``) gives every insert and
update in one order. A page of it is applied to the local service (inserts in
bulk, updates as PATCHes that replay the remote's revisions), and only then is
the remote position recorded in the local service (``PUT
/api/v1/mirror_positions/{key}``, one key per remote and filter). Killed at any
moment, a re-run starts again from the last recorded position: inserts are
idempotent by uid and an update whose revision the local copy already has is
skipped, so every document ends up stored exactly once. A uid stored locally
with different content is a conflict: reported (and remembered with the
position), never overwritten.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..client import AnalysisClient, Conflict, NotFound, ServiceError, ServiceUnreachable
from ..contract.vocabulary import UPDATABLE_TYPES

__all__ = ["FeedEndsBefore", "Puller", "PullReport", "RemoteUnreachable", "position_key"]

log = logging.getLogger(__name__)

#: Never part of the content a mirror compares or sends: kept by each service itself.
_BOOKKEEPING = ("_id", "_status", "_revision", "_name")
#: Documents per local bulk insert.
INSERT_CHUNK = 2_000
DOC_TYPES = ("analysis_header", "data_reference_header", "data_reference", "analysis_tail")


def position_key(remote_url: str, where: Iterable[str]) -> str:
    """The name a pull's position is kept under: one per remote service and filter."""
    canonical = "\n".join([remote_url.rstrip("/"), *sorted(where)])
    return "pull-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _content(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dict(doc).items() if k not in _BOOKKEEPING}


class FeedEndsBefore(Exception):
    """The remote's feed ends before the position recorded for it: another store under that URL (reset, replaced)."""

    exit_code = 1


class RemoteUnreachable(Exception):
    """The remote service stopped answering; what was pulled so far is kept (its position too)."""

    exit_code = 3  # the command line's "no service" exit status


@dataclass
class PullReport:
    """What a pull brought (or, with ``dry_run``, would bring)."""

    dry_run: bool = False
    inserted: Counter = field(default_factory=Counter)  # doc_type -> documents new here
    updated: Counter = field(default_factory=Counter)  # doc_type -> revisions applied here
    unchanged: int = 0  # already here as the remote has them
    conflicts: list[dict[str, str]] = field(default_factory=list)
    position: int = 0
    last: int = 0

    def conflict(self, doc_type: str, uid: str, reason: str) -> None:
        if not any(c["doc_type"] == doc_type and c["uid"] == uid for c in self.conflicts):
            log.warning("conflict: %s %s: %s", doc_type, uid, reason)
            self.conflicts.append({"doc_type": doc_type, "uid": uid, "reason": reason})

    def lines(self) -> list[str]:
        verb = "would bring" if self.dry_run else "brought"
        counts = [f"{self.inserted[t]} {t}" for t in DOC_TYPES if self.inserted[t]]
        counts += [f"{self.updated[t]} {t} updates" for t in DOC_TYPES if self.updated[t]]
        out = [f"{verb} {', '.join(counts) if counts else 'nothing new'}; {self.unchanged} already here; "
               f"{len(self.conflicts)} conflicts (remote position {self.position} of {self.last})"]
        out += [f"  conflict {c['doc_type']} {c['uid']}: {c['reason']}" for c in self.conflicts]
        return out


class Puller:
    """One mirror relation: ``remote`` → ``local``, for the analyses the ``where`` lookups select."""

    def __init__(self, remote: AnalysisClient, local: AnalysisClient, remote_url: str,
                 where: dict[str, str] | None = None, page_size: int = 1_000, dry_run: bool = False) -> None:
        self.remote = remote
        self.local = local
        self.where = dict(where or {})
        self.remote_url = remote_url.rstrip("/")
        self.key = position_key(self.remote_url, [f"{k}={v}" for k, v in self.where.items()])
        self.page_size = page_size
        self.report = PullReport(dry_run=dry_run)
        self.saved: dict[str, Any] | None = None

    def load(self) -> dict[str, Any]:
        """The position recorded in the local service (read before anything else is asked of the remote)."""
        self.saved = self.local.mirror_position(self.key) or {}
        return self.saved

    def pull(self, watch: bool = False, interval: float = 5.0,
             progress: Callable[[int, int], None] | None = None) -> PullReport:
        """Apply the remote's feed from the recorded position until caught up (``watch``: for ever)."""
        saved = self.saved if self.saved is not None else self.load()
        position = int(saved.get("position", 0))
        try:
            return self._pull_from(position, saved.get("conflicts", []), watch, interval, progress)
        except ServiceUnreachable as exc:
            if f"{self.remote.answered_by}/" not in str(exc):
                raise  # the local service: the command line names it
            raise RemoteUnreachable(f"the remote service {self.remote_url} stopped answering ({exc}); "
                                    f"pulled up to its position {self.report.position}, run pull again later") from None

    def _pull_from(self, position: int, conflicts: list[dict[str, Any]], watch: bool, interval: float,
                   progress: Callable[[int, int], None] | None) -> PullReport:
        self.report.position = position
        self._recheck(conflicts)
        while True:
            page = self.remote.changes(position, self.page_size, self.where)
            if page["last"] < position:  # the feed never shrinks: this is not the store pulled from before
                raise FeedEndsBefore(
                    f"the change feed of {self.remote_url} ends at position {page['last']}, before the position "
                    f"{position} recorded here for it: it is not the store pulled from before (reset or replaced); "
                    f"nothing was pulled. To start over, PUT {{\"position\": 0}} to "
                    f"/api/v1/mirror_positions/{self.key} of the local service")
            self.apply(page["changes"])
            moved = page["next"] != position
            if moved and not self.report.dry_run:
                self.local.set_mirror_position(self.key, {
                    "position": page["next"], "remote": self.remote_url,
                    "where": [f"{k}={v}" for k, v in self.where.items()], "conflicts": self.report.conflicts[:1_000]})
            position = page["next"]
            self.report.position, self.report.last = position, page["last"]
            if progress is not None:
                progress(position, page["last"])
            # Caught up, or behind only writes still in flight on the remote (the next pull gets them).
            if page["caught_up"] or not moved:
                if not watch:
                    return self.report
                time.sleep(interval)  # the poll interval of --watch

    def _recheck(self, conflicts: list[dict[str, Any]]) -> None:
        """Conflicts earlier pulls recorded stay reported until the local copy equals the remote's."""
        for old in conflicts:
            doc_type, uid = str(old.get("doc_type")), str(old.get("uid"))
            try:
                here, there = self.local.get_document(doc_type, uid), self.remote.get_document(doc_type, uid)
                if _content(here) == _content(there):
                    continue
            except NotFound:
                pass
            self.report.conflicts.append({"doc_type": doc_type, "uid": uid, "reason": str(old.get("reason", ""))})

    # ---- applying one page ------------------------------------------------------------

    def apply(self, changes: list[dict[str, Any]]) -> None:
        """Inserts in runs of one type (bulk), updates one by one, in feed order."""
        run: list[dict[str, Any]] = []
        for change in changes:
            if run and (change["operation"] != "insert" or change["doc_type"] != run[0]["doc_type"]):
                self._insert(run)
                run = []
            if change["operation"] == "insert":
                run.append(change)
            else:
                self._update(change)
        if run:
            self._insert(run)

    def _insert(self, run: list[dict[str, Any]]) -> None:
        doc_type = run[0]["doc_type"]
        for start in range(0, len(run), INSERT_CHUNK):
            docs = [_content(c["document"]) for c in run[start:start + INSERT_CHUNK]]
            if self.report.dry_run:
                self._compare(doc_type, docs)
            else:
                self._send(doc_type, docs)

    def _send(self, doc_type: str, docs: list[dict[str, Any]]) -> None:
        """Bulk insert; refused documents are reported and the rest are sent again without them."""
        while docs:
            try:
                answer = self.local.insert_many(doc_type, docs)
            except ServiceError as exc:
                if exc.status >= 500 or exc.status in (401, 403):
                    raise
                if len(docs) == 1:  # a one-document request's error is that document's
                    failed = {0: exc.message}
                else:
                    failed = {int(d["index"]): str(d.get("message")) for d in exc.details
                              if isinstance(d, dict) and d.get("result") == "error" and isinstance(d.get("index"), int)}
                if not failed:
                    raise
                for index, message in failed.items():
                    doc = docs[index]
                    if exc.status == 409 and self._inserted_as(doc_type, doc) == doc:
                        self.report.unchanged += 1  # here, and updated since, as on the remote
                    else:
                        self.report.conflict(doc_type, str(doc.get("uid")), message)
                docs = [d for i, d in enumerate(docs) if i not in failed]
                continue
            self.report.inserted[doc_type] += answer["inserted"]
            self.report.unchanged += answer["already_stored"]
            return

    def _compare(self, doc_type: str, docs: list[dict[str, Any]]) -> None:
        """Dry run: which of ``docs`` are missing here, already here, or here with other content."""
        for start in range(0, len(docs), 1_000):  # a search's $in takes at most 1000 values
            chunk = docs[start:start + 1_000]
            here = {d["uid"]: _content(d) for d in self.local.find(
                doc_type, {"uid": {"$in": [d["uid"] for d in chunk]}}, limit=len(chunk))}
            for doc in chunk:
                stored = here.get(doc["uid"])
                if stored is None:
                    self.report.inserted[doc_type] += 1
                elif stored == doc or self._inserted_as(doc_type, doc) == doc:
                    self.report.unchanged += 1
                else:
                    self.report.conflict(doc_type, doc["uid"], "stored here with different content")

    def _inserted_as(self, doc_type: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        """A header or tail updated here since: the version it was inserted as (its revision 0)."""
        if doc_type not in UPDATABLE_TYPES:
            return None
        try:
            first = next(iter(self.local.revisions(doc_type, doc["uid"])), None)
        except NotFound:
            return None
        return _content(first["document"]) if first is not None and first["revision"] == 0 else None

    def _update(self, change: dict[str, Any]) -> None:
        """Bring the local copy to the change's revision, replaying each remote revision on the way."""
        doc_type, uid, target = change["doc_type"], change["uid"], change["revision"]
        try:
            here = self.local.get_document(doc_type, uid)
        except NotFound:
            if self.report.dry_run:  # its insert may be earlier in this very dry run
                self.report.updated[doc_type] += 1
                return
            self.report.conflict(doc_type, uid, f"updated on the remote (revision {target}) but not stored here")
            return
        have = int(here.get("_revision", 0))
        if have >= target:
            self.report.unchanged += 1
            if have == target and _content(here) != _content(change["document"]):
                self.report.conflict(doc_type, uid, f"revision {target} differs here")
            return
        versions = {r["revision"]: _content(r["document"]) for r in self.remote.revisions(doc_type, uid)}
        versions[target] = _content(change["document"])
        current = _content(here)
        if versions.get(have) != current:
            self.report.conflict(doc_type, uid, f"revision {have} here differs from the remote's")
            return
        for revision in range(have + 1, target + 1):
            wanted = versions.get(revision)
            if wanted is None:
                self.report.conflict(doc_type, uid, f"the remote no longer has revision {revision}")
                return
            if self.report.dry_run:
                self.report.updated[doc_type] += 1
                continue
            changes: dict[str, Any] = {}
            to_set = {k: v for k, v in wanted.items() if k not in current or current[k] != v}
            to_unset = [k for k in current if k not in wanted]
            if to_set:
                changes["$set"] = to_set
            if to_unset:
                changes["$unset"] = to_unset
            try:
                self.local.patch(doc_type, uid, changes)
            except (Conflict, ServiceError) as exc:
                if isinstance(exc, ServiceError) and exc.status >= 500:
                    raise
                self.report.conflict(doc_type, uid, f"revision {revision} refused here: {exc.message}")
                return
            self.report.updated[doc_type] += 1
            current = wanted
