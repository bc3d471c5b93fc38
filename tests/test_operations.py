"""The daemon under stress: SIGTERM mid-upload, several worker processes, the database going away."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from analysisstore.client import AnalysisClient
from analysisstore.embedded import EmbeddedMongo
from helpers import assert_error, header_doc
from serving import Serve, free_port

pytestmark = pytest.mark.subprocess


def _wait_for_exit(pids: list[int], timeout: float = 60.0) -> None:
    """Block until every process in ``pids`` has ended (pidfd: the kernel wakes us, nothing polls)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # already gone
        try:
            readable, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            assert readable, f"process {pid} still runs after {timeout:.0f}s"
        finally:
            os.close(fd)


@pytest.mark.timeout(600)
def test_sigterm_during_bulk_upload_then_retry_is_exactly_once(mongo_uri, mongo):
    """SIGTERM while 20 000 records stream in: the service drains and exits 0; a retry stores each once."""
    name = f"asst_term_{uuid.uuid4().hex[:8]}"
    server = Serve("--mongo-uri", mongo_uri, "--database", name, "--log-level", "warning")
    try:
        server.wait_ready()
        client = AnalysisClient({"url": server.url, "retries": 0})
        h = client.insert_analysis_header(provenance={})
        s = client.insert_data_reference_header(h, data_keys={"x": {"dtype": "number"}})
        records = [{"uid": f"{name}-{i}", "time": 1.0 + i, "data": {"x": i}, "timestamps": {}, "seq_num": i}
                   for i in range(20_000)]
        failure: list[BaseException] = []

        def upload() -> None:
            try:
                client.insert_bulk_data_reference(s, records, chunk_size=2_500)
            except Exception as exc:  # noqa: BLE001 - the upload is expected to be cut off
                failure.append(exc)

        with mongo[name].data_reference.watch([{"$match": {"operationType": "insert"}}]) as inserts:
            uploader = threading.Thread(target=upload)
            uploader.start()
            next(inserts)  # the change stream wakes us at the first stored record
        code, output = server.terminate()
        uploader.join(120)
        assert code == 0, output
        stored = mongo[name].data_reference.count_documents({})
        assert 0 < stored <= 20_000
        assert failure or stored == 20_000, "upload neither failed nor finished"

        again = Serve("--mongo-uri", mongo_uri, "--database", name, "--log-level", "warning")
        try:
            again.wait_ready()
            AnalysisClient({"url": again.url}).insert_bulk_data_reference(s, records, chunk_size=2_500)
        finally:
            again.terminate()
        uids = [d["uid"] for d in mongo[name].data_reference.find({}, {"uid": 1})]
        assert len(uids) == len(set(uids)) == 20_000
    finally:
        server.kill()
        mongo.drop_database(name)


@pytest.mark.timeout(900)
def test_two_workers_eight_clients_2000_headers(mongo_uri, mongo):
    """--processes 2 on one port: 8 concurrent clients × 250 inserts → exactly 2 000 headers, no errors."""
    name = f"asst_workers_{uuid.uuid4().hex[:8]}"
    server = Serve("--mongo-uri", mongo_uri, "--database", name, "--processes", "2", "--log-level", "warning")
    try:
        server.wait_ready()

        def client_run(n: int) -> int:
            errors = 0
            with requests.Session() as session:
                for i in range(250):  # sized for the suite's time; bench/load.py is the real load
                    doc = header_doc(uid=f"c{n}-{i}")
                    if session.post(f"{server.url}/api/v1/analysis_header", json=doc, timeout=60).status_code != 201:
                        errors += 1
            return errors

        with ThreadPoolExecutor(8) as pool:
            errors = sum(pool.map(client_run, range(8)))
        assert errors == 0
        assert mongo[name].analysis_header.count_documents({}) == 2_000
        metrics = requests.get(f"{server.url}/metrics").text
        total = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                    if line.startswith("analysisstore_documents_inserted_total{") and "analysis_header" in line)
        assert total == 2_000  # both workers' counts, summed
        code, output = server.terminate()
        assert code == 0, output
    finally:
        server.kill()
        mongo.drop_database(name)


