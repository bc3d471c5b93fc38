"""Shared by the benchmarks: a database, a service process, timing and memory helpers."""
from __future__ import annotations

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from pymongo import MongoClient

from analysisstore.embedded import EmbeddedMongo
from analysisstore.readiness import NotReady, ReadyListener

RESULTS = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    """``analysisstore serve`` on a database, as its own process (as in production)."""

    def __init__(self, mongo_uri: str, database: str, *extra: str) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        workers = int(extra[extra.index("--processes") + 1]) if "--processes" in extra else 1
        with ReadyListener() as ready:  # the service says when it serves: no polling
            self.process = subprocess.Popen(
                [sys.executable, "-m", "analysisstore.cli", "serve", "--port", str(port),
                 "--mongo-uri", mongo_uri, "--database", database, "--log-level", "warning", *extra],
                env=ready.env())
            try:
                # Start-up checks the layout and indexes of what is stored: minutes on a large, busy database.
                ready.wait(self.process, workers, timeout=600)
            except NotReady as exc:
                self.process.kill()
                raise SystemExit(f"the service did not become ready: {exc}") from None

    def memory(self) -> dict[str, int]:
        """Current and peak resident memory of the service process, bytes (Linux)."""
        out = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
        return out

    def reset_peak(self) -> bool:
        """Start a new peak-memory window (Linux ``clear_refs`` 5); False where not permitted."""
        try:
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


@contextmanager
def database(mongo_uri: str | None) -> Iterator[tuple[str, MongoClient]]:
    """The URI and a client of the benchmark database: the given MongoDB, or embedded SecantusDB."""
    with ExitStack() as stack:
        if mongo_uri is None:
            data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="asst-bench-"))
            mongo_uri = stack.enter_context(EmbeddedMongo(Path(data_dir) / "db")).uri
        yield mongo_uri, stack.enter_context(MongoClient(mongo_uri))


def as_stored(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``docs`` as the service stores them (layout 2: ``_id`` = uid), for writing straight to the
    database: the service's lookups find them, and a direct side pays what the service pays."""
    return [dict(d, _id=d["uid"]) for d in docs]


def record_layout(db: Any) -> None:
    """Mark a database filled straight through PyMongo before the service first starts on it (as the service
    marks a new database; it refuses one holding documents without the mark)."""
    from analysisstore.store._layout import META_COLLECTION, layout_record

    db[META_COLLECTION].update_one({"_id": "layout"}, {"$setOnInsert": layout_record()}, upsert=True)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``fn()`` took, and what it returned."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def latencies(fn: Callable[[], Any], n: int) -> list[float]:
    """Milliseconds of each of ``n`` calls of ``fn``."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def median(values: list[float]) -> float:
    return statistics.median(values)


RUN_LOG = "BENCH_RUN_LOG"  # set by python -m bench; not ASST_*, which the service reads as settings


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(payload, indent=2))
    if os.environ.get(RUN_LOG):
        with open(os.environ[RUN_LOG], "a") as log:
            log.write(f"{out}\n")
    return out


def summary_row(benchmark: str, unit: str, service: float, direct: float, target: str,
                peak_bytes: int | None = None, higher_is_better: bool = True) -> dict[str, Any]:
    """One line of the combined table of ``python -m bench``: service vs direct PyMongo, as a ratio."""
    ratio = service / direct if higher_is_better else direct / service
    return {"benchmark": benchmark, "unit": unit, "service": service, "direct": direct, "ratio": ratio,
            "target": target, "peak_mib": None if peak_bytes is None else peak_bytes / 2**20}


#: Every benchmark's service process stays below this (the issue's memory target).
PEAK_MIB_TARGET = 100.0


def missed(row: dict[str, Any]) -> list[str]:
    """The targets a summary row misses: its ratio below the first "≥ X" of its target, peak memory above 100 MiB."""
    out = []
    wanted = re.search(r"≥\s*([0-9.]+)", row["target"])
    if wanted and row["ratio"] < float(wanted.group(1)):
        out.append(f"ratio < {wanted.group(1)}")
    if row.get("peak_mib") is not None and row["peak_mib"] > PEAK_MIB_TARGET:
        out.append(f"peak > {PEAK_MIB_TARGET:.0f} MiB")
    return out
