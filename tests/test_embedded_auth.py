"""The embedded database is the service's alone: private files, authentication, a watched child process."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from analysisstore.config import ServiceConfig
from analysisstore.embedded import CREDENTIAL_FILE, LOG_FILE, EmbeddedMongo, _free_port
from conftest import _start, _stop
from helpers import assert_error, header_doc
from serving import Serve

pytestmark = pytest.mark.subprocess


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _anonymous(database: EmbeddedMongo) -> MongoClient:
    return MongoClient(f"mongodb://{database.address}/?directConnection=true", serverSelectionTimeoutMS=5_000)


def _wait_dead(database: EmbeddedMongo) -> None:
    deadline = time.monotonic() + 30
    while database.alive:  # each check is a waitpid, not a sleep
        assert time.monotonic() < deadline


def test_a_local_process_without_the_credential_is_refused(tmp_path):
    """Private 0700 directory, 0600 credential and log inside it; no login, no data; the credential is reused."""
    data_dir = tmp_path / "db"
    with EmbeddedMongo(data_dir) as database:
        with MongoClient(database.uri) as service:
            service.asst.analysis_header.insert_one({"uid": "kept"})
        with _anonymous(database) as stranger, pytest.raises(OperationFailure) as refused:
            stranger.asst.analysis_header.find_one()
        assert refused.value.code == 13  # Unauthorized
        wrong = database.uri.replace(database.uri.split(":")[2].split("@")[0], "guessed")
        with MongoClient(wrong, serverSelectionTimeoutMS=5_000) as guesser, pytest.raises(OperationFailure):
            guesser.asst.analysis_header.find_one()
        first_uri = database.uri
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / CREDENTIAL_FILE) == 0o600 and _mode(data_dir / LOG_FILE) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]  # nothing written beside the data directory
    with EmbeddedMongo(data_dir) as again, MongoClient(again.uri) as service:
        assert again.uri.split("@")[0] == first_uri.split("@")[0]  # same user and password
        assert service.asst.analysis_header.find_one({"uid": "kept"}, {"_id": 0}) == {"uid": "kept"}


def test_a_data_dir_from_before_authentication_keeps_working(tmp_path):
    """A directory written by an unauthenticated server keeps its data and gets a user on the next start."""
    data_dir = tmp_path / "old"
    data_dir.mkdir(mode=0o755)
    port = _free_port()
    old = subprocess.Popen([sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
                            "--storage-path", str(data_dir), "--log-level", "WARNING"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=60_000) as c:
            c.asst.analysis_header.insert_one({"uid": "from-before"})
    finally:
        old.terminate()
        old.wait(120)  # it flushes its storage first, slow on a loaded machine
    assert not (data_dir / CREDENTIAL_FILE).exists()
    with EmbeddedMongo(data_dir) as database:
        with MongoClient(database.uri) as service:
            assert service.asst.analysis_header.find_one({}, {"_id": 0}) == {"uid": "from-before"}
        with _anonymous(database) as stranger, pytest.raises(OperationFailure):
            stranger.asst.analysis_header.find_one()
    assert _mode(data_dir) == 0o700 and _mode(data_dir / CREDENTIAL_FILE) == 0o600


def test_healthz_reports_a_dead_database_until_it_is_restarted(service_loop, tmp_path):
    """Killing the database child makes /healthz a 503; after restart() it is 200 and the service writes again."""
    database = EmbeddedMongo(tmp_path / "db").start()
    config = replace(ServiceConfig(database="asst_health"), db_timeout_ms=1_000)
    server, store, port = service_loop.run(_start(config, database.uri, create_indexes=True))
    server.request_callback.settings["embedded"] = database
    url = f"http://127.0.0.1:{port}"
    try:
        header = header_doc()
        assert requests.post(f"{url}/api/v1/analysis_header", json=header, timeout=30).status_code == 201
        assert requests.get(f"{url}/healthz", timeout=30).status_code == 200
        os.kill(database.pid, signal.SIGKILL)
        _wait_dead(database)
        down = requests.get(f"{url}/healthz", timeout=30)
        assert_error(down, 503, "DatabaseUnavailable", "not running")
        assert database.restart()
        assert requests.get(f"{url}/healthz", timeout=30).status_code == 200
        after = header_doc()  # the service's client reconnects to the restarted server with the same credential
        assert requests.post(f"{url}/api/v1/analysis_header", json=after, timeout=30).status_code == 201
        assert requests.get(f"{url}/api/v1/analysis_header/{after['uid']}", timeout=30).json()["uid"] == after["uid"]
    finally:
        service_loop.run(_stop(server, store))
        database.stop()


def test_an_acknowledged_write_survives_the_database_being_killed(service_loop, tmp_path):
    """Every write the service answered 201 for is there after the database process is SIGKILLed and restarted."""
    database = EmbeddedMongo(tmp_path / "db").start()
    server, store, port = service_loop.run(_start(ServiceConfig(database="asst_durable"), database.uri,
                                                  create_indexes=True))
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(3):
            written = [header_doc() for _ in range(10)]
            for doc in written:
                assert requests.post(f"{url}/api/v1/analysis_header", json=doc, timeout=30).status_code == 201
            os.kill(database.pid, signal.SIGKILL)  # at once: no time for a background flush
            _wait_dead(database)
            assert database.restart()
            with MongoClient(database.uri) as direct:
                stored = {d["uid"] for d in direct.asst_durable.analysis_header.find({}, {"uid": 1})}
            assert {d["uid"] for d in written} <= stored, "an acknowledged write was lost"
    finally:
        service_loop.run(_stop(server, store))
        database.stop()


def _children(pid: int) -> set[int]:
    """Child processes of ``pid``, started from any of its threads."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children.update(int(c) for c in (task / "children").read_text().split())
        except FileNotFoundError:  # a thread that ended while we looked
            continue
    return children


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc to find the database child")
def test_serve_restarts_a_killed_embedded_database(tmp_path):
    """`serve` notices its embedded database was killed, starts it again on the same address, and serves on."""
    server = Serve("--data-dir", str(tmp_path / "db"), "--log-level", "WARNING")
    try:
        server.wait_ready()
        header = header_doc()
        assert requests.post(f"{server.url}/api/v1/analysis_header", json=header, timeout=30).status_code == 201
        (child,) = _children(server.process.pid)
        os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while True:  # each check is an HTTP round trip, not a sleep
            assert time.monotonic() < deadline, "the embedded database was not restarted"
            healthy = requests.get(f"{server.url}/healthz", timeout=30).ok
            children = _children(server.process.pid)
            if healthy and children and child not in children:
                break
        _serves_on(server, header)
    finally:
        server.kill()


