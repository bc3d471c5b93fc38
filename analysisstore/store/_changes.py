"""The change feed: every insert and every accepted update gets a position in one order all workers share.

How a write is recorded (docs/mirror.md explains why):

1. ``$inc`` on the counter document ``meta/change_feed`` hands out positions
   (one per document of the request); every worker process shares it, so the
   positions form one order.
2. One *pending* entry per 2000 documents of the request (``_id`` its first
   position, ``last`` its last, the documents' uids, ``at`` the time) goes into
   ``change_feed`` **before** the documents are written.
3. The write happens; then the entry becomes ``done``, listing the documents
   it did not write (already stored, refused) as ``void``, or ``void`` whole.

The pending entry of an insert doubles as the request's entry on the write
fence (``_fence``): it names the analyses of its documents and holds a lease
(``until``) that the settle ends, so a stream or record write needs no entry
of its own (see :func:`held_entries`).

A reader hands out positions in order and stops before the lowest one still
in flight: a pending entry, or a position handed out whose entry is not there
yet. Therefore a write that commits late never lands behind a position a
reader already passed. A writer that died in flight would block the feed for
ever, so an entry pending for longer than the settle window (or a hole
older than it) is resolved by the reader: its documents that are in the
database (at that revision) are handed out, the others are void.
"""
from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from ..changes import REVISION_FIELD
from ..service_fields import HIDDEN_FIELDS
from ._cache import ImmutableCache
from ._database_errors import _database_errors
from ._results import INSERTED, WriteOutcome

__all__ = ["ChangeFeed", "FEED_COLLECTION", "SETTLE_SECONDS", "MAX_FEED_LIMIT", "LEASE_SECONDS", "FeedHold",
           "held_entries"]

log = logging.getLogger(__name__)

FEED_COLLECTION = "change_feed"
_COUNTER_ID = "change_feed"
#: Tries of the counter's increment (only a race to create it makes one fail).
_ALLOCATE_ATTEMPTS = 5
#: Longer than any write may take (requests are bounded by the database time limit and body limits).
SETTLE_SECONDS = 120.0
#: How long a write in flight holds its analyses' write fence without renewing its entry (``_fence``).
LEASE_SECONDS = 60.0
#: The inserts the write fence guards (nothing after the tail): their pending entries hold it.
_FENCED = ("data_reference_header", "data_reference")
MAX_FEED_LIMIT = 5_000
#: Documents per entry: 256-character uids, stream and header uids stay far below the 16 MB document limit.
ENTRY_DOCUMENTS = 2_000
#: Fields of the service's own, never part of a document's content in the feed.
_BOOKKEEPING = ("_id", REVISION_FIELD, *HIDDEN_FIELDS)
_PENDING, _DONE, _VOID = "pending", "done", "void"
#: uids per $in query (its cost grows faster than its length on some servers).
_IN_CHUNK = 100


@dataclass
class _InFlight:
    """The entries of one write between its pending and its final state."""

    positions: list[int] = field(default_factory=list)
    outcome: WriteOutcome | None = None  # inserts: which documents were written
    applied: bool = False  # updates: did the conditional update match
    entries: list[int] = field(default_factory=list)  # the _id of each of its entries


@dataclass
class FeedHold:
    """The pending entries of the insert this task is making: stored, with a live lease, before the write
    fence reads any header's status, and naming the analyses of their documents."""

    collection: AsyncCollection
    entries: list[int]
    analyses: set[str]


_holding: ContextVar[FeedHold | None] = ContextVar("change_feed_holding", default=None)


def held_entries() -> FeedHold | None:
    """The change-feed entries held by the insert in progress in this task (None outside ``inserting``)."""
    return _holding.get()


