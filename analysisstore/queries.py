"""Turn what a caller asks for into a safe MongoDB filter, sort and page.

Plain functions, no I/O: query-string lookups (``field=value``), the JSON
filter subset of the search body and the legacy face, ``order_by``, ``limit``
and the opaque keyset cursor. Anything outside the allowlist is a 400.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any, Iterable, Mapping

from .errors import BadRequest

__all__ = [
    "ALLOWED_OPERATORS",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "check_filter",
    "parse_lookups",
    "parse_limit",
    "parse_order_by",
    "encode_cursor",
    "decode_cursor",
    "keyset_filter",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
MAX_IN_VALUES = 1_000
MAX_FILTER_DEPTH = 12
MAX_STRING_VALUE = 4_096

#: The MongoDB operators a caller may use; everything else ($where, $expr,
#: $function, $regex, ...) is refused before it reaches the database.
ALLOWED_OPERATORS = frozenset(
    "$eq $ne $gt $gte $lt $lte $in $nin $exists $all $and $or $not $elemMatch $size".split()
)
_LOGICAL = frozenset({"$and", "$or"})
_LIST_OPERATORS = frozenset({"$in", "$nin", "$all"})

_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
#: Fields every document has: the only ones keyset paging sorts on for now.
SORTABLE_FIELDS = ("time", "uid")
RESERVED_PARAMS = frozenset({"limit", "order_by", "cursor"})


def _check_field(name: Any) -> str:
    if not isinstance(name, str) or not _FIELD_RE.match(name) or "__" in name:
        raise BadRequest(
            f"invalid field name {name!r}: use letters, digits and '_' with dotted paths "
            "(operators such as field__gt are not supported yet)"
        )
    return name


def _check_value(value: Any, depth: int) -> None:
    """A literal compared against a field: may nest, but never hide an operator."""
    if depth > MAX_FILTER_DEPTH:
        raise BadRequest(f"filter nested deeper than {MAX_FILTER_DEPTH} levels")
    if isinstance(value, str) and len(value) > MAX_STRING_VALUE:
        raise BadRequest(f"filter value longer than {MAX_STRING_VALUE} characters")
    if isinstance(value, dict):
        for key, child in value.items():
            if isinstance(key, str) and key.startswith("$"):
                _check_operator(key, child, depth + 1)
            else:
                _check_field(key)
                _check_value(child, depth + 1)
    elif isinstance(value, list):
        if len(value) > MAX_IN_VALUES:
            raise BadRequest(f"filter list longer than {MAX_IN_VALUES} values")
        for child in value:
            _check_value(child, depth + 1)


def _check_operator(op: str, operand: Any, depth: int) -> None:
    if op not in ALLOWED_OPERATORS:
        raise BadRequest(
            f"operator {op!r} is not allowed; allowed: {' '.join(sorted(ALLOWED_OPERATORS))}"
        )
    if op in _LOGICAL:
        if not isinstance(operand, list) or not operand:
            raise BadRequest(f"{op} takes a non-empty list of filters")
        if len(operand) > MAX_IN_VALUES:
            raise BadRequest(f"{op} list longer than {MAX_IN_VALUES} filters")
        for clause in operand:
            _check_filter(clause, depth + 1)
        return
    if op in _LIST_OPERATORS and not isinstance(operand, list):
        raise BadRequest(f"{op} takes a list")
    if op == "$exists" and not isinstance(operand, bool):
        raise BadRequest("$exists takes true or false")
    if op == "$size" and (not isinstance(operand, int) or isinstance(operand, bool) or operand < 0):
        raise BadRequest("$size takes a non-negative integer")
    if op == "$not" and not isinstance(operand, dict):
        raise BadRequest("$not takes an operator expression such as {\"$gt\": 3}")
    if op == "$elemMatch" and not isinstance(operand, dict):
        raise BadRequest("$elemMatch takes a filter object")
    _check_value(operand, depth)


def _check_filter(filt: Any, depth: int) -> None:
    if not isinstance(filt, dict):
        raise BadRequest(f"a filter must be a JSON object, got {type(filt).__name__}")
    if depth > MAX_FILTER_DEPTH:
        raise BadRequest(f"filter nested deeper than {MAX_FILTER_DEPTH} levels")
    for key, value in filt.items():
        if isinstance(key, str) and key.startswith("$"):
            if key not in _LOGICAL:
                raise BadRequest(
                    f"operator {key!r} is not allowed at the top of a filter; "
                    "use $and / $or or a field name"
                )
            _check_operator(key, value, depth + 1)
        else:
            _check_field(key)
            _check_value(value, depth + 1)


def check_filter(filt: Any) -> dict[str, Any]:
    """Return ``filt`` unchanged if it uses only allowlisted operators, else raise BadRequest."""
    _check_filter(filt, 0)
    return filt


def _typed_alternatives(text: str) -> Any:
    """A query-string value as itself and as the JSON scalar it spells, when it spells one.

    ``seq_num=3`` must find the integer 3 and ``uid=3`` the string "3"; until
    the typed query language lands, both are matched.
    """
    if len(text) > MAX_STRING_VALUE:
        raise BadRequest(f"query value longer than {MAX_STRING_VALUE} characters")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if isinstance(parsed, (bool, int, float)) or parsed is None:
        return {"$in": [text, parsed]}
    return text


def parse_lookups(args: Mapping[str, list[str]]) -> dict[str, Any]:
    """Query-string arguments (``field=value``, dotted paths allowed) → an exact-match filter."""
    filt: dict[str, Any] = {}
    for name, values in args.items():
        if name in RESERVED_PARAMS:
            continue
        _check_field(name)
        if len(values) != 1:
            raise BadRequest(f"query parameter {name!r} given {len(values)} times")
        filt[name] = _typed_alternatives(values[0])
    return filt


def parse_limit(value: Any, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """A page size between 1 and ``maximum``."""
    if value is None:
        return default
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"limit must be an integer, got {value!r}") from None
    if isinstance(value, bool) or not 1 <= limit <= maximum:
        raise BadRequest(f"limit must be between 1 and {maximum}, got {value!r}")
    return limit


def parse_order_by(spec: str | Iterable[str] | None) -> list[tuple[str, int]]:
    """``"-time"`` or ``["-time", "uid"]`` → MongoDB sort keys, ``uid`` appended as tie-breaker."""
    if spec is None or spec == "" or spec == []:
        keys: list[str] = ["time"]
    elif isinstance(spec, str):
        keys = [k.strip() for k in spec.split(",") if k.strip()]
    elif isinstance(spec, list) and all(isinstance(k, str) for k in spec):
        keys = list(spec)
    else:
        raise BadRequest("order_by must be a field name or a list of field names")
    sort: list[tuple[str, int]] = []
    for key in keys:
        direction = -1 if key.startswith("-") else 1
        field = key.lstrip("-+")
        if field not in SORTABLE_FIELDS:
            raise BadRequest(
                f"cannot order by {field!r}; sortable fields: {', '.join(SORTABLE_FIELDS)}"
            )
        if field in (f for f, _ in sort):
            raise BadRequest(f"order_by names {field!r} twice")
        sort.append((field, direction))
    if "uid" not in (f for f, _ in sort):
        sort.append(("uid", sort[0][1]))
    return sort


def _fingerprint(filt: dict[str, Any], sort: list[tuple[str, int]]) -> str:
    canonical = json.dumps([filt, sort], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_cursor(last: Mapping[str, Any], filt: dict[str, Any], sort: list[tuple[str, int]]) -> str:
    """An opaque token naming the position after ``last``, bound to this filter and sort."""
    token = {"v": [last.get(field) for field, _ in sort], "f": _fingerprint(filt, sort)}
    raw = json.dumps(token, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, filt: dict[str, Any], sort: list[tuple[str, int]]) -> list[Any]:
    """The sort values a cursor points after; 400 if it is corrupt or made for another query."""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        values, fingerprint = data["v"], data["f"]
    except (ValueError, KeyError, TypeError):
        raise BadRequest("cursor is not valid; start again without a cursor") from None
    if fingerprint != _fingerprint(filt, sort) or len(values) != len(sort):
        raise BadRequest("cursor belongs to a different filter or order_by")
    return values


def keyset_filter(values: list[Any], sort: list[tuple[str, int]]) -> dict[str, Any]:
    """The documents strictly after ``values`` in ``sort`` order."""
    clauses = []
    for i, (field, direction) in enumerate(sort):
        clause = {f: values[j] for j, (f, _) in enumerate(sort[:i])}
        clause[field] = {"$gt" if direction > 0 else "$lt": values[i]}
        clauses.append(clause)
    return {"$or": clauses}
