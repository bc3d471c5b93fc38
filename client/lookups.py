"""Lookups as the client writes them: keyword arguments checked and turned into query-string text.

A lookup is ``field=value`` or ``field__op=value`` (dotted paths allowed),
as in ``GET /api/v1/analysis_header?time__gte=2026-01-01&tags__contains=x``.
The operator and reserved parameter names come from the shared vocabulary
(``analysisstore.contract.vocabulary``, re-exported here); the service
(``analysisstore.queries``) implements each operator, and the client checks
names and writes Python values as query-string text, so a client call
accepts exactly what HTTP accepts. Standard library only.
"""
from __future__ import annotations

import math
import re
from datetime import date, datetime, time, timezone
from typing import Any, Mapping

from ..contract.vocabulary import LIST_OPERATORS, OPERATORS, PAIR_OPERATORS, RESERVED_PARAMS, STATUS_PARAM
from .errors import InvalidLookup

__all__ = [
    "OPERATORS",
    "LIST_OPERATORS",
    "PAIR_OPERATORS",
    "RESERVED_PARAMS",
    "STATUS_PARAM",
    "split_keyword",
    "is_lookup_query",
    "query_params",
    "plain_value",
]

# "a__b__gte": split at each "__" followed by a character other than "_", so a
# field may itself start or end with single underscores ("data___gte" → "data_", "gte").
_SEPARATOR = re.compile(r"__(?=[^_])")


def split_keyword(name: str) -> tuple[str, str]:
    """A keyword lookup as (dotted field, operator): ``"a__run__id__gte"`` → ``("a.run.id", "gte")``.

    Without ``__`` the lookup is ``exact``. With it, the last part must be an
    operator: ``provenance__run__id=5`` is refused (write ``..._id__exact``)
    because it cannot be told apart from a misspelt operator such as ``time__regex``.
    """
    parts = _SEPARATOR.split(name)
    if len(parts) == 1:
        field, op = name, "exact"
    else:
        field, op = ".".join(parts[:-1]), parts[-1]
        if op not in OPERATORS:
            raise InvalidLookup(
                f"unknown lookup operator {op!r} in {name!r}; operators: {' '.join(OPERATORS)}. "
                f"For a nested field end with an operator, e.g. {name}__exact")
    if not field or any(not step for step in field.split(".")):
        raise InvalidLookup(f"lookup {name!r} names no field")
    return field, op


def is_lookup_query(query: Mapping[str, Any]) -> bool:
    """Does ``query`` use the lookup syntax (an ``__`` operator or path, or ``status``)?"""
    return any("__" in name or name == STATUS_PARAM for name in query)


def plain_value(value: Any) -> Any:
    """A filter value with every ``datetime`` (naive = UTC) or ``date`` (midnight UTC) as epoch seconds."""
    if isinstance(value, (datetime, date)):
        return _epoch(value)
    if isinstance(value, Mapping):
        return {key: plain_value(child) for key, child in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(child) for child in value]
    return value


def _epoch(moment: date) -> float:
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, time())
    if moment.tzinfo is None:  # the service reads times without an offset as UTC, and so does the client
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _text(value: Any, name: str) -> str:
    """One Python value as the query-string text the service types back to it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    if isinstance(value, (datetime, date)):
        return repr(_epoch(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidLookup(f"lookup {name!r}: {value!r} cannot be compared; give a finite number")
        return repr(value)
    tolist = getattr(value, "tolist", None)  # NumPy scalars
    if tolist is not None and not isinstance(tolist(), (list, dict)):
        return _text(tolist(), name)
    raise InvalidLookup(f"lookup {name!r} takes a string, number, boolean, None or datetime, "
                        f"not {type(value).__name__}; use find(doc_type, filter) for a JSON filter")


def _values(value: Any, name: str, op: str) -> list[str]:
    """The texts of one lookup: one, or one per item for the list and pair operators."""
    many = isinstance(value, (list, tuple, set, frozenset))
    if op not in LIST_OPERATORS | PAIR_OPERATORS:
        if many:
            raise InvalidLookup(f"lookup {name!r} takes one value, not a {type(value).__name__}")
        return [_text(value, name)]
    if not many:
        return [_text(value, name)]  # one text: comma separated as over HTTP ("a,b")
    texts = [_text(item, name) for item in value]
    if op in PAIR_OPERATORS and len(texts) != 2:
        raise InvalidLookup(f"lookup {name!r} takes two bounds, got {len(texts)}")
    if not texts:
        raise InvalidLookup(f"lookup {name!r} needs at least one value")
    if len(texts) == 1 and ("," in texts[0] or texts[0] == ""):
        # A lone parameter is read as a comma-separated list; repeating it keeps the
        # value whole, and a repeated value changes nothing for in/nin/contains/overlap.
        texts *= 2
    return texts


def query_params(lookups: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Keyword or query-string lookups → query parameters, lists as repeated parameters.

    ``{"time__gte": datetime(2026, 1, 1), "sample__in": ["a", "b,c"]}`` →
    ``[("time__gte", "1767225600.0"), ("sample__in", "a"), ("sample__in", "b,c")]``.
    Raises InvalidLookup for an unknown operator, a paging parameter or a value
    HTTP cannot express, before anything is sent.
    """
    params: list[tuple[str, str]] = []
    for name, value in lookups.items():
        if name in RESERVED_PARAMS:
            raise InvalidLookup(f"{name!r} shapes the page, it is not a field to filter on; "
                                "use find_page() or the keyword of the same name")
        if name == STATUS_PARAM:
            params.append((name, _text(value, name)))
            continue
        field, op = split_keyword(name)
        key = field if op == "exact" else f"{field}__{op}"
        params.extend((key, text) for text in _values(value, name, op))
    return params

