"""The offline spool carries files: insert_file with no service writes them into the bundle; sync delivers
each exactly once, even when killed mid-upload."""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from analysisstore.client import AnalysisClient, Conflict
from analysisstore.client.bundle import read_bundle
from analysisstore.drivers.sync import Syncer

KEYS = {"x": {"dtype": "number"}}
CHUNK = 255 * 1024  # GridFS chunk size the service writes


def _spooling_client(spool: Path, port: int) -> AnalysisClient:
    return AnalysisClient({"host": "127.0.0.1", "port": port, "spool_dir": str(spool), "retries": 0})


def _offline_analysis(client: AnalysisClient, files: dict[str, bytes]) -> tuple[str, dict[str, str]]:
    header = client.insert_analysis_header(provenance={"analysis_name": "offline-files"})
    stream = client.insert_data_reference_header(header, data_keys=KEYS)
    client.insert_bulk_data_reference(stream, [{"data": {"x": i}, "timestamps": {}, "seq_num": i} for i in range(10)])
    uids = {name: client.insert_file(header, io.BytesIO(content), name=name) for name, content in files.items()}
    client.insert_analysis_tail(header, exit_status="success")
    return header, uids


def _stored_file(service: Any, header: str, name: str) -> dict[str, Any]:
    [doc] = list(service.database.analysis_file.find({"analysis_header": header, "name": name}, {"_id": 0}))
    return doc


