"""Every index of the four collections, created once at startup (and by the benchmarks alike)."""
from __future__ import annotations

from pymongo import ASCENDING, IndexModel

from ..service_fields import STATUS_FIELD

__all__ = ["index_models"]

_INDEXES: dict[str, list[IndexModel]] = {
    # The query scientists run most: an analysis by name over a time range.
    "analysis_header": [IndexModel([("provenance.analysis_name", ASCENDING), ("time", ASCENDING)]),
                        # "who used X": the descendants' direction of the lineage walks this multikey index
                        IndexModel([("provenance.inputs", ASCENDING)]),
                        # status=...: one index range, in the default (time, uid) order
                        IndexModel([(STATUS_FIELD, ASCENDING), ("time", ASCENDING), ("uid", ASCENDING)])],
    "data_reference_header": [IndexModel([("analysis_header", ASCENDING)])],
    # (stream, seq_num) also serves every lookup by stream alone; (stream, time, uid)
    # lets a stream's records be paged in time order without sorting in memory.
    "data_reference": [
        IndexModel([("data_reference_header", ASCENDING), ("seq_num", ASCENDING)]),
        IndexModel([("data_reference_header", ASCENDING), ("time", ASCENDING), ("uid", ASCENDING)]),
    ],
    "analysis_tail": [IndexModel([("analysis_header", ASCENDING)], unique=True)],
}


def index_models(doc_type: str) -> list[IndexModel]:
    """Every index of one collection (also used by the benchmarks to index their direct side alike)."""
    return [
        IndexModel([("uid", ASCENDING)], unique=True),
        IndexModel([("time", ASCENDING), ("uid", ASCENDING)]),
        *_INDEXES[doc_type],
    ]
