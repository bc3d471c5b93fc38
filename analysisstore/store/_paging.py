"""Pages in time order read in bounded time windows, for a database that sorts every match of a query.

The embedded database answers a filtered, sorted query by fetching every
document of the filter's index range and sorting it, whatever the limit. A
page of a stream asked for as one open query (``time > t``, or no time bound
at all on a first page) therefore costs the whole rest of the stream. Read in
consecutive, disjoint windows of ``time`` instead, each a bounded range of the
``(data_reference_header, time, uid)`` index, it costs about one page. The
union of the windows is exactly the open query's range and each window is
sorted by the full sort key, so the pages are the same as the open query's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeGuard

__all__ = ["Plan", "first_page_stream", "first_page_plan", "keyset_plan", "remember_density",
           "find_in_windows", "anchor_time", "remember_anchor"]

#: Windows a page tries before reading the rest of its range in one open query.
_WINDOWS = 10
#: A window asks for this much more ``time`` than the estimated density says the page needs: falling a few
#: documents short costs one more small window, reaching too far costs fetching and sorting the surplus.
_MARGIN = 1.05
#: How much wider the next window is after an empty one (the data lies further on): ten windows reach
#: about 10**9 times the first one's width ahead.
_GROWTH = 8.0
#: Empty windows in a row after a keyset page's cursor, after which the rest is read open: the listing has
#: most likely ended (the rest is then empty and cheap), and a gap wider than about 500 pages' worth of
#: time is read in one query, as before the windows.
_EMPTY_AFTER_DATA = 3
#: Seconds of ``time`` per document assumed for a listing never paged before: dense on purpose, because
#: a window too narrow costs one more cheap query, a window too wide fetches and sorts everything in it.
_UNKNOWN_PER_DOC = 1e-5
#: On a compound index with fields after ``time``, SecantusDB 0.7 answers ``$lte`` without the documents
#: equal to the bound and compares ``$lt`` bounds near the float range's end wrongly; so a window is
#: ``$gte``/``$gt`` .. ``$lt``, its ends stay within +-1e300, and beyond that the rest is read open (``$gt`` and
#: ``$gte`` are exact).
_LARGEST = 1e300
_CACHE_SIZE = 1_000
#: Seconds of ``time`` per document last seen on a page of each listing, by database and collection (per
#: process; a hint for the width of a window, never part of a result).
_DENSITY: dict[tuple[str, str], float] = {}
#: The ``time`` of a stream header, by database and stream uid (immutable once stored).
_ANCHORS: dict[tuple[str, str], float] = {}

Find = Callable[[dict[str, Any], int], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class Plan:
    """Where the windows of one page start and how wide the first one is."""

    forward: bool
    edge: float
    #: A first page: the first window has no bound behind ``edge`` (it holds every earlier document too).
    open_behind: bool
    per_doc: float


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _put(cache: dict[Any, float], key: Any, value: float) -> None:
    if key not in cache and len(cache) >= _CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[key] = value


def _listing_key(collection: str, query: dict[str, Any]) -> tuple[str, str]:
    return collection, repr(sorted((k, repr(v)) for k, v in query.items() if k not in ("time", "uid")))


def remember_density(collection: str, query: dict[str, Any], page: list[dict[str, Any]]) -> None:
    """Keep how many seconds of ``time`` a document of this listing took on ``page`` (in time order)."""
    if len(page) < 2:
        return
    first, last = page[0].get("time"), page[-1].get("time")
    if _finite(first) and _finite(last):
        _put(_DENSITY, _listing_key(collection, query), abs(last - first) / (len(page) - 1))


def anchor_time(database: str, stream: str) -> float | None:
    return _ANCHORS.get((database, stream))


def remember_anchor(database: str, stream: str, header: dict[str, Any]) -> None:
    if _finite(header.get("time")):
        _put(_ANCHORS, (database, stream), float(header["time"]))


def keyset_plan(collection: str, query: dict[str, Any], sort: list[tuple[str, int]], skip: int) -> Plan | None:
    """The windows of a keyset page ``time > t`` (``< t`` descending) of a listing whose density is known;
    None for every other query (read as it is)."""
    condition = query.get("time")
    if skip or sort[0][0] != "time" or not isinstance(condition, dict) or len(condition) != 1:
        return None
    op, bound = next(iter(condition.items()))
    if op != ("$gt" if sort[0][1] > 0 else "$lt") or not _finite(bound):
        return None
    per_doc = _DENSITY.get(_listing_key(collection, query))
    return None if per_doc is None else Plan(op == "$gt", float(bound), False, per_doc)


def first_page_stream(doc_type: str, query: dict[str, Any], sort: list[tuple[str, int]], skip: int) -> str | None:
    """The stream whose records ``query`` lists, when it is a first page of one stream in ascending time
    order: exactly ``{"data_reference_header": uid}``, the filter whose time windows are ranges of the
    ``(data_reference_header, time, uid)`` index. None for every other query."""
    if doc_type != "data_reference" or skip or sort[0] != ("time", 1) or list(query) != ["data_reference_header"]:
        return None
    stream = query["data_reference_header"]
    return stream if isinstance(stream, str) else None


def first_page_plan(collection: str, query: dict[str, Any], anchor: float) -> Plan:
    """A first page of a stream, anchored at its header's time: the first window is ``time <= anchor + w``
    with no lower bound, so records stamped before their header are still read, and first."""
    per_doc = _DENSITY.get(_listing_key(collection, query), _UNKNOWN_PER_DOC)
    return Plan(True, anchor, True, per_doc)


def _min_width(edge: float) -> float:
    # A window narrower than a few units in the last place of ``edge`` would not move past it.
    return 4 * math.ulp(edge) if edge else 1e-9


def _next_width(width: float, edge: float, end: float, docs: list[dict[str, Any]], need: int) -> float:
    """The width of the window after the one from ``edge`` to ``end``, which held ``docs`` while ``need``
    more are wanted."""
    if not docs:
        return width * _GROWTH
    # Seconds per document from the window itself, counted from its first document (the data may start
    # late in it) when the page carries ``time``.
    first = docs[0].get("time")
    start = min(max(first, min(edge, end)), max(edge, end)) if _finite(first) else edge
    span = abs(end - start) or width
    return need * span / len(docs) * _MARGIN


async def find_in_windows(find: Find, query: dict[str, Any], plan: Plan, wanted: int) -> list[dict[str, Any]]:
    """The first ``wanted`` matches of ``query`` beyond ``plan.edge`` (all of them up to it too when the
    plan is open behind), in sort order, read in consecutive disjoint windows of ``time``.

    A window runs from its start, inclusive (the cursor's own time excluded), to its end, exclusive, in
    page order. Each is widened from what the previous one held, at most ``_WINDOWS`` of them (fewer when
    the data seems to have ended), then the rest of the range is read open, as one query would have.
    """
    forward = plan.forward
    start: dict[str, float] = {} if plan.open_behind else {("$gt" if forward else "$lt"): plan.edge}
    edge = plan.edge
    width = max(plan.per_doc * wanted * _MARGIN, _min_width(edge))
    found: list[dict[str, Any]] = []
    # Empty windows in a row. Counted after a cursor only: on a first page the first windows' estimates
    # rest on a handful of documents and may fall short several times before the data is reached.
    empty, count_empty = 0, not plan.open_behind
    for _ in range(_WINDOWS):
        end = edge + width if forward else edge - width
        if not abs(end) <= _LARGEST:
            break  # beyond the bounds the embedded database's index compares right: the rest, open
        docs = await find({**query, "time": {**start, ("$lt" if forward else "$gte"): end}}, wanted - len(found))
        found += docs
        if len(found) >= wanted:
            return found
        empty = 0 if docs else empty + 1
        width = max(_next_width(width, edge, end, docs, wanted - len(found)), _min_width(end))
        edge, start = end, {("$gte" if forward else "$lt"): end}
        if count_empty and empty >= _EMPTY_AFTER_DATA:
            break
    return found + await find({**query, "time": start} if start else query, wanted - len(found))
