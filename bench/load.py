"""Single inserts under concurrency: requests/s and p50/p99 latency, ``--processes 1`` vs ``2``.

Run by hand (not by CI); loopback only, each phase bounded in time:

    python bench/load.py                              # 8 clients, 15 s per phase, embedded SecantusDB
    python bench/load.py --clients 8 --seconds 30 --mongo-uri mongodb://127.0.0.1:27017

Also measures PyMongo ``insert_one`` from the same number of threads on the
same database, for the ratio.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ServiceProcess, as_stored, database, percentile, save, summary_row, unique  # noqa: E402

from analysisstore.store import index_models  # noqa: E402


def header() -> dict:
    return {"uid": str(uuid.uuid4()), "time": time.time(), "provenance": {"analysis_name": "load"}}


def run_clients(clients: int, seconds: float, send) -> tuple[int, int, list[float]]:
    """``clients`` threads calling ``send`` until the deadline; (ok, errors, latencies ms)."""
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"ok": 0, "errors": 0}

    def worker() -> None:
        session = requests.Session()
        local, ok, errors = [], 0, 0
        while time.monotonic() < deadline:
            start = time.perf_counter()
            good = send(session)
            local.append((time.perf_counter() - start) * 1000)
            ok, errors = ok + good, errors + (not good)
        with lock:
            latencies.extend(local)
            counts["ok"] += ok
            counts["errors"] += errors

    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(worker)
    return counts["ok"], counts["errors"], latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mongo-uri")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    rows = []
    peaks: dict[str, int] = {}
    with database(args.mongo_uri) as (uri, mongo):
        direct_db = mongo[unique("bench_load_direct")]
        direct_db.analysis_header.create_indexes(index_models("analysis_header"))
        ok, errors, lat = run_clients(args.clients, args.seconds,
                                      lambda _s: bool(direct_db.analysis_header.insert_one(as_stored([header()])[0]).acknowledged))
        rows.append(("pymongo insert_one", ok, errors, lat))
        mongo.drop_database(direct_db.name)
        for processes in (1, 2):
            name = unique(f"bench_load_p{processes}")
            service = ServiceProcess(uri, name, "--processes", str(processes))
            try:
                url = f"{service.url}/api/v1/analysis_header"
                ok, errors, lat = run_clients(
                    args.clients, args.seconds,
                    lambda session: session.post(url, json=header(), timeout=30).status_code == 201)
                rows.append((f"HTTP POST, --processes {processes}", ok, errors, lat))
                if processes == 1:  # with workers the supervisor's own memory says little
                    peaks[rows[-1][0]] = service.memory()["VmHWM"]
            finally:
                service.stop()
                mongo.drop_database(name)
    direct_rate = rows[0][1] / args.seconds
    print(f"\nsingle inserts, {args.clients} concurrent clients, {args.seconds:.0f} s each "
          f"({'embedded SecantusDB' if args.mongo_uri is None else args.mongo_uri})")
    print(f"{'method':<28}{'req/s':>9}{'errors':>8}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}")
    for label, ok, errors, lat in rows:
        rate = ok / args.seconds
        print(f"{label:<28}{rate:>9.0f}{errors:>8}{percentile(lat, 50):>9.2f}{percentile(lat, 99):>9.2f}"
              f"{rate / direct_rate:>8.2f}")
    summary = [summary_row(f"single inserts, {args.clients} clients, {label.split(', ')[1]}", "req/s",
                           ok / args.seconds, direct_rate, "(no target)", peaks.get(label))
               for label, ok, _, _ in rows[1:]]
    out = save("load", {"clients": args.clients, "seconds": args.seconds, "summary": summary,
                        "rows": [{"method": r[0], "ok": r[1], "errors": r[2], "p50_ms": percentile(r[3], 50),
                                  "p99_ms": percentile(r[3], 99)} for r in rows]})
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
