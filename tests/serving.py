"""`analysisstore serve` as a child process for the tests that need a real one (ports, signals, restarts)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

import pytest
import requests

from analysisstore.readiness import NotReady, ReadyListener

__all__ = ["Serve", "serve_factory", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Serve:
    """One `analysisstore serve` child process, which reports readiness on a notify socket."""

    def __init__(self, *args: str, imported_first: str = "") -> None:
        """``imported_first``: a module the process imports before the command line runs (import-order tests)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = int(args[args.index("--processes") + 1]) if "--processes" in args else 1
        self.ready = ReadyListener()
        launcher = ["-m", "analysisstore.cli"]
        if imported_first:
            launcher = ["-c", f"import {imported_first}, runpy; runpy.run_module('analysisstore.cli', "
                              "run_name='__main__', alter_sys=True)"]
        # Its own process group, so kill() also reaches worker processes (--processes N).
        self.process = subprocess.Popen(
            [sys.executable, *launcher, "serve", "--port", str(self.port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env=self.ready.env(),
        )
        # Drained all along: a full pipe would block the service's logging, and with it the service.
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for line in self.process.stdout:
            self._lines.append(line)

    def output(self, timeout: float = 60.0) -> str:
        """Everything the process printed, once it has exited."""
        self.process.wait(timeout)
        self._reader.join(timeout)
        return "".join(self._lines)

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until every worker has sent READY=1 (or the process dies), then check /readyz."""
        try:
            self.ready.wait(self.process, self.workers, timeout)
        except NotReady as exc:
            output = self.output() if self.process.poll() is not None else ""
            raise AssertionError(f"serve: {exc}\n{output}") from None
        assert requests.get(f"{self.url}/readyz", timeout=10).status_code == 200

    def terminate(self, timeout: float = 60.0) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        output = self.output(timeout)
        self.close()
        return self.process.returncode, output

    def kill(self) -> None:
        """SIGKILL the whole process group (workers included), then collect the output."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.output()
        self.close()

    def close(self) -> None:
        self.ready.close()


@pytest.fixture
def serve_factory():
    """Factory: start `analysisstore serve` with the given flags; every one started is killed afterwards."""
    started: list[Serve] = []

    def start(*args: str) -> Serve:
        server = Serve(*args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()
