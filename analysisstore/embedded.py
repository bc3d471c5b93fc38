"""The embedded default database: SecantusDB launched as a child process.

SecantusDB speaks the MongoDB wire protocol over WiredTiger storage. It is
GPL-2.0 and optional (``pip install "analysisstore[embedded]"``); a real
MongoDB is used instead whenever a URI is given.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from pymongo import MongoClient
from pymongo.errors import PyMongoError

__all__ = ["EmbeddedMongo", "EmbeddedDatabaseError", "MEMORY"]

log = logging.getLogger(__name__)

#: Storage path that keeps everything in a temporary directory removed on stop (tests).
MEMORY = ":memory:"


class EmbeddedDatabaseError(RuntimeError):
    """The embedded database could not be started."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: have the kernel stop the database if the service is killed outright."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class EmbeddedMongo:
    """A SecantusDB server on 127.0.0.1 for the lifetime of this object.

    ``start()`` waits until the server answers ``ping``; ``stop()`` shuts it
    down cleanly (WiredTiger checkpoints on exit, so data survives).
    """

    def __init__(self, data_dir: Path | str, startup_timeout: float = 60.0, port: int | None = None) -> None:
        self.data_dir = str(data_dir)
        self.startup_timeout = startup_timeout
        self.fixed_port = port
        self.port: int | None = port
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    @property
    def uri(self) -> str:
        if self.port is None:
            raise EmbeddedDatabaseError("the embedded database is not running")
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def pid(self) -> int:
        """The database server's process id (for benchmarks that read its CPU time)."""
        if self._process is None:
            raise EmbeddedDatabaseError("the embedded database is not running")
        return self._process.pid

    @staticmethod
    def available() -> bool:
        """Is SecantusDB installed?"""
        return importlib.util.find_spec("secantus") is not None

    def start(self) -> "EmbeddedMongo":
        if not self.available():
            raise EmbeddedDatabaseError(
                "the embedded database is not installed: run `pip install \"analysisstore[embedded]\"` "
                "or give a MongoDB URI with --mongo-uri"
            )
        if self.data_dir != MEMORY:
            Path(self.data_dir).mkdir(parents=True, exist_ok=True)
            self._log_path = Path(self.data_dir).parent / "secantus.log"
        else:
            fd, name = tempfile.mkstemp(prefix="analysisstore-secantus-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        for attempt in range(3):  # a port taken between choosing and binding: try another
            self.port = self.fixed_port or _free_port()
            self._spawn()
            if self._wait_until_ready():
                log.info("embedded database ready at %s (data in %s)", self.uri, self.data_dir)
                return self
            if attempt == 2 or self.data_dir != MEMORY and "lock" in self._output().lower():
                break
        output = self._output()
        self.stop()
        raise EmbeddedDatabaseError(
            f"the embedded database did not start (data directory {self.data_dir}). "
            f"Is another `analysisstore serve` using it? Its output:\n{output[-2000:]}"
        )

    def _spawn(self) -> None:
        cmd = [
            sys.executable, "-m", "secantus",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--storage-path", self.data_dir,
            "--log-level", "WARNING",
        ]
        assert self._log_path is not None
        out = open(self._log_path, "ab")
        try:
            self._process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            out.close()

    def _wait_until_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        with MongoClient(self.uri, serverSelectionTimeoutMS=250, connectTimeoutMS=250) as probe:
            while time.monotonic() < deadline:
                if self._process is None or self._process.poll() is not None:
                    return False
                try:
                    probe.admin.command("ping")
                    return True
                except PyMongoError:
                    continue  # server selection itself waits up to 250 ms
        return False

    def _output(self) -> str:
        if self._log_path and self._log_path.exists():
            return self._log_path.read_text(errors="replace")
        return ""

    def stop(self, timeout: float = 30.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("embedded database did not stop within %.0fs; killing it", timeout)
            process.kill()
            process.wait()
        if self.data_dir == MEMORY and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
        log.info("embedded database stopped")

    def __enter__(self) -> "EmbeddedMongo":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
