"""The store: the only code that talks to MongoDB.

It enforces the invariants of the data model on top of already-validated
documents: parents exist, writes are idempotent by uid, one tail per
analysis, nothing new after the tail. Database failures surface as
:class:`DatabaseUnavailable` (503) so clients know to retry.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator

from pymongo import ASCENDING, AsyncMongoClient, IndexModel
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, ExecutionTimeout

from .changes import REVISION_FIELD, Changes
from .documents import check_record_keys
from .errors import (
    AnalysisStoreError,
    BadRequest,
    Conflict,
    DatabaseUnavailable,
    Finalized,
    NotFound,
    ValidationFailed,
)
from .schemas import DOC_TYPES, PARENT_FIELD

__all__ = ["Store", "index_models", "ItemResult", "INSERTED", "ALREADY_STORED", "STATUSES", "derive_status"]

log = logging.getLogger(__name__)

EXIT_STATUSES = ("success", "fail", "abort")
STATUSES = ("running", *EXIT_STATUSES, "stale")
INSERTED = "inserted"
ALREADY_STORED = "already stored"
_DUPLICATE_KEY = 11000

_INDEXES: dict[str, list[IndexModel]] = {
    # The query scientists run most: an analysis by name over a time range.
    "analysis_header": [IndexModel([("provenance.analysis_name", ASCENDING), ("time", ASCENDING)])],
    "data_reference_header": [IndexModel([("analysis_header", ASCENDING)])],
    # (stream, seq_num) also serves every lookup by stream alone; (stream, time, uid)
    # lets a stream's records be paged in time order without sorting in memory.
    "data_reference": [
        IndexModel([("data_reference_header", ASCENDING), ("seq_num", ASCENDING)]),
        IndexModel([("data_reference_header", ASCENDING), ("time", ASCENDING), ("uid", ASCENDING)]),
    ],
    "analysis_tail": [IndexModel([("analysis_header", ASCENDING)], unique=True)],
}
_PARENT_PROJECTION = {
    "analysis_header": {"_id": 0, "uid": 1},
    "data_reference_header": {"_id": 0, "uid": 1, "analysis_header": 1, "data_keys": 1},
}


@dataclass
class ItemResult:
    """What happened to one document of a write: inserted, already stored, or an error."""

    index: int
    uid: Any
    result: str = INSERTED
    error: AnalysisStoreError | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "uid": self.uid, "result": self.result}
        if self.error is not None:
            out.update(status=self.error.status, type=self.error.type_name, message=self.error.message)
        return out


@dataclass
class WriteOutcome:
    """Per-item results of one write request, in request order."""

    items: list[ItemResult] = field(default_factory=list)
    #: True once anything reached the database; failures found before that wrote nothing.
    written: bool = False

    @property
    def failed(self) -> list[ItemResult]:
        return [item for item in self.items if item.error is not None]


@contextmanager
def _database_errors() -> Iterator[None]:
    try:
        yield
    except ExecutionTimeout as exc:
        raise BadRequest(f"query took longer than the server allows; narrow the filter ({exc})") from None
    except ConnectionFailure as exc:
        log.warning("database unavailable: %s", exc)
        raise DatabaseUnavailable("the database is not answering; retry later") from None


def _same_content(stored: dict[str, Any], incoming: dict[str, Any], time_filled: bool) -> bool:
    """Is ``incoming`` a re-send of ``stored``? A server-filled time is not part of the content."""
    stored = {k: v for k, v in stored.items() if k not in ("_id", REVISION_FIELD)}
    incoming = {k: v for k, v in incoming.items() if k != "_id"}
    if time_filled:
        stored.pop("time", None)
        incoming.pop("time", None)
    return stored == incoming


def index_models(doc_type: str) -> list[IndexModel]:
    """Every index of one collection (also used by the benchmarks to index their direct side alike)."""
    return [
        IndexModel([("uid", ASCENDING)], unique=True),
        IndexModel([("time", ASCENDING), ("uid", ASCENDING)]),
        *_INDEXES[doc_type],
    ]


class Store:
    """Documents of one database, with the analysis invariants enforced on every write."""

    def __init__(self, client: AsyncMongoClient, database: str, max_time_ms: int = 10_000) -> None:
        self.client = client
        self.db = client[database]
        self.max_time_ms = max_time_ms

    @classmethod
    def connect(
        cls, uri: str, database: str, max_time_ms: int = 10_000, server_timeout_ms: int = 5_000
    ) -> "Store":
        """A store on ``uri`` (connection is lazy: nothing blocks here)."""
        client: AsyncMongoClient = AsyncMongoClient(
            uri, serverSelectionTimeoutMS=server_timeout_ms, appname="analysisstore"
        )
        return cls(client, database, max_time_ms)

    async def close(self) -> None:
        await self.client.close()

    async def ping(self) -> None:
        """Raise DatabaseUnavailable unless the database answers."""
        with _database_errors():
            await self.client.admin.command("ping")

    async def ensure_indexes(self) -> None:
        """Create every index once, at startup (idempotent)."""
        with _database_errors():
            for doc_type in DOC_TYPES:
                await self.db[doc_type].create_indexes(index_models(doc_type))
            await self.db.revisions.create_index(
                [("doc_type", ASCENDING), ("uid", ASCENDING), ("revision", ASCENDING)], unique=True
            )
        log.info("indexes ensured on database %r", self.db.name)

    # ---- writes -------------------------------------------------------------

    async def insert(self, doc_type: str, docs: list[tuple[dict[str, Any], bool]]) -> WriteOutcome:
        """Insert validated ``(document, time_filled)`` pairs of one type.

        Every check that can fail on the input (parents, finalization, data
        keys, duplicates inside the request) runs before anything is written;
        if one fails nothing is written and the outcome lists the failures.
        Only a uid conflict with an already stored document can be found
        after writing; it never overwrites anything.
        """
        outcome = WriteOutcome([ItemResult(i, doc.get("uid")) for i, (doc, _) in enumerate(docs)])
        if not docs:
            return outcome
        with _database_errors():
            to_write = self._dedupe_within_request(docs, outcome)
            if doc_type in PARENT_FIELD:
                await self._check_parents(doc_type, docs, to_write, outcome)
            if outcome.failed:
                return outcome
            await self._write(doc_type, docs, to_write, outcome)
        return outcome

    @staticmethod
    def _dedupe_within_request(
        docs: list[tuple[dict[str, Any], bool]], outcome: WriteOutcome
    ) -> list[int]:
        first_index: dict[Any, int] = {}
        to_write = []
        for i, (doc, time_filled) in enumerate(docs):
            uid = doc["uid"]
            if uid not in first_index:
                first_index[uid] = i
                to_write.append(i)
                continue
            earlier = docs[first_index[uid]][0]
            if _same_content(earlier, doc, time_filled):
                outcome.items[i].result = ALREADY_STORED
            else:
                outcome.items[i].error = Conflict(
                    f"uid {uid!r} appears twice in this request with different content"
                )
        return to_write

    async def _check_parents(
        self,
        doc_type: str,
        docs: list[tuple[dict[str, Any], bool]],
        to_write: list[int],
        outcome: WriteOutcome,
    ) -> None:
        parent_field = PARENT_FIELD[doc_type]
        wanted = {docs[i][0][parent_field] for i in to_write}
        parents = {
            p["uid"]: p
            async for p in self.db[parent_field].find(
                {"uid": {"$in": list(wanted)}}, _PARENT_PROJECTION[parent_field], max_time_ms=self.max_time_ms
            )
        }
        header_of = {
            uid: (p["analysis_header"] if parent_field == "data_reference_header" else uid)
            for uid, p in parents.items()
        }
        finalized = await self._finalized_headers(set(header_of.values())) if doc_type != "analysis_tail" else set()
        for i in to_write:
            doc = docs[i][0]
            parent = parents.get(doc[parent_field])
            if parent is None:
                outcome.items[i].error = NotFound(
                    f"{parent_field} {doc[parent_field]!r} does not exist; "
                    f"write it before its {doc_type} documents"
                )
                continue
            if header_of[parent["uid"]] in finalized:
                await self._allow_only_resend(doc_type, docs[i], outcome.items[i], header_of[parent["uid"]])
                continue
            if doc_type == "data_reference":
                try:
                    check_record_keys(doc, parent)
                except ValidationFailed as exc:
                    outcome.items[i].error = exc

    async def _finalized_headers(self, header_uids: set[str]) -> set[str]:
        if not header_uids:
            return set()
        cursor = self.db.analysis_tail.find(
            {"analysis_header": {"$in": list(header_uids)}},
            {"_id": 0, "analysis_header": 1},
            max_time_ms=self.max_time_ms,
        )
        return {t["analysis_header"] async for t in cursor}

    async def _allow_only_resend(
        self, doc_type: str, item: tuple[dict[str, Any], bool], result: ItemResult, header_uid: str
    ) -> None:
        """After the tail only an identical re-send of a stored document succeeds."""
        doc, time_filled = item
        stored = await self.db[doc_type].find_one({"uid": doc["uid"]}, {"_id": 0})
        if stored is not None and _same_content(stored, doc, time_filled):
            result.result = ALREADY_STORED
        else:
            result.error = Finalized(
                f"analysis {header_uid!r} is finalized (it has a tail); "
                f"no new {doc_type} documents may be added"
            )

    async def _write(
        self,
        doc_type: str,
        docs: list[tuple[dict[str, Any], bool]],
        to_write: list[int],
        outcome: WriteOutcome,
    ) -> None:
        pending = [i for i in to_write if outcome.items[i].result == INSERTED]
        if not pending:
            return
        batch = [docs[i][0] for i in pending]
        outcome.written = True
        try:
            await self.db[doc_type].insert_many(batch, ordered=False)
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                i = pending[error["index"]]
                if error.get("code") != _DUPLICATE_KEY:
                    outcome.items[i].error = AnalysisStoreError(f"database refused the document: {error.get('errmsg')}")
                    continue
                await self._resolve_duplicate(doc_type, docs[i], outcome.items[i])
        finally:
            for doc in batch:
                doc.pop("_id", None)

    async def _resolve_duplicate(
        self, doc_type: str, item: tuple[dict[str, Any], bool], result: ItemResult
    ) -> None:
        doc, time_filled = item
        stored = await self.db[doc_type].find_one({"uid": doc["uid"]}, {"_id": 0})
        if stored is None:  # the unique index on the tail's analysis_header fired
            tail = await self.db.analysis_tail.find_one(
                {"analysis_header": doc["analysis_header"]}, {"_id": 0, "uid": 1}
            )
            result.error = Conflict(
                f"analysis {doc['analysis_header']!r} already has a tail "
                f"({tail['uid'] if tail else 'unknown uid'!r}); only one tail per analysis"
            )
        elif _same_content(stored, doc, time_filled):
            result.result = ALREADY_STORED
        else:
            result.error = Conflict(
                f"a different {doc_type} with uid {doc['uid']!r} is already stored; "
                "uids are immutable, use a new uid"
            )

    # ---- reads --------------------------------------------------------------

    async def get(self, doc_type: str, uid: str) -> dict[str, Any]:
        """The document with ``uid``, or NotFound."""
        with _database_errors():
            doc = await self.db[doc_type].find_one({"uid": uid}, {"_id": 0}, max_time_ms=self.max_time_ms)
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
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` matches of ``queries`` (run in turn, each in ``sort`` order), and whether more follow.

        ``offset`` skips that many matches of the first query (offset and
        keyset cursors are not combined).
        """
        docs: list[dict[str, Any]] = []
        with _database_errors():
            for i, query in enumerate(queries):
                wanted = limit + 1 - len(docs)
                if wanted <= 0:
                    break
                cursor = (
                    self.db[doc_type]
                    .find(query, projection or {"_id": 0}, max_time_ms=self.max_time_ms)
                    .sort(sort)
                    .skip(offset if i == 0 else 0)
                    .limit(wanted)
                )
                docs.extend(await cursor.to_list())
        return docs[:limit], len(docs) > limit

    async def counts(self) -> dict[str, int]:
        """Approximate document count of every collection (from metadata: cheap at any size)."""
        with _database_errors():
            return {t: await self.db[t].estimated_document_count(maxTimeMS=self.max_time_ms) for t in DOC_TYPES}

    async def count(self, doc_type: str, filt: dict[str, Any]) -> int:
        """Exact number of matches."""
        with _database_errors():
            return await self.db[doc_type].count_documents(filt, maxTimeMS=self.max_time_ms)

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
            {"$match": filt},
            {"$sort": {"time": -1, "uid": -1}},
            {"$group": {"_id": f"${field}", "doc": {"$first": "$$ROOT"}}},
            {"$replaceRoot": {"newRoot": "$doc"}},
            {"$sort": dict(sort)},
            {"$limit": limit + 1},
            {"$project": projection or {"_id": 0}},
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
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every match (or the first ``limit``), in batches, holding one batch in memory at a time."""
        with _database_errors():
            cursor = (
                self.db[doc_type]
                .find(filt, projection or {"_id": 0}, max_time_ms=self.max_time_ms, batch_size=batch_size)
                .sort(sort)
                .limit(limit)
            )
            try:
                batch: list[dict[str, Any]] = []
                async for doc in cursor:
                    batch.append(doc)
                    if len(batch) >= batch_size:
                        yield batch
                        batch = []
                if batch:
                    yield batch
            finally:
                await cursor.close()

    # ---- derived status and the analysis view ---------------------------------

    async def status_filter(self, status: str, stale_after: float) -> dict[str, Any]:
        """A filter on analysis_header selecting analyses with the derived ``status``."""
        with _database_errors():
            if status in EXIT_STATUSES:
                uids = await self.db.analysis_tail.distinct("analysis_header", {"exit_status": status},
                                                            maxTimeMS=self.max_time_ms)
                return {"uid": {"$in": uids}}
            if status in ("running", "stale"):
                finished = await self.db.analysis_tail.distinct("analysis_header", {}, maxTimeMS=self.max_time_ms)
                cutoff = time.time() - stale_after
                age = {"$gt": cutoff} if status == "running" else {"$lte": cutoff}
                return {"uid": {"$nin": finished}, "time": age}
        raise BadRequest(f"unknown status {status!r}; known: {', '.join(STATUSES)}")

    async def analysis(self, uid: str, stale_after: float) -> dict[str, Any]:
        """One analysis whole: header, streams with record counts, tail, derived status."""
        header = await self.get("analysis_header", uid)
        with _database_errors():
            tail = await self.db.analysis_tail.find_one({"analysis_header": uid}, {"_id": 0},
                                                        max_time_ms=self.max_time_ms)
            streams = await (
                self.db.data_reference_header.find({"analysis_header": uid}, {"_id": 0}, max_time_ms=self.max_time_ms)
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

    # ---- updates with revisions -------------------------------------------------

    async def update(self, doc_type: str, uid: str, changes: "Changes", request_id: str) -> dict[str, Any]:
        """Apply ``changes`` to a header or tail, keeping the previous version as a revision."""
        with _database_errors():
            stored = await self.db[doc_type].find_one({"uid": uid}, {"_id": 0}, max_time_ms=self.max_time_ms)
            if stored is None:
                raise NotFound(f"no {doc_type} with uid {uid!r}")
            header_uid = uid if doc_type == "analysis_header" else stored["analysis_header"]
            finalized = doc_type == "analysis_tail" or bool(await self._finalized_headers({header_uid}))
            changes.check_allowed(doc_type, finalized, header_uid)
            updated = changes.apply(stored)
            revision = stored.get(REVISION_FIELD, 0)
            try:
                await self.db.revisions.insert_one({
                    "doc_type": doc_type, "uid": uid, "revision": revision, "document": stored,
                    "replaced_at": time.time(), "request_id": request_id,
                })
            except DuplicateKeyError:
                raise Conflict(f"{doc_type} {uid!r} is being updated by another request; retry") from None
            current = {"uid": uid, REVISION_FIELD: revision if revision else {"$exists": False}}
            update: dict[str, Any] = {"$set": {**changes.set, REVISION_FIELD: revision + 1}}
            if changes.unset:
                update["$unset"] = dict.fromkeys(changes.unset, "")
            result = await self.db[doc_type].update_one(current, update)
            if result.matched_count != 1:
                await self.db.revisions.delete_one({"doc_type": doc_type, "uid": uid, "revision": revision})
                raise Conflict(f"{doc_type} {uid!r} changed while updating; retry")
        updated[REVISION_FIELD] = revision + 1
        return updated

    async def revisions(self, doc_type: str, uid: str) -> list[dict[str, Any]]:
        """Every earlier version of a document, oldest first."""
        await self.get(doc_type, uid)
        with _database_errors():
            cursor = self.db.revisions.find({"doc_type": doc_type, "uid": uid},
                                            {"_id": 0, "doc_type": 0}, max_time_ms=self.max_time_ms)
            return await cursor.sort("revision", ASCENDING).to_list()


def derive_status(header: dict[str, Any], tail: dict[str, Any] | None, stale_after: float) -> str:
    """running / success / fail / abort / stale (no tail and older than ``stale_after`` seconds)."""
    if tail is not None:
        return tail["exit_status"]
    return "stale" if header["time"] <= time.time() - stale_after else "running"
