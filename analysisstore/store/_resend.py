"""Idempotent writes: is an incoming document a re-send of the stored one, and what is read of a parent."""
from __future__ import annotations

from typing import Any

from ..changes import REVISION_FIELD
from ..service_fields import HIDDEN_FIELDS

__all__ = ["_same_content", "_PARENT_PROJECTION"]

#: What is read of a parent when a write checks that it exists (a stream's data_keys hold its records).
_PARENT_PROJECTION = {
    "analysis_header": {"_id": 0, "uid": 1},
    "data_reference_header": {"_id": 0, "uid": 1, "analysis_header": 1, "data_keys": 1},
}


def _same_content(stored: dict[str, Any], incoming: dict[str, Any], time_filled: bool) -> bool:
    """Is ``incoming`` a re-send of ``stored``? A server-filled time is not part of the content."""
    stored = {k: v for k, v in stored.items() if k not in ("_id", REVISION_FIELD, *HIDDEN_FIELDS)}
    incoming = {k: v for k, v in incoming.items() if k not in ("_id", *HIDDEN_FIELDS)}
    if time_filled:
        stored.pop("time", None)
        incoming.pop("time", None)
    # == first (fast); NaN != NaN, so a re-send holding NaN needs the walk that treats NaN as equal.
    return stored == incoming or _equal_nan_aware(stored, incoming)


def _equal_nan_aware(a: Any, b: Any) -> bool:
    """``a == b`` at every depth, except that NaN equals NaN (as it does for MongoDB's own matching)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal_nan_aware(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal_nan_aware(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return bool(a == b)
