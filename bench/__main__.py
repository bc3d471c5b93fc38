"""``python -m bench``: every benchmark in one run, each against PyMongo on the same database.

    python -m bench                 # quick sizes (a few minutes on 2 cores)
    python -m bench --full          # the sizes of the performance issue (1 000 000 records: long)
    python -m bench --mongo-uri mongodb://127.0.0.1:27017

Each script also runs alone (``python bench/read.py --help``); results are
written as JSON under bench/results/.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

QUICK = [
    ("bulk_ingest.py", ["--records", "10000", "--chunk-size", "500", "--chunk-size", "5000", "--repeat", "3"]),
    ("read.py", ["--records", "120000", "--stream-records", "100000", "--repeat", "2", "--queries", "200"]),
    ("load.py", ["--clients", "8", "--seconds", "10"]),
    ("sync.py", ["--records", "20000", "--repeat", "2"]),
    ("driver.py", ["--analyses", "100"]),
]
FULL = [
    ("bulk_ingest.py", ["--records", "100000", "--chunk-size", "500", "--chunk-size", "5000", "--repeat", "3"]),
    ("read.py", ["--records", "1000000", "--stream-records", "100000", "--repeat", "3", "--queries", "500"]),
    ("load.py", ["--clients", "8", "--seconds", "30"]),
    ("sync.py", ["--records", "50000", "--repeat", "3"]),
    ("driver.py", ["--analyses", "400"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the full sizes (slow)")
    parser.add_argument("--mongo-uri", help="benchmark against this MongoDB instead of the embedded one")
    args = parser.parse_args()
    failed = []
    for script, script_args in FULL if args.full else QUICK:
        extra = ["--mongo-uri", args.mongo_uri] if args.mongo_uri else []
        print(f"\n=== {script} {' '.join(script_args)}", flush=True)
        result = subprocess.run([sys.executable, str(HERE / script), *script_args, *extra])
        if result.returncode != 0:
            failed.append(script)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
