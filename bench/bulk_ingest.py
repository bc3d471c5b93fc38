"""Bulk ingest through the service vs. PyMongo ``insert_many`` on the same database, same run.

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
import json
import logging
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests
from pymongo import MongoClient

from analysisstore.client import AnalysisClient
from analysisstore.embedded import EmbeddedMongo
from analysisstore.store import index_models

log = logging.getLogger("bench")
RESULTS = Path(__file__).resolve().parent / "results"


def make_records(n: int) -> list[dict[str, Any]]:
    now = time.time()
    return [{"uid": str(uuid.uuid4()), "time": now + i * 1e-3, "seq_num": i,
             "data": {"wavelength": 300.0 + i * 0.1, "absorbance": (i % 97) / 97.0},
             "timestamps": {"wavelength": now, "absorbance": now}} for i in range(n)]


def direct_insert(db: Any, records: list[dict[str, Any]], stream: str) -> float:
    coll = db[f"data_reference_{uuid.uuid4().hex[:8]}"]
    coll.create_indexes(index_models("data_reference"))  # the same indexes the service keeps
    docs = [dict(r, uid=str(uuid.uuid4()), data_reference_header=stream) for r in records]
    start = time.perf_counter()
    coll.insert_many(docs, ordered=False)
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
    docs = [dict(r, uid=str(uuid.uuid4()), data_reference_header="stream") for r in records]
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(mongo_uri: str, database: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "analysisstore.cli", "serve", "--port", str(port),
         "--mongo-uri", mongo_uri, "--database", database, "--log-level", "WARNING"],
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except requests.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the service did not become ready")


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

    with ExitStack() as stack:
        uri = args.mongo_uri
        if uri is None:
            data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="asst-bench-"))
            uri = stack.enter_context(EmbeddedMongo(Path(data_dir) / "db")).uri
        mongo = stack.enter_context(MongoClient(uri))
        direct_db = mongo[f"bench_direct_{uuid.uuid4().hex[:6]}"]
        service_db = f"bench_service_{uuid.uuid4().hex[:6]}"
        process, url = start_service(uri, service_db)
        stack.callback(mongo.drop_database, direct_db.name)
        stack.callback(mongo.drop_database, service_db)
        stack.callback(process.wait)
        stack.callback(process.terminate)
        client = AnalysisClient({"url": url})
        records = make_records(args.records)

        direct_times: list[float] = []
        service_times: dict[int, list[float]] = {c: [] for c in chunk_sizes}
        for round_no in range(args.repeat):  # interleaved so drift hits both sides alike
            direct_times.append(direct_insert(direct_db, records, "stream"))
            for chunk in chunk_sizes:
                service_times[chunk].append(service_insert(client, records, chunk))
            log.info("round %d done", round_no + 1)
        singles = records[:args.singles]
        single_direct = direct_singles(direct_db, singles) if singles else 0.0
        single_service = service_singles(client, singles) if singles else 0.0

    direct = statistics.median(direct_times)
    rows = [{"method": "pymongo insert_many", "chunk_size": None, "seconds": direct,
             "docs_per_s": args.records / direct, "ratio": 1.0}]
    for chunk, times in service_times.items():
        t = statistics.median(times)
        rows.append({"method": "insert_bulk_data_reference", "chunk_size": chunk, "seconds": t,
                     "docs_per_s": args.records / t, "ratio": direct / t})
    print(f"\nbulk ingest of {args.records} data references, median of {args.repeat} "
          f"({'embedded SecantusDB' if args.mongo_uri is None else args.mongo_uri})")
    print(f"{'method':<30}{'chunk':>7}{'seconds':>10}{'docs/s':>10}{'ratio':>8}")
    for row in rows:
        print(f"{row['method']:<30}{row['chunk_size'] or '':>7}{row['seconds']:>10.3f}"
              f"{row['docs_per_s']:>10.0f}{row['ratio']:>8.2f}")
    if args.singles:
        n = min(args.singles, args.records)
        print(f"{'pymongo insert_one (sequential)':<30}{'':>7}{single_direct:>10.3f}{n / single_direct:>10.0f}{1.0:>8.2f}")
        print(f"{'insert_data_reference (seq.)':<30}{'':>7}{single_service:>10.3f}{n / single_service:>10.0f}"
              f"{single_direct / single_service:>8.2f}")
        rows.append({"method": "sequential singles", "direct_seconds": single_direct,
                     "service_seconds": single_service, "ratio": single_direct / single_service})
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bulk_ingest-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"records": args.records, "repeat": args.repeat, "python": platform.python_version(),
                               "database": "embedded" if args.mongo_uri is None else "mongodb",
                               "direct_seconds": direct_times,
                               "service_seconds": {str(k): v for k, v in service_times.items()},
                               "rows": rows}, indent=2))
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
