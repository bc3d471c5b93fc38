"""Bundle format 2: files and revisions survive export → import into a fresh service; version 1 still imports."""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests
import ujson

from analysisstore.client import AnalysisClient
from analysisstore.client.bundle import BundleWriter, read_bundle, zip_bundle
from analysisstore.drivers.archive import export_analyses, import_archives
from analysisstore.service_fields import hidden
from helpers import header_doc, record_doc, stream_doc, tail_doc

DOC_TYPES = ("analysis_header", "data_reference_header", "data_reference", "analysis_tail")


def _analysis_with_history(client: AnalysisClient) -> dict[str, Any]:
    """An analysis with two files, a header updated before and after its tail, and an annotated tail."""
    header = client.insert_analysis_header(provenance={"analysis_name": "history"}, sample="S1",
                                           meta={"operator": "ada", "shift": "night"})
    stream = client.insert_data_reference_header(header, data_keys={"x": {"dtype": "number"}})
    client.insert_bulk_data_reference(stream, [{"data": {"x": float(i)}, "timestamps": {}, "seq_num": i}
                                               for i in range(20)])
    plot = os.urandom(700_000)  # a few GridFS chunks
    files = {"plot.png": plot, "fit.csv": b"x,y\n1,2\n"}
    for name, content in files.items():
        client.insert_file(header, io.BytesIO(content), name=name)
    client.update_analysis_header({"uid": header}, {"$set": {"sample": "S1b", "meta.shift": "day"},
                                                    "$unset": ["meta.operator"]})
    client.update_analysis_header({"uid": header}, {"$set": {"project": "p7"}})
    tail = client.insert_analysis_tail(header, exit_status="success")
    client.update_analysis_header({"uid": header}, {"$set": {"tags": ["checked"]}})
    client.update_analysis_tail({"uid": tail}, {"$set": {"notes": "reviewed"}})
    client.update_analysis_tail({"uid": tail}, {"$set": {"invalid": True, "notes": "beam dump"}})
    return {"header": header, "tail": tail, "files": files}


def _state(service: Any, made: dict[str, Any]) -> dict[str, Any]:
    """What a user sees of the analysis: documents, both revision lists, file documents and their bytes."""
    base = service.url + "/api/v1"
    documents = {t: sorted(json.dumps(d, sort_keys=True) for d in service.database[t].find({}, {"_id": 0}))
                 for t in DOC_TYPES}
    revisions = {t: requests.get(f"{base}/{t}/{uid}/revisions", timeout=30).json()["items"]
                 for t, uid in (("analysis_header", made["header"]), ("analysis_tail", made["tail"]))}
    files = requests.get(f"{base}/analysis/{made['header']}", timeout=30).json()["files"]
    contents = {f["name"]: hashlib.sha256(requests.get(f"{base}/files/{f['uid']}", timeout=30).content).hexdigest()
                for f in files}
    return {"documents": documents, "revisions": revisions, "files": files, "contents": contents}


def _download(service: Any, uid: str, target: Path) -> list[Path]:
    response = requests.get(f"{service.url}/api/v1/analysis/{uid}/bundle", timeout=60)
    assert response.status_code == 200, response.text
    target.write_bytes(response.content)
    return [target]


@pytest.mark.parametrize("how", ["export", "download"])
def test_files_and_revisions_survive_export_import_into_a_fresh_service(start_service, tmp_path, how):
    """A fresh service given the bundle shows the same documents, the same revisions (order, content, times,
    request ids) and byte-identical files; importing it again changes nothing."""
    source = start_service()
    made = _analysis_with_history(AnalysisClient(source.client_config))
    before = _state(source, made)
    assert [len(before["revisions"][t]) for t in ("analysis_header", "analysis_tail")] == [3, 2]
    if how == "export":
        bundles = export_analyses(AnalysisClient(source.client_config), [made["header"]], tmp_path / "out")
    else:
        bundles = _download(source, made["header"], tmp_path / "b.zip")
    [bundle] = read_bundle(bundles[0])
    with bundle:
        manifest = bundle.validate()
    assert manifest["version"] == 2 and manifest["counts"]["files"] == 2 and manifest["counts"]["revisions"] == 5
    assert manifest["created"]["source"] == source.url and manifest["created"]["software"] == "analysisstore"
    assert {"time", "host", "software_version"} <= set(manifest["created"])
    assert {f["name"]: f["sha256"] for f in manifest["files"]} == {
        name: hashlib.sha256(content).hexdigest() for name, content in made["files"].items()}

    target = start_service()
    client = AnalysisClient(target.client_config)
    report = import_archives(client, bundles)
    assert report.ok and report.imported == [made["header"]], report
    assert _state(target, made) == before
    assert target.database["files.files"].count_documents({}) == 2
    again = import_archives(client, bundles)
    assert again.ok and _state(target, made) == before
    assert target.database["files.files"].count_documents({}) == 2


def test_import_resumes_a_history_replayed_in_part(start_service, tmp_path):
    """An import stopped after some revisions were replayed picks up at the service's revision."""
    source = start_service()
    made = _analysis_with_history(AnalysisClient(source.client_config))
    before = _state(source, made)
    bundles = export_analyses(AnalysisClient(source.client_config), [made["header"]], tmp_path / "out")
    target = start_service()
    client = AnalysisClient(target.client_config)
    [bundle] = read_bundle(bundles[0])
    with bundle:
        history = list(bundle.revisions("analysis_header"))
    client.insert_many("analysis_header", [history[0]["document"]])  # as an import killed after one replay
    client.restore_revision("analysis_header", made["header"], {"$set": {"sample": "S1b", "meta.shift": "day"},
                                                                 "$unset": ["meta.operator"]},
                            revision=0, replaced_at=history[0]["replaced_at"], request_id=history[0]["request_id"])
    report = import_archives(client, bundles)
    assert report.ok, report
    assert _state(target, made) == before


