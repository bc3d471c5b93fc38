"""Lineage latency: depth 10 over 1 000 analyses, through the service vs PyMongo on the same database.

Run by hand (not by CI):

    python bench/lineage.py                       # embedded SecantusDB
    python bench/lineage.py --mongo-uri mongodb://127.0.0.1:27017

Writes a layered graph straight to the database (--levels levels of --width
analyses, each naming --fan-in analyses of the level above as inputs), starts
``analysisstore serve`` on it, then times ``GET /api/v1/analysis/{uid}/lineage``
at depth --levels from the bottom (ancestors) and the top (descendants), next
to the same breadth-first walk and to one ``$graphLookup`` in PyMongo.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import ServiceProcess, as_stored, database, latencies, percentile, record_layout, save, summary_row, unique  # noqa: E402

from analysisstore.store import index_models  # noqa: E402


def populate(db, levels: int, width: int, fan_in: int, rng: random.Random) -> list[list[str]]:
    layers = [[f"L{level:02d}-{i:04d}" for i in range(width)] for level in range(levels + 1)]
    docs = []
    for level, layer in enumerate(layers):
        for i, uid in enumerate(layer):
            inputs = rng.sample(layers[level - 1], fan_in) if level else []
            docs.append({"uid": uid, "time": 1_700_000_000.0 + level * width + i,
                         "provenance": {"analysis_name": f"level{level}", "inputs": inputs}})
    db.analysis_header.create_indexes(index_models("analysis_header"))
    db.analysis_header.insert_many(as_stored(docs))
    record_layout(db)
    return layers


def direct_walk(db, uid: str, direction: str, depth: int) -> int:
    """The service's algorithm, in PyMongo: one indexed query per level."""
    seen, frontier = {uid}, [db.analysis_header.find_one({"_id": uid})]
    for _ in range(depth):
        if direction == "ancestors":
            wanted = list({i for node in frontier for i in node["provenance"]["inputs"]} - seen)
            frontier = list(db.analysis_header.find({"_id": {"$in": wanted}}, {"_id": 0})) if wanted else []
        else:
            found = db.analysis_header.find({"provenance.inputs": {"$in": [n["uid"] for n in frontier]}}, {"_id": 0})
            frontier = [n for n in found if n["uid"] not in seen]
        if not frontier:
            break
        seen.update(n["uid"] for n in frontier)
    return len(seen)


def graph_lookup(db, uid: str, depth: int) -> int:
    out = list(db.analysis_header.aggregate([
        {"$match": {"uid": uid}},
        {"$graphLookup": {"from": "analysis_header", "startWith": "$provenance.inputs", "as": "found",
                          "connectFromField": "provenance.inputs", "connectToField": "uid", "maxDepth": depth - 1}},
        {"$project": {"n": {"$size": "$found"}}}]))
    return out[0]["n"] + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mongo-uri", help="a MongoDB to use instead of the embedded database")
    parser.add_argument("--levels", type=int, default=10)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--fan-in", type=int, default=2)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    rng = random.Random(7)
    with database(args.mongo_uri) as (uri, mongo):
        name = unique("bench_lineage")
        db = mongo[name]
        layers = populate(db, args.levels, args.width, args.fan_in, rng)
        service = ServiceProcess(uri, name)
        session = requests.Session()
        results = {}
        try:
            for direction, starts in (("ancestors", layers[-1]), ("descendants", layers[0])):
                picks = [rng.choice(starts) for _ in range(args.queries)]
                sizes = []

                def http(it=iter(picks)) -> None:
                    body = session.get(f"{service.url}/api/v1/analysis/{next(it)}/lineage",
                                       params={"direction": direction, "depth": args.levels}).json()
                    sizes.append(len(body["nodes"]))

                results[direction] = {
                    "http": latencies(http, args.queries),
                    "direct": latencies(lambda it=iter(picks): direct_walk(db, next(it), direction, args.levels),
                                        args.queries),
                    "nodes": sizes}
            picks = [rng.choice(layers[-1]) for _ in range(min(args.queries, 5))]
            results["graph_lookup"] = latencies(lambda it=iter(picks): graph_lookup(db, next(it), args.levels),
                                                len(picks))
        finally:
            service.stop()
            mongo.drop_database(name)
    total = (args.levels + 1) * args.width
    print(f"\nlineage at depth {args.levels}, {total} analyses, fan-in {args.fan_in} "
          f"({'embedded SecantusDB' if args.mongo_uri is None else args.mongo_uri})")
    print(f"{'walk':<34}{'nodes':>7}{'p50 ms':>9}{'p95 ms':>9}")
    summary = []
    for direction in ("ancestors", "descendants"):
        r = results[direction]
        nodes = sorted(r["nodes"])[len(r["nodes"]) // 2]
        for label, values in ((f"{direction}, HTTP", r["http"]), (f"{direction}, pymongo walk", r["direct"])):
            print(f"{label:<34}{nodes:>7}{percentile(values, 50):>9.1f}{percentile(values, 95):>9.1f}")
        summary.append(summary_row(f"p50 lineage {direction} depth {args.levels}, {total} analyses", "ms",
                                   percentile(r["http"], 50), percentile(r["direct"], 50), "(none)",
                                   higher_is_better=False))
    print(f"{'ancestors, one $graphLookup':<34}{'':>7}{percentile(results['graph_lookup'], 50):>9.1f}"
          f"{percentile(results['graph_lookup'], 95):>9.1f}")
    out = save("lineage", {"levels": args.levels, "width": args.width, "fan_in": args.fan_in,
                           "results": results, "summary": summary})
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
