"""Sync throughput vs. direct ``insert_bulk_data_reference`` of the same records, same service, same run.

Run by hand (not by CI):

    python bench/sync.py                     # 20 000 records, embedded SecantusDB
    python bench/sync.py --records 50000 --repeat 3 --mongo-uri mongodb://127.0.0.1:27017

Each round writes one finished bundle (as the offline spool would), times a
sync pass delivering it (validation, checksums and progress files
included), and times the client pushing the same records directly.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ServiceProcess, database, median, save, summary_row, unique  # noqa: E402

from analysisstore.client import AnalysisClient  # noqa: E402
from analysisstore.client.bundle import BundleWriter  # noqa: E402
from analysisstore.drivers.sync import Syncer  # noqa: E402

KEYS = {"wavelength": {"dtype": "number"}, "absorbance": {"dtype": "number"}}


def records(n: int, stream: str) -> list[dict]:
    now = time.time()
    return [{"uid": str(uuid.uuid4()), "time": now + i * 1e-3, "seq_num": i, "data_reference_header": stream,
             "data": {"wavelength": 300.0 + i * 0.1, "absorbance": (i % 97) / 97.0},
             "timestamps": {"wavelength": now, "absorbance": now}} for i in range(n)]


def make_bundle(root: Path, n: int) -> None:
    header = {"uid": str(uuid.uuid4()), "time": time.time(), "provenance": {"analysis_name": "bench"}}
    stream = {"uid": str(uuid.uuid4()), "time": time.time(), "analysis_header": header["uid"], "data_keys": KEYS}
    writer = BundleWriter(root / "RUNS_FINISHED" / header["uid"])
    writer.write_header(header)
    writer.write_stream(stream)
    writer.append_records(stream["uid"], records(n, stream["uid"]))
    writer.write_tail({"uid": str(uuid.uuid4()), "time": time.time(), "analysis_header": header["uid"],
                       "exit_status": "success"})
    writer.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mongo-uri")
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=2_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sync_times, direct_times = [], []
    with database(args.mongo_uri) as (uri, mongo):
        name = unique("bench_sync")
        service = ServiceProcess(uri, name)
        try:
            client = AnalysisClient({"url": service.url})
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory(prefix="asst-sync-") as root:
                    make_bundle(Path(root), args.records)
                    syncer = Syncer(root, lambda: AnalysisClient({"url": service.url}), concurrency=1,
                                    chunk_size=args.chunk_size, progress_bar=False)
                    start = time.perf_counter()
                    assert syncer.run_once().ok
                    sync_times.append(time.perf_counter() - start)
                h = client.insert_analysis_header(provenance={"analysis_name": "bench"})
                s = client.insert_data_reference_header(h, data_keys=KEYS)
                docs = records(args.records, s)
                start = time.perf_counter()
                client.insert_bulk_data_reference(s, docs, chunk_size=args.chunk_size)
                direct_times.append(time.perf_counter() - start)
            peak = service.memory()["VmHWM"]
        finally:
            service.stop()
            mongo.drop_database(name)
    direct, synced = median(direct_times), median(sync_times)
    print(f"\nsync of one bundle of {args.records} records, chunk {args.chunk_size}, median of {args.repeat}")
    print(f"{'method':<34}{'seconds':>9}{'records/s':>11}{'ratio':>8}")
    print(f"{'client insert_bulk_data_reference':<34}{direct:>9.3f}{args.records / direct:>11.0f}{1.0:>8.2f}")
    print(f"{'analysisstore sync (one pass)':<34}{synced:>9.3f}{args.records / synced:>11.0f}{direct / synced:>8.2f}")
    summary = [summary_row(f"sync pass, one {args.records:,}-record bundle", "records/s", args.records / synced,
                           args.records / direct, "vs client bulk, not PyMongo", peak)]
    out = save("sync", {"records": args.records, "chunk_size": args.chunk_size, "sync_seconds": sync_times,
                        "direct_seconds": direct_times, "service_peak_bytes": peak, "summary": summary})
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