@pytest.mark.timeout(600)
def test_workers_sum_their_metrics_whatever_was_imported_first(mongo_uri, mongo):
    """prometheus_client imported before the service starts: two workers still serve the sum of both counts."""
    name = f"asst_metrics_{uuid.uuid4().hex[:8]}"
    server = Serve("--mongo-uri", mongo_uri, "--database", name, "--processes", "2", "--log-level", "warning",
                   imported_first="prometheus_client")
    try:
        server.wait_ready()

        def client_run(n: int) -> list[str]:
            refused = []
            with requests.Session() as session:  # one connection per client: the kernel spreads them
                for i in range(50):
                    doc = header_doc(uid=f"m{n}-{i}")
                    for _ in range(5):  # a 503 (database busy) is answered by re-sending, as clients do
                        answer = session.post(f"{server.url}/api/v1/analysis_header", json=doc, timeout=60)
                        if answer.status_code != 503:
                            break
                    if answer.status_code not in (200, 201):
                        refused.append(f"{answer.status_code} {answer.text[:200]}")
            return refused

        with ThreadPoolExecutor(4) as pool:
            assert [r for refused in pool.map(client_run, range(4)) for r in refused] == []
        for _ in range(4):  # whichever worker answers, it reports both workers' counts
            metrics = requests.get(f"{server.url}/metrics", timeout=30).text
            total = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                        if line.startswith("analysisstore_documents_inserted_total{") and "analysis_header" in line)
            assert total == 200
        code, output = server.terminate()
        assert code == 0, output
    finally:
        server.kill()
        mongo.drop_database(name)


def test_database_outage_gives_503_then_recovers(start_service, tmp_path):
    """The database stops: 503 with Retry-After; it returns on the same address: the service recovers alone."""
    port = free_port()
    database = EmbeddedMongo(tmp_path / "db", port=port).start()
    try:
        service = start_service(mongo_uri_override=database.uri, db_timeout_ms=500)
        assert requests.post(f"{service.url}/api/v1/analysis_header", json=header_doc()).status_code == 201
        database.stop()
        down = requests.post(f"{service.url}/api/v1/analysis_header", json=header_doc(), timeout=30)
        assert_error(down, 503, "DatabaseUnavailable")
        assert down.headers["Retry-After"] == "5"
        assert_error(requests.get(f"{service.url}/readyz"), 503)
        database = EmbeddedMongo(tmp_path / "db", port=port).start()
        # A client honouring Retry-After, as scripts use it, gets through once the service has recovered.
        AnalysisClient({"url": service.url, "retries": 6}).insert_analysis_header(provenance={})
        assert requests.get(f"{service.url}/readyz").status_code == 200
        assert requests.get(f"{service.url}/api/v1/analysis_header").json()["meta"]["has_more"] is False
        assert len(requests.get(f"{service.url}/api/v1/analysis_header").json()["items"]) == 2
    finally:
        database.stop()


def test_pid_file_and_status_command(tmp_path, mongo_uri):
    """--pid-file holds the pid while serving and is removed on exit; `status` reports the service."""
    pid_file = tmp_path / "run" / "asst.pid"
    name = f"asst_status_{uuid.uuid4().hex[:8]}"
    server = Serve("--mongo-uri", mongo_uri, "--database", name, "--pid-file", str(pid_file))
    try:
        server.wait_ready()
        assert int(pid_file.read_text()) == server.process.pid
        result = subprocess.run([sys.executable, "-m", "analysisstore.cli", "status", "--url", server.url],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert f"database '{name}'" in result.stdout and "analysis_header" in result.stdout
        code, _ = server.terminate()
        assert code == 0 and not pid_file.exists()
        result = subprocess.run([sys.executable, "-m", "analysisstore.cli", "status", "--url", server.url],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 3 and "no analysisstore service answers" in result.stderr
    finally:
        server.kill()


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_workers_stop_when_the_supervisor_is_killed(mongo_uri):
    """SIGKILL of the main process (no chance to pass signals on) still stops every worker."""
    server = Serve("--mongo-uri", mongo_uri, "--database", f"asst_orphan_{uuid.uuid4().hex[:8]}",
                   "--processes", "2", "--log-level", "warning")
    try:
        server.wait_ready()
        children_file = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
        workers = [int(p) for p in children_file.read_text().split()]
        assert len(workers) == 2
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(30)
        _wait_for_exit(workers)
        assert not any(_alive(w) for w in workers)
    finally:
        server.kill()
