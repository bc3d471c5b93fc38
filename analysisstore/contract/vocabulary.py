"""The request vocabulary client and service share, each name listed once.

Lookups are ``field=value`` or ``field__op=value`` (dotted paths allowed),
as in ``GET /api/v1/analysis_header?time__gte=2026-01-01&tags__contains=x``.
The service (``analysisstore.queries``) implements every operator named
here; the client (``analysisstore.client.lookups``) checks names and writes
Python values as query-string text, so a client call accepts exactly what
HTTP accepts.
"""
from __future__ import annotations

__all__ = [
    "OPERATORS",
    "LIST_OPERATORS",
    "PAIR_OPERATORS",
    "RESERVED_PARAMS",
    "STATUS_PARAM",
    "SINGLE_VALUED_PARAMS",
    "UPDATABLE_TYPES",
    "RESTORE_TIME_HEADER",
    "EXPECT_REVISION_HEADER",
]

#: Every lookup operator, ``exact`` (the default) first.
OPERATORS: tuple[str, ...] = (
    "exact", "ne", "gt", "gte", "lt", "lte", "range", "in", "nin", "contains", "overlap",
    "isnull", "exists", "startswith", "icontains",
)
#: Operators taking one or more values: comma separated, or the parameter repeated (one value each).
LIST_OPERATORS = frozenset({"in", "nin", "contains", "overlap"})
#: Operators taking exactly two values (inclusive bounds).
PAIR_OPERATORS = frozenset({"range"})
#: Query-string parameters that shape the page rather than filter it.
RESERVED_PARAMS = frozenset({"limit", "order_by", "cursor", "offset", "include_count", "latest", "fields"})
#: Filters analysis headers by their derived status (running, success, fail, abort, stale).
STATUS_PARAM = "status"
#: The parameters that are not lookups; each may be given once (the keys of a search body besides ``filter``).
SINGLE_VALUED_PARAMS = RESERVED_PARAMS | {STATUS_PARAM}

#: The document types a PATCH may change (every other type is immutable once stored).
UPDATABLE_TYPES: tuple[str, ...] = ("analysis_header", "analysis_tail")

#: Request headers that let a replayed bundle keep its history (docs/bundles.md): the original time of
#: what a request recreates (a revision's ``replaced_at``, a file's ``time``; needs the ``restore`` scope)
#: and the revision a PATCH expects to replace (409 otherwise).
RESTORE_TIME_HEADER = "X-Restore-Time"
EXPECT_REVISION_HEADER = "X-Expect-Revision"
