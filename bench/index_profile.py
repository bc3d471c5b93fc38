"""What each index of the records' collection costs bulk ingest, and what the dropped ones would buy.

Run by hand (not by CI):

    python bench/index_profile.py                    # embedded SecantusDB in a temp dir
    python bench/index_profile.py --mongo-uri mongodb://127.0.0.1:27017 --records 20000

Part 1, ingest: ``insert_many`` of the same records into fresh collections,
one index set per row (plain ObjectIds; ``_id`` = uid with nothing else;
layout 2's one stream index; with layout 1's ``(stream, seq_num)`` added back;
layout 1's four), interleaved over ``--repeat`` rounds; the median docs/s.

Part 2, reads on a collection of ``--stored`` records in layout 2: the change
feed's lookups of 500 records (by ``_id`` list, by a stream's time range, by
a stream's seq_num range) and a first page of all records in time order
without and with a global ``(time, uid)`` index. Results go to bench/results/.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import as_stored, database, median, save, unique  # noqa: E402

from pymongo import ASCENDING, IndexModel  # noqa: E402

from analysisstore.store import index_models  # noqa: E402

log = logging.getLogger("bench")

_STREAM_TIME = [("data_reference_header", ASCENDING), ("time", ASCENDING), ("uid", ASCENDING)]
_STREAM_SEQ = [("data_reference_header", ASCENDING), ("seq_num", ASCENDING)]
_LAYOUT_ONE = [IndexModel([("uid", ASCENDING)], unique=True), IndexModel([("time", ASCENDING), ("uid", ASCENDING)]),
               IndexModel(_STREAM_SEQ), IndexModel(_STREAM_TIME)]
#: (label, indexes, stored under the uid)
VARIANTS: list[tuple[str, list[IndexModel], bool]] = [
    ("none (ObjectId _id)", [], False),
    ("_id = uid, nothing else", [], True),
    ("_id = uid + (stream, time, uid): layout 2", index_models("data_reference"), True),
    ("layout 2 + (stream, seq_num)", [*index_models("data_reference"), IndexModel(_STREAM_SEQ)], True),
    ("layout 1: unique uid, (time, uid), (stream, seq_num), (stream, time, uid)", _LAYOUT_ONE, False),
]


def records(n: int, stream: str) -> list[dict[str, Any]]:
    now = time.time()
    return [{"uid": str(uuid.uuid4()), "time": now + i * 1e-3, "seq_num": i, "data_reference_header": stream,
             "data": {"wavelength": 300.0 + i * 0.1, "absorbance": (i % 97) / 97.0},
             "timestamps": {"wavelength": now, "absorbance": now}} for i in range(n)]


def best_ms(fn: Callable[[], Any], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mongo-uri", help="benchmark against this MongoDB instead of the embedded one")
    parser.add_argument("--records", type=int, default=5_000, help="records per insert_many")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--stored", type=int, default=20_000, help="records stored for part 2 (0: skip it)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ingest: dict[str, list[float]] = {label: [] for label, _, _ in VARIANTS}
    reads: dict[str, float] = {}
    with database(args.mongo_uri) as (_, mongo):
        db = mongo[unique("bench_indexes")]
        try:
            for round_no in range(args.repeat):
                for label, models, under_uid in VARIANTS:
                    coll = db[f"r_{uuid.uuid4().hex[:8]}"]
                    if models:
                        coll.create_indexes(models)
                    docs = records(args.records, "s")
                    docs = as_stored(docs) if under_uid else docs
                    start = time.perf_counter()
                    coll.insert_many(docs, ordered=False)
                    ingest[label].append(args.records / (time.perf_counter() - start))
                    coll.drop()
                log.info("round %d done", round_no + 1)
            if args.stored:
                coll = db.stored
                coll.create_indexes([*index_models("data_reference"), IndexModel(_STREAM_SEQ)])
                for s in range(0, args.stored, 5_000):
                    coll.insert_many(as_stored(records(min(5_000, args.stored - s), f"s{s}")), ordered=False)
                some = list(coll.find({"data_reference_header": "s0", "seq_num": {"$gte": 1000, "$lt": 1500}}))
                uids = [d["uid"] for d in some]
                low, high = min(d["time"] for d in some), max(d["time"] for d in some)
                reads["500 records by _id $in"] = best_ms(lambda: coll.find({"_id": {"$in": uids}}).to_list())
                reads["500 records by (stream, time) range"] = best_ms(lambda: coll.find(
                    {"data_reference_header": "s0", "time": {"$gte": low, "$lte": high}}).to_list())
                reads["500 records by (stream, seq_num) range"] = best_ms(lambda: coll.find(
                    {"data_reference_header": "s0", "seq_num": {"$gte": 1000, "$lt": 1500}}).to_list())
                first_page = lambda: coll.find({}, {"_id": 0}).sort([("time", 1), ("uid", 1)]).limit(100).to_list()  # noqa: E731
                reads["first 100 of all records by time, no (time, uid) index"] = best_ms(first_page)
                coll.create_index([("time", ASCENDING), ("uid", ASCENDING)])
                reads["first 100 of all records by time, with (time, uid)"] = best_ms(first_page)
        finally:
            mongo.drop_database(db.name)
    rows = [{"indexes": label, "docs_per_s": median(values)} for label, values in ingest.items()]
    print(f"\ninsert_many of {args.records} records into a fresh collection, median of {args.repeat}")
    for row in rows:
        print(f"{row['indexes']:<78}{row['docs_per_s']:>9.0f} docs/s")
    if reads:
        print(f"\nreads over {args.stored} stored records (best of 3)")
        for label, ms in reads.items():
            print(f"{label:<78}{ms:>9.1f} ms")
    out = save("index_profile", {"records": args.records, "repeat": args.repeat, "stored": args.stored,
                                 "ingest": rows, "reads_ms": reads})
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
