"""Fields the service keeps on stored analysis headers for itself: never shown, never written by a caller.

``_status`` is the analysis's derived status (``running``, ``closing`` while
its tail is being stored, then the tail's ``exit_status``), indexed so a
``status=`` query is one index range. ``_closing`` names the tail write
that is waiting for the analysis's writes in flight (see ``store._fence``).
"""
from __future__ import annotations

from typing import Any

__all__ = ["STATUS_FIELD", "CLOSING_FIELD", "HIDDEN_FIELDS", "RUNNING", "CLOSING", "hidden", "is_hidden"]

STATUS_FIELD = "_status"
CLOSING_FIELD = "_closing"
HIDDEN_FIELDS = (STATUS_FIELD, CLOSING_FIELD)
RUNNING = "running"
#: The tail is being stored: no new stream or record write may start.
CLOSING = "closing"


def hidden(projection: dict[str, Any] | None = None) -> dict[str, Any]:
    """``projection`` (default: everything but ``_id``) made to leave the service's fields out."""
    projection = {"_id": 0} if projection is None else projection
    if any(value for key, value in projection.items() if key != "_id"):
        # An inclusion projection names its fields; callers cannot name hidden ones (queries.check_field).
        # _id (the uid in layout 2) is never returned, even when a caller names it among the fields.
        return {**{k: v for k, v in projection.items() if not is_hidden(k) and k != "_id"}, "_id": 0}
    return {**projection, **dict.fromkeys(HIDDEN_FIELDS, 0)}


def is_hidden(path: str) -> bool:
    """Does this field name or dotted path start with a service field?"""
    return path.split(".", 1)[0] in HIDDEN_FIELDS
