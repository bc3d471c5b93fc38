"""Live-event delivery latency: a write to its Server-Sent Event, vs a PyMongo change stream on the same database.

Run by hand (not by CI):

    python bench/events.py                        # embedded SecantusDB
    python bench/events.py --events 500 --mongo-uri "mongodb://127.0.0.1:27017/?replicaSet=rs0"

Service side: one ``AnalysisClient.events()`` reader in a thread, then --events
headers written one at a time through the client; latency = event received −
write started. Direct side: the same with ``collection.watch()`` and
``insert_one``. Both print p50/p95 in milliseconds.
"""
from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ServiceProcess, database, percentile, save, summary_row, unique  # noqa: E402

from analysisstore.client import AnalysisClient, ServiceUnreachable  # noqa: E402


def _measure(write, arrivals: "queue.Queue[str]", n: int) -> list[float]:
    out = []
    for _ in range(n):
        uid = str(uuid.uuid4())
        start = time.perf_counter()
        write(uid)
        while arrivals.get(timeout=30) != uid:
            pass
        out.append((time.perf_counter() - start) * 1000)
    return out


def through_service(url: str, n: int) -> list[float]:
    client = AnalysisClient({"url": url})
    arrivals: queue.Queue[str] = queue.Queue()
    opened = threading.Event()

    def read() -> None:
        try:
            for event in client.events(doc_type="analysis_header", on_open=opened.set):
                arrivals.put(event["uid"])
        except ServiceUnreachable:  # the service stopping at the end of the run cuts the stream
            return

    threading.Thread(target=read, daemon=True).start()
    opened.wait(30)
    writer = AnalysisClient({"url": url})
    return _measure(lambda uid: writer.insert_analysis_header(uid=uid, provenance={"analysis_name": "bench"}),
                    arrivals, n)


def direct(db, n: int) -> list[float]:
    arrivals: queue.Queue[str] = queue.Queue()
    opened = threading.Event()

    def read() -> None:
        with db.analysis_header_direct.watch([{"$match": {"operationType": "insert"}}]) as stream:
            opened.set()
            for change in stream:
                arrivals.put(change["fullDocument"]["uid"])

    threading.Thread(target=read, daemon=True).start()
    opened.wait(30)
    return _measure(lambda uid: db.analysis_header_direct.insert_one(
        {"uid": uid, "time": time.time(), "provenance": {"analysis_name": "bench"}}), arrivals, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mongo-uri", help="a MongoDB replica set to use instead of the embedded database")
    parser.add_argument("--events", type=int, default=300)
    args = parser.parse_args()
    with database(args.mongo_uri) as (uri, mongo):
        name = unique("bench_events")
        service = ServiceProcess(uri, name)
        try:
            http = through_service(service.url, args.events)
            plain = direct(mongo[name], args.events)
        finally:
            service.stop()
            mongo.drop_database(name)
    print(f"\nevent delivery latency, {args.events} writes "
          f"({'embedded SecantusDB' if args.mongo_uri is None else args.mongo_uri})")
    print(f"{'path':<40}{'p50 ms':>9}{'p95 ms':>9}")
    for label, values in (("client write → SSE event", http), ("insert_one → change stream", plain)):
        print(f"{label:<40}{percentile(values, 50):>9.2f}{percentile(values, 95):>9.2f}")
    summary = [summary_row("p50 event delivery", "ms", percentile(http, 50), percentile(plain, 50), "(none)",
                           higher_is_better=False),
               summary_row("p95 event delivery", "ms", percentile(http, 95), percentile(plain, 95), "(none)",
                           higher_is_better=False)]
    out = save("events", {"events": args.events, "http_ms": http, "direct_ms": plain, "summary": summary})
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
