"""Kept only so that code written against the old layout still imports; import from the modules below.

The store's shared parts, each in the module named for it: ``_results``
(per-document write results), ``_database_errors`` (database failures as
service errors), ``_indexes``, ``_status`` (derived status), ``_resend``
(re-send detection) and ``_cache``.
"""
from __future__ import annotations

from ._cache import ImmutableCache
from ._database_errors import _DUPLICATE_KEY, _database_errors
from ._indexes import index_models
from ._resend import _PARENT_PROJECTION, _same_content
from ._results import ALREADY_STORED, ERROR, INSERTED, ItemResult, WriteOutcome
from ._status import EXIT_STATUSES, STATUSES, derive_status

__all__ = [
    "ImmutableCache", "_DUPLICATE_KEY", "_database_errors", "index_models", "_PARENT_PROJECTION", "_same_content",
    "ALREADY_STORED", "ERROR", "INSERTED", "ItemResult", "WriteOutcome", "EXIT_STATUSES", "STATUSES",
    "derive_status",
]
