"""Versions of headers and tails: a validated change written atomically, the version it replaces kept.

What may change, and whether a change is needed at all, is decided before
(see :mod:`analysisstore.updates`); this module only writes it.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ..changes import REVISION_FIELD
from ..errors import Conflict, NotFound
from ._changes import ChangeFeed
from ._database_errors import _database_errors

log = logging.getLogger(__name__)


class Revisions:
    """Updates of documents that keep every earlier version (the ``revisions`` collection)."""

    def __init__(self, db: AsyncDatabase, max_time_ms: int, feed: ChangeFeed) -> None:
        self.db = db
        self.max_time_ms = max_time_ms
        self.feed = feed

    async def replace(self, doc_type: str, stored: dict[str, Any], to_set: dict[str, Any], to_unset: list[str],
                      request_id: str, *, header_uid: str, replaced_at: float | None = None) -> int:
        """Change ``stored`` (as read, with its revision) by ``to_set``/``to_unset``; its new revision number.

        The previous version is kept first; the document update is conditional
        on the revision read, so a concurrent change makes this one a Conflict
        rather than a lost update. ``replaced_at``: the time the revision
        records (an import's original time; default now).
        """
        uid = stored["uid"]
        revision = stored.get(REVISION_FIELD, 0)
        with _database_errors():
            await self._keep_revision(doc_type, uid, revision, stored, request_id, replaced_at)
            current = {"_id": uid, REVISION_FIELD: revision if revision else {"$exists": False}}
            update: dict[str, Any] = {"$set": {**to_set, REVISION_FIELD: revision + 1}}
            if to_unset:
                update["$unset"] = dict.fromkeys(to_unset, "")
            async with self.feed.updating(doc_type, uid, header_uid, revision + 1) as change:
                result = await self.db[doc_type].update_one(current, update)
                change.applied = result.matched_count == 1
            if result.matched_count != 1:
                # The document moved past ``revision``: whichever request moved it relied on this very
                # record (one version per revision number; it may have been taken over from that request,
                # see _keep_revision), so it stays. Only a record no change used goes, and only while
                # this request still owns it.
                now = await self.db[doc_type].find_one({"_id": uid}, {REVISION_FIELD: 1},
                                                       max_time_ms=self.max_time_ms)
                if now is None or now.get(REVISION_FIELD, 0) <= revision:
                    await self.db.revisions.delete_one({"doc_type": doc_type, "uid": uid, "revision": revision,
                                                        "request_id": request_id})
                raise Conflict(f"{doc_type} {uid!r} changed while updating; retry")
        return revision + 1

    async def _keep_revision(self, doc_type: str, uid: str, revision: int, stored: dict[str, Any],
                             request_id: str, replaced_at: float | None = None) -> None:
        """Store ``stored`` as revision ``revision``, the first of a change's two writes.

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

    async def of(self, doc_type: str, uid: str) -> list[dict[str, Any]]:
        """Every earlier version of a document, oldest first (NotFound if there is no such document)."""
        with _database_errors():
            if await self.db[doc_type].find_one({"_id": uid}, {"_id": 1}, max_time_ms=self.max_time_ms) is None:
                raise NotFound(f"no {doc_type} with uid {uid!r}")
            cursor = self.db.revisions.find({"doc_type": doc_type, "uid": uid},
                                            {"_id": 0, "doc_type": 0}, max_time_ms=self.max_time_ms)
            return await cursor.sort("revision", ASCENDING).to_list()
