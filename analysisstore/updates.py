"""The change path of PATCH: which analysis a change belongs to, whether it may happen, whether it changes anything.

The counterpart of :mod:`analysisstore.ingest` for updates. What a change
may touch is in :class:`~analysisstore.changes.Changes`; this module reads
the document, decides, and hands an accepted change to the store, which
writes it atomically and keeps the version it replaces.
"""
from __future__ import annotations

from typing import Any, Protocol

from .changes import REVISION_FIELD, Changes
from .errors import Conflict

__all__ = ["update", "VersionedDocuments"]


class VersionedDocuments(Protocol):
    """What the change path needs of the store (:class:`~analysisstore.store.Store` is one)."""

    async def get(self, doc_type: str, uid: str) -> dict[str, Any]: ...

    async def finalized_headers(self, header_uids: set[str]) -> set[str]: ...

    async def write_change(self, doc_type: str, stored: dict[str, Any], to_set: dict[str, Any],
                           to_unset: list[str], request_id: str, *, header_uid: str,
                           replaced_at: float | None = None) -> int: ...


async def update(store: VersionedDocuments, doc_type: str, uid: str, changes: Changes, request_id: str, *,
                 expect_revision: int | None = None, replaced_at: float | None = None) -> dict[str, Any]:
    """Apply ``changes`` to a header or tail, keeping the previous version as a revision; the new version.

    ``expect_revision``: only if the document is at that revision (else Conflict), so a replayed
    history never applies a step twice. ``replaced_at``: the time the revision records (an
    import's original time; default now).
    """
    stored = await store.get(doc_type, uid)
    header_uid = uid if doc_type == "analysis_header" else stored["analysis_header"]
    # A tail belongs to a finalized analysis by definition; a header's analysis is finalized once its tail is stored.
    finalized = doc_type == "analysis_tail" or bool(await store.finalized_headers({header_uid}))
    changes.check_allowed(doc_type, finalized, header_uid)
    updated = changes.apply(doc_type, stored)
    revision = stored.get(REVISION_FIELD, 0)
    if expect_revision is not None and revision != expect_revision:
        raise Conflict(f"{doc_type} {uid!r} is at revision {revision}, not {expect_revision} as expected")
    if updated == {k: v for k, v in stored.items() if k != REVISION_FIELD}:
        return stored  # nothing changes: no revision, no write
    updated[REVISION_FIELD] = await store.write_change(doc_type, stored, changes.set, changes.unset, request_id,
                                                       header_uid=header_uid, replaced_at=replaced_at)
    return updated
