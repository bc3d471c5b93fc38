"""A record by uid through the service vs PyMongo ``find_one`` on the same database, same run; where the ms go.

Run by hand (not by CI):

    python bench/lookup.py                              # 1 000 000 records, embedded SecantusDB (long: populating)
    python bench/lookup.py --records 20000              # quick
    python bench/lookup.py --data-dir DIR               # keep the embedded database in DIR; a later run reuses it
    python bench/lookup.py --mongo-uri mongodb://127.0.0.1:27017

The records are written through the service's own bulk API
(``insert_bulk_data_reference``), so the benchmark holds whatever layout the
service stores; the direct ``find_one`` asks the key the stored documents
are found by (``uid``, or ``_id`` where the uid is the document id). Then, in
interleaved rounds (so a load swing on a shared machine hits every method
alike), random stored uids are looked up:

* ``AnalysisClient.document(doc_type, uid)`` — the client's lookup by uid;
* ``AnalysisClient.find_data_reference(uid=...)`` — the predecessor's API (a list of ``doct.Document``);
* a plain ``requests.Session`` GET (what bench/read.py and bench/scaling.py time);
* one keep-alive ``http.client`` connection (the service's own cost, with the least client work);
* PyMongo ``find_one`` with the same database.

For each: p50/p95 latency; per lookup the CPU of this process, of the
service and (embedded database) of the database, from ``/proc/<pid>/stat``;
and the database commands per lookup from the ``serverStatus`` opcounters.
Last, the service's peak memory over the whole run (populating included).
"""
from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ServiceProcess, database, percentile, save, summary_row  # noqa: E402

from pymongo import MongoClient  # noqa: E402

from analysisstore.client import AnalysisClient  # noqa: E402
from analysisstore.embedded import EmbeddedMongo  # noqa: E402

log = logging.getLogger("bench")
DATABASE = "bench_lookup"
#: Where the benchmark keeps what it stored (record count and sample uids), apart from the service's collections.
META = "bench_lookup_meta"
KEYS = {"wavelength": {"dtype": "number"}, "absorbance": {"dtype": "number"}}
SAMPLE = 5_000


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def database_operations(mongo: MongoClient) -> int:
    """Operations the database has served so far (each command counts once in its serverStatus opcounters)."""
    return sum(mongo.admin.command("serverStatus")["opcounters"].values())


def records(stream: str, count: int, now: float) -> Iterator[dict[str, Any]]:
    for i in range(count):
        yield {"uid": str(uuid.uuid4()), "time": now + i * 1e-3, "seq_num": i, "data_reference_header": stream,
               "data": {"wavelength": 300.0 + i * 0.1, "absorbance": (i % 97) / 97.0},
               "timestamps": {"wavelength": now, "absorbance": now}}


