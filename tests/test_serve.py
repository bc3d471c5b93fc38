"""`analysisstore serve` as operators run it: a child process, real ports, signals, restarts."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import requests

from analysisstore.client import AnalysisClient
from analysisstore.readiness import NotReady, ReadyListener

pytestmark = pytest.mark.subprocess


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Serve:
    """One `analysisstore serve` child process, which reports readiness on a notify socket."""

    def __init__(self, *args: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = int(args[args.index("--processes") + 1]) if "--processes" in args else 1
        self.ready = ReadyListener()
        # Its own process group, so kill() also reaches worker processes (--processes N).
        self.process = subprocess.Popen(
            [sys.executable, "-m", "analysisstore.cli", "serve", "--port", str(self.port), *args],
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
    started: list[Serve] = []

    def start(*args: str) -> Serve:
        server = Serve(*args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def test_embedded_database_persists_across_restarts(serve_factory, tmp_path: Path):
    """serve with no URI starts the embedded DB; SIGTERM exits 0; data survives a restart."""
    data_dir = tmp_path / "db"
    first = serve_factory("--data-dir", str(data_dir))
    first.wait_ready()
    client = AnalysisClient({"host": "127.0.0.1", "port": first.port})
    uid = client.insert_analysis_header(provenance={"analysis_name": "persist"})
    stream = client.insert_data_reference_header(uid, data_keys={"x": {"dtype": "number"}})
    client.insert_bulk_data_reference(stream, [{"data": {"x": i}, "timestamps": {"x": 0.0}} for i in range(50)])
    code, output = first.terminate()
    assert code == 0, output
    assert "embedded database stopped" in output

    second = serve_factory("--data-dir", str(data_dir))  # would fail if the first DB still held the lock
    second.wait_ready()
    client = AnalysisClient({"host": "127.0.0.1", "port": second.port})
    assert client.find_analysis_header(uid=uid)[0].provenance == {"analysis_name": "persist"}
    assert len(client.find_data_reference(data_reference_header=stream)) == 50
    code, _ = second.terminate()
    assert code == 0


def test_second_serve_on_same_data_dir_fails_clearly(serve_factory, tmp_path: Path):
    """Two services cannot share one embedded data directory; the second says why and exits non-zero."""
    data_dir = tmp_path / "db"
    first = serve_factory("--data-dir", str(data_dir))
    first.wait_ready()
    second = serve_factory("--data-dir", str(data_dir))
    output = second.output(timeout=120)
    assert second.process.returncode != 0
    assert "did not start" in output
    assert requests.get(f"{first.url}/readyz").status_code == 200


def test_serve_with_mongo_uri_uses_that_database(serve_factory, mongo_uri, mongo):
    """With --mongo-uri the service stores into the named database of that server."""
    name = f"asst_serve_{uuid.uuid4().hex[:10]}"
    server = serve_factory("--mongo-uri", mongo_uri, "--database", name)
    server.wait_ready()
    uid = AnalysisClient({"host": "127.0.0.1", "port": server.port}).insert_analysis_header(provenance={})
    assert mongo[name].analysis_header.find_one({"uid": uid}) is not None
    assert "uid_1" in mongo[name].analysis_header.index_information()
    code, _ = server.terminate()
    assert code == 0
    mongo.drop_database(name)


def test_serve_with_unreachable_mongo_uri_exits_with_message(closed_port):
    """A URI nobody answers at is reported at start-up, not as a hang."""
    env = {**os.environ}
    result = subprocess.run(
        [sys.executable, "-m", "analysisstore.cli", "serve", "--port", str(_free_port()),
         "--mongo-uri", f"mongodb://127.0.0.1:{closed_port}/?serverSelectionTimeoutMS=500"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert result.returncode != 0
    assert "cannot reach the database" in result.stderr


def test_cli_help_is_useful():
    """`analysisstore serve --help` documents the flags a newcomer needs."""
    result = subprocess.run([sys.executable, "-m", "analysisstore.cli", "serve", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for flag in ("--host", "--port", "--mongo-uri", "--database", "--data-dir", "--stale-after"):
        assert flag in result.stdout
