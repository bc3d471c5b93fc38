"""``analysisstore pull`` throughput vs ``export`` + ``import`` of the same analyses, in one run.

Run by hand (not by CI):

    python bench/mirror.py                       # 20 000 records in 4 analyses, embedded SecantusDB
    python bench/mirror.py --records 100000 --analyses 10 --mongo-uri mongodb://127.0.0.1:27017

Three services on one database server: the remote (filled once through the
client), a mirror that pulls everything from it (one `pull`, page size 5000,
as the command line runs it), and a third that imports the bundles `export`
wrote of the same analyses. The ratio is pull throughput over export + import
throughput (above 1: pull is faster).
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
from _harness import ServiceProcess, database, save, summary_row, timed, unique  # noqa: E402

from analysisstore.client import AnalysisClient  # noqa: E402
from analysisstore.drivers.archive import export_analyses, import_archives  # noqa: E402
from analysisstore.drivers.mirror import Puller  # noqa: E402

KEYS = {"wavelength": {"dtype": "number"}, "absorbance": {"dtype": "number"}}


def fill(client: AnalysisClient, analyses: int, records: int) -> list[str]:
    """``analyses`` finished analyses of ``records // analyses`` records each; their uids."""
    uids = []
    per = records // analyses
    for _ in range(analyses):
        header = client.insert_analysis_header(provenance={"analysis_name": "bench"})
        stream = client.insert_data_reference_header(header, data_keys=KEYS)
        now = time.time()
        client.insert_bulk_data_reference(stream, [
            {"uid": str(uuid.uuid4()), "time": now + i * 1e-3, "seq_num": i,
             "data": {"wavelength": 300.0 + i * 0.1, "absorbance": (i % 97) / 97.0},
             "timestamps": {"wavelength": now, "absorbance": now}} for i in range(per)], chunk_size=5_000)
        client.update_analysis_header({"uid": header}, {"$set": {"tags": ["bench"]}})
        client.insert_analysis_tail(header, exit_status="success")
        uids.append(header)
    return uids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mongo-uri")
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--analyses", type=int, default=4)
    parser.add_argument("--page-size", type=int, default=5_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    names = [unique("bench_mirror_remote"), unique("bench_mirror_pulled"), unique("bench_mirror_imported")]
    with database(args.mongo_uri) as (uri, mongo):
        remote, pulled, imported = services = [ServiceProcess(uri, name) for name in names]
        try:
            source = AnalysisClient({"url": remote.url})
            uids = fill(source, args.analyses, args.records)
            total = sum(mongo[names[0]][t].count_documents({}) for t in
                        ("analysis_header", "data_reference_header", "data_reference", "analysis_tail"))
            puller = Puller(source, AnalysisClient({"url": pulled.url}), remote.url, page_size=args.page_size)
            pull_seconds, report = timed(puller.pull)
            assert not report.conflicts and mongo[names[1]].data_reference.count_documents({}) == \
                mongo[names[0]].data_reference.count_documents({})
            with tempfile.TemporaryDirectory(prefix="asst-mirror-") as out:
                export_seconds, files = timed(lambda: export_analyses(source, uids, Path(out)))
                import_seconds, imported_report = timed(
                    lambda: import_archives(AnalysisClient({"url": imported.url}), files))
            assert imported_report.ok
        finally:
            for service in services:
                service.stop()
            for name in names:
                mongo.drop_database(name)
    records = args.records // args.analyses * args.analyses
    exim = export_seconds + import_seconds
    print(f"\n{args.analyses} analyses, {records} records ({total} documents, one update each), one run")
    print(f"{'method':<30}{'seconds':>9}{'records/s':>11}")
    print(f"{'export':<30}{export_seconds:>9.2f}{records / export_seconds:>11.0f}")
    print(f"{'import':<30}{import_seconds:>9.2f}{records / import_seconds:>11.0f}")
    print(f"{'export + import':<30}{exim:>9.2f}{records / exim:>11.0f}")
    print(f"{'pull (page ' + str(args.page_size) + ')':<30}{pull_seconds:>9.2f}{records / pull_seconds:>11.0f}")
    print(f"pull throughput / (export + import) throughput: {exim / pull_seconds:.2f}")
    summary = [summary_row(f"pull, {records:,} records", "records/s", records / pull_seconds, records / exim,
                           "vs export + import, not PyMongo")]
    out = save("mirror", {"records": records, "analyses": args.analyses, "page_size": args.page_size,
                          "pull_seconds": pull_seconds, "export_seconds": export_seconds,
                          "import_seconds": import_seconds, "summary": summary})
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
