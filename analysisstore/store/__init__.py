"""The store: the only code that talks to MongoDB.

It enforces the invariants of the data model on top of already-validated
documents: parents exist, writes are idempotent by uid, one tail per
analysis, nothing new after the tail. Database failures surface as
:class:`DatabaseUnavailable` (503) so clients know to retry.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, AsyncGenerator

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from ..schemas import DOC_TYPES
from ._cache import ImmutableCache
from ._database_errors import _database_errors
from ._ids import stored_form
from ._indexes import index_models
from ._results import ALREADY_STORED, INSERTED, ItemResult, WriteOutcome
from ._status import EXIT_STATUSES, STATUSES, derive_status
from . import _events, _lineage
from ._lineage import MAX_LINEAGE_DEPTH, MAX_LINEAGE_NODES
from ._changes import ChangeFeed, MirrorPositions
from ._fence import FENCE_COLLECTION, Fence
from ._files import AttachmentStore, Upload
from ._layout import UpgradeRequired
from ._reads import Reads
from ._revisions import Revisions
from ._service import SharedSecrets
from ._writes import Writes

if TYPE_CHECKING:
    from ..config import ServiceConfig

__all__ = ["Store", "AttachmentStore", "Upload", "MAX_LINEAGE_DEPTH", "MAX_LINEAGE_NODES", "index_models", "stored_form", "ItemResult", "WriteOutcome", "INSERTED", "ALREADY_STORED", "STATUSES",
           "EXIT_STATUSES", "derive_status"]

log = logging.getLogger(__name__)


class Store:
    """Documents of one database, with the analysis invariants enforced on every write.

    Made of small parts, each given the collaborators it uses: writes, reads,
    revisions (changes that keep the earlier version), the deployment's shared
    secrets, files, the change feed. The methods below are the store's API;
    each hands the call to the part that owns it.
    """

    def __init__(self, client: AsyncMongoClient, database: str, max_time_ms: int = 10_000,
                 stream_max_time_ms: int = 300_000) -> None:
        self.client = client
        self.db = client[database]
        self.max_time_ms = max_time_ms
        # Streams (NDJSON, legacy arrays, bundles) legitimately read millions of
        # documents, so they get their own, longer database time limit.
        self.stream_max_time_ms = stream_max_time_ms
        self.known = ImmutableCache()
        self.fence = Fence(self.db.analysis_header, self.db.analysis_tail, self.db[FENCE_COLLECTION])
        self.files = AttachmentStore(self.db, max_time_ms, self.fence)
        self.feed = ChangeFeed(self.db, self.known, max_time_ms)
        self.mirror_positions = MirrorPositions(self.db, max_time_ms)
        self.writes = Writes(self.db, max_time_ms, self.known, self.fence)
        self.history = Revisions(self.db, max_time_ms, self.feed)
        self.reads = Reads(self.db, max_time_ms, stream_max_time_ms)
        self.secrets = SharedSecrets(self.db, max_time_ms)

    @classmethod
    def connect(
        cls, uri: str, database: str, max_time_ms: int = 10_000, server_timeout_ms: int = 5_000,
        stream_max_time_ms: int = 300_000,
    ) -> "Store":
        """A store on ``uri`` (connection is lazy: nothing blocks here)."""
        client: AsyncMongoClient = AsyncMongoClient(
            uri, serverSelectionTimeoutMS=server_timeout_ms, appname="analysisstore"
        )
        return cls(client, database, max_time_ms, stream_max_time_ms)

    @classmethod
    def for_service(cls, config: "ServiceConfig", uri: str) -> "Store":
        """The store as the service configures it: database, time limits, database timeout."""
        return cls.connect(uri, config.database, config.query_max_time_ms, config.db_timeout_ms,
                           config.stream_max_time_ms)

    async def close(self) -> None:
        await self.client.close()

    async def ping(self) -> None:
        """Raise DatabaseUnavailable unless the database answers."""
        with _database_errors():
            await self.client.admin.command("ping")

    async def ensure_indexes(self) -> None:
        """Create every index once, at startup (idempotent); UpgradeRequired if one cannot be built on what is
        stored (a second tail of an analysis, as the 0.x service stored)."""
        with _database_errors():
            for doc_type in DOC_TYPES:
                try:
                    await self.db[doc_type].create_indexes(index_models(doc_type))
                except DuplicateKeyError as exc:
                    key = (exc.details or {}).get("keyValue")
                    raise UpgradeRequired(f"holds duplicates in {doc_type} ({key}), as the 0.x service stored "
                                          "re-sent documents") from None
            await self.db.revisions.create_index(
                [("doc_type", ASCENDING), ("uid", ASCENDING), ("revision", ASCENDING)], unique=True
            )
            await self.fence.ensure_indexes()
            await self.feed.ensure_counter()
        await self.files.ensure_indexes()
        log.info("indexes ensured on database %r", self.db.name)

    async def heal_status(self) -> None:
        """Start-up: every analysis header gets its kept status (databases written before it was kept)."""
        with _database_errors():
            healed = await self.fence.heal_all()
        if healed:
            log.info("recorded the status of %d analyses on database %r", healed, self.db.name)

    async def lineage(self, uid: str, direction: str, depth: int, stale_after: float) -> dict[str, Any]:
        """The analyses ``uid`` was derived from (ancestors) or that used it (descendants), within ``depth``."""
        return await _lineage.find_lineage(self.db, uid, direction, depth, stale_after=stale_after,
                                  max_time_ms=self.max_time_ms)

    async def lineage_documents(self, uids: list[str]) -> dict[str, Any]:
        """Headers, streams by analysis and tails of ``uids`` (for a PROV export of a lineage)."""
        return await _lineage.lineage_documents(self.db, uids, self.max_time_ms)

    def watch(self, doc_types: list[str], filt: dict[str, Any], resume_after: str | None,
              idle_ms: int = 15_000) -> AsyncGenerator[dict[str, Any] | None, None]:
        """Inserts and updates as they happen (see :func:`~analysisstore.store._events.watch_documents`)."""
        return _events.watch_documents(self.db, doc_types, filt, resume_after, idle_ms)

    # ---- delegations: the API the handlers and policies use ------------------

    async def insert(self, doc_type: str, docs: list[tuple[dict[str, Any], bool]]) -> WriteOutcome:
        """Insert validated ``(document, time_filled)`` pairs of one type (see :meth:`Writes.insert`)."""
        return await self.writes.insert(doc_type, docs)

    async def finalized_headers(self, header_uids: set[str]) -> set[str]:
        """Which of these analyses have a tail."""
        with _database_errors():
            return await self.writes.finalized_headers(header_uids)

    async def get(self, doc_type: str, uid: str) -> dict[str, Any]:
        """The document with ``uid``, or NotFound."""
        return await self.reads.get(doc_type, uid)

    async def find_page(self, doc_type: str, queries: list[dict[str, Any]], sort: list[tuple[str, int]], limit: int,
                        offset: int = 0, projection: dict[str, Any] | None = None, keyset: bool = False,
                        ) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` matches and whether more follow (see :meth:`Reads.find_page`)."""
        return await self.reads.find_page(doc_type, queries, sort, limit, offset, projection, keyset)

    async def counts(self) -> dict[str, int]:
        """Approximate document count of every collection."""
        return await self.reads.counts()

    async def count(self, doc_type: str, filt: dict[str, Any]) -> int:
        """Exact number of matches."""
        return await self.reads.count(doc_type, filt)

    async def latest_page(self, doc_type: str, filt: dict[str, Any], field: str, sort: list[tuple[str, int]],
                          limit: int, projection: dict[str, Any] | None = None,
                          ) -> tuple[list[dict[str, Any]], bool]:
        """The newest document for each distinct value of ``field`` (see :meth:`Reads.latest_page`)."""
        return await self.reads.latest_page(doc_type, filt, field, sort, limit, projection)

    def iter_find(self, doc_type: str, filt: dict[str, Any], sort: list[tuple[str, int]], batch_size: int = 1_000,
                  projection: dict[str, Any] | None = None, limit: int = 0,
                  ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Every match (or the first ``limit``), in batches (see :meth:`Reads.iter_find`)."""
        return self.reads.iter_find(doc_type, filt, sort, batch_size, projection, limit)

    @staticmethod
    def status_filter(status: str, stale_after: float) -> dict[str, Any]:
        """A filter on analysis_header selecting analyses with the derived ``status``."""
        return Reads.status_filter(status, stale_after)

    async def analysis(self, uid: str, stale_after: float) -> dict[str, Any]:
        """One analysis whole: header, streams with record counts, tail, derived status."""
        return await self.reads.analysis(uid, stale_after)

    async def revisions(self, doc_type: str, uid: str) -> list[dict[str, Any]]:
        """Every earlier version of a document, oldest first."""
        return await self.history.of(doc_type, uid)

    async def write_change(self, doc_type: str, stored: dict[str, Any], to_set: dict[str, Any],
                           to_unset: list[str], request_id: str, *, header_uid: str,
                           replaced_at: float | None = None) -> int:
        """Write an accepted change of ``stored``, keeping it as a revision; the new revision number."""
        return await self.history.replace(doc_type, stored, to_set, to_unset, request_id, header_uid=header_uid,
                                          replaced_at=replaced_at)

    async def cursor_secret(self) -> str:
        """The key paging cursors are signed with, shared by every process serving this database."""
        return await self.secrets.cursor_secret()
