"""The offline spool and the sync driver, against the real service and database."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import requests

from analysisstore.client import AnalysisClient
from analysisstore.client.bundle import BundleWriter
from analysisstore.client.errors import ValidationError
from analysisstore.drivers.sync import Syncer
from helpers import header_doc, record_doc, stream_doc, tail_doc

KEYS = {"x": {"dtype": "number"}}


def _spooling_client(spool, port):
    return AnalysisClient({"host": "127.0.0.1", "port": port, "spool_dir": str(spool), "retries": 0})


def _write_analysis(client, n_records):
    h = client.insert_analysis_header(provenance={"analysis_name": "offline"})
    s = client.insert_data_reference_header(h, data_keys=KEYS)
    client.insert_bulk_data_reference(s, [{"data": {"x": i}, "timestamps": {"x": 0.0}, "seq_num": i}
                                          for i in range(n_records)], chunk_size=40)
    client.insert_analysis_tail(h, exit_status="success")
    return h, s


def _syncer(root, service, **kw):
    return Syncer(root, lambda: AnalysisClient({"url": service.url, "retries": 1}), progress_bar=False, **kw)


def test_offline_analyses_are_spooled_then_synced_exactly_once(start_service, closed_port, tmp_path):
    """3 analyses written with no service end up in RUNS_FINISHED; one sync pass stores each document once."""
    client = _spooling_client(tmp_path, closed_port)
    written = [_write_analysis(client, 100) for _ in range(3)]
    assert len(list((tmp_path / "RUNS_FINISHED").iterdir())) == 3
    assert not list((tmp_path / "RUNS_ACTIVE").iterdir())
    service = start_service()
    report = _syncer(tmp_path, service).run_once()
    assert report.ok and len(report.synced) == 3
    assert service.count("analysis_header") == 3 and service.count("analysis_tail") == 3
    assert service.count("data_reference") == 300
    for h, s in written:
        assert service.count("data_reference", {"data_reference_header": s}) == 100
    assert len(list((tmp_path / "RUNS_SYNCED").iterdir())) == 3
    again = _syncer(tmp_path, service).run_once()
    assert again.synced == [] and service.count("data_reference") == 300


def test_outage_mid_analysis_spools_the_rest(start_service, tmp_path):
    """Header and stream delivered, then the service stops: the rest is spooled and synced later."""
    service = start_service()
    client = _spooling_client(tmp_path, service.port)
    h = client.insert_analysis_header(provenance={})
    s = client.insert_data_reference_header(h, data_keys=KEYS)
    client.insert_data_reference(s, data={"x": 0}, timestamps={"x": 0.0}, seq_num=0)
    service.stop()
    client.insert_bulk_data_reference(s, [{"data": {"x": i}, "timestamps": {}, "seq_num": i} for i in range(1, 50)])
    client.insert_analysis_tail(h, exit_status="success")
    assert service.count("data_reference") == 1
    revived = start_service(database=service.config.database)
    assert _syncer(tmp_path, revived).run_once().ok
    assert revived.count("data_reference") == 50
    assert revived.count("analysis_header") == 1 and revived.count("analysis_tail") == 1


def test_offline_write_the_service_would_refuse_is_refused_at_once(start_service, closed_port, tmp_path):
    """Offline, a record of the wrong dtype or an undeclared key raises ValidationError as online would.

    Kept in the spool, it would have quarantined the whole analysis at sync,
    after the script had been told it was recorded.
    """
    client = _spooling_client(tmp_path, closed_port)
    h = client.insert_analysis_header(provenance={"analysis_name": "offline"})
    s = client.insert_data_reference_header(h, data_keys=KEYS)
    good = [{"data": {"x": i}, "timestamps": {"x": 0.0}, "seq_num": i} for i in range(5)]
    client.insert_bulk_data_reference(s, good)
    bad_chunk = [{"data": {"x": 5}, "timestamps": {"x": 0.0}, "seq_num": 5},
                 {"data": {"x": "five"}, "timestamps": {"x": 0.0}, "seq_num": 6}]
    with pytest.raises(ValidationError, match="declares dtype 'number'"):
        client.insert_bulk_data_reference(s, bad_chunk)
    with pytest.raises(ValidationError, match="not declared"):
        client.insert_data_reference(s, data={"y": 1.0}, timestamps={"y": 0.0})
    client.insert_analysis_tail(h, exit_status="success")
    service = start_service()
    report = _syncer(tmp_path, service).run_once()
    assert report.ok and report.synced, report
    assert service.count("data_reference", {"data_reference_header": s}) == 5  # the refused chunk kept nothing
    assert service.count("analysis_tail", {"analysis_header": h}) == 1


def _bundle(root, records, name=None):
    header = header_doc()
    stream = stream_doc(header["uid"])
    path = root / "RUNS_FINISHED" / (name or header["uid"])
    writer = BundleWriter(path)
    writer.write_header(header)
    writer.write_stream(stream)
    for start in range(0, records, 5_000):
        writer.append_records(stream["uid"], [record_doc(stream["uid"], i) for i in range(start, min(records, start + 5_000))])
    writer.write_tail(tail_doc(header["uid"]))
    writer.finish()
    return header, stream, path


def test_corrupt_bundle_is_quarantined_and_others_sync(service, tmp_path):
    """A bundle with a damaged member is quarantined with a message naming it; the others go through."""
    good = [_bundle(tmp_path, 20) for _ in range(2)]
    _, stream, bad_path = _bundle(tmp_path, 20)
    member = bad_path / "data_reference" / f"{stream['uid']}.jsonl"
    member.write_bytes(member.read_bytes().replace(b"400.0", b"401.0", 1))
    report = _syncer(tmp_path, service).run_once()
    assert sorted(report.synced) == sorted(p.name for _, _, p in good)
    assert report.quarantined == [bad_path.name]
    error = json.loads((tmp_path / "RUNS_QUARANTINED" / f"{bad_path.name}.error.json").read_text())
    assert f"data_reference/{stream['uid']}.jsonl" in error["error"]
    assert error["member"] == f"data_reference/{stream['uid']}.jsonl"
    assert service.count("data_reference") == 40
    assert (tmp_path / "RUNS_QUARANTINED" / bad_path.name).is_dir()


def test_refused_bundle_is_quarantined_after_max_attempts(service, tmp_path):
    """A bundle the service keeps refusing (a uid clash) is retried, then quarantined; the queue goes on."""
    header, _, path = _bundle(tmp_path, 5)
    clash = dict(header, project="someone else")  # a different analysis already stored under the uid
    requests.post(f"{service.url}/api/v1/analysis_header", json=clash, timeout=30).raise_for_status()
    syncer = _syncer(tmp_path, service, max_attempts=2)
    assert syncer.run_once().deferred == [path.name]
    report = syncer.run_once()
    assert report.quarantined == [path.name]
    error = json.loads((tmp_path / "RUNS_QUARANTINED" / f"{path.name}.error.json").read_text())
    assert "409" in error["error"] and error["attempts"] == 2


def test_zip_and_reset(service, tmp_path):
    """--zip keeps synced bundles as archives; reset moves one back and it syncs again harmlessly."""
    _, _, path = _bundle(tmp_path, 10)
    assert _syncer(tmp_path, service, zip_synced=True).run_once().ok
    assert (tmp_path / "RUNS_SYNCED" / f"{path.name}.zip").is_file() and not path.exists()
    restored = _syncer(tmp_path, service).reset(path.name)
    assert restored == path and (path / "manifest.json").exists()
    assert _syncer(tmp_path, service).run_once().synced == [path.name]
    assert service.count("data_reference") == 10


def test_priority_orders_the_queue(tmp_path, service):
    """Higher manifest priority first, then the older analysis."""
    names = []
    for priority, t in [(0, 3.0), (5, 2.0), (0, 1.0)]:
        header = header_doc(time=t)
        path = tmp_path / "RUNS_FINISHED" / header["uid"]
        writer = BundleWriter(path)
        writer.write_header(header)
        writer.finish(priority=priority)
        names.append(path.name)
    assert [p.name for p in _syncer(tmp_path, service).pending()] == [names[1], names[2], names[0]]


@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_sync_killed_at_random_points_still_stores_everything_once(service, tmp_path):
    """SIGKILL during a 20 000-record push, restarted until done: every record stored exactly once."""
    _, stream, path = _bundle(tmp_path, 20_000)
    expected = {json.loads(line)["uid"] for line in
                (path / "data_reference" / f"{stream['uid']}.jsonl").read_text().splitlines()}
    cmd = [sys.executable, "-m", "analysisstore.cli", "sync", str(tmp_path), "--url", service.url,
           "--chunk-size", "500", "--no-progress"]
    rng = random.Random(7)
    kills = 0
    for _ in range(8):  # fault injection: SIGKILL at random instants, however fast the machine
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            process.wait(timeout=rng.uniform(0.5, 3.0))
            break
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            kills += 1
    # then one run left alone must finish what the killed ones started (or find nothing left to do)
    final = subprocess.run(cmd, capture_output=True, timeout=400)
    assert final.returncode == 0, final.stderr.decode()
    assert kills >= 1, "the push finished before any kill; the test proved nothing"
    stored = {d["uid"] for d in service.database.data_reference.find({}, {"uid": 1})}
    assert stored == expected and service.count("data_reference") == 20_000
    assert service.count("analysis_tail") == 1
    assert (tmp_path / "RUNS_SYNCED" / path.name).is_dir()
    assert not list((tmp_path / ".sync").iterdir())