def _content_sha256(service: Any, doc: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for chunk in service.database["files.chunks"].find({"files_id": doc["gridfs_id"]}).sort("n", 1):
        digest.update(chunk["data"])
    return digest.hexdigest()


def test_offline_file_is_spooled_then_synced_exactly_once(start_service, closed_port, tmp_path):
    """With no service, insert_file returns a uid and keeps the file in the bundle; sync stores it under that uid,
    byte for byte, and a second pass stores nothing more."""
    content = os.urandom(600_000)
    client = _spooling_client(tmp_path, closed_port)
    header, uids = _offline_analysis(client, {"spectrum.h5": content, "notes.txt": b"beam was unstable\n"})
    [bundle_dir] = (tmp_path / "RUNS_FINISHED").iterdir()
    [bundle] = read_bundle(bundle_dir)
    with bundle:
        manifest = bundle.validate()
    assert manifest["created"]["source"] == "spool"
    assert {f["name"]: (f["uid"], f["sha256"]) for f in manifest["files"]} == {
        "spectrum.h5": (uids["spectrum.h5"], hashlib.sha256(content).hexdigest()),
        "notes.txt": (uids["notes.txt"], hashlib.sha256(b"beam was unstable\n").hexdigest())}
    service = start_service()
    syncer = Syncer(tmp_path, lambda: AnalysisClient({"url": service.url, "retries": 1}), progress_bar=False)
    assert syncer.run_once().ok
    doc = _stored_file(service, header, "spectrum.h5")
    assert doc["uid"] == uids["spectrum.h5"] and doc["content_type"] == "application/x-hdf5"
    assert _content_sha256(service, doc) == doc["sha256"] == hashlib.sha256(content).hexdigest()
    assert service.count("analysis_file") == 2 and service.database["files.files"].count_documents({}) == 2
    assert AnalysisClient(service.client_config).get_analysis(header)["status"] == "success"
    assert Syncer(tmp_path, lambda: AnalysisClient({"url": service.url}), progress_bar=False).run_once().synced == []
    assert service.count("analysis_file") == 2


def test_spooled_names_behave_as_on_the_service(closed_port, tmp_path):
    """In the spool too: the same name and content again is the same file; other content under it is a Conflict."""
    client = _spooling_client(tmp_path, closed_port)
    header = client.insert_analysis_header(provenance={})
    first = client.insert_file(header, io.BytesIO(b"a,b\n"), name="t.csv")
    assert client.insert_file(header, io.BytesIO(b"a,b\n"), name="t.csv") == first
    with pytest.raises(Conflict):
        client.insert_file(header, io.BytesIO(b"other"), name="t.csv")
    assert len(list((tmp_path / "RUNS_ACTIVE").glob("*/files/*/t.csv"))) == 1


def test_outage_mid_analysis_spools_the_file(start_service, tmp_path):
    """Header delivered, then the service stops: the file goes to the spool with the rest, and sync delivers it."""
    service = start_service()
    client = _spooling_client(tmp_path, service.port)
    header = client.insert_analysis_header(provenance={"analysis_name": "outage"})
    service.stop()
    uid = client.insert_file(header, io.BytesIO(b"late result"), name="result.txt")
    client.insert_analysis_tail(header, exit_status="success")
    again = start_service()  # a fresh database: the spooled bundle brings the header again
    assert Syncer(tmp_path, lambda: AnalysisClient({"url": again.url}), progress_bar=False).run_once().ok
    assert _stored_file(again, header, "result.txt")["uid"] == uid


@pytest.mark.subprocess
@pytest.mark.timeout(300)
@pytest.mark.parametrize("kill_when", ["uploading", "stored"])
def test_sync_killed_mid_file_stores_it_once(start_service, closed_port, tmp_path, kill_when):
    """`analysisstore sync` killed while the file goes up (or just after it is stored) and run again: the file
    is stored once, its sha256 matches, no chunk of the broken upload is left."""
    size = 48 * 1024 * 1024 + 12_345
    content = os.urandom(size)
    header, uids = _offline_analysis(_spooling_client(tmp_path, closed_port), {"big.bin": content})
    service = start_service()
    cmd = [sys.executable, "-m", "analysisstore.cli", "sync", str(tmp_path), "--url", service.url, "--no-progress"]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks, files = service.database["files.chunks"], service.database.analysis_file
    try:
        while process.poll() is None:  # fault injection: SIGKILL at the moment the database shows the state
            if (chunks.estimated_document_count() > 0 if kill_when == "uploading" else files.count_documents({})):
                process.kill()
                break
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    if kill_when == "uploading":
        assert process.returncode != 0, "sync finished before the kill; the test proved nothing"
        assert files.count_documents({}) == 0
    else:  # killed right after the file was stored, before (or, rarely, after) its progress was saved
        assert files.count_documents({}) == 1
    final = subprocess.run(cmd, capture_output=True, timeout=240)
    assert final.returncode == 0, final.stderr.decode()
    doc = _stored_file(service, header, "big.bin")
    assert doc["uid"] == uids["big.bin"] and doc["size"] == size
    assert _content_sha256(service, doc) == doc["sha256"] == hashlib.sha256(content).hexdigest()
    assert service.database["files.files"].count_documents({}) == 1
    assert chunks.count_documents({}) == math.ceil(size / CHUNK), "chunks of the killed upload were left behind"
    assert service.count("analysis_tail") == 1
    assert not list((tmp_path / ".sync").iterdir())
    assert json.loads((tmp_path / "RUNS_SYNCED" / next((tmp_path / "RUNS_SYNCED").iterdir()).name
                       / "manifest.json").read_text())["files"][0]["uid"] == uids["big.bin"]


def test_a_progress_save_cut_by_a_kill_leaves_no_temporary_file(start_service, closed_port, tmp_path):
    """A run killed while saving its progress leaves a temporary copy; delivering the bundle removes it."""
    _offline_analysis(_spooling_client(tmp_path, closed_port), {"a.txt": b"a"})
    [bundle] = (tmp_path / "RUNS_FINISHED").iterdir()
    (tmp_path / ".sync").mkdir()
    leftover = tmp_path / ".sync" / f".{bundle.name}.progress.json.tmp-4242"  # as write_atomic names it
    leftover.write_bytes(b'{"header": tr')
    service = start_service()
    assert Syncer(tmp_path, lambda: AnalysisClient({"url": service.url}), progress_bar=False).run_once().ok
    assert not list((tmp_path / ".sync").iterdir())


def test_a_damaged_spooled_file_is_quarantined_without_its_tail(start_service, closed_port, tmp_path):
    """A spooled file altered after it was written (same size): sync quarantines the bundle naming the file,
    stores no file and writes no tail."""
    header, uids = _offline_analysis(_spooling_client(tmp_path, closed_port), {"data.bin": b"\x01" * 5000})
    [member] = (tmp_path / "RUNS_FINISHED").glob("*/files/*/data.bin")
    member.write_bytes(b"\x02" * 5000)
    service = start_service()
    report = Syncer(tmp_path, lambda: AnalysisClient({"url": service.url}), progress_bar=False).run_once()
    [name] = report.quarantined
    error = json.loads((tmp_path / "RUNS_QUARANTINED" / f"{name}.error.json").read_text())
    assert error["member"] == f"files/{uids['data.bin']}/data.bin" and "sha256" in error["error"]
    assert service.count("analysis_file") == 0 and service.count("analysis_tail") == 0
