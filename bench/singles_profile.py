"""Where the time of one sequential single insert goes: CPU of client, service and database per request.

Run by hand (not by CI), embedded SecantusDB only (it needs the database's pid):

    python bench/singles_profile.py --inserts 1500

The three processes work one after another for each request, so the wall
time per request is about the sum of their CPU times; the same is measured
for PyMongo ``insert_one`` (client and database only).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ServiceProcess, as_stored, save, unique  # noqa: E402

from pymongo import MongoClient  # noqa: E402

from analysisstore.client import AnalysisClient  # noqa: E402
from analysisstore.embedded import EmbeddedMongo  # noqa: E402
from analysisstore.store import index_models  # noqa: E402


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def database_operations(mongo: MongoClient) -> int:
    """Operations the database has served so far (every command counts once, by its serverStatus opcounters)."""
    return sum(mongo.admin.command("serverStatus")["opcounters"].values())


def per_request(n: int, fn: Callable[[int], object], pids: dict[str, int], mongo: MongoClient) -> dict[str, float]:
    """Milliseconds per call: wall, and CPU of this process and of each pid; database commands per call."""
    before = {name: process_cpu(pid) for name, pid in pids.items()}
    operations = database_operations(mongo)
    client_before, start = own_cpu(), time.perf_counter()
    for i in range(n):
        fn(i)
    out = {"wall": time.perf_counter() - start, "client": own_cpu() - client_before}
    out.update({name: process_cpu(pid) - before[name] for name, pid in pids.items()})
    per_call = {k: v / n * 1e3 for k, v in out.items()}
    # less the serverStatus that reads the counters; a little of a background task of the database may remain
    per_call["commands"] = (database_operations(mongo) - operations - 1) / n
    return per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inserts", type=int, default=1_500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="asst-bench-") as data_dir, \
            EmbeddedMongo(Path(data_dir) / "db") as embedded, MongoClient(embedded.uri) as mongo:
        uri, db_pid = embedded.uri, embedded.pid
        name = unique("bench_singles")
        service = ServiceProcess(uri, name)
        try:
            client = AnalysisClient({"url": service.url})
            header = client.insert_analysis_header(provenance={"analysis_name": "profile"})
            stream = client.insert_data_reference_header(header, data_keys={"a": {"dtype": "number"}})
            pids = {"service": service.process.pid, "database": db_pid}
            via_service = per_request(args.inserts, lambda i: client.insert_data_reference(
                stream, str(uuid.uuid4()), time.time(), {"a": i}, {"a": 0.0}, seq_num=i), pids, mongo)
            headers_via_service = per_request(args.inserts, lambda i: client.insert_analysis_header(
                provenance={"analysis_name": "profile"}), pids, mongo)
            direct = mongo[name].direct
            direct.create_indexes(index_models("data_reference"))
            via_pymongo = per_request(args.inserts, lambda i: direct.insert_one(as_stored([
                {"uid": str(uuid.uuid4()), "data_reference_header": stream, "time": time.time(), "seq_num": i,
                 "data": {"a": i}, "timestamps": {"a": 0.0}}])[0]), {"database": db_pid}, mongo)
            direct_headers = mongo[name].direct_headers
            direct_headers.create_indexes(index_models("analysis_header"))
            headers_via_pymongo = per_request(args.inserts, lambda i: direct_headers.insert_one(as_stored([
                {"uid": str(uuid.uuid4()), "time": time.time(), "provenance": {"analysis_name": "profile"},
                 "_status": "running"}])[0]), {"database": db_pid}, mongo)
        finally:
            service.stop()
            mongo.drop_database(name)
    print(f"\nms per sequential insert ({args.inserts} each)")
    print(f"{'':<34}{'wall':>7}{'client':>8}{'service':>9}{'database':>10}{'commands':>10}")
    for label, row in (("insert_data_reference over HTTP", via_service), ("pymongo insert_one", via_pymongo),
                       ("insert_analysis_header over HTTP", headers_via_service),
                       ("pymongo insert_one (header)", headers_via_pymongo)):
        print(f"{label:<34}{row['wall']:>7.2f}{row['client']:>8.2f}{row.get('service', 0.0):>9.2f}"
              f"{row['database']:>10.2f}{row['commands']:>10.2f}")
    out = save("singles_profile", {"service": via_service, "direct": via_pymongo,
                                   "headers_service": headers_via_service, "headers_direct": headers_via_pymongo})
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
