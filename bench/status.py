"""status= at scale: the first page of analyses by status, through the service vs PyMongo on the same database.

Run by hand (not by CI):

    python bench/status.py                        # 200 000 analyses, embedded SecantusDB
    python bench/status.py --analyses 20000       # quicker
    python bench/status.py --analyses 20000 --unswept
    python bench/status.py --mongo-uri mongodb://127.0.0.1:27017

Writes --analyses headers and their tails straight to the database (60 %
success, 10 % fail, 5 % abort, the rest running), with the status the
service keeps on each header, or with --unswept as an older analysisstore
stored them (then serve's one-time start-up sweep records every status; the
start-up is timed). It starts ``analysisstore serve`` on it and times
``GET /api/v1/analysis_header?status=...`` (first page of 100, with and
without ``include_count``) next to the same indexed query in PyMongo.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ServiceProcess, as_stored, database, latencies, percentile, record_layout, save, summary_row, timed, unique  # noqa: E402

from analysisstore.service_fields import CLOSING, RUNNING, STATUS_FIELD  # noqa: E402
from analysisstore.store import index_models  # noqa: E402

SHARES = (("success", 0.60), ("fail", 0.10), ("abort", 0.05))
BATCH = 10_000


def populate(db, analyses: int, rng: random.Random, keep_status: bool) -> dict[str, int]:
    """Headers and tails, in batches (the headers with their kept status or not); how many of each status."""
    for doc_type in ("analysis_header", "analysis_tail"):
        db[doc_type].create_indexes(index_models(doc_type))
    now = time.time()
    counts = {"running": 0, **{s: 0 for s, _ in SHARES}}
    for start in range(0, analyses, BATCH):
        headers, tails = [], []
        for i in range(start, min(start + BATCH, analyses)):
            uid = f"A{i:07d}"
            headers.append({"uid": uid, "time": now - 3_600 + i * 3_000 / analyses,
                            "provenance": {"analysis_name": "bench", "params": {"i": i}}})
            pick, status = rng.random(), "running"
            for name, share in SHARES:
                if pick < share:
                    status = name
                    break
                pick -= share
            counts[status] += 1
            if keep_status:
                headers[-1][STATUS_FIELD] = status
            if status != "running":
                tails.append({"uid": f"T{i:07d}", "time": headers[-1]["time"] + 1, "analysis_header": uid,
                              "exit_status": status})
        db.analysis_header.insert_many(as_stored(headers), ordered=False)
        if tails:
            db.analysis_tail.insert_many(as_stored(tails), ordered=False)
    record_layout(db)
    return counts


def direct_page(db, status: str, count: bool) -> int:
    wanted = {STATUS_FIELD: {"$in": [RUNNING, CLOSING]}} if status == "running" else {STATUS_FIELD: status}
    page = list(db.analysis_header.find(wanted, {"_id": 0, STATUS_FIELD: 0, "_closing": 0})
                .sort([("time", 1), ("uid", 1)]).limit(101))
    return db.analysis_header.count_documents(wanted) if count else len(page)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mongo-uri", help="a MongoDB to use instead of the embedded database")
    parser.add_argument("--analyses", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--unswept", action="store_true", help="headers without the kept status (time the sweep)")
    args = parser.parse_args()
    rng = random.Random(7)
    with database(args.mongo_uri) as (uri, mongo):
        name = unique("bench_status")
        db = mongo[name]
        populate_s, counts = timed(lambda: populate(db, args.analyses, rng, not args.unswept))
        # A first page over every analysis of a status may take the embedded database longer than the
        # service's default query limit (10 s) at this scale: allow it a minute, to time it rather than fail.
        startup_s, service = timed(lambda: ServiceProcess(uri, name, "--query-max-time-ms", "60000"))
        session = requests.Session()
        results = {}
        try:
            for status in ("success", "running"):
                for count in (False, True):
                    params = {"status": status, "limit": 100, **({"include_count": "true"} if count else {})}

                    def http(params=params, count=count) -> None:
                        response = session.get(f"{service.url}/api/v1/analysis_header", params=params, timeout=300)
                        if not response.ok:
                            raise SystemExit(f"status={params['status']}: {response.status_code} {response.text}")
                        if count:
                            assert response.json()["meta"]["count"] == counts[params["status"]]

                    results[f"{status}{' + count' if count else ''}"] = {
                        "http": latencies(http, args.queries),
                        "direct": latencies(lambda s=status, c=count: direct_page(db, s, c), args.queries)}
        finally:
            service.stop()
            mongo.drop_database(name)
    where = "embedded SecantusDB" if args.mongo_uri is None else args.mongo_uri
    print(f"\nstatus= over {args.analyses:,} analyses ({where}): populated in {populate_s:.1f} s, "
          f"serve ready in {startup_s:.1f} s{' (start-up sweep included)' if args.unswept else ''}")
    print(f"{'query (first page of 100)':<34}{'p50 ms':>9}{'p95 ms':>9}{'direct p50':>12}{'ratio':>7}")
    summary = []
    for label, r in results.items():
        http50, direct50 = percentile(r["http"], 50), percentile(r["direct"], 50)
        print(f"{'status=' + label:<34}{http50:>9.1f}{percentile(r['http'], 95):>9.1f}{direct50:>12.1f}"
              f"{direct50 / http50:>7.2f}")
        summary.append(summary_row(f"p50 status={label}, {args.analyses} analyses", "ms", http50, direct50,
                                   "(none)", higher_is_better=False))
    out = save("status", {"analyses": args.analyses, "unswept": args.unswept, "counts": counts, "populate_seconds": populate_s,
                          "startup_seconds": startup_s, "results": results, "summary": summary})
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
