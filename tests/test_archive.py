"""export → drop the database → import reproduces every document; importing twice changes nothing."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from analysisstore.client import AnalysisClient
from analysisstore.drivers.archive import export_analyses, import_archives

DOC_TYPES = ("analysis_header", "data_reference_header", "data_reference", "analysis_tail")


def _populate(client):
    uids = []
    for n in range(3):
        h = client.insert_analysis_header(provenance={"analysis_name": "arch", "params": {"n": n, "w": 0.1 * n}},
                                          project="archive", sample=f"S{n}", tags=["a", "b"])
        for name in ("primary", "secondary"):
            s = client.insert_data_reference_header(h, data_keys={"x": {"dtype": "number"},
                                                                  "spectrum": {"dtype": "array", "shape": [3]}},
                                                    name=name)
            client.insert_bulk_data_reference(s, [{"data": {"x": i / 3, "spectrum": [1.5, 2.25, i]},
                                                   "timestamps": {"x": 1.7e9 + i}, "seq_num": i}
                                                  for i in range(250)])
        if n < 2:  # the last analysis is still running: its bundle has no tail
            client.insert_analysis_tail(h, exit_status="success" if n == 0 else "fail", reason="r")
        uids.append(h)
    return uids


def _snapshot(database):
    """Every stored document as canonical JSON, by type."""
    return {t: sorted(json.dumps(d, sort_keys=True) for d in database[t].find({}, {"_id": 0})) for t in DOC_TYPES}


@pytest.mark.parametrize("one_file", [False, True])
def test_export_drop_import_round_trip(service, tmp_path, one_file):
    """Every document comes back equal as JSON; a second import is all 'already stored'."""
    client = AnalysisClient(service.client_config)
    uids = _populate(client)
    before = _snapshot(service.database)
    out = tmp_path / ("all.zip" if one_file else "out")
    files = export_analyses(client, uids, out, one_file=one_file)
    assert len(files) == (1 if one_file else 3)
    assert not [p for p in tmp_path.rglob(".*tmp*")], "temporary files left behind"
    for doc_type in DOC_TYPES:
        service.database[doc_type].delete_many({})
    report = import_archives(client, files)
    assert report.ok and sorted(report.imported) == sorted(uids)
    assert _snapshot(service.database) == before
    again = import_archives(client, files)
    assert again.ok
    assert _snapshot(service.database) == before


def test_import_reports_conflicts_without_overwriting(service, tmp_path):
    """A uid stored with different content is reported; the stored document stays."""
    client = AnalysisClient(service.client_config)
    (uid,) = _populate(client)[:1]
    files = export_analyses(client, [uid], tmp_path / "out")
    stream = client.find_data_reference_header(analysis_header=uid)[0]
    record = client.find_data_reference(data_reference_header=stream.uid, limit=1)[0]
    service.database.data_reference.update_one({"uid": record.uid}, {"$set": {"data.x": 99.0}})
    report = import_archives(client, files)
    assert len(report.conflicts) == 1 and record.uid in json.dumps(report.conflicts[0]["details"])
    assert service.database.data_reference.find_one({"uid": record.uid})["data"]["x"] == 99.0
    service.database.analysis_header.update_one({"uid": uid}, {"$set": {"sample": "changed"}})
    report = import_archives(client, files)
    assert [c["analysis"] for c in report.conflicts] == [uid]
    assert service.database.analysis_header.find_one({"uid": uid})["sample"] == "changed"


@pytest.mark.subprocess
def test_cli_export_by_query_and_import(service, tmp_path):
    """`analysisstore export --where` then `analysisstore import` from the command line."""
    client = AnalysisClient(service.client_config)
    uids = _populate(client)
    before = _snapshot(service.database)
    cli = [sys.executable, "-m", "analysisstore.cli"]
    result = subprocess.run([*cli, "export", "--where", "project=archive", "--where", "sample__in=S0,S2",
                             "-o", str(tmp_path / "x"), "--url", service.url], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    exported = sorted(p.name for p in (tmp_path / "x").iterdir())
    assert exported == sorted(f"{u}.zip" for u in (uids[0], uids[2]))
    for doc_type in DOC_TYPES:
        service.database[doc_type].delete_many({})
    files = [str(p) for p in (tmp_path / "x").iterdir()]
    result = subprocess.run([*cli, "import", *files, "--url", service.url], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "imported 2 analyses, 0 conflicts" in result.stdout
    after = _snapshot(service.database)
    assert len(after["analysis_header"]) == 2
    assert set(after["analysis_header"]) <= set(before["analysis_header"])


def _import_cli(url, *files):
    return subprocess.run([sys.executable, "-m", "analysisstore.cli", "import", *map(str, files), "--url", url],
                          capture_output=True, text=True, timeout=120)


def test_a_second_import_says_already_stored(start_service, tmp_path):
    """Importing the same bundles again stores nothing new and says so: counted as already stored, not imported."""
    source = start_service()
    client = AnalysisClient(source.client_config)
    uids = _populate(client)
    client.insert_file(uids[2], io.BytesIO(b"notes"), name="notes.txt")  # the running analysis has a file
    client.update_analysis_header({"uid": uids[1]}, {"$set": {"tags": ["checked"]}})  # and a revision to replay
    files = export_analyses(client, uids, tmp_path / "out")
    target = start_service()
    first = _import_cli(target.url, *files)
    assert first.returncode == 0, first.stderr
    assert "imported 3 analyses, 0 conflicts, 0 invalid, 0 already stored" in first.stdout
    before = _snapshot(target.database)
    second = _import_cli(target.url, *files)
    assert second.returncode == 0, second.stderr
    assert "imported 0 analyses, 0 conflicts, 0 invalid, 3 already stored" in second.stdout
    assert _snapshot(target.database) == before
    report = import_archives(AnalysisClient(target.client_config), files)
    assert report.ok and report.imported == [] and sorted(report.already_stored) == sorted(uids)


def test_an_import_that_completes_an_analysis_counts_as_imported(start_service, tmp_path):
    """An analysis stored in part (its tail or a file missing) and completed by the import is imported, not 'already'."""
    source = start_service()
    client = AnalysisClient(source.client_config)
    uids = _populate(client)
    client.insert_file(uids[2], io.BytesIO(b"notes"), name="notes.txt")
    files = export_analyses(client, uids, tmp_path / "out")
    target = start_service()
    assert import_archives(AnalysisClient(target.client_config), files).ok
    target.database.analysis_tail.delete_many({"analysis_header": uids[0]})
    target.database.analysis_file.delete_many({})  # the file of the running analysis: uploaded again
    report = import_archives(AnalysisClient(target.client_config), files)
    assert report.ok and sorted(report.imported) == sorted([uids[0], uids[2]]) and report.already_stored == [uids[1]]
