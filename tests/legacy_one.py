"""Fill a database the way analysisstore wrote it at layout version 1 (before ``_id`` became the uid).

Layout 1 stored each document under a driver-made ObjectId ``_id`` with a
unique index on ``uid``, a ``(time, uid)`` index on every collection, and on
records both ``(stream, seq_num)`` and ``(stream, time, uid)``. Headers carry
their kept status; a PATCH left a ``_revision`` and a revisions entry; the
change feed's entries name records by stream and seq_num (no times).
"""
from __future__ import annotations

import copy
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database

T0 = 1_700_000_000.0

_LAYOUT_ONE_INDEXES: dict[str, list[list[tuple[str, int]]]] = {
    "analysis_header": [[("provenance.analysis_name", ASCENDING), ("time", ASCENDING)],
                        [("provenance.inputs", ASCENDING)],
                        [("_status", ASCENDING), ("time", ASCENDING), ("uid", ASCENDING)]],
    "data_reference_header": [[("analysis_header", ASCENDING)]],
    "data_reference": [[("data_reference_header", ASCENDING), ("seq_num", ASCENDING)],
                       [("data_reference_header", ASCENDING), ("time", ASCENDING), ("uid", ASCENDING)]],
    "analysis_tail": [],
}


def _indexes(db: Database) -> None:
    for doc_type, keys in _LAYOUT_ONE_INDEXES.items():
        models = [IndexModel([("uid", ASCENDING)], unique=True), IndexModel([("time", ASCENDING), ("uid", ASCENDING)]),
                  *(IndexModel(key) for key in keys)]
        if doc_type == "analysis_tail":
            models.append(IndexModel([("analysis_header", ASCENDING)], unique=True))
        db[doc_type].create_indexes(models)
    db.revisions.create_index([("doc_type", ASCENDING), ("uid", ASCENDING), ("revision", ASCENDING)], unique=True)


def _records(stream: str, n: int, t0: float) -> list[dict[str, Any]]:
    return [{"uid": f"{stream}-r{i:05d}", "time": t0 + i * 0.5, "data_reference_header": stream, "seq_num": i,
             "data": {"x": float(i), "label": f"p{i % 7}"}, "timestamps": {"x": t0 + i * 0.5}}
            for i in range(n)]


def fill_layout_one_database(db: Database, records: int = 2_500) -> dict[str, list[dict[str, Any]]]:
    """Fill ``db`` at layout 1; returns every document as the API reads it (no ``_id``, no service fields)."""
    _indexes(db)
    headers = [
        {"uid": "h-done", "time": T0, "provenance": {"analysis_name": "uvvis", "params": {"smooth": 3}},
         "project": "p1", "tags": ["checked"], "_revision": 1},
        {"uid": "h-running", "time": T0 + 100, "provenance": {"analysis_name": "xrd", "inputs": ["h-done"]}},
    ]
    streams = [
        {"uid": "s-big", "time": T0 + 1, "analysis_header": "h-done",
         "data_keys": {"x": {"dtype": "number"}, "label": {"dtype": "string"}}},
        {"uid": "s-open", "time": T0 + 101, "analysis_header": "h-running",
         "data_keys": {"x": {"dtype": "number"}, "label": {"dtype": "string"}}},
    ]
    big, small = _records("s-big", records, T0 + 2), _records("s-open", 5, T0 + 102)
    tails = [{"uid": "t-done", "time": T0 + 2_000, "analysis_header": "h-done", "exit_status": "success"}]
    expected = {"analysis_header": headers, "data_reference_header": streams, "data_reference": big + small,
                "analysis_tail": tails}
    stored = copy.deepcopy(expected)
    stored["analysis_header"][0]["_status"] = "success"
    stored["analysis_header"][1]["_status"] = "running"
    for doc_type, docs in stored.items():
        db[doc_type].insert_many(docs, ordered=False)  # PyMongo gives each an ObjectId _id, as layout 1 did
    db.revisions.insert_one({"doc_type": "analysis_header", "uid": "h-done", "revision": 0,
                             "document": {k: v for k, v in headers[0].items() if k not in ("_revision", "tags")},
                             "replaced_at": T0 + 3_000, "request_id": "r-1"})
    # The change feed as layout 1 wrote it: records named by stream and seq_num.
    feed = [("analysis_header", [h["uid"] for h in headers], [h["uid"] for h in headers], None),
            ("data_reference_header", [s["uid"] for s in streams], [s["analysis_header"] for s in streams], None),
            ("data_reference", [r["uid"] for r in small], ["h-running"] * len(small),
             {"streams": ["s-open"] * len(small), "seqs": [r["seq_num"] for r in small]})]
    position = 1
    for doc_type, uids, of, extra in feed:
        db.change_feed.insert_one({"_id": position, "last": position + len(uids) - 1, "doc_type": doc_type,
                                   "op": "insert", "revision": 0, "uids": uids, "headers": of, **(extra or {}),
                                   "state": "done", "void": [], "at": T0, "until": 0})
        position += len(uids)
    db.meta.insert_many([{"_id": "change_feed", "last": position - 1},
                         {"_id": "layout", "version": 1, "recorded_at": T0, "by": "analysisstore 1.x"}])
    return expected
