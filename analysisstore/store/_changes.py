"""The change feed: every insert and every accepted update gets a position in one order all workers share.

How a write is recorded (docs/mirror.md explains why):

1. ``$inc`` on the counter document ``meta/change_feed`` hands out positions
   (one per document of the request); every worker process shares it, so the
   positions form one order.
2. One *pending* entry per document goes into ``change_feed`` (``_id`` is the
   position, ``at`` the time), **before** the document is written.
3. The write happens; then each entry becomes ``done`` (the document was
   inserted, or the update applied) or ``void`` (already stored, refused).

A reader hands out positions in order and stops before the lowest one still
in flight: a pending entry, or a position handed out whose entry is not there
yet. Therefore a write that commits late never lands behind a position a
reader already passed. A writer that died in flight would block the feed for
ever, so an entry pending for longer than the settle window (or a hole
older than it) is resolved by the reader: ``done`` if the document (at that
revision) is in the database, ``void`` otherwise.
"""
from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from ..changes import REVISION_FIELD
from ._common import INSERTED, ImmutableCache, WriteOutcome, _database_errors

__all__ = ["ChangeFeed", "FEED_COLLECTION", "SETTLE_SECONDS", "MAX_FEED_LIMIT"]

log = logging.getLogger(__name__)

FEED_COLLECTION = "change_feed"
_COUNTER_ID = "change_feed"
#: Longer than any write may take (requests are bounded by the database time limit and body limits).
SETTLE_SECONDS = 120.0
MAX_FEED_LIMIT = 5_000
#: Fields of the service's own, never part of a document's content in the feed.
_BOOKKEEPING = ("_id", "_status", REVISION_FIELD)
_PENDING, _DONE, _VOID = "pending", "done", "void"


@dataclass
class _InFlight:
    """The entries of one write between its pending and its final state."""

    positions: list[int] = field(default_factory=list)
    outcome: WriteOutcome | None = None  # inserts: which documents were written
    applied: bool = False  # updates: did the conditional update match


