"""Live events: inserts and updates of the four document types, from the database's change stream.

A change stream is resumable from any event's token (``Last-Event-ID`` of
Server-Sent Events), so a client that drops its connection misses nothing the
database still remembers (its oplog window); a token it no longer has is an
error, never a silent gap.
"""
from __future__ import annotations

import logging
from typing import Any, AsyncGenerator

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from ..changes import REVISION_FIELD
from ..errors import BadRequest, NotSupported
from ..service_fields import HIDDEN_FIELDS as _SERVICE_FIELDS
from ._database_errors import _database_errors

__all__ = ["watch_documents", "HIDDEN_FIELDS"]

log = logging.getLogger(__name__)

#: Service bookkeeping never shown in an event's document.
HIDDEN_FIELDS = ("_id", *_SERVICE_FIELDS)
_NO_CHANGE_STREAMS = (40573, 40324)  # "only supported on replica sets", "unrecognized pipeline stage"


def _on_full_document(filt: dict[str, Any]) -> dict[str, Any]:
    """A document filter rewritten for change events, whose document is ``fullDocument``."""
    out: dict[str, Any] = {}
    for key, value in filt.items():
        if key in ("$and", "$or"):
            out[key] = [_on_full_document(clause) for clause in value]
        else:
            out[f"fullDocument.{key}"] = value
    return out


def _event(change: dict[str, Any]) -> dict[str, Any]:
    document = {k: v for k, v in (change.get("fullDocument") or {}).items() if k not in HIDDEN_FIELDS}
    operation = "insert" if change["operationType"] == "insert" else "update"
    return {"id": change["_id"]["_data"], "doc_type": change["ns"]["coll"], "operation": operation,
            "uid": document.get("uid"), "document": document}


async def watch_documents(db: AsyncDatabase, doc_types: list[str], filt: dict[str, Any], resume_after: str | None,
                          idle_ms: int) -> AsyncGenerator[dict[str, Any] | None, None]:
    """Events as they happen (``None`` after ``idle_ms`` without one, so the caller can send a keep-alive)."""
    # Every update a caller makes (PATCH) sets the revision; the service's own (status, write fence) do not.
    changed = {"$or": [{"operationType": {"$in": ["insert", "replace"]}},
                       {"operationType": "update", f"updateDescription.updatedFields.{REVISION_FIELD}": {"$exists": True}}]}
    match = {"ns.coll": {"$in": doc_types}, **_on_full_document(filt)}
    match = {"$and": [changed, match]}
    resume = {"_data": resume_after} if resume_after else None
    try:
        with _database_errors():
            stream = await db.watch([{"$match": match}], full_document="updateLookup", resume_after=resume,
                                    max_await_time_ms=idle_ms)
    except OperationFailure as exc:
        raise _refusal(exc, resume_after) from None
    async with stream:
        yield None  # the stream is open: events from here on are delivered
        while True:
            try:
                with _database_errors():
                    change = await stream.try_next()
            except OperationFailure as exc:
                raise _refusal(exc, resume_after) from None
            yield None if change is None else _event(change)


def _refusal(exc: OperationFailure, resume_after: str | None) -> Exception:
    if exc.code in _NO_CHANGE_STREAMS:
        return NotSupported("live events need a database with change streams (a replica set, Atlas, or the "
                            "embedded database); this one has none")
    if resume_after:
        log.info("resume token refused: %s", exc)
        return BadRequest("Last-Event-ID is not a position this database can resume from (too old, or not one "
                          "of its event ids); reconnect without it and re-read what you need")
    return BadRequest(f"the database refused the event stream: {exc.details.get('errmsg', exc) if exc.details else exc}")
