"""Updates of headers and tails; every accepted change keeps the previous version as a revision."""
from __future__ import annotations

import time
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ..changes import REVISION_FIELD, Changes
from ..errors import Conflict, NotFound
from ._common import _database_errors


class UpdatesMixin:
    """PATCH support for :class:`~analysisstore.store.Store`."""

    db: AsyncDatabase
    max_time_ms: int

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
            if updated == {k: v for k, v in stored.items() if k != REVISION_FIELD}:
                return stored  # nothing changes: no revision, no write
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
