"""The documented mappings of ``analysisstore upgrade``: a 0.x value in, today's value (or nothing) out.

Each function is pure and returns ``None`` when the value is already fine,
``(new_value, rule)`` when a documented rule maps it, or raises
:class:`Unmappable` with the reason when no rule applies (the value is then
flagged and left as it is). ``docs/upgrade.md`` shows these tables; keep the two
in step.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

__all__ = ["MISSING", "Unmappable", "EXIT_STATUS_SYNONYMS", "DTYPE_NAMES", "map_time", "map_exit_status",
           "map_provenance", "map_parent_link", "map_data_keys", "value_dtype"]

MISSING: Any = object()

#: 0.x accepted any string; these are the ones whose meaning is not in doubt (compared trimmed, lower-case).
EXIT_STATUS_SYNONYMS: dict[str, str] = {
    "success": "success", "succeeded": "success", "successful": "success", "ok": "success",
    "complete": "success", "completed": "success", "done": "success",
    "fail": "fail", "failed": "fail", "failure": "fail", "error": "fail", "errored": "fail",
    "abort": "abort", "aborted": "abort", "cancel": "abort", "cancelled": "abort", "canceled": "abort",
    "killed": "abort", "interrupted": "abort",
}

#: dtype names 0.x streams used (NumPy / Python spellings) for today's six dtypes (compared lower-case).
DTYPE_NAMES: dict[str, str] = {
    **{name: "number" for name in ("number", "float", "double", "float16", "float32", "float64", "real")},
    **{name: "integer" for name in ("integer", "int", "long", "int8", "int16", "int32", "int64",
                                    "uint8", "uint16", "uint32", "uint64")},
    **{name: "string" for name in ("string", "str", "text", "unicode")},
    **{name: "boolean" for name in ("boolean", "bool")},
    **{name: "array" for name in ("array", "list", "ndarray")},
    **{name: "object" for name in ("object", "dict")},
}
DTYPES = frozenset(DTYPE_NAMES.values())
#: Which dtypes of record values each declared dtype accepts (as the service checks new records).
_ACCEPTS: dict[Any, set[str]] = {"number": {"number", "integer"}}


class Unmappable(ValueError):
    """No documented rule maps this value; it is reported and left as it is."""


def map_time(value: Any, inserted_at: float | None) -> tuple[float, str] | None:
    """``time`` must be a finite number of UNIX seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return None
    if isinstance(value, datetime):  # a BSON date: PyMongo gives naive UTC
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return moment.timestamp(), "BSON date → UNIX seconds"
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
            if math.isfinite(number):
                return number, "number written as a string → number"
        except ValueError:
            try:
                moment = datetime.fromisoformat(text)
                moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
                return moment.timestamp(), "ISO 8601 date string → UNIX seconds (UTC when no offset is given)"
            except ValueError:
                pass
    if inserted_at is None:
        raise Unmappable(f"time {_show(value)} is not a number and the document has no ObjectId to date it by")
    return inserted_at, f"time {_show(value)} → when the 0.x service stored the document (its ObjectId's time)"


def map_exit_status(value: Any, extra: dict[str, str] | None = None) -> tuple[str, str] | None:
    """``exit_status`` must be success, fail or abort; ``extra`` is the operator's ``--exit-status OLD=NEW``."""
    if value in ("success", "fail", "abort"):
        return None
    if extra and isinstance(value, str) and value in extra:
        return extra[value], f"exit_status {value!r} → {extra[value]!r} (given with --exit-status)"
    if isinstance(value, str) and value.strip().lower() in EXIT_STATUS_SYNONYMS:
        mapped = EXIT_STATUS_SYNONYMS[value.strip().lower()]
        return mapped, f"exit_status {value!r} → {mapped!r}"
    raise Unmappable(f"exit_status {_show(value)} has no documented meaning (map it with --exit-status OLD=NEW)")


def map_provenance(value: Any) -> tuple[dict[str, Any], str] | None:
    """``provenance`` must be an object."""
    if isinstance(value, dict):
        return None
    if value is MISSING or value is None:
        return {}, f"provenance {_show(value)} → {{}}"
    return {"legacy_value": value}, f"provenance {type(value).__name__} → {{\"legacy_value\": <the value>}}"


def map_parent_link(value: Any, field: str) -> tuple[str, str] | None:
    """A parent link must be the parent's uid; 0.x sometimes stored the parent document itself."""
    if isinstance(value, str) and value:
        return None
    if isinstance(value, dict) and isinstance(value.get("uid"), str) and value["uid"]:
        return value["uid"], f"{field} stored as the whole parent document → its uid"
    raise Unmappable(f"{field} {_show(value)}: names no parent (readable by uid only)")


def value_dtype(value: Any) -> str | None:
    """Today's dtype of one record value (None for null and for types JSON cannot carry)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    for kind, name in ((str, "string"), (list, "array"), (dict, "object")):
        if isinstance(value, kind):
            return name
    return None


def _inferred(seen: set[str]) -> str | None:
    if seen == {"integer", "number"}:
        return "number"
    return next(iter(seen)) if len(seen) == 1 else None


def map_data_keys(data_keys: Any, seen: dict[str, set[str]]) -> tuple[tuple[dict[str, Any], list[str]] | None,
                                                                    list[str]]:
    """Today's ``data_keys`` of a stream from its 0.x declaration and the dtypes ``seen`` in its records.

    Returns ``((new_data_keys, rules) or None, problems)``: the mapped
    declaration when anything changed, and what could not be mapped.
    """
    rules: list[str] = []
    problems: list[str] = []
    if isinstance(data_keys, dict):
        declared = dict(data_keys)
    else:
        declared = {}
        rules.append(f"data_keys {_show(data_keys)} → declared from the records' keys")
    for key, entry in list(declared.items()):
        if isinstance(entry, str):
            entry = {"dtype": entry}
            rules.append("data_keys entry given as a bare dtype name → {\"dtype\": ...}")
        elif not isinstance(entry, dict):
            problems.append(f"data_keys[{key!r}] is {_show(entry)}, not a description")
            continue
        dtype = entry.get("dtype")
        if dtype in DTYPES:
            declared[key] = entry
            continue
        named = DTYPE_NAMES.get(dtype.strip().lower()) if isinstance(dtype, str) else None
        guess = named or _inferred(seen.get(key, set()))
        if guess is None:
            problems.append(f"data_keys[{key!r}] dtype {_show(dtype)} is unknown and its records do not tell")
            continue
        declared[key] = {**entry, "dtype": guess}
        how = "named" if named else "from its records' values"
        rules.append(f"data_keys dtype {_show(dtype)} → {guess!r} ({how})")
    for key in sorted(set(seen) - set(declared)):
        guess = _inferred(seen[key])
        if guess is None:
            problems.append(f"records carry undeclared key {key!r} of mixed or unknown dtype {sorted(seen[key])}")
            continue
        declared[key] = {"dtype": guess}
        rules.append("records carry keys missing from data_keys → declared with the dtype of their values")
    for key, entry in declared.items():
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        wrong = sorted(seen.get(key, set()) - _ACCEPTS.get(dtype, {dtype}))
        if dtype in DTYPES and wrong:
            problems.append(f"data_keys[{key!r}] declares dtype {dtype!r} but records hold {wrong} values")
    if not declared:
        problems.append("data_keys is empty and no record tells which keys the stream has")
    changed = declared != data_keys
    return ((declared, sorted(set(rules))) if changed else None), problems


def _show(value: Any) -> str:
    if value is MISSING:
        return "missing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