class ChangeFeed:
    """Records positions for writes, and reads them back in order."""

    def __init__(self, db: AsyncDatabase, known: ImmutableCache, max_time_ms: int) -> None:
        self.db = db
        self.known = known
        self.max_time_ms = max_time_ms
        self.settle_seconds = SETTLE_SECONDS
        self.entries = db[FEED_COLLECTION]

    # ---- writing ------------------------------------------------------------------

    async def ensure_counter(self) -> None:
        """Create the counter at start-up, so that writers only ever increment a document that exists."""
        try:
            await self.db.meta.insert_one({"_id": _COUNTER_ID, "last": 0})
        except DuplicateKeyError:  # there already (or another worker made it just now)
            pass

    async def _allocate(self, count: int) -> int:
        """The first of ``count`` new consecutive positions."""
        for _ in range(_ALLOCATE_ATTEMPTS):
            try:
                counter = await self.db.meta.find_one_and_update(
                    {"_id": _COUNTER_ID}, {"$inc": {"last": count}}, upsert=True,
                    return_document=ReturnDocument.AFTER)
            except DuplicateKeyError:  # another writer created the counter at the same moment
                continue
            if counter is not None:
                return int(counter["last"]) - count + 1
            # The embedded database answers None to writers racing to create the counter, though it
            # incremented it: those positions become a hole, which readers resolve after the settle window.
            log.warning("change-feed counter: no value returned while it was being created; allocating again")
        raise RuntimeError("the change-feed counter could not be incremented")

    async def _headers_of_streams(self, stream_uids: set[str]) -> dict[str, str]:
        out = {uid: p["analysis_header"] for uid in stream_uids
               if (p := self.known.get(("data_reference_header", uid))) is not None}
        missing = stream_uids - set(out)
        if missing:
            async for p in self.db.data_reference_header.find(
                    {"_id": {"$in": list(missing)}}, {"_id": 0, "uid": 1, "analysis_header": 1, "data_keys": 1}):
                out[p["uid"]] = p["analysis_header"]
                self.known.put(("data_reference_header", p["uid"]), p)  # the same entry the writes cache
        return out

    async def _begin(self, doc_type: str, op: str, revision: int, uids: list[Any], headers: list[Any],
                     extra: dict[str, list[Any]] | None = None) -> _InFlight:
        """Pending entries for the request (one per ENTRY_DOCUMENTS documents), holding a position per document."""
        first = await self._allocate(len(uids))
        now = time.time()
        until = now + LEASE_SECONDS if op == "insert" and doc_type in _FENCED else 0  # the write fence's hold
        for start in range(0, len(uids), ENTRY_DOCUMENTS):
            end = min(start + ENTRY_DOCUMENTS, len(uids))
            entry = {"_id": first + start, "last": first + end - 1, "doc_type": doc_type, "op": op,
                     "revision": revision, "uids": uids[start:end], "headers": headers[start:end],
                     **{name: values[start:end] for name, values in (extra or {}).items()},
                     "state": _PENDING, "void": [], "at": now, "until": until}
            # findAndModify, like the counter: a write's own insert/update commands stay the only ones of those
            await self.entries.find_one_and_update({"_id": entry["_id"]}, {"$setOnInsert": entry}, upsert=True)
        return _InFlight(list(range(first, first + len(uids))),
                         entries=list(range(first, first + len(uids), ENTRY_DOCUMENTS)))

    async def _settle(self, flight: _InFlight, void: list[int]) -> None:
        """The write's outcome: ``void`` lists the indices of the documents it did not write."""
        not_written = set(void)
        for start in range(0, len(flight.positions), ENTRY_DOCUMENTS):
            end = min(start + ENTRY_DOCUMENTS, len(flight.positions))
            voided = [i - start for i in range(start, end) if i in not_written]
            state = _VOID if len(voided) == end - start else _DONE
            # update_one, not findAndModify: on the embedded database a findAndModify that matches a stored
            # document scans the collection, and the feed only grows (an O(n) settle made writes O(n^2)).
            # An update command here is harmless to failpoints on a write's own commands: it comes last.
            # ``until``: the write is over, its hold on the write fence ends with the same command.
            done = await self.entries.update_one({"_id": flight.positions[start], "state": _PENDING},
                                                 {"$set": {"state": state, "void": voided, "until": 0}})
            if done.matched_count == 0:
                await self.entries.update_one({"_id": flight.positions[start]}, {"$set": {"until": 0}})
                log.warning("change-feed position %d was resolved by a reader before its write finished (a write "
                            "slower than the settle window of %.0f s)", flight.positions[start], self.settle_seconds)

    @asynccontextmanager
    async def inserting(self, doc_type: str, docs: list[dict[str, Any]]) -> AsyncIterator[_InFlight]:
        """Wrap an insert: set ``.outcome`` inside the block; inserted documents become ``done``."""
        if not docs:
            yield _InFlight()
            return
        with _database_errors():
            extra = None
            if doc_type == "analysis_header":
                header_of = [doc.get("uid") for doc in docs]
            elif doc_type == "data_reference":
                parents = [str(d.get("data_reference_header")) for d in docs]
                streams = await self._headers_of_streams(set(parents))
                header_of = [streams.get(parent) for parent in parents]
                # where a reader finds the records again with one range query
                extra = {"streams": [d.get("data_reference_header") for d in docs],
                         "seqs": [d.get("seq_num") for d in docs], "times": [d.get("time") for d in docs]}
            else:
                header_of = [doc.get("analysis_header") for doc in docs]
            flight = await self._begin(doc_type, "insert", 0, [doc.get("uid") for doc in docs], header_of, extra)
        if doc_type in _FENCED:
            _holding.set(FeedHold(self.entries, flight.entries, {h for h in header_of if isinstance(h, str)}))
        try:
            yield flight
        except BaseException:
            # The entry stays pending (a reader resolves it after the settle window); its fence hold ends now,
            # as a fence entry of its own would have been removed.
            try:
                await self.entries.update_many({"_id": {"$in": flight.entries}, "state": _PENDING},
                                               {"$set": {"until": 0}})
            except PyMongoError as exc:
                log.warning("change-feed positions from %d: could not end their write-fence hold (%s); it lapses "
                            "in %.0f s", flight.entries[0], exc, LEASE_SECONDS)
            raise
        finally:
            _holding.set(None)  # not reset(token): a caller may enter and leave in different tasks
        items = flight.outcome.items if flight.outcome else []
        void = [i for i in range(len(flight.positions))
                if i >= len(items) or items[i].result != INSERTED or items[i].error is not None]
        with _database_errors():
            await self._settle(flight, void)

    @asynccontextmanager
    async def updating(self, doc_type: str, uid: str, header_uid: str, revision: int) -> AsyncIterator[_InFlight]:
        """Wrap the write of ``revision`` of a header or tail: set ``.applied`` when it matched."""
        flight = await self._begin(doc_type, "update", revision, [uid], [header_uid])
        yield flight
        await self._settle(flight, [] if flight.applied else [0])

    # ---- reading ------------------------------------------------------------------

    async def last_position(self) -> int:
        counter = await self.db.meta.find_one({"_id": _COUNTER_ID})
        return int(counter["last"]) if counter else 0

    async def read(self, after: int, limit: int, header_filter: dict[str, Any] | None) -> dict[str, Any]:
        """Settled writes after position ``after`` (at most ``limit`` positions), in order, with their documents.

        ``next`` is the position to read after next time: every position up to it was examined (documents
        filtered out and void ones included); nothing at or below it can appear later.
        """
        with _database_errors():
            last = await self.last_position()
            found = []
            if after > 0:  # a request's entry may hold positions on both sides of ``after``
                holder = await self.entries.find_one({"_id": {"$lte": after}}, sort=[("_id", -1)],
                                                     max_time_ms=self.max_time_ms)
                if holder is not None and holder["last"] > after:
                    found.append(holder)
            found += await self.entries.find({"_id": {"$gt": after}}, max_time_ms=self.max_time_ms) \
                .sort("_id", 1).limit(limit).to_list()
            settled = await self._settled_prefix(after, found)
            position = min(settled[-1]["last"], after + limit) if settled else after
            done = [item for entry in settled if entry["state"] == _DONE
                    for item in _items(entry, after, position)]
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
            if entry["_id"] > expected and entry["at"] > cutoff:
                break
            if entry["state"] == _PENDING:
                if entry["at"] > cutoff:
                    break
                await self._resolve(entry)
            out.append(entry)
            expected = entry["last"] + 1
        return out

    async def _resolve(self, entry: dict[str, Any]) -> None:
        """An entry whose writer vanished: its documents that are in the database are done, the rest void."""
        stored: dict[str, int] = {}
        uids = entry["uids"]
        for start in range(0, len(uids), _IN_CHUNK):
            async for doc in self.db[entry["doc_type"]].find({"_id": {"$in": uids[start:start + _IN_CHUNK]}},
                                                             {"_id": 0, "uid": 1, REVISION_FIELD: 1}):
                stored[doc["uid"]] = doc.get(REVISION_FIELD, 0)
        entry["void"] = [i for i, uid in enumerate(uids) if stored.get(uid, -1) < entry["revision"]]
        entry["state"] = _VOID if len(entry["void"]) == len(uids) else _DONE
        await self.entries.update_one({"_id": entry["_id"], "state": _PENDING},
                                      {"$set": {"state": entry["state"], "void": entry["void"]}})
        log.warning("change-feed positions %d-%d (%s %s) were in flight for longer than %.0f s: %d of %d written",
                    entry["_id"], entry["last"], entry["doc_type"], entry["op"], self.settle_seconds,
                    len(uids) - len(entry["void"]), len(uids))

    async def _matching(self, entries: list[dict[str, Any]], header_filter: dict[str, Any]) -> list[dict[str, Any]]:
        headers = list({e["analysis_header"] for e in entries if e.get("analysis_header") is not None})
        if not headers:
            return []
        matching: set[str] = set()
        for start in range(0, len(headers), _IN_CHUNK):
            matching.update([h["uid"] async for h in self.db.analysis_header.find(
                {"$and": [{"_id": {"$in": headers[start:start + _IN_CHUNK]}}, header_filter]}, {"_id": 0, "uid": 1},
                max_time_ms=self.max_time_ms)])
        return [e for e in entries if e.get("analysis_header") in matching]

    async def _current(self, entries: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        """The stored documents of ``entries``: records by stream and time range, the rest by uid."""
        wanted: dict[str, set[str]] = {}
        for e in entries:
            wanted.setdefault(e["doc_type"], set()).add(e["uid"])
        found: dict[tuple[str, str], dict[str, Any]] = {}
        ranges: dict[str, list[float]] = {}
        for e in entries:
            if e["doc_type"] == "data_reference" and isinstance(e.get("time"), (int, float)) and e.get("stream"):
                ranges.setdefault(e["stream"], []).append(e["time"])
        for stream, times in ranges.items():
            # The records' (stream, time, uid) index answers a range at once; a large $in, even on _id, is
            # slow on some servers (500 uids: 0.5 s on the embedded database, the range 0.07 s). Records of
            # other writes in the same range count against the limit; what it leaves out is found by uid.
            query = {"data_reference_header": stream, "time": {"$gte": min(times), "$lte": max(times)}}
            async for doc in self.db.data_reference.find(query, max_time_ms=self.max_time_ms).limit(4 * len(times)):
                if doc["uid"] in wanted["data_reference"]:
                    found[("data_reference", doc["uid"])] = doc
        for doc_type, uids in wanted.items():
            missing = [uid for uid in uids if (doc_type, uid) not in found]
            for start in range(0, len(missing), _IN_CHUNK):
                async for doc in self.db[doc_type].find({"_id": {"$in": missing[start:start + _IN_CHUNK]}},
                                                        max_time_ms=self.max_time_ms):
                    found[(doc_type, doc["uid"])] = doc
        return found

    async def _with_documents(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each entry with the document as that write left it (an insert: as inserted, before any update)."""
        current = await self._current(entries)
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


def _items(entry: dict[str, Any], after: int, until: int) -> list[dict[str, Any]]:
    """The written documents of one request's entry whose positions lie in (after, until]."""
    void = set(entry.get("void", []))
    out = []
    for i, uid in enumerate(entry["uids"]):
        position = entry["_id"] + i
        if position <= after or i in void:
            continue
        if position > until:
            break
        item = {"_id": position, "doc_type": entry["doc_type"], "op": entry["op"], "uid": uid,
                "revision": entry["revision"], "analysis_header": entry["headers"][i]}
        if "streams" in entry:
            item.update(stream=entry["streams"][i], seq_num=entry["seqs"][i])
            if "times" in entry:  # entries written before layout 2 have no times: found by uid
                item["time"] = entry["times"][i]
        out.append(item)
    return out
