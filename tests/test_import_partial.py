"""Import never finalises an analysis whose records were not all stored; a fixed bundle completes it."""
from __future__ import annotations

from pathlib import Path

from analysisstore import cli
from analysisstore.client import AnalysisClient
from analysisstore.client.bundle import BundleWriter, read_bundle
from analysisstore.drivers.archive import export_analyses, import_archives

RECORDS = 50


def _exported(service, tmp_path: Path) -> tuple[str, Path]:
    """A finished analysis (one stream of RECORDS records) exported to one bundle zip."""
    client = AnalysisClient(service.client_config)
    header = client.insert_analysis_header(provenance={"analysis_name": "partial"}, sample="P1")
    stream = client.insert_data_reference_header(header, data_keys={"x": {"dtype": "number"}}, name="raw")
    client.insert_bulk_data_reference(stream, [{"data": {"x": float(i)}, "timestamps": {"x": 1.0}, "seq_num": i}
                                               for i in range(RECORDS)])
    client.insert_analysis_tail(header, exit_status="success")
    (path,) = export_analyses(client, [header], tmp_path / "out")
    return header, path


def _squat(target, uid: str) -> None:
    """Store, in another analysis of ``target``, a different record under ``uid``."""
    client = AnalysisClient(target.client_config)
    other = client.insert_analysis_header(provenance={"analysis_name": "other"})
    stream = client.insert_data_reference_header(other, data_keys={"x": {"dtype": "number"}})
    client.insert_data_reference(stream, uid=uid, data={"x": -1.0}, timestamps={"x": 1.0})


def _renamed(path: Path, old_uid: str, new_uid: str, target: Path) -> Path:
    """The bundle at ``path`` rewritten with record ``old_uid`` renamed ``new_uid`` (the user's fix)."""
    (bundle,) = read_bundle(path)
    with bundle:
        writer = BundleWriter(target)
        writer.write_header(bundle.header)
        for stream in bundle.streams:
            writer.write_stream(stream)
            writer.append_records(stream["uid"], [{**r, "uid": new_uid} if r["uid"] == old_uid else r
                                                  for r in bundle.records(stream["uid"])])
        writer.write_tail(bundle.tail)
        writer.finish()
    return target


def test_a_conflicting_record_leaves_the_analysis_without_its_tail(service, start_service, tmp_path, capsys):
    """One record uid taken by another document: exit 1, the conflict listed, the other records stored,
    no tail (status running); the fixed bundle then imports and completes the analysis."""
    header, path = _exported(service, tmp_path)
    (bundle,) = read_bundle(path)
    with bundle:
        taken = list(bundle.records(bundle.streams[0]["uid"]))[7]["uid"]
    target = start_service()
    _squat(target, taken)
    assert cli.main(["import", str(path), "--url", target.url]) == 1
    out = capsys.readouterr().out
    assert taken in out and header in out and "no tail" in out
    client = AnalysisClient(target.client_config)
    view = client.get_analysis(header)
    assert view["tail"] is None and view["status"] in ("running", "stale")
    assert [s["record_count"] for s in view["streams"]] == [RECORDS - 1]
    report = import_archives(client, [path])  # importing the same bundle again changes nothing
    assert not report.ok and report.imported == [] and [i["analysis"] for i in report.incomplete] == [header]
    assert client.get_analysis(header)["tail"] is None
    fixed = _renamed(path, taken, f"{taken}-renamed", tmp_path / "fixed")
    assert cli.main(["import", str(fixed), "--url", target.url]) == 0
    view = client.get_analysis(header)
    assert view["status"] == "success" and [s["record_count"] for s in view["streams"]] == [RECORDS]


def test_a_clean_import_still_finalises(service, start_service, tmp_path):
    """Without conflicts the analysis is imported whole, tail included."""
    header, path = _exported(service, tmp_path)
    target = start_service()
    report = import_archives(AnalysisClient(target.client_config), [path])
    assert report.ok and report.imported == [header] and report.incomplete == []
    assert AnalysisClient(target.client_config).get_analysis(header)["status"] == "success"
