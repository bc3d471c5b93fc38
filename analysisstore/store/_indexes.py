"""Every index of the four collections, created once at startup (and by the benchmarks alike).

Layout 2 (see ``_ids``): ``_id`` is the uid, so the primary index is the unique
index on uids and answers every lookup by uid. Each secondary index below is
there for the query named beside it; each costs about as much as the insert
itself on the embedded database (docs/scaling.md), so records keep one.
"""
from __future__ import annotations

from pymongo import ASCENDING, IndexModel

from ..service_fields import STATUS_FIELD

__all__ = ["index_models", "RETIRED_INDEXES"]

#: The default listing order of a collection, ``GET /api/v1/{doc_type}`` without a filter: MongoDB walks it in
#: order (a page reads a page) where without it every page sorts the whole collection. (The embedded database
#: sorts either way: bench/index_profile.py.) Headers, streams and tails are written once per analysis or
#: stream, so it costs their writes little; records, written by the million, do without.
_LISTING = IndexModel([("time", ASCENDING), ("uid", ASCENDING)])

_INDEXES: dict[str, list[IndexModel]] = {
    "analysis_header": [
        _LISTING,  # the browser's list of analyses, newest first
        # the query scientists run most: an analysis by name over a time range
        IndexModel([("provenance.analysis_name", ASCENDING), ("time", ASCENDING)]),
        # "who used X": the descendants' direction of the lineage walks this multikey index
        IndexModel([("provenance.inputs", ASCENDING)]),
        # status=...: one index range, in the default (time, uid) order
        IndexModel([(STATUS_FIELD, ASCENDING), ("time", ASCENDING), ("uid", ASCENDING)]),
    ],
    "data_reference_header": [
        _LISTING,
        IndexModel([("analysis_header", ASCENDING)]),  # the streams of an analysis (analysis view, bundles)
    ],
    # Records: the one index every record read uses. It answers "the records of a stream" (by equality), a
    # stream's keyset pages in (time, uid) order, and the record counts of the analysis view. Not kept:
    # (stream, seq_num) -- order_by=seq_num appends time and uid, which it cannot order, and the change
    # feed finds records by _id; a global (time, uid) -- every service read of records names a stream.
    "data_reference": [
        IndexModel([("data_reference_header", ASCENDING), ("time", ASCENDING), ("uid", ASCENDING)]),
    ],
    "analysis_tail": [
        _LISTING,
        # one tail per analysis (the duplicate-key error is the 409), and the tail of an analysis
        IndexModel([("analysis_header", ASCENDING)], unique=True),
    ],
}

#: Indexes of earlier layouts that layout 2 no longer keeps (``_id`` is the unique uid index now); the
#: upgrade drops them. Keys as ``index_information`` lists them, directions as ints.
RETIRED_INDEXES: dict[str, set[tuple[tuple[str, int], ...]]] = {
    doc_type: {(("uid", 1),), (("uid", -1),)} for doc_type in _INDEXES
}
RETIRED_INDEXES["data_reference"] |= {(("time", 1), ("uid", 1)), (("data_reference_header", 1), ("seq_num", 1))}


def index_models(doc_type: str) -> list[IndexModel]:
    """Every secondary index of one collection (also used by the benchmarks to index their direct side alike)."""
    return list(_INDEXES[doc_type])
