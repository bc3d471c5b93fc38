"""Reads: by uid, pages, counts, latest per value, streams of every match, status and the analysis view."""
from __future__ import annotations

import asyncio
import math
import time
from typing import Any, AsyncGenerator, TypeGuard

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from ..errors import BadRequest, NotFound
from ..schemas import DOC_TYPES
from ..service_fields import CLOSING, RUNNING, STATUS_FIELD, hidden
from ._database_errors import _database_errors
from ._ids import by_uid, with_primary_key
from ._status import EXIT_STATUSES, STATUSES, derive_status


#: Bounded windows a keyset page tries before reading the rest of the range at once.
_WINDOWS = 5
#: Seconds of ``time`` per document last seen on a page of each listing, by database and collection (per
#: process; a hint for the width of a window, never part of a result).
_DENSITY: dict[tuple[str, str], float] = {}
_DENSITY_SIZE = 1_000


def _listing_key(collection: str, query: dict[str, Any]) -> tuple[str, str]:
    return collection, repr(sorted((k, repr(v)) for k, v in query.items() if k not in ("time", "uid")))


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _remember_density(collection: str, query: dict[str, Any], page: list[dict[str, Any]]) -> None:
    first, last = page[0].get("time"), page[-1].get("time")
    if not (_finite(first) and _finite(last)):
        return
    if len(_DENSITY) >= _DENSITY_SIZE:
        _DENSITY.pop(next(iter(_DENSITY)))
    _DENSITY[_listing_key(collection, query)] = abs(last - first) / (len(page) - 1)


def _time_window(collection: str, query: dict[str, Any], sort: list[tuple[str, int]],
                 skip: int) -> tuple[str, float, float] | None:
    """(operator, bound, seconds per document) when ``query`` is a keyset page after a time whose density is
    known; None for every other query (read as it is)."""
    condition = query.get("time")
    if skip or sort[0][0] != "time" or not isinstance(condition, dict) or len(condition) != 1:
        return None
    op, bound = next(iter(condition.items()))
    if op != ("$gt" if sort[0][1] > 0 else "$lt") or isinstance(bound, bool) or not isinstance(bound, (int, float)):
        return None
    per_doc = _DENSITY.get(_listing_key(collection, query))
    return None if per_doc is None else (op, float(bound), per_doc)


