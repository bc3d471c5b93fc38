"""Per-deployment values kept in the database itself, so every worker and host serving it shares them."""
from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from pymongo import ReadPreference
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

from ._database_errors import _database_errors

log = logging.getLogger("analysisstore.store")

#: One small collection of service-owned documents, keyed by ``_id``; never served by the API.
SERVICE_COLLECTION = "service"
_CURSOR_SECRET = "cursor_secret"
_SECRET_BYTES = 32


class SharedSecrets:
    """The deployment's own secrets, kept in the database (see :class:`~analysisstore.store.Store`)."""

    def __init__(self, db: AsyncDatabase, max_time_ms: int) -> None:
        self.db = db
        self.max_time_ms = max_time_ms
        self._cursor_secret: str | None = None

    async def cursor_secret(self) -> str:
        """The key paging cursors are signed with: made once per database, then read by every process."""
        if self._cursor_secret is None:
            self._cursor_secret = await self._shared_secret(_CURSOR_SECRET)
        return self._cursor_secret

    async def _shared_secret(self, name: str) -> str:
        # Read from the primary: a secondary may not have a secret another host has just made.
        collection = self.db.get_collection(SERVICE_COLLECTION, read_preference=ReadPreference.PRIMARY)
        try:
            with _database_errors():
                found = await self._find(collection, name)
                if found is None:
                    try:
                        await collection.insert_one({"_id": name, "secret": secrets.token_hex(_SECRET_BYTES),
                                                     "created": time.time()})
                        log.info("generated this deployment's %s (kept in the %r collection)", name,
                                 SERVICE_COLLECTION)
                    except DuplicateKeyError:
                        pass  # another worker or host made it first: everyone uses theirs
                    found = await self._find(collection, name)
        except OperationFailure as exc:  # e.g. a read-only database user
            raise RuntimeError(f"cannot keep the {name} in the database ({exc}); "
                               f"set {name} in the configuration instead") from None
        secret = (found or {}).get("secret")
        if not isinstance(secret, str) or len(secret) < 2 * _SECRET_BYTES:
            raise RuntimeError(f"the {name} stored in the {SERVICE_COLLECTION!r} collection is malformed; "
                               f"delete that document to have a new one generated")
        return secret

    async def _find(self, collection: Any, name: str) -> dict[str, Any] | None:
        return await collection.find_one({"_id": name}, max_time_ms=self.max_time_ms)
