"""Updates of headers and tails; every accepted change keeps the previous version as a revision."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ..changes import REVISION_FIELD, Changes
from ..errors import Conflict, NotFound
from ..service_fields import hidden
from ._changes import ChangeFeed
from ._database_errors import _database_errors

log = logging.getLogger(__name__)


class UpdatesMixin:
    """PATCH support for :class:`~analysisstore.store.Store`."""

    db: AsyncDatabase
    max_time_ms: int
    feed: ChangeFeed
    # What it uses of the store's other parts (declared, so a missing one is a type error, not an AttributeError).
    if TYPE_CHECKING:
        async def _finalized_headers(self, header_uids: set[str]) -> set[str]: ...
        async def get(self, doc_type: str, uid: str) -> dict[str, Any]: ...

    async def update(self, doc_type: str, uid: str, changes: "Changes", request_id: str, *,
                     expect_revision: int | None = None, replaced_at: float | None = None) -> dict[str, Any]:
        """Apply ``changes`` to a header or tail, keeping the previous version as a revision.

        ``expect_revision``: only if the document is at that revision (else Conflict), so a replayed
        history never applies a step twice. ``replaced_at``: the time the revision records (an
        import's original time; default now).
        """
        with _database_errors():
            stored = await self.db[doc_type].find_one({"uid": uid}, hidden(), max_time_ms=self.max_time_ms)
            if stored is None:
                raise NotFound(f"no {doc_type} with uid {uid!r}")
            header_uid = uid if doc_type == "analysis_header" else stored["analysis_header"]
            finalized = doc_type == "analysis_tail" or bool(await self._finalized_headers({header_uid}))
            changes.check_allowed(doc_type, finalized, header_uid)
            updated = changes.apply(stored)
            revision = stored.get(REVISION_FIELD, 0)
            if expect_revision is not None and revision != expect_revision:
                raise Conflict(f"{doc_type} {uid!r} is at revision {revision}, not {expect_revision} as expected")
            if updated == {k: v for k, v in stored.items() if k != REVISION_FIELD}:
                return stored  # nothing changes: no revision, no write
            await self._keep_revision(doc_type, uid, revision, stored, request_id, replaced_at)
            current = {"uid": uid, REVISION_FIELD: revision if revision else {"$exists": False}}
            update: dict[str, Any] = {"$set": {**changes.set, REVISION_FIELD: revision + 1}}
            if changes.unset:
                update["$unset"] = dict.fromkeys(changes.unset, "")
            async with self.feed.updating(doc_type, uid, header_uid, revision + 1) as change:
                result = await self.db[doc_type].update_one(current, update)
                change.applied = result.matched_count == 1
            if result.matched_count != 1:
                # Only a revision this request still owns goes: one taken over by another request
                # (see _keep_revision) now records the version that request replaced.
                await self.db.revisions.delete_one({"doc_type": doc_type, "uid": uid, "revision": revision,
                                                    "request_id": request_id})
                raise Conflict(f"{doc_type} {uid!r} changed while updating; retry")
        updated[REVISION_FIELD] = revision + 1
        return updated

    async def _keep_revision(self, doc_type: str, uid: str, revision: int, stored: dict[str, Any],
                             request_id: str, replaced_at: float | None = None) -> None:
        """Store ``stored`` as revision ``revision``, the first of a PATCH's two writes.

        If that revision exists while the document still carries ``revision``,
        an earlier PATCH stopped between its two writes (a database failure,
        a crash) or is between them right now. When the record holds exactly
        the stored version, it is what this PATCH would write: take it over
        (atomically, by its request id) and go on. The document update is
        conditional on ``revision``, so of two PATCHes sharing the record
        only one can win; the other gets a 409.
        """
        record = {"doc_type": doc_type, "uid": uid, "revision": revision, "document": stored,
                  "replaced_at": time.time() if replaced_at is None else replaced_at, "request_id": request_id}
        try:
            await self.db.revisions.insert_one(record)
            return
        except DuplicateKeyError:
            pass
        key = {"doc_type": doc_type, "uid": uid, "revision": revision}
        orphan = await self.db.revisions.find_one(key, max_time_ms=self.max_time_ms)
        if orphan is not None and orphan["document"] == stored:
            taken = await self.db.revisions.update_one(
                {**key, "request_id": orphan["request_id"]},
                {"$set": {"replaced_at": record["replaced_at"], "request_id": request_id}})
            if taken.matched_count == 1:
                log.warning("%s %r: revision %d was left by an unfinished update (request %s); "
                            "request %s completes it", doc_type, uid, revision, orphan["request_id"], request_id)
                return
        raise Conflict(f"{doc_type} {uid!r} is being updated by another request; retry")

    async def revisions(self, doc_type: str, uid: str) -> list[dict[str, Any]]:
        """Every earlier version of a document, oldest first."""
        await self.get(doc_type, uid)
        with _database_errors():
            cursor = self.db.revisions.find({"doc_type": doc_type, "uid": uid},
                                            {"_id": 0, "doc_type": 0}, max_time_ms=self.max_time_ms)
            return await cursor.sort("revision", ASCENDING).to_list()
