"""How throughput and latency change as the store grows from 10³ to 10⁶ records.

Run by hand (not by CI):

    python bench/scaling.py                         # 1 000 → 1 000 000 records, embedded SecantusDB
    python bench/scaling.py --sizes 1000 10000 100000
    python bench/scaling.py --mongo-uri mongodb://127.0.0.1:27017

Two databases grow side by side to each size — one written through the
service, one with PyMongo directly, same documents, same indexes. At each
size both sides measure the same probes, so every ratio compares equal
collection sizes:

* bulk ingest of a batch (``insert_bulk_data_reference`` vs ``insert_many``);
* sequential single inserts (``insert_data_reference`` vs ``insert_one``);
* p50/p95 of a record by uid, over HTTP (``AnalysisClient.document``) vs ``find_one``.

The growth between sizes is written directly to both databases (it is not
what is measured), so reaching 10⁶ takes minutes, not hours.
"""
from __future__ import annotations

import argparse
import logging
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ServiceProcess, as_stored, database, latencies, percentile, save, summary_row, timed, unique  # noqa: E402

from analysisstore.client import AnalysisClient  # noqa: E402
from analysisstore.store import index_models  # noqa: E402

log = logging.getLogger("bench")
KEYS = {"wavelength": {"dtype": "number"}, "absorbance": {"dtype": "number"}}


def record(stream: str, i: int, now: float) -> dict[str, Any]:
    return {"uid": str(uuid.uuid4()), "time": now + i * 1e-3, "seq_num": i, "data_reference_header": stream,
            "data": {"wavelength": 300.0 + i * 0.1, "absorbance": (i % 97) / 97.0},
            "timestamps": {"wavelength": now, "absorbance": now}}


def grow(dbs: list[Any], stream: str, count: int, start: int) -> list[str]:
    """Write ``count`` records straight into both databases (same uids); returns a sample of uids."""
    now = time.time()
    sample: list[str] = []
    for offset in range(0, count, 20_000):
        batch = [record(stream, start + offset + i, now) for i in range(min(20_000, count - offset))]
        sample += [d["uid"] for d in random.sample(batch, min(20, len(batch)))]
        for db in dbs:
            db.data_reference.insert_many(as_stored(batch), ordered=False)
    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mongo-uri", help="benchmark against this MongoDB instead of the embedded one")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--batch", type=int, default=5_000, help="records per bulk-ingest probe")
    parser.add_argument("--singles", type=int, default=300, help="sequential single inserts per probe")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = []
    with database(args.mongo_uri) as (uri, mongo):
        service_name, direct_name = unique("bench_scale_service"), unique("bench_scale_direct")
        service = ServiceProcess(uri, service_name)  # creates the service's indexes
        try:
            direct_db, service_db = mongo[direct_name], mongo[service_name]
            for doc_type in ("analysis_header", "data_reference_header", "data_reference"):
                direct_db[doc_type].create_indexes(index_models(doc_type))
            client = AnalysisClient({"url": service.url})
            header = client.insert_analysis_header(provenance={"analysis_name": "scaling"})
            stream = client.insert_data_reference_header(header, data_keys=KEYS)
            stored, sample = 0, []
            for size in sorted(args.sizes):
                if size > stored:
                    sample += grow([direct_db, service_db], stream, size - stored, stored)
                    stored = size
                log.info("%d records stored; probing", stored)
                now = time.time()
                batch = [record(stream, i, now) for i in range(args.batch)]
                direct_bulk, _ = timed(lambda: direct_db.data_reference.insert_many(as_stored(batch), ordered=False))
                fresh = [dict(d, uid=str(uuid.uuid4())) for d in batch]
                service_bulk, _ = timed(lambda: client.insert_bulk_data_reference(stream, fresh, chunk_size=5_000))
                singles = [record(stream, i, now) for i in range(args.singles)]
                direct_single, _ = timed(lambda: [direct_db.data_reference.insert_one(d) for d in as_stored(singles)])
                service_single, _ = timed(lambda: [client.insert_data_reference(
                    stream, str(uuid.uuid4()), d["time"], d["data"], d["timestamps"], seq_num=d["seq_num"])
                    for d in singles])
                stored += args.batch + args.singles
                uids = [random.choice(sample) for _ in range(args.queries)]
                it = iter(uids)
                http = latencies(lambda: client.document("data_reference", next(it)), len(uids))
                it = iter(uids)
                direct = latencies(lambda: direct_db.data_reference.find_one({"_id": next(it)}, {"_id": 0}), len(uids))
                results.append({"size": size, "bulk": (args.batch / service_bulk, args.batch / direct_bulk),
                                "single": (args.singles / service_single, args.singles / direct_single),
                                "uid_p50": (percentile(http, 50), percentile(direct, 50)),
                                "uid_p95": (percentile(http, 95), percentile(direct, 95))})
            peak = service.memory()["VmHWM"]
        finally:
            service.stop()
            mongo.drop_database(service_name)
            mongo.drop_database(direct_name)

    where = "embedded SecantusDB" if args.mongo_uri is None else args.mongo_uri
    print(f"\nscaling ({where}); service / direct and ratio at each size")
    print(f"{'records':>10}{'bulk docs/s':>22}{'ratio':>7}{'single docs/s':>18}{'ratio':>7}"
          f"{'uid p50 ms':>16}{'uid p95 ms':>16}")
    summary = []
    for r in results:
        (bs, bd), (ss, sd), (p50s, p50d), (p95s, p95d) = r["bulk"], r["single"], r["uid_p50"], r["uid_p95"]
        print(f"{r['size']:>10,}{bs:>11.0f} /{bd:>8.0f}{bs / bd:>7.2f}{ss:>9.0f} /{sd:>6.0f}{ss / sd:>7.2f}"
              f"{p50s:>8.2f} /{p50d:>5.2f}{p95s:>8.2f} /{p95d:>5.2f}")
        summary.append(summary_row(f"bulk ingest at {r['size']:,} stored", "docs/s", bs, bd, "≥ 0.9"))
        summary.append(summary_row(f"single inserts at {r['size']:,} stored", "docs/s", ss, sd, "≥ 0.5"))
        summary.append(summary_row(f"p50 record by uid at {r['size']:,} stored", "ms", p50s, p50d, "(none)",
                                   higher_is_better=False))
    print(f"service peak memory {peak / 2**20:.0f} MiB")
    out = save("scaling", {"database": where, "batch": args.batch, "singles": args.singles, "results": results,
                           "service_peak_bytes": peak, "summary": summary})
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
