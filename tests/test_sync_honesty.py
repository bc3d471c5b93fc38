"""`analysisstore sync` says what it did: no silent new spools, a line per bundle, abandoned bundles closed."""
from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from analysisstore.cli import main
from analysisstore.client import AnalysisClient
from analysisstore.client.bundle import BundleWriter
from analysisstore.client.spool import ABANDONED_REASON
from analysisstore.drivers.sync import NotASpool, Syncer
from helpers import header_doc, record_doc, stream_doc, tail_doc

KEYS = {"x": {"dtype": "number"}}
DAY = 24 * 3600.0


def _finished(root, records=3):
    """A finished bundle in RUNS_FINISHED; returns its directory."""
    header = header_doc()
    stream = stream_doc(header["uid"])
    path = root / "RUNS_FINISHED" / header["uid"]
    writer = BundleWriter(path)
    writer.write_header(header)
    writer.write_stream(stream)
    writer.append_records(stream["uid"], [record_doc(stream["uid"], i) for i in range(records)])
    writer.write_tail(tail_doc(header["uid"]))
    writer.finish()
    return path


def _left_running(root, closed_port, age=0.0, records=4):
    """An analysis whose script wrote offline and died before its tail; its files made ``age`` seconds old."""
    offline = AnalysisClient({"host": "127.0.0.1", "port": closed_port, "spool_dir": str(root), "retries": 0})
    h = offline.insert_analysis_header(provenance={"analysis_name": "died"})
    s = offline.insert_data_reference_header(h, data_keys=KEYS)
    offline.insert_bulk_data_reference(s, [{"data": {"x": float(i)}, "timestamps": {}, "seq_num": i}
                                           for i in range(records)])
    path = root / "RUNS_ACTIVE" / h
    assert path.is_dir()
    then = time.time() - age
    for file in [path, *path.rglob("*")]:
        os.utime(file, (then, then))
    return h, s


def _sync(capsys, *argv):
    code = main(["sync", *map(str, argv), "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_path_that_is_not_a_spool_is_refused(service, tmp_path, capsys):
    """A mistyped DIR is an error (exit 2, nothing created), not "synced 0"; an empty directory too."""
    typo = tmp_path / "spoool"
    code, out, err = _sync(capsys, typo, "--url", service.url)
    assert code == 2 and "not a spool" in err and "--create" in err
    assert not typo.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _sync(capsys, empty, "--url", service.url)[0] == 2
    assert list(empty.iterdir()) == []
    with pytest.raises(NotASpool):
        Syncer(typo, lambda: AnalysisClient({"url": service.url}))


def test_create_makes_an_empty_spool(service, tmp_path, capsys):
    """--create is the explicit way to start a spool where none is."""
    code, out, _ = _sync(capsys, tmp_path / "new", "--url", service.url, "--create")
    assert code == 0 and "synced 0" in out
    assert (tmp_path / "new" / "RUNS_FINISHED").is_dir()


def test_each_bundle_gets_a_line(service, tmp_path, capsys):
    """A pass prints one line per synced, deferred or quarantined bundle, saying where or why."""
    good = [_finished(tmp_path) for _ in range(2)]
    bad = _finished(tmp_path)
    (bad / "analysis_header.json").write_text("{broken")
    code, out, _ = _sync(capsys, tmp_path, "--url", service.url)
    assert code == 1
    lines = out.splitlines()
    for path in good:
        assert any(line.startswith(f"synced {path.name} -> ") and "RUNS_SYNCED" in line for line in lines), out
    assert any(line.startswith(f"quarantined {bad.name}: corrupt bundle") for line in lines), out
    assert "synced 2, deferred 0, quarantined 1" in out


@pytest.mark.subprocess
@pytest.mark.timeout(120)
def test_watch_prints_deliveries_and_shows_a_bar_on_a_terminal(service, tmp_path):
    """sync --watch prints a line per delivered bundle on stdout and draws a progress bar on a terminal."""
    bundles = [_finished(tmp_path, records=50) for _ in range(2)]
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a width
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "analysisstore.cli", "sync", str(tmp_path), "--watch",
                                "--interval", "0.2", "--url", service.url],
                               stdout=subprocess.PIPE, stderr=secondary, env=env, text=True)
    os.close(secondary)
    seen: list[str] = []
    try:
        while len([line for line in seen if line.startswith("synced ")]) < 2:
            line = process.stdout.readline()
            assert line, f"sync --watch ended early: {seen}"
            seen.append(line)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    assert {line.split()[1] for line in seen if line.startswith("synced ")} == {p.name for p in bundles}
    terminal = b""
    while select.select([primary], [], [], 0.5)[0]:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal is gone once the child exits
            break
        if not chunk:
            break
        terminal += chunk
    os.close(primary)
    assert b"sync:" in terminal and b"100/100" in terminal, terminal[-500:]


def test_abandoned_bundles_are_reported_and_listed(service, tmp_path, closed_port, capsys):
    """Bundles left in RUNS_ACTIVE longer than --abandoned-after are counted in the output and listed by --list."""
    old_uid, _ = _left_running(tmp_path, closed_port, age=2 * DAY)
    new_uid, _ = _left_running(tmp_path, closed_port, age=60)
    code, out, _ = _sync(capsys, tmp_path, "--url", service.url)
    assert code == 0
    assert "1 abandoned bundles in RUNS_ACTIVE older than 24 h" in out and "--finish-abandoned" in out
    code, listing, _ = _sync(capsys, tmp_path, "--url", service.url, "--list")
    assert code == 0
    assert "RUNS_ACTIVE: 2 (1 abandoned)" in listing
    assert any(old_uid in line and "abandoned" in line for line in listing.splitlines()), listing
    assert any(new_uid in line and "running" in line for line in listing.splitlines()), listing
    assert service.count("analysis_header") == 0  # listing and reporting send nothing


def test_finish_abandoned_closes_with_abort_and_sends(service, tmp_path, closed_port, capsys):
    """--finish-abandoned ends each abandoned analysis with an abort tail and the reason, and delivers it whole."""
    old_uid, stream = _left_running(tmp_path, closed_port, age=2 * DAY, records=7)
    new_uid, _ = _left_running(tmp_path, closed_port, age=60)
    code, out, _ = _sync(capsys, tmp_path, "--url", service.url, "--finish-abandoned")
    assert code == 0, out
    assert f"closed abandoned {old_uid}" in out and "synced 1, deferred 0, quarantined 0" in out
    tail = service.database.analysis_tail.find_one({"analysis_header": old_uid}, {"_id": 0})
    assert tail["exit_status"] == "abort" and tail["reason"] == ABANDONED_REASON
    assert service.count("data_reference", {"data_reference_header": stream}) == 7
    assert service.count("analysis_header", {"uid": new_uid}) == 0  # still running: left alone
    assert [p.name for p in (tmp_path / "RUNS_ACTIVE").iterdir()] == [new_uid]


def test_finish_abandoned_keeps_a_tail_the_script_wrote(service, tmp_path, closed_port, capsys):
    """A bundle whose own tail was written just before the crash keeps that tail, not an abort."""
    uid, _ = _left_running(tmp_path, closed_port, age=2 * DAY)
    BundleWriter(tmp_path / "RUNS_ACTIVE" / uid).write_tail(tail_doc(uid, exit_status="success"))
    assert _sync(capsys, tmp_path, "--url", service.url, "--finish-abandoned", "--abandoned-after", "0")[0] == 0
    assert service.database.analysis_tail.find_one({"analysis_header": uid})["exit_status"] == "success"