class Reads:
    """The read half of :class:`~analysisstore.store.Store`."""

    def __init__(self, db: AsyncDatabase, max_time_ms: int, stream_max_time_ms: int) -> None:
        self.db = db
        self.max_time_ms = max_time_ms
        self.stream_max_time_ms = stream_max_time_ms

    async def get(self, doc_type: str, uid: str) -> dict[str, Any]:
        """The document with ``uid``, or NotFound."""
        with _database_errors():
            doc = await self.db[doc_type].find_one(by_uid(uid), hidden(), max_time_ms=self.max_time_ms)
        if doc is None:
            raise NotFound(f"no {doc_type} with uid {uid!r}")
        return doc

    async def find_page(
        self,
        doc_type: str,
        queries: list[dict[str, Any]],
        sort: list[tuple[str, int]],
        limit: int,
        offset: int = 0,
        projection: dict[str, Any] | None = None,
        keyset: bool = False,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` matches of ``queries`` (run in turn, each in ``sort`` order), and whether more follow.

        ``offset`` skips that many matches of the first query (offset and
        keyset cursors are not combined). ``keyset``: the queries continue a
        page after a cursor, which may be read in time windows; a first page
        (a lookup's or a status's own time bound) is read as it is.
        """
        docs: list[dict[str, Any]] = []
        with _database_errors():
            for i, query in enumerate(map(with_primary_key, queries)):
                wanted = limit + 1 - len(docs)
                if wanted <= 0:
                    break
                skip = offset if i == 0 else 0
                window = _time_window(f"{self.db.name}.{doc_type}", query, sort, skip) if keyset else None
                if window is not None:
                    docs.extend(await self._find_in_windows(doc_type, query, sort, wanted, projection, window))
                    continue
                cursor = (
                    self.db[doc_type]
                    .find(query, hidden(projection), max_time_ms=self.max_time_ms)
                    .sort(sort)
                    .skip(skip)
                    .limit(wanted)
                )
                found = await cursor.to_list()
                if len(found) > 1 and sort[0][0] == "time":
                    _remember_density(f"{self.db.name}.{doc_type}", query, found)
                docs.extend(found)
        return docs[:limit], len(docs) > limit

    async def _find_in_windows(self, doc_type: str, query: dict[str, Any], sort: list[tuple[str, int]], wanted: int,
                               projection: dict[str, Any] | None, window: tuple[str, float, float]) -> list[dict[str, Any]]:
        """The first ``wanted`` matches of a keyset page ``time > t`` (``< t`` descending), read in bounded time
        windows. A range open at one end makes the embedded database fetch and sort every later document of the
        stream for each page (paging a stream was quadratic); a window bounds that to about one page. The
        windows follow each other without gap or overlap, so the pages are the same as one open query's."""
        op, start, per_doc = window
        forward = op == "$gt"
        width = max(per_doc * wanted * 1.25, 1e-9)
        found: list[dict[str, Any]] = []
        for _ in range(_WINDOWS):
            end = start + width if forward else start - width
            bounded = {**query, "time": {op: start, ("$lte" if forward else "$gte"): end}}
            found += await self.db[doc_type].find(bounded, hidden(projection), max_time_ms=self.max_time_ms) \
                .sort(sort).limit(wanted - len(found)).to_list()
            if len(found) >= wanted:
                if len(found) > 1:
                    _remember_density(f"{self.db.name}.{doc_type}", query, found)
                return found
            start, width = end, width * 2
        rest = {**query, "time": {op: start}}  # sparse beyond the windows: the open remainder, as before
        return found + await self.db[doc_type].find(rest, hidden(projection), max_time_ms=self.max_time_ms) \
            .sort(sort).limit(wanted - len(found)).to_list()

    async def counts(self) -> dict[str, int]:
        """Approximate document count of every collection (from metadata: cheap at any size)."""
        with _database_errors():
            return {t: await self.db[t].estimated_document_count(maxTimeMS=self.max_time_ms) for t in DOC_TYPES}

    async def count(self, doc_type: str, filt: dict[str, Any]) -> int:
        """Exact number of matches."""
        with _database_errors():
            return await self.db[doc_type].count_documents(with_primary_key(filt), maxTimeMS=self.max_time_ms)

    async def latest_page(
        self,
        doc_type: str,
        filt: dict[str, Any],
        field: str,
        sort: list[tuple[str, int]],
        limit: int,
        projection: dict[str, Any] | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """The newest document for each distinct value of ``field`` (missing and null form one group)."""
        pipeline: list[dict[str, Any]] = [
            {"$match": with_primary_key(filt)},
            {"$sort": {"time": -1, "uid": -1}},
            {"$group": {"_id": f"${field}", "doc": {"$first": "$$ROOT"}}},
            {"$replaceRoot": {"newRoot": "$doc"}},
            {"$sort": dict(sort)},
            {"$limit": limit + 1},
            {"$project": hidden(projection)},
        ]
        with _database_errors():
            cursor = await self.db[doc_type].aggregate(pipeline, maxTimeMS=self.max_time_ms)
            docs = await cursor.to_list()
        return docs[:limit], len(docs) > limit

    async def iter_find(
        self,
        doc_type: str,
        filt: dict[str, Any],
        sort: list[tuple[str, int]],
        batch_size: int = 1_000,
        projection: dict[str, Any] | None = None,
        limit: int = 0,
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Every match (or the first ``limit``), in batches; at most three batches in memory at a time.

        The next batch is fetched while the caller still works on this one
        (serialising, writing to a slow client), so the database is not left
        idle between getMores; the queue bounds how far it runs ahead.
        """
        with _database_errors():
            cursor = (
                self.db[doc_type]
                .find(with_primary_key(filt), hidden(projection), max_time_ms=self.stream_max_time_ms,
                      batch_size=batch_size)
                .sort(sort)
                .limit(limit)
            )
            ready: asyncio.Queue[list[dict[str, Any]] | BaseException | None] = asyncio.Queue(maxsize=1)

            async def fetch() -> None:
                try:
                    while batch := await cursor.to_list(batch_size):
                        await ready.put(batch)
                    await ready.put(None)
                except Exception as exc:  # handed to the consumer, which raises it in its own context
                    await ready.put(exc)

            fetcher = asyncio.create_task(fetch())
            try:
                while (item := await ready.get()) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                fetcher.cancel()
                await asyncio.gather(fetcher, return_exceptions=True)
                await cursor.close()

    # ---- derived status and the analysis view ---------------------------------

    @staticmethod
    def status_filter(status: str, stale_after: float) -> dict[str, Any]:
        """A filter on analysis_header selecting analyses with the derived ``status``.

        The status is kept on the header when its tail is stored (see ``_fence``),
        so this is one range of the (status, time, uid) index, whatever the size.
        """
        if status in EXIT_STATUSES:
            return {STATUS_FIELD: status}
        if status in ("running", "stale"):
            cutoff = time.time() - stale_after
            age = {"$gt": cutoff} if status == "running" else {"$lte": cutoff}
            return {STATUS_FIELD: {"$in": [RUNNING, CLOSING]}, "time": age}
        raise BadRequest(f"unknown status {status!r}; known: {', '.join(STATUSES)}")

    async def analysis(self, uid: str, stale_after: float) -> dict[str, Any]:
        """One analysis whole: header, streams with record counts, tail, derived status."""
        header = await self.get("analysis_header", uid)
        with _database_errors():
            tail = await self.db.analysis_tail.find_one({"analysis_header": uid}, hidden(),
                                                        max_time_ms=self.max_time_ms)
            streams = await (
                self.db.data_reference_header.find({"analysis_header": uid}, hidden(), max_time_ms=self.max_time_ms)
                .sort([("time", ASCENDING), ("uid", ASCENDING)])
                .to_list()
            )
            counts: dict[str, int] = {}
            if streams:
                cursor = await self.db.data_reference.aggregate([
                    {"$match": {"data_reference_header": {"$in": [s["uid"] for s in streams]}}},
                    {"$group": {"_id": "$data_reference_header", "n": {"$sum": 1}}},
                ], maxTimeMS=self.max_time_ms)
                counts = {row["_id"]: row["n"] async for row in cursor}
        for stream in streams:
            stream["record_count"] = counts.get(stream["uid"], 0)
        return {"header": header, "streams": streams, "tail": tail,
                "status": derive_status(header, tail, stale_after)}
