"""Writes through the service vs. PyMongo on the same database, same run.

* sequential single inserts: ``insert_data_reference`` vs ``insert_one``;
* bulk ingest: ``insert_bulk_data_reference`` vs ``insert_many``;
* the service's peak memory during each.

Run by hand (not by CI):

    python bench/bulk_ingest.py                      # embedded SecantusDB in a temp dir
    python bench/bulk_ingest.py --mongo-uri mongodb://127.0.0.1:27017
    python bench/bulk_ingest.py --records 10000 --chunk-size 500 --chunk-size 5000 --repeat 3

It starts ``analysisstore serve`` as its own process against the database,
writes the same records both ways (fresh collection / fresh stream each
round, same indexes on both), and prints throughput and the ratio
service / direct (1.0 = as fast as the database itself). Results are also
written as JSON under bench/results/.
"""
from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ServiceProcess, as_stored, database, median, save, summary_row, unique  # noqa: E402

from analysisstore.client import AnalysisClient  # noqa: E402
from analysisstore.store import index_models  # noqa: E402

log = logging.getLogger("bench")


def make_records(n: int) -> list[dict[str, Any]]:
    now = time.time()
    return [{"uid": str(uuid.uuid4()), "time": now + i * 1e-3, "seq_num": i,
             "data": {"wavelength": 300.0 + i * 0.1, "absorbance": (i % 97) / 97.0},
             "timestamps": {"wavelength": now, "absorbance": now}} for i in range(n)]


def direct_insert(db: Any, records: list[dict[str, Any]], stream: str, indexed: bool = True,
                  chunk_size: int | None = None) -> float:
    """``insert_many`` into a fresh collection: in the service's layout (``_id`` = uid, its indexes), or
    (``indexed=False``) plain documents (driver-made ObjectIds) with no index but ``_id`` -- the most the database
    can ingest, the baseline of the issue's >= 0.5 target. ``chunk_size``: one ``insert_many`` per chunk, as the
    client sends them (for reference; the ratios stay against one ``insert_many`` of everything)."""
    coll = db[f"data_reference_{uuid.uuid4().hex[:8]}"]
    docs = [dict(r, uid=str(uuid.uuid4()), data_reference_header=stream) for r in records]
    if indexed:
        coll.create_indexes(index_models("data_reference"))  # the same indexes the service keeps
        docs = as_stored(docs)
    step = chunk_size or len(docs)
    start = time.perf_counter()
    for first in range(0, len(docs), step):
        coll.insert_many(docs[first:first + step], ordered=False)
    return time.perf_counter() - start


def service_insert(client: AnalysisClient, records: list[dict[str, Any]], chunk_size: int) -> float:
    header = client.insert_analysis_header(provenance={"analysis_name": "bench"})
    stream = client.insert_data_reference_header(header, data_keys={"wavelength": {"dtype": "number"},
                                                                    "absorbance": {"dtype": "number"}})
    docs = [dict(r, uid=str(uuid.uuid4())) for r in records]
    start = time.perf_counter()
    client.insert_bulk_data_reference(stream, docs, chunk_size=chunk_size)
    return time.perf_counter() - start


def direct_singles(db: Any, records: list[dict[str, Any]]) -> float:
    coll = db[f"data_reference_{uuid.uuid4().hex[:8]}"]
    coll.create_indexes(index_models("data_reference"))
    docs = as_stored([dict(r, uid=str(uuid.uuid4()), data_reference_header="stream") for r in records])
    start = time.perf_counter()
    for doc in docs:
        coll.insert_one(doc)
    return time.perf_counter() - start


