"""Fill a database the way the NSLS-II analysisstore 0.x service wrote it.

0.x kept one collection per document type and stored each request's payload
as it came: ``insert_one(dict(time=..., uid=..., provenance=..., **extra))``
(PyMongo adds an ObjectId ``_id``), bulk records with
``insert_many(records, ordered=False)`` exactly as sent, no schema beyond
"required arguments present", and, in its last versions, no indexes at all,
so a re-sent document was simply stored a second time.
"""
from __future__ import annotations

from typing import Any

from pymongo.database import Database

T0 = 1_600_000_000.0


class ZeroWriter:
    """The four 0.x insert paths, one method each, writing like 0.x's AStore."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def header(self, time: Any, uid: Any, provenance: Any, **extra: Any) -> None:
        self.db.analysis_header.insert_one(dict(time=time, uid=uid, provenance=provenance, **extra))

    def stream(self, time: Any, uid: str, analysis_header: Any, data_keys: Any, **extra: Any) -> None:
        self.db.data_reference_header.insert_one(
            dict(time=time, uid=uid, analysis_header=analysis_header, data_keys=data_keys, **extra))

    def record(self, time: Any, uid: str, data_reference_header: str, data: Any, timestamps: Any,
               **extra: Any) -> None:
        self.db.data_reference.insert_one(dict(time=time, uid=uid, data_reference_header=data_reference_header,
                                               data=data, timestamps=timestamps, **extra))

    def bulk(self, records: list[dict[str, Any]]) -> None:
        # 0.x inserted the client's list as it came (copies: PyMongo writes _id into what it inserts).
        self.db.data_reference.insert_many([dict(r) for r in records], ordered=False)

    def tail(self, time: Any, uid: str, analysis_header: Any, exit_status: Any, **extra: Any) -> None:
        self.db.analysis_tail.insert_one(
            dict(time=time, uid=uid, analysis_header=analysis_header, exit_status=exit_status, **extra))


def _records(stream: str, prefix: str, n: int, with_link: bool = True, extra_key: str | None = None) -> list[dict]:
    records = []
    for i in range(n):
        data: dict[str, Any] = {"wavelength": 400 + i, "absorbance": 0.25 * i}
        if extra_key:
            data[extra_key] = "ok"
        record = {"time": T0 + 10 + i, "uid": f"{prefix}-{i}", "data": data,
                  "timestamps": {k: T0 + 10 + i for k in data}}
        if with_link:
            record = {"data_reference_header": stream, **record}
        records.append(record)
    return records


def fill_zero_database(db: Database) -> dict[str, Any]:
    """Write a small 0.x history with every oddity the upgrade handles; return what a reader should find."""
    w = ZeroWriter(db)
    uv_keys = {"wavelength": {"dtype": "number", "units": "nm"}, "absorbance": {"dtype": "number"}}

    # 1. A clean analysis, then re-sent whole by a script that was run twice.
    for _ in range(2):
        w.header(T0, "h-clean", {"analysis_name": "uvvis", "params": {"smooth": 3}}, project="p1")
        w.stream(T0 + 1, "s-clean", "h-clean", uv_keys)
        w.bulk(_records("s-clean", "r-clean", 5))
        w.tail(T0 + 100, "t-clean", "h-clean", "success")

    # 2. Same uid, different content: a script edited between two runs.
    w.header(T0 + 200, "h-conflict", {"analysis_name": "uvvis", "params": {"smooth": 3}})
    w.header(T0 + 201, "h-conflict", {"analysis_name": "uvvis", "params": {"smooth": 9}})
    w.tail(T0 + 300, "t-conflict", "h-conflict", "completed")

    # 3. 0.x exit statuses: a synonym, a capitalised one, one nobody can map; and a second tail.
    w.header(T0 + 400, "h-failed", {"analysis_name": "echem"})
    w.tail(T0 + 401, "t-failed", "h-failed", "Failed")
    w.tail(T0 + 402, "t-failed-again", "h-failed", "aborted")
    w.header(T0 + 500, "h-odd", {"analysis_name": "echem"})
    w.tail(T0 + 501, "t-odd", "h-odd", "paused")

    # 4. A header sent without time (0.x's server never filled it), provenance as a string.
    w.header(None, "h-notime", "uvvis v1.2 from the beamline notebook")
    # A stream declaring no data_keys, whose records carry them; one declaring dtype 'float';
    # one whose records carry a key it never declared. The analysis is still running (no tail).
    w.stream(T0 + 601, "s-empty", "h-notime", {})
    w.bulk(_records("s-empty", "r-empty", 3))
    w.stream(T0 + 602, "s-float", "h-notime", {"wavelength": {"dtype": "float"}, "absorbance": "float"})
    w.record(T0 + 603, "r-float-0", "s-float", {"wavelength": 400.0, "absorbance": 0.5},
             {"wavelength": T0, "absorbance": T0})
    w.stream(T0 + 604, "s-undeclared", "h-notime", dict(uv_keys))
    w.bulk(_records("s-undeclared", "r-undeclared", 2, extra_key="comment"))

    # 5. A stream linked by the whole header document (0.x stored the argument as given).
    w.header(T0 + 700, "h-doclink", {"analysis_name": "icpms"})
    w.stream(T0 + 701, "s-doclink", {"uid": "h-doclink", "time": T0 + 700}, uv_keys)
    w.record(T0 + 702, "r-doclink-0", "s-doclink", {"wavelength": 1.0, "absorbance": 2.0},
             {"wavelength": T0, "absorbance": T0})

    # 6. A bulk chunk sent without the stream link (0.x's bulk insert stored records as sent).
    w.bulk(_records("s-clean", "r-unlinked", 2, with_link=False))

    return {
        "headers": ["h-clean", "h-conflict", "h-failed", "h-odd", "h-notime", "h-doclink"],
        "streams": {"s-clean": 5, "s-empty": 3, "s-float": 1, "s-undeclared": 2, "s-doclink": 1},
        "status": {"h-clean": "success", "h-conflict": "success", "h-failed": "fail", "h-odd": "paused"},
    }
