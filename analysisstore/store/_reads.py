"""Reads: by uid, pages, counts, latest per value, streams of every match, status and the analysis view."""
from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncGenerator

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from ..errors import BadRequest, NotFound
from ..schemas import DOC_TYPES
from ..service_fields import CLOSING, HIDDEN_FIELDS, RUNNING, STATUS_FIELD, hidden
from . import _paging
from ._database_errors import _database_errors
from ._filters import database_filter
from ._ids import by_uid
from ._status import EXIT_STATUSES, STATUSES, derive_status


def _shown(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without ``_id`` and the service's own fields (what ``hidden()`` projects away)."""
    for field in _UNSHOWN:
        doc.pop(field, None)
    return doc


_UNSHOWN = ("_id", *HIDDEN_FIELDS)


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
        collection = f"{self.db.name}.{doc_type}"
        with _database_errors():
            for i, query in enumerate(map(database_filter, queries)):
                wanted = limit + 1 - len(docs)
                if wanted <= 0:
                    break
                skip = offset if i == 0 else 0

                async def find(filt: dict[str, Any], n: int, skip: int = skip) -> list[dict[str, Any]]:
                    # The default fields are cut here, not by the database: the embedded one deep-copies every
                    # document it projects, a quarter of its time per page (MongoDB just sends ``_id`` too).
                    cursor = self.db[doc_type].find(filt, None if projection is None else hidden(projection),
                                                    max_time_ms=self.max_time_ms)
                    found = await cursor.sort(sort).skip(skip).limit(n).to_list()
                    return found if projection is not None else [_shown(doc) for doc in found]

                plan = await self._window_plan(doc_type, query, sort, skip, keyset)
                found = await (_paging.find_in_windows(find, query, plan, wanted) if plan else find(query, wanted))
                if sort[0][0] == "time":
                    _paging.remember_density(collection, query, found)
                docs.extend(found)
        return docs[:limit], len(docs) > limit

    async def _window_plan(self, doc_type: str, query: dict[str, Any], sort: list[tuple[str, int]], skip: int,
                           keyset: bool) -> _paging.Plan | None:
        """How to read one query of a page in time windows (see ``_paging``), or None to read it as it is.

        A keyset page continues after its cursor's time. A first page of one stream starts at the stream
        header's time. Any other first page keeps its own bounds (a time lookup, status=running's cutoff).
        """
        collection = f"{self.db.name}.{doc_type}"
        if keyset:
            return _paging.keyset_plan(collection, query, sort, skip)
        stream = _paging.first_page_stream(doc_type, query, sort, skip)
        if stream is None:
            return None
        anchor = _paging.anchor_time(self.db.name, stream)
        if anchor is None:
            try:
                _paging.remember_anchor(self.db.name, stream, await self.get("data_reference_header", stream))
            except NotFound:
                return None  # no such stream: one query finds its (no) records
            anchor = _paging.anchor_time(self.db.name, stream)
        return None if anchor is None else _paging.first_page_plan(collection, query, anchor)

    async def counts(self) -> dict[str, int]:
        """Approximate document count of every collection (from metadata: cheap at any size)."""
        with _database_errors():
            return {t: await self.db[t].estimated_document_count(maxTimeMS=self.max_time_ms) for t in DOC_TYPES}

    async def count(self, doc_type: str, filt: dict[str, Any]) -> int:
        """Exact number of matches."""
        with _database_errors():
            return await self.db[doc_type].count_documents(database_filter(filt), maxTimeMS=self.max_time_ms)

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
            {"$match": database_filter(filt)},
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
                .find(database_filter(filt), hidden(projection), max_time_ms=self.stream_max_time_ms,
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
