"""Turn what a caller asks for into a safe MongoDB filter, sort and page.

Plain functions, no I/O: query-string lookups (``field=value``), the JSON
filter subset of the search body and the legacy face, ``order_by``, ``limit``
and the opaque keyset cursor. Anything outside the allowlist is a 400.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping

from .contract.vocabulary import LIST_OPERATORS, OPERATORS, PAIR_OPERATORS, RESERVED_PARAMS
from .errors import BadRequest
from .service_fields import is_hidden

__all__ = [
    "ALLOWED_OPERATORS",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "check_filter",
    "check_filter_size",
    "check_field",
    "check_integer",
    "check_text",
    "parse_lookups",
    "parse_limit",
    "parse_order_by",
    "encode_cursor",
    "decode_cursor",
    "keyset_filter",
    "keyset_clauses",
    "combine",
    "get_path",
    "split_lookup",
    "LOOKUPS",
    "PageRequest",
    "parse_page",
    "projection",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
MAX_IN_VALUES = 1_000
MAX_FILTER_DEPTH = 12
MAX_STRING_VALUE = 4_096
#: BSON integers are 64-bit: a larger one cannot even be sent to the database.
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
#: Budget of one whole filter, however it is nested: every key and list element is a node,
#: every branch of an $and/$or a clause. The database's cost (and how far past maxTimeMS it
#: runs before noticing) grows with both, so a few large lists must not add up unchecked.
MAX_FILTER_NODES = 5_000
MAX_FILTER_CLAUSES = 200

#: The MongoDB operators a caller may use; everything else ($where, $expr,
#: $function, $regex, ...) is refused before it reaches the database.
ALLOWED_OPERATORS = frozenset(
    "$eq $ne $gt $gte $lt $lte $in $nin $exists $all $and $or $not $elemMatch $size".split()
)
_LOGICAL = frozenset({"$and", "$or"})
_LIST_OPERATORS = frozenset({"$in", "$nin", "$all"})

_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


def check_field(name: Any) -> str:
    """``name`` if it is a field name or dotted path (the whole string: no trailing newline), else BadRequest."""
    if not isinstance(name, str) or not _FIELD_RE.fullmatch(name):
        raise BadRequest(
            f"invalid field name {name!r}: use letters, digits and '_' with dotted paths"
        )
    if is_hidden(name):
        raise BadRequest(f"field {name!r} is kept by the service and cannot be named; "
                         "filter analyses by their status with status=...")
    return name


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(text: str, what: str) -> str:
    """``text`` unless it holds a lone surrogate (valid in a JSON escape, but no Unicode a database can store)."""
    if not text.isascii() and not _encodable(text):
        raise BadRequest(f"{what} holds a lone surrogate (\\ud800-\\udfff), which is not valid Unicode")
    return text


def check_integer(number: int, what: str) -> int:
    """``number`` if the database can hold it (64 bits), else BadRequest."""
    if not INT64_MIN <= number <= INT64_MAX:
        raise BadRequest(f"{what} {number} does not fit in 64 bits, the largest integer the database holds; "
                         "write large numbers as decimals (e.g. 1e20)")
    return number


def _check_value(value: Any, depth: int) -> None:
    """A literal compared against a field: may nest, but never hide an operator or an unstorable value."""
    if depth > MAX_FILTER_DEPTH:
        raise BadRequest(f"filter nested deeper than {MAX_FILTER_DEPTH} levels")
    if isinstance(value, str):
        if len(value) > MAX_STRING_VALUE:
            raise BadRequest(f"filter value longer than {MAX_STRING_VALUE} characters")
        check_text(value, "a filter value")
    elif isinstance(value, int) and not isinstance(value, bool):
        check_integer(value, "filter integer")
    elif isinstance(value, dict):
        for key, child in value.items():
            if isinstance(key, str) and key.startswith("$"):
                _check_operator(key, child, depth + 1)
            else:
                check_field(key)
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
            check_field(key)
            _check_value(value, depth + 1)


def check_filter_size(filt: Any) -> None:
    """BadRequest when ``filt`` as a whole exceeds the node or clause budget (checked before anything else)."""
    nodes = clauses = 0
    pending = [filt]
    while pending:  # iterative: a deep filter is refused by the depth check, not by Python's stack
        value = pending.pop()
        if not isinstance(value, (dict, list)):
            continue
        nodes += len(value)
        if isinstance(value, dict):
            clauses += sum(len(v) for k, v in value.items() if k in _LOGICAL and isinstance(v, list))
        if nodes > MAX_FILTER_NODES:
            raise BadRequest(f"filter too large: more than {MAX_FILTER_NODES} keys and list values in all")
        if clauses > MAX_FILTER_CLAUSES:
            raise BadRequest(f"filter too large: more than {MAX_FILTER_CLAUSES} $and/$or clauses in all")
        pending.extend(value.values() if isinstance(value, dict) else value)


def check_filter(filt: Any) -> dict[str, Any]:
    """Return ``filt`` unchanged if it uses only allowlisted operators within the budget, else raise BadRequest."""
    check_filter_size(filt)
    _check_filter(filt, 0)
    check_time_magnitudes(filt)
    return filt


#: The magnitudes of a ``time`` range bound that every supported database answers right (and 0). The
#: embedded database misplaces index keys below about 1e-128 or above 1e124 in magnitude, so such a
#: bound read the wrong part of the index (``time__gt=1e-300`` matched nothing); no epoch time is near them.
TIME_BOUND_MAGNITUDES = (1e-120, 1e120)
_RANGE_OPERATORS = ("$gt", "$gte", "$lt", "$lte")


def check_time_magnitudes(filt: Any) -> None:
    """BadRequest for a ``time`` range bound outside :data:`TIME_BOUND_MAGNITUDES`, anywhere in ``filt``."""
    if isinstance(filt, list):
        for part in filt:
            check_time_magnitudes(part)
        return
    if not isinstance(filt, dict):
        return
    for key, value in filt.items():
        if key == "time" and isinstance(value, dict):
            _check_time_condition(value)
        if isinstance(value, (dict, list)):
            check_time_magnitudes(value)


def _check_time_condition(condition: dict[str, Any]) -> None:
    """The range bounds of one ``time`` condition, also under ``$not`` and ``$elemMatch``."""
    low, high = TIME_BOUND_MAGNITUDES
    for op, bound in condition.items():
        if op in ("$not", "$elemMatch") and isinstance(bound, dict):
            _check_time_condition(bound)
        elif op in _RANGE_OPERATORS and isinstance(bound, (int, float)) and not isinstance(bound, bool) \
                and bound != 0 and not low <= abs(bound) <= high:
            raise BadRequest(f"a time bound of {str(bound)[:40]} is out of range: bounds on time are 0 or "
                             f"between {low:g} and {high:g} in magnitude")


_ISO_RE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?")
MAX_PATTERN = 256


def _scalar(text: str) -> Any:
    """A query-string value as the JSON scalar it spells, an ISO-8601 time as epoch seconds, else text."""
    if len(text) > MAX_STRING_VALUE:
        raise BadRequest(f"query value longer than {MAX_STRING_VALUE} characters")
    if _ISO_RE.fullmatch(text):
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:  # times without an offset are UTC
                moment = moment.replace(tzinfo=timezone.utc)
            return moment.timestamp()
        except (ValueError, OverflowError) as exc:  # 2026-02-30, +99:99, a moment before year 1
            raise BadRequest(f"{text!r} is not a date and time that exists: {exc}") from None
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if isinstance(parsed, int) and not isinstance(parsed, bool):
        return check_integer(parsed, "query integer")
    if isinstance(parsed, (bool, float)) or parsed is None:
        return parsed
    return text


def _either(text: str) -> list[Any]:
    """Match the text itself and what it spells: ``uid=3`` finds "3", ``seq_num=3`` finds 3."""
    value = _scalar(text)
    return [text] if value == text and isinstance(value, str) else [text, value]


def _items(text: str) -> list[str]:
    items = [item for item in text.split(",") if item != ""]
    if not items:
        raise BadRequest("a list lookup needs at least one value, comma separated")
    if len(items) > MAX_IN_VALUES:
        raise BadRequest(f"more than {MAX_IN_VALUES} values in one lookup")
    return items


def _flag(text: str, op: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise BadRequest(f"{op} takes true or false, got {text!r}")


def _pattern(text: str, op: str) -> str:
    if not text or len(text) > MAX_PATTERN:
        raise BadRequest(f"{op} takes 1 to {MAX_PATTERN} characters")
    return re.escape(text)


def _range(text: str) -> dict[str, Any]:
    parts = text.split(",")
    if len(parts) != 2 or not all(parts):
        raise BadRequest(f"range takes two comma-separated bounds, got {text!r}")
    return _bounds(parts)


def _bounds(parts: list[str]) -> dict[str, Any]:
    if len(parts) != 2 or not all(parts):
        raise BadRequest(f"range takes two bounds, got {len(parts)}")
    return {"$gte": _scalar(parts[0]), "$lte": _scalar(parts[1])}


def _exact(text: str) -> Any:
    values = _either(text)
    return values[0] if len(values) == 1 else {"$in": values}


#: The list operators on their items (from one comma-separated value or from repeated parameters).
_ON_ITEMS: dict[str, Callable[[list[str]], Any]] = {
    "in": lambda items: {"$in": [v for item in items for v in _either(item)]},
    "nin": lambda items: {"$nin": [v for item in items for v in _either(item)]},
    "contains": lambda items: {"$all": [_scalar(item) for item in items]},
    "overlap": lambda items: {"$in": [_scalar(item) for item in items]},
}


def _comma_separated(on_items: Callable[[list[str]], Any]) -> Callable[[str], Any]:
    return lambda text: on_items(_items(text))


#: Each lookup operator (names from the shared vocabulary): query-string text -> MongoDB condition on the field.
_CONDITIONS: dict[str, Callable[[str], Any]] = {
    "exact": _exact,
    "ne": lambda t: {"$nin": _either(t)},
    "gt": lambda t: {"$gt": _scalar(t)},
    "gte": lambda t: {"$gte": _scalar(t)},
    "lt": lambda t: {"$lt": _scalar(t)},
    "lte": lambda t: {"$lte": _scalar(t)},
    "range": _range,
    **{op: _comma_separated(on_items) for op, on_items in _ON_ITEMS.items()},
    "isnull": lambda t: {"$eq": None} if _flag(t, "isnull") else {"$ne": None},
    "exists": lambda t: {"$exists": _flag(t, "exists")},
    "startswith": lambda t: {"$regex": "^" + _pattern(t, "startswith")},
    "icontains": lambda t: {"$regex": _pattern(t, "icontains"), "$options": "i"},
}
if set(_CONDITIONS) != set(OPERATORS) or set(_ON_ITEMS) != LIST_OPERATORS or "range" not in PAIR_OPERATORS:
    raise RuntimeError("analysisstore.queries and analysisstore.contract.vocabulary disagree on the operators")
LOOKUPS: dict[str, Callable[[str], Any]] = {op: _CONDITIONS[op] for op in OPERATORS}


def split_lookup(name: str) -> tuple[str, str]:
    """``"time__gte"`` → ``("time", "gte")``; a bare field is ``exact``."""
    field, sep, op = name.rpartition("__")
    if not sep:
        field, op = name, "exact"
    if op not in LOOKUPS:
        raise BadRequest(f"unknown lookup operator {op!r} in {name!r}; known: {', '.join(LOOKUPS)}")
    return check_field(field), op


def parse_lookups(args: Mapping[str, list[str]], reserved: Iterable[str] = ()) -> dict[str, Any]:
    """Query-string lookups (``field=value``, ``field__op=value``, dotted paths) → a MongoDB filter."""
    skip = RESERVED_PARAMS | set(reserved)
    clauses: list[dict[str, Any]] = []
    for name, values in args.items():
        if name in skip:
            continue
        field, op = split_lookup(name)
        condition = _condition(name, op, values)
        if field == "time" and op in _ORDERING:
            _check_time_bounds(name, condition)
            check_time_magnitudes({field: condition})
        clauses.append({field: condition})
    merged = _merge(clauses)
    check_filter_size(merged)
    return merged


#: Lookups that compare by order: MongoDB compares a number only with numbers, so a text bound matches nothing.
_ORDERING = frozenset({"gt", "gte", "lt", "lte", "range"})


def _check_time_bounds(name: str, condition: dict[str, Any]) -> None:
    """Every document's ``time`` is epoch seconds: a bound that is not a number would silently match nothing."""
    for bound in condition.values():
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or math.isnan(bound):
            raise BadRequest(f"{name} takes epoch seconds or an ISO-8601 time such as 2026-11-21T08:00:00Z, "
                             f"got {bound!r}")


