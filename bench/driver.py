"""Analysis driver throughput: analyses/s for a cheap analysis, concurrency 1 vs 4.

Run by hand (not by CI):

    python bench/driver.py                  # 200 analyses per setting, embedded SecantusDB

Each analysis doubles the 10 values of one small input (so the time is the
driver's and the store's, not the numerics') and writes header, stream, 10
records and tail through the client.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ServiceProcess, database, save, unique  # noqa: E402

from analysisstore.client import AnalysisClient  # noqa: E402
from analysisstore.analyses.base import BaseAnalysis  # noqa: E402
from analysisstore.drivers.driver import AnalysisDriver, load_input  # noqa: E402


class Cheap(BaseAnalysis):
    analysis_name = "bench_cheap"
    default_params = {"run": 0}
    output_keys = {"out": {"x": {"dtype": "number"}}}

    def calc_output(self) -> dict[str, list[dict[str, Any]]]:
        return {"out": [{"x": 2 * row["x"]} for row in self.inputs[0].data("raw")]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mongo-uri")
    parser.add_argument("--analyses", type=int, default=200)
    args = parser.parse_args()
    rows = []
    with database(args.mongo_uri) as (uri, mongo):
        name = unique("bench_driver")
        service = ServiceProcess(uri, name)
        try:
            client = AnalysisClient({"url": service.url})
            h = client.insert_analysis_header(provenance={"analysis_name": "acquisition"})
            s = client.insert_data_reference_header(h, data_keys={"x": {"dtype": "number"}}, name="raw")
            client.insert_bulk_data_reference(s, [{"data": {"x": float(i)}, "timestamps": {}} for i in range(10)])
            source = load_input(client, h)
            for concurrency in (1, 4):
                driver = AnalysisDriver(lambda: AnalysisClient({"url": service.url}), concurrency=concurrency,
                                        progress_bar=False)
                for i in range(args.analyses):
                    driver.submit(Cheap([source], {"run": f"{concurrency}-{i}"}))
                start = time.perf_counter()
                report = driver.run()
                elapsed = time.perf_counter() - start
                assert len(report.done) == args.analyses, report.summary()
                rows.append({"concurrency": concurrency, "seconds": elapsed, "per_s": args.analyses / elapsed})
        finally:
            service.stop()
            mongo.drop_database(name)
    print(f"\nanalysis driver, {args.analyses} cheap analyses (header, stream, 10 records, tail each)")
    print(f"{'concurrency':<14}{'seconds':>9}{'analyses/s':>12}")
    for row in rows:
        print(f"{row['concurrency']:<14}{row['seconds']:>9.2f}{row['per_s']:>12.1f}")
    print(f"results written to {save('driver', {'analyses': args.analyses, 'rows': rows})}")


if __name__ == "__main__":
    main()
