"""Where the time of a paged read of one stream goes: per page, the finds sent, their time in the database
and the documents they make it fetch (the index range of each find), next to one direct ``find``.

Run by hand (not by CI), at the store level in one process (no HTTP):

    python bench/paging_profile.py --records 100000 --page-size 10000
    python bench/paging_profile.py --mongo-uri mongodb://127.0.0.1:27017

Pages are read as the service reads them: the first page, then keyset pages
after each page's last (time, uid), twice (the second reading knows the
stream's density from the first).
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import as_stored, database, unique  # noqa: E402

from pymongo import AsyncMongoClient, monitoring  # noqa: E402

from analysisstore.queries import combine, keyset_clauses  # noqa: E402
from analysisstore.store import Store, index_models  # noqa: E402

log = logging.getLogger("bench")
SORT = [("time", 1), ("uid", 1)]


class Finds(monitoring.CommandListener):
    """Each find on data_reference: its filter and its time in the database (with its getMores)."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []
        self._open: dict[int, list[Any]] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == "data_reference":
            self._open[event.request_id] = row = [event.command["filter"], 0.0]
            self.rows.append(row)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        row = self._open.pop(event.request_id, None)
        if row is not None:
            row[1] += event.duration_micros / 1e6

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._open.pop(event.request_id, None)


def fetched(times: list[float], condition: dict[str, float] | None) -> int:
    """Records of the stream (sorted ``times``) inside a find's time condition: what the database fetches."""
    lo, hi = 0, len(times)
    for op, bound in (condition or {}).items():
        if op == "$gt":
            lo = max(lo, bisect.bisect_right(times, bound))
        elif op == "$gte":
            lo = max(lo, bisect.bisect_left(times, bound))
        elif op == "$lt":
            hi = min(hi, bisect.bisect_left(times, bound))
        elif op == "$lte":
            hi = min(hi, bisect.bisect_right(times, bound))
        else:  # an equality on time: the ties of one time
            return bisect.bisect_right(times, op) - bisect.bisect_left(times, op)
    return max(0, hi - lo)


async def profile(uri: str, name: str, times: list[float], page_size: int) -> None:
    finds = Finds()
    client = AsyncMongoClient(uri, event_listeners=[finds])
    store = Store(client, name)
    query = {"data_reference_header": "s0"}
    for reading in (1, 2):
        t0 = time.perf_counter()
        direct = await client[name].data_reference.find(query, {"_id": 0}).sort(SORT).to_list()
        direct_s = time.perf_counter() - t0
        print(f"\ndirect find: {len(direct)} records in {direct_s:.3f} s")
        print(f"reading {reading}: page  finds  db s   fetched  returned")
        after, total, n = None, 0.0, 0
        while True:
            queries = [query] if after is None else [combine(query, c) for c in keyset_clauses(after, SORT)]
            finds.rows.clear()
            t = time.perf_counter()
            docs, more = await store.find_page("data_reference", queries, SORT, page_size, keyset=after is not None)
            took = time.perf_counter() - t
            total, n = total + took, n + 1
            db_s = sum(row[1] for row in finds.rows)
            fetch = sum(fetched(times, row[0].get("time") if isinstance(row[0].get("time"), dict)
                                else {row[0]["time"]: 0} if "time" in row[0] else None)
                        for row in finds.rows)
            print(f"{'':>11}{n:>4}{len(finds.rows):>7}{db_s:>7.3f}{fetch:>10}{len(docs):>10}")
            if not more:
                break
            after = [docs[-1]["time"], docs[-1]["uid"]]
        print(f"reading {reading}: {n} pages in {total:.3f} s, {direct_s / total:.2f} of one direct find")
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mongo-uri")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=10_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = 1_700_000_000.0
    times = [t0 + i * 1e-3 for i in range(args.records)]
    with database(args.mongo_uri) as (uri, mongo):
        name = unique("bench_paging")
        try:
            db = mongo[name]
            db.data_reference.create_indexes(index_models("data_reference"))
            db.data_reference_header.insert_many(as_stored([{"uid": "s0", "time": t0, "analysis_header": "h0",
                                                             "data_keys": {"v": {"dtype": "number"}}}]))
            for start in range(0, args.records, 20_000):
                db.data_reference.insert_many(as_stored([
                    {"uid": f"r{i:07d}", "time": times[i], "seq_num": i, "data_reference_header": "s0",
                     "data": {"v": i * 0.5}, "timestamps": {"v": t0}}
                    for i in range(start, min(start + 20_000, args.records))]), ordered=False)
                log.info("populated %d records", min(start + 20_000, args.records))
            asyncio.run(profile(uri, name, times, args.page_size))
        finally:
            mongo.drop_database(name)


if __name__ == "__main__":
    main()
