"""``python -m bench``: every benchmark in one run, each against PyMongo on the same database.

    python -m bench                 # quick sizes (about ten minutes on 2 cores)
    python -m bench --full          # the sizes of the performance issue (1 000 000 records: long)
    python -m bench --mongo-uri mongodb://127.0.0.1:27017

Each script prints its own table and also runs alone (``python bench/read.py
--help``); at the end one combined table lists every figure next to direct
PyMongo with the ratio and its target. Results are written as JSON under
bench/results/ (``summary-*.json`` for the combined table).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import RUN_LOG, missed, save  # noqa: E402

HERE = Path(__file__).resolve().parent

QUICK = [
    ("bulk_ingest.py", ["--records", "10000", "--chunk-size", "500", "--chunk-size", "5000", "--repeat", "3",
                        "--singles", "2000"]),
    ("read.py", ["--records", "120000", "--stream-records", "100000", "--repeat", "2", "--queries", "200"]),
    ("lookup.py", ["--records", "20000", "--queries", "1000"]),
    ("load.py", ["--clients", "8", "--seconds", "10"]),
    ("sync.py", ["--records", "20000", "--repeat", "2"]),
    ("driver.py", ["--analyses", "100"]),
]
FULL = [
    ("bulk_ingest.py", ["--records", "100000", "--chunk-size", "500", "--chunk-size", "5000", "--repeat", "3",
                        "--singles", "2000"]),
    ("read.py", ["--records", "1000000", "--stream-records", "100000", "--repeat", "3", "--queries", "500"]),
    ("lookup.py", ["--records", "1000000", "--queries", "2000"]),
    ("load.py", ["--clients", "8", "--seconds", "30"]),
    ("sync.py", ["--records", "50000", "--repeat", "3"]),
    ("driver.py", ["--analyses", "400"]),
]


def print_summary(result_files: list[Path], database: str) -> None:
    rows = []
    for path in result_files:
        rows += json.loads(path.read_text()).get("summary", [])
    print(f"\n=== summary: service vs direct PyMongo on the same database ({database})")
    print(f"{'benchmark':<52}{'unit':>10}{'service':>11}{'direct':>11}{'ratio':>7}{'peak MiB':>10}  target")
    misses = 0
    for row in rows:
        peak = f"{row['peak_mib']:.0f}" if row.get("peak_mib") is not None else "-"
        verdict = missed(row)
        misses += bool(verdict)
        mark = f"  MISSED ({'; '.join(verdict)})" if verdict else ""
        print(f"{row['benchmark']:<52}{row['unit']:>10}{row['service']:>11.2f}{row['direct']:>11.2f}"
              f"{row['ratio']:>7.2f}{peak:>10}  {row['target']}{mark}")
    print("ratio: service/direct for throughput, direct/service for latency (1.0 = as fast as the database); "
          f"every service stays <= 100 MiB peak; {misses} row(s) miss a target")
    print(f"combined results written to {save('summary', {'database': database, 'rows': rows})}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the full sizes (slow)")
    parser.add_argument("--mongo-uri", help="benchmark against this MongoDB instead of the embedded one")
    args = parser.parse_args()
    failed = []
    with tempfile.NamedTemporaryFile("r", prefix="asst-bench-run-", suffix=".txt") as run_log:
        env = {**os.environ, RUN_LOG: run_log.name}
        for script, script_args in FULL if args.full else QUICK:
            extra = ["--mongo-uri", args.mongo_uri] if args.mongo_uri else []
            print(f"\n=== {script} {' '.join(script_args)}", flush=True)
            result = subprocess.run([sys.executable, str(HERE / script), *script_args, *extra], env=env)
            if result.returncode != 0:
                failed.append(script)
        files = [Path(line) for line in run_log.read().split()]
    print_summary(files, args.mongo_uri or "embedded SecantusDB")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
