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
from ._indexes import index_models
from ._results import ALREADY_STORED, INSERTED, ItemResult, WriteOutcome
from ._status import EXIT_STATUSES, STATUSES, derive_status
from . import _events, _lineage
from ._lineage import MAX_LINEAGE_DEPTH, MAX_LINEAGE_NODES
from ._changes import ChangeFeed, MirrorPositions
from ._fence import FENCE_COLLECTION, Fence
from ._files import AttachmentStore, Upload
from ._layout import UpgradeRequired
from ._reads import ReadsMixin
from ._service import ServiceMixin
from ._updates import UpdatesMixin
from ._writes import WritesMixin

if TYPE_CHECKING:
    from ..config import ServiceConfig

__all__ = ["Store", "AttachmentStore", "Upload", "MAX_LINEAGE_DEPTH", "MAX_LINEAGE_NODES", "index_models", "ItemResult", "WriteOutcome", "INSERTED", "ALREADY_STORED", "STATUSES",
           "EXIT_STATUSES", "derive_status"]

log = logging.getLogger(__name__)


class Store(WritesMixin, ReadsMixin, UpdatesMixin, ServiceMixin):
    """Documents of one database, with the analysis invariants enforced on every write."""

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
        """Create every index once, at startup (idempotent); UpgradeRequired if stored uids are not unique."""
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