def service_singles(client: AnalysisClient, records: list[dict[str, Any]]) -> float:
    header = client.insert_analysis_header(provenance={"analysis_name": "bench"})
    stream = client.insert_data_reference_header(header, data_keys={"wavelength": {"dtype": "number"},
                                                                    "absorbance": {"dtype": "number"}})
    start = time.perf_counter()
    for r in records:
        client.insert_data_reference(stream, str(uuid.uuid4()), r["time"], r["data"], r["timestamps"],
                                     seq_num=r["seq_num"])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mongo-uri", help="benchmark against this MongoDB instead of the embedded one")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--chunk-size", type=int, action="append", help="client chunk size(s); default 500")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--singles", type=int, default=2_000, help="sequential single inserts (0: skip)")
    args = parser.parse_args()
    chunk_sizes = args.chunk_size or [500]
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with database(args.mongo_uri) as (uri, mongo):
        direct_db = mongo[unique("bench_direct")]
        service_db = unique("bench_service")
        service = ServiceProcess(uri, service_db)
        try:
            client = AnalysisClient({"url": service.url})
            records = make_records(max(args.records, args.singles))
            # Singles first, while both collections are small, so neither side pays for bigger indexes.
            singles = records[:args.singles]
            service.reset_peak()
            single_direct = direct_singles(direct_db, singles) if singles else 0.0
            single_service = service_singles(client, singles) if singles else 0.0
            singles_peak = service.memory()["VmHWM"]
            service.reset_peak()
            direct_times: list[float] = []
            raw_times: list[float] = []
            service_times: dict[int, list[float]] = {c: [] for c in chunk_sizes}
            chunked_times: dict[int, list[float]] = {c: [] for c in chunk_sizes}
            bulk = records[:args.records]
            for round_no in range(args.repeat):  # interleaved so drift hits both sides alike
                direct_times.append(direct_insert(direct_db, bulk, "stream"))
                raw_times.append(direct_insert(direct_db, bulk, "stream", indexed=False))
                for chunk in chunk_sizes:
                    service_times[chunk].append(service_insert(client, bulk, chunk))
                    chunked_times[chunk].append(direct_insert(direct_db, bulk, "stream", chunk_size=chunk))
                log.info("round %d done", round_no + 1)
            bulk_peak = service.memory()["VmHWM"]
        finally:
            service.stop()
            mongo.drop_database(direct_db.name)
            mongo.drop_database(service_db)

    where = "embedded SecantusDB" if args.mongo_uri is None else args.mongo_uri
    direct = median(direct_times)
    raw = median(raw_times)
    rows = [{"method": "pymongo insert_many, no 2nd index", "chunk_size": None, "seconds": raw,
             "docs_per_s": args.records / raw, "ratio": direct / raw},
            {"method": "pymongo insert_many", "chunk_size": None, "seconds": direct,
             "docs_per_s": args.records / direct, "ratio": 1.0}]
    summary = []
    for chunk, times in chunked_times.items():
        t = median(times)
        rows.append({"method": "pymongo insert_many per chunk", "chunk_size": chunk, "seconds": t,
                     "docs_per_s": args.records / t, "ratio": direct / t})
    for chunk, times in service_times.items():
        t = median(times)
        rows.append({"method": "insert_bulk_data_reference", "chunk_size": chunk, "seconds": t,
                     "docs_per_s": args.records / t, "ratio": direct / t})
        summary.append(summary_row(f"bulk ingest {args.records:,} (chunk {chunk})", "docs/s", args.records / t,
                                   args.records / direct, "≥ 0.9", bulk_peak))
        summary.append(summary_row(f"bulk ingest {args.records:,} (chunk {chunk}) vs raw", "docs/s",
                                   args.records / t, args.records / raw, "≥ 0.5 of no-index insert_many",
                                   bulk_peak))
    print(f"\nbulk ingest of {args.records} data references, median of {args.repeat} ({where})")
    print("ratio: against insert_many into a collection with the service's indexes")
    print(f"{'method':<34}{'chunk':>7}{'seconds':>10}{'docs/s':>10}{'ratio':>8}")
    for row in rows:
        print(f"{row['method']:<34}{row['chunk_size'] or '':>7}{row['seconds']:>10.3f}"
              f"{row['docs_per_s']:>10.0f}{row['ratio']:>8.2f}")
    if args.singles:
        n = len(singles)
        print(f"{'pymongo insert_one (sequential)':<34}{'':>7}{single_direct:>10.3f}{n / single_direct:>10.0f}{1.0:>8.2f}")
        print(f"{'insert_data_reference (seq.)':<34}{'':>7}{single_service:>10.3f}{n / single_service:>10.0f}"
              f"{single_direct / single_service:>8.2f}")
        rows.append({"method": "sequential singles", "count": n, "direct_seconds": single_direct,
                     "service_seconds": single_service, "ratio": single_direct / single_service})
        summary.insert(0, summary_row(f"single inserts {n:,} (sequential)", "docs/s", n / single_service,
                                      n / single_direct, "≥ 0.5 and ≥ 800/s", singles_peak))
    print(f"service peak memory: singles {singles_peak / 2**20:.0f} MiB, bulk {bulk_peak / 2**20:.0f} MiB")
    out = save("bulk_ingest", {"records": args.records, "repeat": args.repeat, "python": platform.python_version(),
                               "database": where, "direct_seconds": direct_times, "raw_seconds": raw_times,
                               "service_seconds": {str(k): v for k, v in service_times.items()},
                               "chunked_direct_seconds": {str(k): v for k, v in chunked_times.items()},
                               "service_peak_bytes": {"singles": singles_peak, "bulk": bulk_peak},
                               "rows": rows, "summary": summary})
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
