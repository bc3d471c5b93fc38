"""Layout 2: a document's ``_id`` is its uid, so the primary index answers every lookup by uid.

Documents keep their ``uid`` field too: every filter on ``uid`` stays correct,
and reads return ``uid`` (never ``_id``). Exact uid lookups go through these
helpers so that they use the ``_id`` index, the only unique index on uids.
"""
from __future__ import annotations

from typing import Any, Iterable

__all__ = ["by_uid", "by_uids", "stored_form", "with_primary_key"]


def by_uid(uid: Any) -> dict[str, Any]:
    """The filter for the document with ``uid``."""
    return {"_id": uid}


def by_uids(uids: Iterable[Any]) -> dict[str, Any]:
    """The filter for the documents with any of ``uids``."""
    return {"_id": {"$in": list(uids)}}


def stored_form(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` as it is inserted: with ``_id`` = its uid (set in place, and returned)."""
    doc["_id"] = doc["uid"]
    return doc


def _uid_condition(condition: Any) -> Any:
    """The same condition on ``_id`` when it names exact uids; else None.

    Every stored uid is a string (the schemas require it, the upgrade sets the
    others aside), so the non-string values of an ``$in`` (``uid=3`` also asks
    for the number 3) can match nothing and are left out.
    """
    if isinstance(condition, dict) and len(condition) == 1:
        (op, value), = condition.items()
        if op == "$eq":
            condition = value
        elif op == "$in" and isinstance(value, list):
            return {"$in": [v for v in value if isinstance(v, str)]}
    return condition if isinstance(condition, str) else None


def with_primary_key(filt: dict[str, Any]) -> dict[str, Any]:
    """``filt`` with its exact ``uid`` condition (``uid=X``, ``uid__in``) also stated on ``_id``.

    The ``uid`` condition stays, so the result matches the same documents;
    the ``_id`` condition lets the database use its primary index. The parts
    of a top-level ``$and`` (a filter combined with a page's cursor) are
    translated alike.
    """
    if "_id" in filt:
        return filt
    if isinstance(filt.get("$and"), list):
        filt = {**filt, "$and": [with_primary_key(part) if isinstance(part, dict) else part
                                 for part in filt["$and"]]}
    on_id = _uid_condition(filt["uid"]) if "uid" in filt else None
    return filt if on_id is None else {**filt, "_id": on_id}
