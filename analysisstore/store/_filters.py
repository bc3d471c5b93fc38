"""The filter a read sends to the database: exact uids on ``_id``, inclusive upper bounds made exclusive.

The embedded database answers ``$lte`` on the middle field of a compound
index (``time`` in ``(stream, time, uid)`` and ``(status, time, uid)``)
without the documents equal to the bound: its index range stops before them.
``$lt`` on the next double up selects exactly the same numbers and is answered
right by every server, so numeric ``$lte`` bounds are sent that way.

(The same database misorders index keys of magnitude below about 1e-128 or
above 1e124: ``queries.check_time_magnitudes`` refuses such ``time`` bounds.)
"""
from __future__ import annotations

import math
from typing import Any

from ._ids import with_primary_key

__all__ = ["database_filter", "exact_upper_bounds"]

#: Below this magnitude no integer lies strictly between a double and the next one up, so ``< next``
#: and ``<= bound`` agree for stored integers too; larger bounds are sent as they are.
_EXACT_BELOW = 2.0 ** 53
_LOGICAL = ("$and", "$or", "$nor")


def _strict(bound: Any) -> Any:
    """``{"$lt": next double}`` for a number ``bound`` where that is the same condition as ``$lte``; else None."""
    if isinstance(bound, bool) or not isinstance(bound, (int, float)):
        return None
    value = float(bound)
    if not math.isfinite(value) or abs(value) >= _EXACT_BELOW or value != bound:
        return None  # an integer float() cannot hold exactly, an infinity, a bound too large: left alone
    return math.nextafter(value, math.inf)


def _condition(condition: Any) -> Any:
    """One field's condition with its numeric ``$lte`` made exclusive (also under ``$not`` and ``$elemMatch``)."""
    if not isinstance(condition, dict) or not any(key.startswith("$") for key in condition):
        return condition  # an equality (with a value or a whole sub-document)
    out = {op: _nested(op, value) for op, value in condition.items()}
    above = _strict(out.get("$lte"))
    if above is None:
        return out
    given = out.get("$lt", math.inf)
    if isinstance(given, bool) or not isinstance(given, (int, float)):
        return out  # ``$lt`` on another type: the two together match nothing either way
    del out["$lte"]
    out["$lt"] = min(above, given)
    return out


def _nested(op: str, value: Any) -> Any:
    if op == "$not" and isinstance(value, dict):
        return _condition(value)
    if op == "$elemMatch" and isinstance(value, dict):
        on_elements = all(key.startswith("$") and key not in _LOGICAL for key in value)
        return _condition(value) if on_elements else exact_upper_bounds(value)
    return value


def exact_upper_bounds(filt: dict[str, Any]) -> dict[str, Any]:
    """``filt`` with every numeric ``$lte`` stated as ``$lt`` on the next double: the same documents."""
    out: dict[str, Any] = {}
    for key, value in filt.items():
        if key in _LOGICAL and isinstance(value, list):
            out[key] = [exact_upper_bounds(part) if isinstance(part, dict) else part for part in value]
        elif key.startswith("$"):
            out[key] = value
        else:
            out[key] = _condition(value)
    return out


def database_filter(filt: dict[str, Any]) -> dict[str, Any]:
    """What a read sends for the caller's ``filt``: the same matches, answered right and by the best index."""
    return exact_upper_bounds(with_primary_key(filt))
