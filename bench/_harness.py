"""Shared by the benchmarks: a database, a service process, timing and memory helpers."""
from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

import requests
from pymongo import MongoClient

from analysisstore.embedded import EmbeddedMongo

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
        self.process = subprocess.Popen(
            [sys.executable, "-m", "analysisstore.cli", "serve", "--port", str(port),
             "--mongo-uri", mongo_uri, "--database", database, "--log-level", "warning", *extra])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.05)
        self.process.kill()
        raise SystemExit("the service did not become ready")

    def memory(self) -> dict[str, int]:
        """Current and peak resident memory of the service process, bytes (Linux)."""
        out = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
        return out

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


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(payload, indent=2))
    return out