def _serves_on(server: Serve, before: dict) -> None:
    """After the restart: the write acknowledged before the kill is there (journalled), new writes are stored
    (several, so each worker process shows it reconnected), and the service stops cleanly."""
    for doc in (before, *(header_doc() for _ in range(4))):
        if doc is not before:
            assert requests.post(f"{server.url}/api/v1/analysis_header", json=doc, timeout=30).status_code == 201
        got = requests.get(f"{server.url}/api/v1/analysis_header/{doc['uid']}", timeout=30)
        assert got.status_code == 200 and got.json()["uid"] == doc["uid"]
    code, output = server.terminate()
    assert code == 0, output


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc to find the database child")
def test_serve_with_worker_processes_restarts_a_killed_embedded_database(tmp_path):
    """--processes 2: the supervisor starts its killed database again; the workers reconnect and serve on."""
    server = Serve("--data-dir", str(tmp_path / "db"), "--processes", "2", "--log-level", "WARNING")
    try:
        server.wait_ready()
        before = header_doc()
        assert requests.post(f"{server.url}/api/v1/analysis_header", json=before, timeout=30).status_code == 201
        (child,) = [pid for pid in _children(server.process.pid)
                    if b"secantus" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while True:  # each check is an HTTP round trip, not a sleep
            assert time.monotonic() < deadline, "the embedded database was not restarted"
            assert server.process.poll() is None, server.output()
            ready = requests.get(f"{server.url}/readyz", timeout=30).ok
            databases = [pid for pid in _children(server.process.pid)
                         if b"secantus" in Path(f"/proc/{pid}/cmdline").read_bytes()]
            if ready and databases and child not in databases:
                break
        _serves_on(server, before)
    finally:
        server.kill()
