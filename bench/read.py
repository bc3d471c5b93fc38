"""Reads through the service vs. PyMongo on the same database, same run.

Run by hand (not by CI):

    python bench/read.py                          # 1 000 000 records, embedded SecantusDB
    python bench/read.py --records 200000 --stream-records 100000
    python bench/read.py --mongo-uri mongodb://127.0.0.1:27017

Populates one database directly (one stream of --stream-records records, the
rest spread over 1 000 analyses), starts ``analysisstore serve`` on it, then:

* reads the big stream through ``AnalysisClient`` (cursor pages and NDJSON)
  vs ``list(collection.find(...))`` — throughput ratio (1.0 = as fast as the DB);
* p50/p95 over HTTP of indexed queries: a record by uid (``AnalysisClient.document``; bench/lookup.py
  also times other clients and where the milliseconds go), and headers by
  ``provenance.analysis_name`` + time range — next to the same PyMongo query;
* the service's peak memory.
"""
from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ServiceProcess, as_stored, database, latencies, median, percentile, save, summary_row, timed, unique  # noqa: E402

from analysisstore.client import AnalysisClient  # noqa: E402

log = logging.getLogger("bench")
ANALYSES = 1_000
NAMES = [f"analysis_{i}" for i in range(10)]


def populate(db, records: int, stream_records: int) -> tuple[str, list[str]]:
    """Headers, streams and records written straight to the database; returns the big stream and some uids."""
    t0 = 1_700_000_000.0
    headers = [{"uid": f"h{i:05d}", "time": t0 + i * 60, "provenance": {"analysis_name": NAMES[i % len(NAMES)]}}
               for i in range(ANALYSES)]
    db.analysis_header.insert_many(as_stored(headers))
    db.data_reference_header.insert_many(as_stored([{"uid": f"s{i:05d}", "time": t0 + i * 60, "analysis_header": f"h{i:05d}",
                                           "data_keys": {"v": {"dtype": "number"}}} for i in range(ANALYSES)]))
    per_other = max(1, (records - stream_records) // (ANALYSES - 1))
    sample_uids, batch, written = [], [], 0

    def flush() -> None:
        nonlocal batch
        if batch:
            db.data_reference.insert_many(as_stored(batch), ordered=False)
            batch = []

    for s in range(ANALYSES):
        n = stream_records if s == 0 else per_other
        for i in range(n):
            uid = f"r{s:05d}-{i:07d}"
            batch.append({"uid": uid, "time": t0 + s * 60 + i * 1e-3, "seq_num": i,
                          "data_reference_header": f"s{s:05d}", "data": {"v": i * 0.5}, "timestamps": {"v": t0}})
            if random.random() < 0.001:
                sample_uids.append(uid)
            written += 1
            if len(batch) == 20_000:
                flush()
                log.info("populated %d records", written)
        if written >= records:
            break
    flush()
    return "s00000", sample_uids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mongo-uri")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--stream-records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with database(args.mongo_uri) as (uri, mongo):
        name = unique("bench_read")
        service = ServiceProcess(uri, name)  # creates the indexes before the data arrives
        try:
            db = mongo[name]
            stream, sample_uids = populate(db, args.records, args.stream_records)
            client = AnalysisClient({"url": service.url})
            coll = db.data_reference
            query = {"data_reference_header": stream}
            sort = [("time", 1), ("uid", 1)]
            rows = {"direct": [], "pages": [], "ndjson": []}
            for _ in range(args.repeat):
                t, docs = timed(lambda: list(coll.find(query, {"_id": 0}).sort(sort)))
                assert len(docs) == args.stream_records
                rows["direct"].append(t)
                t, n = timed(lambda: sum(1 for _ in client.iter_find("data_reference", query, paged=True,
                                                                      page_size=10_000)))
                assert n == args.stream_records
                rows["pages"].append(t)
                t, n = timed(lambda: sum(1 for _ in client.iter_data_reference(data_reference_header=stream)))
                assert n == args.stream_records
                rows["ndjson"].append(t)
            direct = median(rows["direct"])

            session = requests.Session()
            uids = [random.choice(sample_uids) for _ in range(args.queries)]
            it = iter(uids)
            http_uid = latencies(lambda: client.document("data_reference", next(it)), args.queries)
            it = iter(uids)
            direct_uid = latencies(lambda: coll.find_one({"_id": next(it)}, {"_id": 0}), args.queries)
            t0 = 1_700_000_000.0

            def header_params():
                start = t0 + random.randrange(0, ANALYSES * 60 - 6000)
                return random.choice(NAMES), start, start + 6000

            params = [header_params() for _ in range(args.queries)]
            it = iter(params)

            def http_headers():
                name_, lo, hi = next(it)
                session.get(f"{service.url}/api/v1/analysis_header",
                            params={"provenance.analysis_name": name_, "time__range": f"{lo},{hi}"}).raise_for_status()

            http_hdr = latencies(http_headers, args.queries)
            it = iter(params)

            def direct_headers():
                name_, lo, hi = next(it)
                list(db.analysis_header.find({"provenance.analysis_name": name_, "time": {"$gte": lo, "$lte": hi}},
                                             {"_id": 0}).sort(sort).limit(100))

            direct_hdr = latencies(direct_headers, args.queries)
            memory = service.memory()
        finally:
            service.stop()
            mongo.drop_database(name)

    n = args.stream_records
    print(f"\nreads, {args.records} records stored, stream of {n}, median of {args.repeat} "
          f"({'embedded SecantusDB' if args.mongo_uri is None else args.mongo_uri})")
    print(f"{'read method':<34}{'seconds':>9}{'docs/s':>10}{'ratio':>8}")
    for label, key in [("pymongo find", "direct"), ("client iterator, NDJSON (default)", "ndjson"),
                       ("client iterator, paged=True 10k", "pages")]:
        t = median(rows[key])
        print(f"{label:<34}{t:>9.3f}{n / t:>10.0f}{direct / t:>8.2f}")
    print(f"\n{'indexed query latency (ms)':<34}{'p50':>9}{'p95':>9}")
    for label, values in [("record by uid, HTTP (client)", http_uid), ("record by uid, pymongo", direct_uid),
                          ("headers name+time range, HTTP", http_hdr), ("headers name+time range, pymongo", direct_hdr)]:
        print(f"{label:<34}{percentile(values, 50):>9.2f}{percentile(values, 95):>9.2f}")
    print(f"\nservice peak memory {memory['VmHWM'] / 2**20:.0f} MiB")
    summary = [
        summary_row(f"read {n:,} records, client iterator", "docs/s", n / median(rows["ndjson"]), n / direct,
                    "≥ 0.8", memory["VmHWM"]),
        summary_row(f"read {n:,} records, paged=True", "docs/s", n / median(rows["pages"]), n / direct,
                    "≥ 0.6", memory["VmHWM"]),
        summary_row(f"p50 record by uid, {args.records:,} stored", "ms", percentile(http_uid, 50),
                    percentile(direct_uid, 50), "≥ 0.33 (within 3x)", higher_is_better=False),
        summary_row(f"p95 record by uid, {args.records:,} stored", "ms", percentile(http_uid, 95),
                    percentile(direct_uid, 95), "(none)", higher_is_better=False),
        summary_row(f"p50 name+time range, {args.records:,} stored", "ms", percentile(http_hdr, 50),
                    percentile(direct_hdr, 50), "(none)", higher_is_better=False),
        summary_row(f"p95 name+time range, {args.records:,} stored", "ms", percentile(http_hdr, 95),
                    percentile(direct_hdr, 95), "(none)", higher_is_better=False),
    ]
    out = save("read", {"records": args.records, "stream_records": n, "times": rows, "summary": summary,
                        "latency_ms": {"uid_http": http_uid, "uid_direct": direct_uid,
                                       "headers_http": http_hdr, "headers_direct": direct_hdr},
                        "service_peak_bytes": memory["VmHWM"]})
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