def populate(client: AnalysisClient, count: int, stream_size: int, chunk: int) -> list[str]:
    """``count`` records in streams of ``stream_size``, through the service's bulk API; a sample of their uids."""
    header = client.insert_analysis_header(provenance={"analysis_name": "lookup benchmark"})
    every = max(1, count // SAMPLE)
    sample: list[str] = []
    written, start, now = 0, time.perf_counter(), time.time()
    while written < count:
        stream = client.insert_data_reference_header(header, data_keys=KEYS)
        size = min(stream_size, count - written)
        batch: list[dict[str, Any]] = []
        for i, doc in enumerate(records(stream, size, now), start=written):
            batch.append(doc)
            if i % every == 0:
                sample.append(doc["uid"])
            if len(batch) == chunk:
                client.insert_bulk_data_reference(stream, batch, chunk_size=chunk)
                batch = []
                done = i + 1
                if done % 50_000 == 0:
                    log.info("populated %d records (%.0f docs/s)", done, done / (time.perf_counter() - start))
        if batch:
            client.insert_bulk_data_reference(stream, batch, chunk_size=chunk)
        written += size
    log.info("populated %d records in %.0f s", count, time.perf_counter() - start)
    return sample


def stored(mongo: MongoClient, client: AnalysisClient, count: int, stream_size: int, chunk: int) -> list[str]:
    """Sample uids of at least ``count`` stored records: those of an earlier run on this database, or new ones."""
    meta = mongo[DATABASE][META].find_one({"_id": "stored"})
    if meta is not None and meta["records"] >= count:
        log.info("reusing %d records stored by an earlier run", meta["records"])
        return list(meta["sample"])
    if meta is not None:
        raise SystemExit(f"the database holds {meta['records']} records of an earlier run, fewer than "
                         f"{count}: use another --data-dir")
    sample = populate(client, count, stream_size, chunk)
    mongo[DATABASE][META].insert_one({"_id": "stored", "records": count, "sample": sample})
    return sample


def direct_key(collection: Any, uid: str) -> str:
    """The field the stored documents are found by: ``_id`` where the uid is the document id, else ``uid``."""
    return "_id" if collection.find_one({"_id": uid}, {"_id": 1}) is not None else "uid"


class KeepAlive:
    """One persistent HTTP/1.1 connection: a GET with the least work a client can do."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def get_json(self, path: str) -> Any:
        self.connection.request("GET", path, headers={"Accept": "application/json"})
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
        return json.loads(body)


def measure(methods: dict[str, Callable[[str], Any]], uids: list[str], rounds: int, pids: dict[str, int],
            mongo: MongoClient) -> dict[str, dict[str, Any]]:
    """Latencies (ms) of every lookup, and per lookup: CPU ms of each process and database commands."""
    out = {name: {"ms": [], "cpu": {"client": 0.0, **{p: 0.0 for p in pids}}, "commands": 0} for name in methods}
    per_round = max(1, len(uids) // rounds)
    names = list(methods)
    for r in range(rounds):
        chunk = uids[r * per_round:(r + 1) * per_round]
        for name in names[r % len(names):] + names[:r % len(names)]:  # a different method first each round
            lookup, row = methods[name], out[name]
            before = {p: process_cpu(pid) for p, pid in pids.items()}
            operations = database_operations(mongo)
            client_before = own_cpu()
            for uid in chunk:
                start = time.perf_counter()
                found = lookup(uid)
                row["ms"].append((time.perf_counter() - start) * 1e3)
                assert found, uid
            row["cpu"]["client"] += own_cpu() - client_before
            for p, pid in pids.items():
                row["cpu"][p] += process_cpu(pid) - before[p]
            row["commands"] += database_operations(mongo) - operations - 1  # less the serverStatus itself
    for row in out.values():
        n = len(row["ms"])
        row["cpu"] = {p: seconds / n * 1e3 for p, seconds in row["cpu"].items()}
        row["commands"] /= n
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mongo-uri", help="benchmark against this MongoDB instead of the embedded one")
    parser.add_argument("--data-dir", type=Path, help="embedded database kept here (reused by a later run)")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--stream-size", type=int, default=100_000, help="records per stream")
    parser.add_argument("--chunk", type=int, default=5_000, help="records per bulk request while populating")
    parser.add_argument("--queries", type=int, default=2_000, help="lookups per method")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with ExitStack() as stack:
        pids: dict[str, int] = {}
        if args.mongo_uri is None:
            data_dir = args.data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="asst-b-"))) / "db"
            embedded = stack.enter_context(EmbeddedMongo(data_dir))
            uri, mongo = embedded.uri, stack.enter_context(MongoClient(embedded.uri))
            pids["database"] = embedded.pid
        else:
            uri, mongo = stack.enter_context(database(args.mongo_uri))
        service = ServiceProcess(uri, DATABASE)
        stack.callback(service.stop)
        pids = {"service": service.process.pid, **pids}
        client = stack.enter_context(AnalysisClient({"url": service.url}))
        sample = stored(mongo, client, args.records, args.stream_size, args.chunk)
        collection = mongo[DATABASE].data_reference
        key = direct_key(collection, sample[0])
        projection = None if key == "_id" else {"_id": 0}
        session, bare = requests.Session(), KeepAlive(service.url)
        path = urlsplit(service.url).path.rstrip("/") + "/api/v1/data_reference/"

        def requests_get(uid: str) -> Any:
            response = session.get(f"{service.url}/api/v1/data_reference/{uid}")
            response.raise_for_status()
            return response.json()

        methods: dict[str, Callable[[str], Any]] = {
            "AnalysisClient.document": lambda uid: client.document("data_reference", uid),
            "find_data_reference(uid=)": lambda uid: client.find_data_reference(uid=uid),
            "requests.Session GET": requests_get,
            "http.client keep-alive GET": lambda uid: bare.get_json(path + uid),
            "pymongo find_one": lambda uid: collection.find_one({key: uid}, projection),
        }
        for lookup in methods.values():  # warm every connection and cache once
            lookup(sample[0])
        uids = [random.choice(sample) for _ in range(args.queries)]
        log.info("%d lookups per method in %d rounds", len(uids), args.rounds)
        results = measure(methods, uids, args.rounds, pids, mongo)
        peak = service.memory()["VmHWM"]
        count = collection.estimated_document_count()
        if args.data_dir is None:
            mongo.drop_database(DATABASE)

    where = "embedded SecantusDB" if args.mongo_uri is None else args.mongo_uri
    direct = results["pymongo find_one"]
    print(f"\nrecord by uid, {count:,} records stored, {len(uids)} lookups per method ({where}; direct by {key!r})")
    print(f"{'method':<30}{'p50 ms':>8}{'p95 ms':>8}{'ratio':>7}{'client':>8}{'service':>9}{'database':>10}"
          f"{'commands':>10}")
    for name, row in results.items():
        cpu = row["cpu"]
        ratio = percentile(direct["ms"], 50) / percentile(row["ms"], 50)
        database_cpu = f"{cpu['database']:>10.2f}" if "database" in cpu else f"{'-':>10}"
        print(f"{name:<30}{percentile(row['ms'], 50):>8.2f}{percentile(row['ms'], 95):>8.2f}{ratio:>7.2f}"
              f"{cpu['client']:>8.2f}{cpu.get('service', 0.0):>9.2f}{database_cpu}{row['commands']:>10.2f}")
    print("ratio: direct p50 / this p50 (target ≥ 0.33); client/service/database: CPU ms per lookup")
    print(f"service peak memory {peak / 2**20:.0f} MiB (whole run)")
    via_client = results["AnalysisClient.document"]
    summary = [
        summary_row(f"p50 record by uid (client), {count:,} stored", "ms", percentile(via_client["ms"], 50),
                    percentile(direct["ms"], 50), "≥ 0.33 (within 3x)", peak, higher_is_better=False),
        summary_row(f"p95 record by uid (client), {count:,} stored", "ms", percentile(via_client["ms"], 95),
                    percentile(direct["ms"], 95), "(none)", higher_is_better=False),
    ]
    out = save("lookup", {"records": count, "direct_key": key, "peak_bytes": peak, "summary": summary,
                          "methods": results})
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
