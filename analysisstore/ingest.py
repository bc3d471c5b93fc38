"""The write path shared by the v1 API and the legacy face.

Validate every incoming document at the edge, hand the valid ones to the
store, and turn per-item failures into one error that says what was and was
not written.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from .validation import prepare, reported_uid
from .errors import AnalysisStoreError, PayloadTooLarge
from .metrics import Metrics
from .store import INSERTED, ItemResult, Store, WriteOutcome

__all__ = ["ingest", "MAX_ERROR_DETAILS"]

MAX_ERROR_DETAILS = 1_000


def _raise_for_failures(doc_type: str, outcome: WriteOutcome) -> None:
    failed = outcome.failed
    if not failed:
        return
    first = failed[0]
    assert first.error is not None
    if len(outcome.items) == 1:
        raise first.error
    stored = sum(1 for item in outcome.items if item.error is None)
    summary = (
        f"{len(failed)} of {len(outcome.items)} {doc_type} documents were rejected "
        f"(first: item {first.index}: {first.error.message}); "
        + (f"the other {stored} were stored" if outcome.written else "nothing was written")
    )
    details = [item.as_json() for item in failed[:MAX_ERROR_DETAILS]]
    raise type(first.error)(summary, details)


async def ingest(store: Store, doc_type: str, raw_docs: list[Any], max_items: int,
                 metrics: Metrics | None = None, off_loop: bool = False) -> WriteOutcome:
    """Validate and store ``raw_docs`` (all of one type); raise if any is rejected.

    ``off_loop``: validate in a worker thread (a large bulk), so the event loop serves other requests meanwhile.
    """
    if len(raw_docs) > max_items:
        raise PayloadTooLarge(
            f"{len(raw_docs)} documents in one request; the limit is {max_items}, send smaller chunks"
        )
    now = time.time()
    if off_loop:
        prepared = await asyncio.to_thread(_validated, doc_type, raw_docs, now)
    else:
        prepared = _validated(doc_type, raw_docs, now)
    async with store.feed.inserting(doc_type, [doc for doc, _ in prepared]) as change:
        outcome = change.outcome = await store.insert(doc_type, prepared)
    if metrics is not None:
        inserted = sum(1 for item in outcome.items if item.result == INSERTED and item.error is None)
        metrics.inserted.labels(doc_type).inc(inserted)
    _raise_for_failures(doc_type, outcome)
    return outcome


def _validated(doc_type: str, raw_docs: list[Any], now: float) -> list[tuple[dict[str, Any], bool]]:
    """Every document prepared for the store, or the error naming each rejected one (nothing is written)."""
    prepared: list[tuple[dict[str, Any], bool]] = []
    checked = WriteOutcome()
    for i, raw in enumerate(raw_docs):
        item = ItemResult(i, reported_uid(raw))
        try:
            prepared.append(prepare(doc_type, raw, now))
        except AnalysisStoreError as exc:
            item.error = exc
        checked.items.append(item)
    _raise_for_failures(doc_type, checked)
    return prepared