def test_import_refuses_a_different_history(start_service, tmp_path):
    """A service whose header went through other revisions is reported in conflict and left as it was."""
    source = start_service()
    made = _analysis_with_history(AnalysisClient(source.client_config))
    bundles = export_analyses(AnalysisClient(source.client_config), [made["header"]], tmp_path / "out")
    target = start_service()
    client = AnalysisClient(target.client_config)
    [bundle] = read_bundle(bundles[0])
    with bundle:
        first = next(bundle.revisions("analysis_header"))["document"]
    client.insert_many("analysis_header", [first])
    client.update_analysis_header({"uid": made["header"]}, {"$set": {"sample": "elsewhere"}})
    report = import_archives(client, bundles)
    assert [c["analysis"] for c in report.conflicts] == [made["header"]]
    assert "another history" in report.conflicts[0]["error"]
    assert target.database.analysis_header.find_one({"uid": made["header"]})["sample"] == "elsewhere"
    assert target.count("analysis_tail") == 0


def _old_v1_bundle(path: Path) -> dict[str, Any]:
    """A bundle as analysisstore wrote it before format 2: version 1 manifest, no files, revisions or creation."""
    header = header_doc(sample="old")
    stream = stream_doc(header["uid"])
    writer = BundleWriter(path)
    writer.write_header(header)
    writer.write_stream(stream)
    writer.append_records(stream["uid"], [record_doc(stream["uid"], i) for i in range(4)])
    writer.write_tail(tail_doc(header["uid"]))
    members = {}
    for file in sorted(path.rglob("*")):
        if file.is_file():
            members[file.relative_to(path).as_posix()] = hashlib.sha256(file.read_bytes()).hexdigest()
    manifest = {"format": "analysisstore-bundle", "version": 1, "analysis_header": header["uid"],
                "analysis_tail": json.loads((path / "analysis_tail.json").read_text())["uid"],
                "streams": {stream["uid"]: 4}, "counts": {"data_reference_header": 1, "data_reference": 4},
                "priority": 0, "members": members}
    (path / "manifest.json").write_text(ujson.dumps(manifest, indent=2) + "\n")
    return header


def test_a_version_1_bundle_still_imports(service, tmp_path):
    """A bundle from before files and revisions imports as it always did."""
    header = _old_v1_bundle(tmp_path / "old")
    zip_bundle(tmp_path / "old", tmp_path / "old.zip")
    with zipfile.ZipFile(tmp_path / "old.zip") as archive:
        assert not [n for n in archive.namelist() if n.startswith(("files/", "revisions/"))]
        assert json.loads(archive.read("manifest.json"))["version"] == 1
    report = import_archives(AnalysisClient(service.client_config), [tmp_path / "old.zip"])
    assert report.ok and report.imported == [header["uid"]], report
    assert service.count("data_reference") == 4 and service.count("analysis_tail") == 1
    stored = service.database.analysis_header.find_one({"uid": header["uid"]}, hidden({"_id": 0}))
    assert stored == header


def test_a_bundle_from_a_newer_format_is_refused_clearly(service, tmp_path):
    """Version 3 is not guessed at: the import names the manifest and the versions it reads."""
    _old_v1_bundle(tmp_path / "new")
    manifest = json.loads((tmp_path / "new" / "manifest.json").read_text())
    (tmp_path / "new" / "manifest.json").write_text(json.dumps({**manifest, "version": 3}))
    report = import_archives(AnalysisClient(service.client_config), [tmp_path / "new"])
    (problem,) = report.invalid
    assert problem["member"] == "manifest.json" and "reads versions 1, 2" in problem["error"]
    assert service.count("analysis_header") == 0


def _tampered(bundle_zip: Path, target: Path, member_prefix: str) -> str:
    """A copy of ``bundle_zip`` whose first file member has one byte flipped (same size, manifest kept)."""
    with zipfile.ZipFile(bundle_zip) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        [member] = [n for n in source.namelist() if n.startswith(member_prefix)][:1]
        for name in source.namelist():
            data = source.read(name)
            if name == member:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            out.writestr(name, data)
    return member


def test_a_tampered_file_member_is_refused_and_nothing_finalised(start_service, tmp_path):
    """A file whose bytes do not match the manifest's sha256: the import names the member, stores no file and
    writes no tail."""
    source = start_service()
    made = _analysis_with_history(AnalysisClient(source.client_config))
    [bundle] = export_analyses(AnalysisClient(source.client_config), [made["header"]], tmp_path / "out")
    member = _tampered(bundle, tmp_path / "tampered.zip", "files/")
    target = start_service()
    report = import_archives(AnalysisClient(target.client_config), [tmp_path / "tampered.zip"])
    assert not report.ok and not report.imported
    (problem,) = report.invalid
    assert problem["member"] == member and "sha256" in problem["error"], problem
    assert target.count("analysis_tail") == 0
    view = requests.get(f"{target.url}/api/v1/analysis/{made['header']}", timeout=30).json()
    assert view["status"] == "running" and member.split("/")[-1] not in {f["name"] for f in view["files"]}
    assert target.database["files.files"].count_documents({"filename": member.split("/")[-1]}) == 0