def _condition(name: str, op: str, values: list[str]) -> Any:
    """One lookup's condition; a list operator may be repeated (one value each, commas kept), range twice."""
    if len(values) == 1:
        return LOOKUPS[op](values[0])
    if op in LIST_OPERATORS:
        if len(values) > MAX_IN_VALUES:
            raise BadRequest(f"more than {MAX_IN_VALUES} values in one lookup")
        return _ON_ITEMS[op](values)
    if op in PAIR_OPERATORS:
        return _bounds(values)
    raise BadRequest(f"query parameter {name!r} given {len(values)} times; only "
                     f"{', '.join(sorted(LIST_OPERATORS | PAIR_OPERATORS))} lookups may be repeated")


def _merge(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    """One filter: operator conditions on one field merge; anything that would clash goes to $and."""
    merged: dict[str, Any] = {}
    extra: list[dict[str, Any]] = []
    for clause in clauses:
        (field, cond), = clause.items()
        if field not in merged:
            merged[field] = cond
        elif (isinstance(cond, dict) and isinstance(merged[field], dict)
              and not set(cond) & set(merged[field]) and "$regex" not in cond and "$regex" not in merged[field]):
            merged[field] = {**merged[field], **cond}
        else:
            extra.append(clause)
    if extra:
        return {"$and": [merged, *extra]}
    return merged


def _whole_number(value: Any, name: str) -> int:
    """An integer from a query string (digits) or a search body (a JSON integer, or a float such as 5.0).

    Fractions, NaN, ±Infinity (``1e400`` parses as Infinity) and booleans are a 400: never truncated.
    """
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    shown = value[:40] if isinstance(value, str) else value
    raise BadRequest(f"{name} must be an integer, got {shown!r}")


def parse_limit(value: Any, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """A page size between 1 and ``maximum``."""
    if value is None:
        return default
    limit = _whole_number(value, "limit")
    if not 1 <= limit <= maximum:
        raise BadRequest(f"limit must be between 1 and {maximum}, got {limit}")
    return limit


def parse_order_by(spec: str | Iterable[str] | None) -> list[tuple[str, int]]:
    """``"-time"`` or ``["-time", "uid"]`` → MongoDB sort keys, ``uid`` appended as tie-breaker."""
    if spec is None or spec == "" or spec == []:
        keys: list[str] = ["time"]
    elif isinstance(spec, str):
        keys = [k.strip() for k in spec.split(",") if k.strip()]
        if not keys:
            raise BadRequest("order_by names no field; give field names separated by commas, e.g. -time,uid")
    elif isinstance(spec, list) and all(isinstance(k, str) for k in spec):
        keys = list(spec)
    else:
        raise BadRequest("order_by must be a field name or a list of field names")
    sort: list[tuple[str, int]] = []
    for key in keys:
        direction = -1 if key.startswith("-") else 1
        name = key[1:] if key[:1] in "-+" else key
        if not name.strip():
            raise BadRequest(f"order_by holds {key!r}, which names no field")
        field = check_field(name)
        if field == "_id" or field.startswith("_id."):
            # Reads never carry _id, so a cursor could not continue after it (every page was the first).
            raise BadRequest("order_by cannot name _id; order by uid (a document's _id is its uid)")
        if field in (f for f, _ in sort):
            raise BadRequest(f"order_by names {field!r} twice")
        sort.append((field, direction))
    if len(sort) > 4:
        raise BadRequest("order_by takes at most 4 fields")
    if "uid" not in (f for f, _ in sort):
        sort.append(("uid", sort[0][1]))
    return sort


def get_path(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or None when any step is missing (as MongoDB sorts it)."""
    value: Any = doc
    for step in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(step)
    return value


#: A cursor longer than this is not one this service issued (sort values are short in practice).
MAX_CURSOR_CHARS = 32_768
_BASE64URL_RE = re.compile(r"[A-Za-z0-9_-]*")


def _is_cursor_value(value: Any) -> bool:
    """A JSON scalar the database can compare: text, finite number, 64-bit integer, boolean or null."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, str):
        return value.isascii() or _encodable(value)
    if isinstance(value, int):
        return INT64_MIN <= value <= INT64_MAX
    return isinstance(value, float) and math.isfinite(value)


def _fingerprint(request: Any, sort: list[tuple[str, int]]) -> str:
    """What a cursor is bound to: the request as the caller expressed it, and the sort."""
    canonical = json.dumps([request, sort], sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _mac(payload: bytes, secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    if not _BASE64URL_RE.fullmatch(text):  # the decoder would silently skip foreign characters
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(last: Mapping[str, Any], request: Any, sort: list[tuple[str, int]], *, secret: str) -> str:
    """An opaque token naming the position after ``last``, signed, bound to this request and sort.

    ``request`` is what the caller asked for (doc type, filter as given,
    status...), never a server-side expansion of it, so a cursor stays valid
    while the expansion changes from page to page. The token is
    ``base64url(payload) "." base64url(HMAC-SHA256(secret, payload))``.
    """
    values = [get_path(last, field) for field, _ in sort]
    for (field, _), value in zip(sort, values):
        if not _is_cursor_value(value):
            raise BadRequest(
                f"cannot page by order_by {field!r}: document {last.get('uid')!r} holds a "
                f"{type(value).__name__} there ({value!r:.40}); order by a field holding text, finite numbers "
                "or booleans, or page with offset"
            )
    payload = json.dumps({"v": values, "f": _fingerprint(request, sort)}, separators=(",", ":"),
                         allow_nan=False).encode()
    token = f"{_b64(payload)}.{_b64(_mac(payload, secret))}"
    if len(token) > MAX_CURSOR_CHARS:
        raise BadRequest(f"cannot page by {', '.join(f for f, _ in sort)}: the values are too long for a cursor; "
                         "order by a shorter field or page with offset")
    return token


def decode_cursor(token: str, request: Any, sort: list[tuple[str, int]], *, secret: str) -> list[Any]:
    """The sort values a cursor points after; 400 if it is forged, altered, corrupt or made for another query.

    The signature is checked before anything inside is parsed; every value
    must then be a JSON scalar, one per sort key, so nothing but plain
    literals ever reaches the keyset filter.
    """
    invalid = BadRequest("cursor is not valid; start again without a cursor")
    if not isinstance(token, str) or len(token) > MAX_CURSOR_CHARS:
        raise invalid
    encoded, _, signature = token.partition(".")
    try:
        payload, given = _unb64(encoded), _unb64(signature)
    except ValueError:
        raise invalid from None
    if not hmac.compare_digest(_mac(payload, secret), given):
        raise BadRequest("cursor was not issued by this service or was altered; start again without a cursor")
    try:
        data = json.loads(payload)
    except ValueError:
        raise invalid from None
    if not isinstance(data, dict) or not isinstance(data.get("v"), list) or not isinstance(data.get("f"), str):
        raise invalid
    if data["f"] != _fingerprint(request, sort):
        raise BadRequest("cursor belongs to a different filter, status or order_by; start again without a cursor")
    values = data["v"]
    if len(values) != len(sort) or not all(_is_cursor_value(v) for v in values):
        raise invalid
    return values


#: Every document has these, so paging on them needs no null handling.
_ALWAYS_PRESENT = frozenset({"uid", "time"})


def _after(field: str, value: Any, direction: int) -> list[dict[str, Any]]:
    """Conditions on ``field`` for values sorting strictly after ``value``, in sort order.

    Null and missing sort lowest, as in MongoDB.
    """
    if field in _ALWAYS_PRESENT or (value is not None and direction > 0):
        return [{field: {"$gt" if direction > 0 else "$lt": value}}]
    if value is None:
        return [{field: {"$ne": None}}] if direction > 0 else []
    return [{field: {"$lt": value}}, {field: None}]


def keyset_clauses(values: list[Any], sort: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """The documents strictly after ``values`` in ``sort`` order, as conjunctive filters in page order.

    Ties on the leading keys come first, then larger leading values. Each
    filter is a plain conjunction, so the database answers it from an index
    range; an equivalent ``$or`` is often answered by a collection scan.
    """
    clauses: list[dict[str, Any]] = []
    for i in reversed(range(len(sort))):
        field, direction = sort[i]
        equal = {f: values[j] for j, (f, _) in enumerate(sort[:i])}
        clauses.extend({**equal, **condition} for condition in _after(field, values[i], direction))
    return clauses


def keyset_filter(values: list[Any], sort: list[tuple[str, int]]) -> dict[str, Any]:
    """The same documents as :func:`keyset_clauses`, as one ``$or`` filter."""
    clauses = keyset_clauses(values, sort)
    return {"$or": clauses} if clauses else {"uid": {"$in": []}}


def combine(filt: dict[str, Any], clause: dict[str, Any]) -> dict[str, Any]:
    """``filt`` AND ``clause``, flat when their fields do not overlap (friendlier to query planners)."""
    if not filt:
        return clause
    if set(filt) & set(clause) or any(k.startswith("$") for k in clause):
        return {"$and": [filt, clause]}
    return {**filt, **clause}


MAX_OFFSET = 100_000


@dataclass
class PageRequest:
    """What one listing or search asks for, checked and typed."""

    filter: dict[str, Any]
    sort: list[tuple[str, int]]
    limit: int
    limit_given: bool = False
    cursor: str | None = None
    offset: int = 0
    include_count: bool = False
    latest: str | None = None
    fields: list[str] | None = None
    status: str | None = None


def _bool_param(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _flag(value, name)
    raise BadRequest(f"{name} takes true or false")


def _fields_param(value: Any) -> list[str]:
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise BadRequest("fields takes a list of field names (comma separated in a query string)")
    if len(names) > 100:
        raise BadRequest("fields takes at most 100 names")
    return [check_field(n) for n in names]


def parse_page(filt: dict[str, Any], params: Mapping[str, Any]) -> PageRequest:
    """Paging parameters from a query string (text) or a search body (typed) → a PageRequest."""
    page = PageRequest(filter=filt, sort=parse_order_by(params.get("order_by")),
                       limit=parse_limit(params.get("limit")), limit_given=params.get("limit") is not None)
    cursor = params.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise BadRequest("cursor must be the string returned as meta.next_cursor")
    page.cursor = cursor
    if params.get("offset") is not None:
        page.offset = _whole_number(params["offset"], "offset")
        if not 0 <= page.offset <= MAX_OFFSET:
            raise BadRequest(f"offset must be between 0 and {MAX_OFFSET}; page further with cursor")
        if cursor is not None:
            raise BadRequest("give either offset or cursor, not both")
    if params.get("include_count") is not None:
        page.include_count = _bool_param(params["include_count"], "include_count")
    if params.get("latest") is not None:
        if not isinstance(params["latest"], str):
            raise BadRequest("latest takes a field name")
        page.latest = check_field(params["latest"])
        if cursor is not None or page.offset:
            raise BadRequest("latest returns one page; it cannot be combined with cursor or offset")
    if params.get("fields") is not None:
        page.fields = _fields_param(params["fields"])
    return page


def projection(page: PageRequest) -> dict[str, Any]:
    """Fields to return: all, or the requested ones plus uid and the sort keys (needed for paging)."""
    if page.fields is None:
        return {"_id": 0}
    keep = dict.fromkeys([*page.fields, "uid", *(field for field, _ in page.sort)], 1)
    # A parent path already covers its children; MongoDB refuses both at once.
    names = sorted(keep)
    for name in names:
        if any(name.startswith(other + ".") for other in names if other != name):
            keep.pop(name, None)
    return {"_id": 0, **keep}
