"""File attachments: upload and download throughput through the service vs GridFS directly, same database.

Run by hand (not by CI):

    python bench/files.py                         # 3 × 50 MiB, embedded SecantusDB
    python bench/files.py --mib 200 --repeat 2 --mongo-uri mongodb://127.0.0.1:27017

Service side: ``AnalysisClient.insert_file`` / ``get_file`` against ``analysisstore
serve`` (streamed, sha256 checked both ways). Direct side: PyMongo's
``GridFSBucket.upload_from_stream`` / ``download_to_stream``. Also the service's
peak memory during the transfers.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ServiceProcess, database, median, save, summary_row, timed, unique  # noqa: E402

from gridfs import GridFSBucket  # noqa: E402

from analysisstore.client import AnalysisClient  # noqa: E402

MIB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mongo-uri", help="a MongoDB to use instead of the embedded database")
    parser.add_argument("--mib", type=int, default=50, help="file size in MiB (default: 50)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="asst-bench-files-") as scratch, database(args.mongo_uri) as (uri, mongo):
        source = Path(scratch) / "payload.bin"
        with open(source, "wb") as handle:
            for _ in range(args.mib):
                handle.write(os.urandom(MIB))
        name = unique("bench_files")
        service = ServiceProcess(uri, name)
        times: dict[str, list[float]] = {"up": [], "down": [], "direct_up": [], "direct_down": []}
        try:
            client = AnalysisClient({"url": service.url})
            header = client.insert_analysis_header(provenance={"analysis_name": "bench_files"})
            service.reset_peak()
            bucket = GridFSBucket(mongo[name], bucket_name="direct")
            for i in range(args.repeat):
                seconds, uid = timed(lambda: client.insert_file(header, source, name=f"copy-{i}.bin"))
                times["up"].append(seconds)
                times["down"].append(timed(lambda: client.get_file(uid, Path(scratch) / "back.bin"))[0])
                with open(source, "rb") as handle:
                    seconds, file_id = timed(lambda: bucket.upload_from_stream(f"copy-{i}.bin", handle))
                times["direct_up"].append(seconds)
                times["direct_down"].append(timed(lambda: bucket.download_to_stream(file_id, io.BytesIO()))[0])
            peak = service.memory()["VmHWM"]
        finally:
            service.stop()
            mongo.drop_database(name)
    size = args.mib
    print(f"\nfiles of {size} MiB, median of {args.repeat} "
          f"({'embedded SecantusDB' if args.mongo_uri is None else args.mongo_uri})")
    print(f"{'transfer':<30}{'service MB/s':>14}{'GridFS MB/s':>13}{'ratio':>8}")
    summary = []
    for label, key in (("upload", "up"), ("download", "down")):
        service_rate, direct_rate = size / median(times[key]), size / median(times[f"direct_{key}"])
        print(f"{label:<30}{service_rate:>14.1f}{direct_rate:>13.1f}{service_rate / direct_rate:>8.2f}")
        summary.append(summary_row(f"file {label}, {size} MiB", "MiB/s", service_rate, direct_rate, "(none)", peak))
    print(f"\nservice peak memory {peak / MIB:.0f} MiB")
    out = save("files", {"mib": size, "times": times, "summary": summary, "service_peak_bytes": peak})
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