class ChangeFeed:
    """Records positions for writes, and reads them back in order."""

    def __init__(self, db: AsyncDatabase, known: ImmutableCache, max_time_ms: int) -> None:
        self.db = db
        self.known = known
        self.max_time_ms = max_time_ms
        self.settle_seconds = SETTLE_SECONDS
        self.entries = db[FEED_COLLECTION]

    # ---- writing ------------------------------------------------------------------

    async def _allocate(self, count: int) -> int:
        """The first of ``count`` new consecutive positions."""
        counter = await self.db.meta.find_one_and_update(
            {"_id": _COUNTER_ID}, {"$inc": {"last": count}}, upsert=True, return_document=ReturnDocument.AFTER)
        return int(counter["last"]) - count + 1

    async def _headers_of_streams(self, stream_uids: set[str]) -> dict[str, str]:
        out = {uid: p["analysis_header"] for uid in stream_uids
               if (p := self.known.get(("data_reference_header", uid))) is not None}
        missing = stream_uids - set(out)
        if missing:
            async for p in self.db.data_reference_header.find(
                    {"uid": {"$in": list(missing)}}, {"_id": 0, "uid": 1, "analysis_header": 1, "data_keys": 1}):
                out[p["uid"]] = p["analysis_header"]
                self.known.put(("data_reference_header", p["uid"]), p)  # the same entry the writes cache
        return out

    async def _begin(self, entries: list[dict[str, Any]]) -> _InFlight:
        first = await self._allocate(len(entries))
        now = time.time()
        for i, entry in enumerate(entries):
            entry.update(_id=first + i, state=_PENDING, at=now)
        await self.entries.insert_many(entries, ordered=True)
        return _InFlight([e["_id"] for e in entries])

    async def _settle(self, positions: list[int], state: str) -> None:
        if positions:
            done = await self.entries.update_many({"_id": {"$in": positions}, "state": _PENDING},
                                                  {"$set": {"state": state}})
            if done.matched_count != len(positions):
                log.warning("%d change-feed entries were resolved by a reader before their write finished "
                            "(a write slower than the settle window of %.0f s)",
                            len(positions) - done.matched_count, self.settle_seconds)

    @asynccontextmanager
    async def inserting(self, doc_type: str, docs: list[dict[str, Any]]) -> AsyncIterator[_InFlight]:
        """Wrap an insert: set ``.outcome`` inside the block; inserted documents become ``done``."""
        if not docs:
            yield _InFlight()
            return
        with _database_errors():
            if doc_type == "analysis_header":
                header_of = [doc.get("uid") for doc in docs]
            elif doc_type == "data_reference":
                streams = await self._headers_of_streams({d.get("data_reference_header") for d in docs
                                                          if isinstance(d.get("data_reference_header"), str)})
                header_of = [streams.get(d.get("data_reference_header")) for d in docs]
            else:
                header_of = [doc.get("analysis_header") for doc in docs]
            flight = await self._begin([{"doc_type": doc_type, "uid": doc.get("uid"), "op": "insert",
                                         "revision": 0, "analysis_header": header}
                                        for doc, header in zip(docs, header_of)])
        yield flight  # an exception leaves the entries pending: a reader resolves them after the settle window
        outcome = flight.outcome
        written = [p for p, item in zip(flight.positions, outcome.items if outcome else [])
                   if item.result == INSERTED and item.error is None]
        with _database_errors():
            await self._settle(written, _DONE)
            await self._settle(sorted(set(flight.positions) - set(written)), _VOID)

    @asynccontextmanager
    async def updating(self, doc_type: str, uid: str, header_uid: str, revision: int) -> AsyncIterator[_InFlight]:
        """Wrap the write of ``revision`` of a header or tail: set ``.applied`` when it matched."""
        flight = await self._begin([{"doc_type": doc_type, "uid": uid, "op": "update", "revision": revision,
                                     "analysis_header": header_uid}])
        yield flight
        await self._settle(flight.positions, _DONE if flight.applied else _VOID)

    # ---- reading ------------------------------------------------------------------

    async def last_position(self) -> int:
        counter = await self.db.meta.find_one({"_id": _COUNTER_ID})
        return int(counter["last"]) if counter else 0

    async def read(self, after: int, limit: int, header_filter: dict[str, Any] | None) -> dict[str, Any]:
        """Entries after position ``after`` that are settled, in order, with their documents.

        ``next`` is the position to read after next time: every entry up to it was examined (entries
        filtered out and void ones included); nothing at or below it can appear later.
        """
        with _database_errors():
            last = await self.last_position()
            found = await self.entries.find({"_id": {"$gt": after}}, max_time_ms=self.max_time_ms) \
                .sort("_id", 1).limit(limit).to_list()
            settled = await self._settled_prefix(after, found)
            position = settled[-1]["_id"] if settled else after
            done = [e for e in settled if e["state"] == _DONE]
            if header_filter:
                done = await self._matching(done, header_filter)
            changes = await self._with_documents(done)
        return {"changes": changes, "next": position, "last": last, "caught_up": position >= last}

    async def _settled_prefix(self, after: int, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The entries before the first one still in flight (a pending entry, or a hole in the positions)."""
        cutoff = time.time() - self.settle_seconds
        expected, out = after + 1, []
        for entry in found:
            # A hole: a position handed out whose entry is not written yet. Its writer took the position
            # before this entry's; if even this entry is older than the settle window, the writer is gone.
            if entry["_id"] != expected and entry["at"] > cutoff:
                break
            if entry["state"] == _PENDING:
                if entry["at"] > cutoff:
                    break
                entry["state"] = await self._resolve(entry)
            out.append(entry)
            expected = entry["_id"] + 1
        return out

    async def _resolve(self, entry: dict[str, Any]) -> str:
        """An entry whose writer vanished: done if its write is in the database, else void."""
        stored = await self.db[entry["doc_type"]].find_one({"uid": entry["uid"]}, {"_id": 0, REVISION_FIELD: 1})
        written = stored is not None and stored.get(REVISION_FIELD, 0) >= entry["revision"]
        state = _DONE if written else _VOID
        await self.entries.update_one({"_id": entry["_id"], "state": _PENDING}, {"$set": {"state": state}})
        log.warning("change-feed position %d (%s %s of %r) was in flight for longer than %.0f s: %s",
                    entry["_id"], entry["doc_type"], entry["op"], entry["uid"], self.settle_seconds, state)
        return state

    async def _matching(self, entries: list[dict[str, Any]], header_filter: dict[str, Any]) -> list[dict[str, Any]]:
        headers = list({e["analysis_header"] for e in entries if e.get("analysis_header") is not None})
        if not headers:
            return []
        matching = {h["uid"] async for h in self.db.analysis_header.find(
            {"$and": [{"uid": {"$in": headers}}, header_filter]}, {"_id": 0, "uid": 1},
            max_time_ms=self.max_time_ms)}
        return [e for e in entries if e.get("analysis_header") in matching]

    async def _with_documents(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each entry with the document as that write left it (an insert: as inserted, before any update)."""
        by_type: dict[str, set[str]] = {}
        for e in entries:
            by_type.setdefault(e["doc_type"], set()).add(e["uid"])
        current: dict[tuple[str, str], dict[str, Any]] = {}
        for doc_type, uids in by_type.items():
            async for doc in self.db[doc_type].find({"uid": {"$in": list(uids)}}, max_time_ms=self.max_time_ms):
                current[(doc_type, doc["uid"])] = doc
        out = []
        for e in entries:
            doc = current.get((e["doc_type"], e["uid"]))
            if doc is None:
                continue  # not in the database (removed behind the service's back): nothing to hand out
            if doc.get(REVISION_FIELD, 0) != e["revision"]:
                kept = await self.db.revisions.find_one(
                    {"doc_type": e["doc_type"], "uid": e["uid"], "revision": e["revision"]},
                    {"_id": 0, "document": 1}, max_time_ms=self.max_time_ms)
                if kept is None:
                    continue
                doc = kept["document"]
            out.append({"position": e["_id"], "doc_type": e["doc_type"], "operation": e["op"], "uid": e["uid"],
                        "revision": e["revision"], "analysis_header": e.get("analysis_header"),
                        "document": {k: v for k, v in doc.items() if k not in _BOOKKEEPING}})
        return out


class MirrorPositions:
    """Where a mirror's pulls from one remote (and filter) got to, kept in the mirror's own database."""

    def __init__(self, db: AsyncDatabase, max_time_ms: int) -> None:
        self.collection = db.mirror_positions
        self.max_time_ms = max_time_ms

    async def get(self, key: str) -> dict[str, Any] | None:
        with _database_errors():
            found = await self.collection.find_one({"_id": key}, max_time_ms=self.max_time_ms)
        if found is not None:
            found["key"] = found.pop("_id")
        return found

    async def put(self, key: str, record: dict[str, Any]) -> dict[str, Any]:
        record = {**record, "updated_at": time.time()}
        with _database_errors():
            await self.collection.replace_one({"_id": key}, record, upsert=True)
        return {"key": key, **record}
