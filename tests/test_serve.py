"""`analysisstore serve` as operators run it: a child process, real ports, signals, restarts."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from analysisstore.client import AnalysisClient
from serving import free_port, serve_factory  # noqa: F401 - the fixture

pytestmark = pytest.mark.subprocess


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
    assert mongo[name].analysis_header.find_one({"_id": uid}) is not None  # layout 2: stored under its uid
    assert "time_1_uid_1" in mongo[name].analysis_header.index_information()
    code, _ = server.terminate()
    assert code == 0
    mongo.drop_database(name)


def test_serve_with_unreachable_mongo_uri_exits_with_message(closed_port):
    """A URI nobody answers at is reported at start-up, not as a hang."""
    env = {**os.environ}
    result = subprocess.run(
        [sys.executable, "-m", "analysisstore.cli", "serve", "--port", str(free_port()),
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
