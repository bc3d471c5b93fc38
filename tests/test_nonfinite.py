"""Non-finite numbers: refused where they would corrupt order, kept (and strict JSON) where they are data."""
from __future__ import annotations

import json
import math
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests

from analysisstore.client import AnalysisClient
from analysisstore.client.bundle import Bundle, BundleWriter
from analysisstore.drivers.archive import export_analyses, import_archives
from helpers import assert_error, header_doc, new_uid, record_doc, stream_doc, tail_doc

NAN, INF = float("nan"), float("inf")
DOC_TYPES = ("analysis_header", "data_reference_header", "data_reference", "analysis_tail")
#: Every way a non-finite time can arrive: Python's bare tokens, an overflowing literal, the tagged form.
BAD_TIMES = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", '{"$numberDouble": "NaN"}',
             '{"$numberDouble": "Infinity"}']


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"non-JSON token {token!r} in a response")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number literal {text!r} overflows a double")
    return value


def strict_loads(text: str | bytes) -> Any:
    """RFC 8259 only: no NaN/Infinity tokens, no literal that overflows to infinity."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)


def strict_ndjson(text: str) -> list[Any]:
    return [strict_loads(line) for line in text.splitlines() if line.strip()]


def _with_time(doc: dict[str, Any], time_json: str, field: str = "time") -> str:
    """The document as raw JSON text with ``field`` spelled exactly ``time_json``."""
    marker = "__TIME_PLACEHOLDER__"
    return json.dumps({**doc, field: marker}).replace(f'"{marker}"', time_json)


def _raw_post(service, path: str, text: str) -> requests.Response:
    return requests.post(f"{service.url}{path}", data=text.encode(),
                         headers={"Content-Type": "application/json"}, timeout=30)


def _weird_record(stream_uid: str, seq_num: int = 0) -> dict[str, Any]:
    return record_doc(stream_uid, seq_num, data={"wavelength": -INF, "absorbance": NAN},
                      timestamps={"wavelength": INF, "absorbance": 1_700_000_002.0})


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


# ---- time and seq_num must be finite ---------------------------------------------------------------


@pytest.mark.parametrize("time_json", BAD_TIMES)
def test_nonfinite_header_time_is_422_and_nothing_stored(service, time_json):
    """A header whose time is NaN, ±Infinity or overflows (1e400) is refused with 422; nothing is stored."""
    response = _raw_post(service, "/api/v1/analysis_header", _with_time(header_doc(), time_json))
    assert_error(response, 422, "ValidationError", "time")
    assert service.count("analysis_header") == 0


@pytest.mark.parametrize("doc_type", DOC_TYPES[1:])
def test_nonfinite_time_is_422_for_every_doc_type(service, analysis, doc_type):
    """Streams, records and tails with a NaN time are refused too."""
    header, stream = analysis["header"], analysis["stream"]
    doc = {"data_reference_header": stream_doc(header["uid"]), "data_reference": record_doc(stream["uid"]),
           "analysis_tail": tail_doc(header["uid"])}[doc_type]
    before = service.count(doc_type)
    assert_error(_raw_post(service, f"/api/v1/{doc_type}", _with_time(doc, "NaN")), 422, "ValidationError", "time")
    assert service.count(doc_type) == before


@pytest.mark.parametrize("seq_json", ["NaN", "Infinity", "1e400"])
def test_nonfinite_seq_num_is_422(service, analysis, seq_json):
    """seq_num must be a finite integer."""
    record = record_doc(analysis["stream"]["uid"])
    assert_error(_raw_post(service, "/api/v1/data_reference", _with_time(record, seq_json, "seq_num")),
                 422, "ValidationError", "seq_num")
    assert service.count("data_reference") == 0


def test_bulk_with_one_nonfinite_time_writes_nothing(service, analysis):
    """One record with time Infinity in a bulk of five: 422 naming its index, and none of the five stored."""
    records = [record_doc(analysis["stream"]["uid"], i) for i in range(5)]
    text = "[" + ",".join(_with_time(r, "Infinity") if i == 3 else json.dumps(r) for i, r in enumerate(records)) + "]"
    error = assert_error(_raw_post(service, "/api/v1/data_reference", text), 422, "ValidationError")
    assert "time" in error["message"] and [d["index"] for d in error["details"]] == [3]
    assert service.count("data_reference") == 0


def test_legacy_face_refuses_nonfinite_time(service, analysis):
    """insert_analysis_header and bulk_data_reference_insert on the 0.x face refuse NaN/1e400 times."""
    header_text = _with_time(header_doc(), "NaN")
    response = _raw_post(service, "/analysis_header",
                         f'{{"signature": "insert_analysis_header", "payload": {header_text}}}')
    assert_error(response, 422, "ValidationError", "time")
    assert service.count("analysis_header") == 1  # only the fixture's
    stream_uid = analysis["stream"]["uid"]
    records = [json.dumps(record_doc(stream_uid, 0)), _with_time(record_doc(stream_uid, 1), "1e400")]
    bulk = (f'{{"signature": "bulk_data_reference_insert", "payload": {{"data_header": "{stream_uid}", '
            f'"data_references": [{",".join(records)}]}}}}')
    assert_error(_raw_post(service, "/data_reference", bulk), 422, "ValidationError", "time")
    assert service.count("data_reference") == 0


# ---- non-finite values in data are stored and come back -----------------------------------------------


@pytest.mark.parametrize("spelling", ["bare", "tagged", "overflow"])
def test_nonfinite_record_values_are_stored_as_doubles(service, analysis, spelling):
    """NaN/±Infinity in data and timestamps arrive bare (Python json), tagged, or as 1e400; all stored as doubles."""
    record = record_doc(analysis["stream"]["uid"], data={"wavelength": 1.0, "absorbance": 2.0},
                        timestamps={"wavelength": 3.0})
    text = json.dumps(record)
    nan, inf, ninf = {"bare": ("NaN", "Infinity", "-Infinity"), "overflow": ("NaN", "1e400", "-1e400"),
                      "tagged": ('{"$numberDouble": "NaN"}', '{"$numberDouble": "Infinity"}',
                                 '{"$numberDouble": "-Infinity"}')}[spelling]
    text = (text.replace('"wavelength": 1.0', f'"wavelength": {inf}').replace('"absorbance": 2.0', f'"absorbance": {nan}')
            .replace('"wavelength": 3.0', f'"wavelength": {ninf}'))
    response = _raw_post(service, "/api/v1/data_reference", text)
    assert response.status_code == 201, response.text
    stored = service.database.data_reference.find_one({"uid": record["uid"]})
    assert math.isnan(stored["data"]["absorbance"]) and stored["data"]["wavelength"] == INF
    assert stored["timestamps"]["wavelength"] == -INF


def test_every_json_response_is_strict_and_tagged(service, analysis):
    """GET by uid, list, search, NDJSON, analysis view, revisions, legacy find and bulk answers: strict JSON."""
    header, stream = analysis["header"], analysis["stream"]
    requests.patch(f"{service.url}/api/v1/analysis_header/{header['uid']}",
                   data=json.dumps({"$set": {"notes": "n", "threshold": INF}}), timeout=30).raise_for_status()
    record = _weird_record(stream["uid"])
    bulk = _raw_post(service, "/api/v1/data_reference", json.dumps([record, _weird_record(stream["uid"], 1)]))
    assert strict_loads(bulk.text)["inserted"] == 2
    base = f"{service.url}/api/v1"
    answers = {
        "get": requests.get(f"{base}/data_reference/{record['uid']}", timeout=30),
        "list": requests.get(f"{base}/data_reference", params={"data_reference_header": stream["uid"]}, timeout=30),
        "search": requests.post(f"{base}/data_reference/search", json={"filter": {}}, timeout=30),
        "analysis": requests.get(f"{base}/analysis/{header['uid']}", timeout=30),
        "header": requests.get(f"{base}/analysis_header/{header['uid']}", timeout=30),
        "legacy": requests.get(f"{service.url}/data_reference", timeout=30, params=json.dumps(
            {"signature": "find_data_reference", "payload": {"data_reference_header": stream["uid"]}})),
    }
    for name, response in answers.items():
        assert response.status_code == 200, (name, response.text)
        strict_loads(response.text)
    got = strict_loads(answers["get"].text)
    assert got["data"] == {"wavelength": {"$numberDouble": "-Infinity"}, "absorbance": {"$numberDouble": "NaN"}}
    assert got["timestamps"]["wavelength"] == {"$numberDouble": "Infinity"}
    assert strict_loads(answers["analysis"].text)["header"]["threshold"] == {"$numberDouble": "Infinity"}
    stream_response = requests.post(f"{base}/data_reference/search", json={"filter": {}}, timeout=30,
                                    headers={"Accept": "application/x-ndjson"})
    lines = strict_ndjson(stream_response.text)
    assert len(lines) == 2 and all(line["data"]["absorbance"] == {"$numberDouble": "NaN"} for line in lines)
    revisions = requests.get(f"{base}/analysis_header/{header['uid']}/revisions", timeout=30)
    strict_loads(revisions.text)
    by_nan = requests.post(f"{base}/data_reference/search", timeout=30,
                           json={"filter": {"data.absorbance": {"$numberDouble": "NaN"}}})
    assert len(strict_loads(by_nan.text)["items"]) == 2  # a filter may name NaN in the tagged form


def test_error_bodies_are_strict_json(service, analysis):
    """A refused document whose uid is NaN still gets a strict JSON error body."""
    text = json.dumps([{"uid": NAN, "time": 1.0}, {"uid": "x", "time": NAN}])
    response = _raw_post(service, "/api/v1/analysis_header", text)
    assert response.status_code == 422
    strict_loads(response.text)


def test_client_round_trips_nonfinite_values(service):
    """insert_* with NaN/±Infinity (plain floats and NumPy) then find_*, iter_*, paged reads and get_analysis."""
    np = pytest.importorskip("numpy")
    client = AnalysisClient(service.client_config)
    h = client.insert_analysis_header(provenance={"analysis_name": "nf", "params": {"cutoff": INF}}, limit=-INF)
    s = client.insert_data_reference_header(h, data_keys={"x": {"dtype": "number"}, "y": {"dtype": "array"}})
    client.insert_data_reference(s, data={"x": NAN, "y": np.array([1.0, np.nan, np.inf])},
                                 timestamps={"x": -INF}, seq_num=0)
    client.insert_bulk_data_reference(s, [{"data": {"x": np.float64("nan"), "y": [NAN, -INF]},
                                           "timestamps": {"x": 1.0}, "seq_num": i} for i in range(1, 4)])
    expected_first = {"x": NAN, "y": [1.0, NAN, INF]}
    for found in (client.find_data_reference(data_reference_header=s, order_by="seq_num"),
                  list(client.iter_data_reference(data_reference_header=s, order_by="seq_num")),
                  list(client.iter_find("data_reference", {"data_reference_header": s}, order_by="seq_num",
                                        paged=True, page_size=2))):
        assert len(found) == 4
        assert _same(dict(found[0]["data"]), expected_first) and found[0]["timestamps"]["x"] == -INF
        assert all(math.isnan(r["data"]["x"]) and _same(r["data"]["y"], [NAN, -INF]) for r in found[1:])
    (header,) = client.find_analysis_header(uid=h)
    assert header["limit"] == -INF and header["provenance"]["params"]["cutoff"] == INF
    assert client.get_analysis(h)["header"]["limit"] == -INF
    client.insert_analysis_tail(h, exit_status="success", score=NAN)
    assert math.isnan(client.find_analysis_tail(analysis_header=h)[0]["score"])


def test_legacy_client_calls_round_trip_nonfinite(service, analysis):
    """The 0.x raw get/post of the client carry NaN in payloads and answers."""
    client = AnalysisClient(service.client_config)
    record = _weird_record(analysis["stream"]["uid"])
    assert client.post(client.dref_url, {"signature": "insert_data_reference", "payload": record})["status"] is True
    (found,) = client.get(client.dref_url, {"signature": "find_data_reference",
                                            "payload": {"data.absorbance": NAN}})
    assert math.isnan(found["data"]["absorbance"]) and found["data"]["wavelength"] == -INF


def test_encoders_write_strict_json_and_leave_the_input_alone():
    """Client request bodies and bundle members are strict JSON; tagging copies, never mutates the caller's data."""
    np = pytest.importorskip("numpy")
    from analysisstore.client._transport import dumps, loads
    from analysisstore.handlers.base import dumps as service_dumps

    data = {"a": [NAN, {"b": (INF, -INF)}], "n": np.array([1.0, np.nan]), "s": "$numberDouble", "f": 0.5}
    for text in (dumps(data).decode(), service_dumps({**data, "n": [1.0, NAN]})):
        parsed = strict_loads(text)
        assert parsed["a"] == [{"$numberDouble": "NaN"}, {"b": [{"$numberDouble": "Infinity"},
                                                                {"$numberDouble": "-Infinity"}]}]
        assert _same(loads(text), {"a": [NAN, {"b": [INF, -INF]}], "n": [1.0, NAN], "s": "$numberDouble", "f": 0.5})
    assert math.isnan(data["a"][0]) and data["a"][1]["b"] == (INF, -INF)  # the caller's objects are untouched
    assert loads('{"x": {"$numberDouble": "NaN", "y": 1}}') == {"x": {"$numberDouble": "NaN", "y": 1}}  # not a tag


# ---- idempotency: NaN equals NaN when comparing a re-send ----------------------------------------------


def test_identical_resend_with_nan_is_already_stored(service, analysis):
    """Re-sending a record with NaN values (single, in bulk, twice in one request) is 'already stored', not 409."""
    record = _weird_record(analysis["stream"]["uid"])
    text = json.dumps(record)
    assert _raw_post(service, "/api/v1/data_reference", text).status_code == 201
    again = _raw_post(service, "/api/v1/data_reference", text)
    assert again.status_code == 200 and strict_loads(again.text)["result"] == "already stored"
    other = _weird_record(analysis["stream"]["uid"], 1)
    both = _raw_post(service, "/api/v1/data_reference", json.dumps([record, other, other]))
    assert both.status_code == 200, both.text
    assert [i["result"] for i in strict_loads(both.text)["items"]] == ["already stored", "inserted", "already stored"]
    header = header_doc(provenance={"analysis_name": "nf", "params": {"w": NAN}})
    for _ in range(2):
        assert _raw_post(service, "/api/v1/analysis_header", json.dumps(header)).status_code in (200, 201)
    changed = dict(record, data={"wavelength": -INF, "absorbance": 0.0})
    assert_error(_raw_post(service, "/api/v1/data_reference", json.dumps(changed)), 409, "Conflict")
    assert service.count("data_reference") == 2


def test_resend_with_nan_after_tail_is_already_stored(service, analysis):
    """After the tail only identical re-sends pass; one carrying NaN is still recognised as identical."""
    record = _weird_record(analysis["stream"]["uid"])
    assert _raw_post(service, "/api/v1/data_reference", json.dumps(record)).status_code == 201
    assert _raw_post(service, "/api/v1/analysis_tail", json.dumps(tail_doc(analysis["header"]["uid"]))).status_code == 201
    again = _raw_post(service, "/api/v1/data_reference", json.dumps(record))
    assert again.status_code == 200 and strict_loads(again.text)["result"] == "already stored"


# ---- paging ------------------------------------------------------------------------------------------


def test_cursor_paging_visits_every_document_with_nan_values(service, analysis):
    """Paging by time (and by seq_num) over records holding NaN/Infinity returns each record exactly once."""
    stream_uid = analysis["stream"]["uid"]
    records = [_weird_record(stream_uid, i) if i % 2 else record_doc(stream_uid, i) for i in range(7)]
    assert _raw_post(service, "/api/v1/data_reference", json.dumps(records)).status_code == 200
    for order_by in ("time", "-time", "seq_num"):
        seen, cursor = [], None
        for _ in range(10):
            params = {"data_reference_header": stream_uid, "order_by": order_by, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = strict_loads(requests.get(f"{service.url}/api/v1/data_reference", params=params, timeout=30).text)
            seen += [doc["uid"] for doc in page["items"]]
            cursor = page["meta"]["next_cursor"]
            if not cursor:
                break
        assert sorted(seen) == sorted(r["uid"] for r in records) and len(seen) == 7, order_by


# ---- bundles -------------------------------------------------------------------------------------------


def _members_are_strict(bundle_dir: Path) -> None:
    for path in bundle_dir.rglob("*.json"):
        strict_loads(path.read_text())
    for path in bundle_dir.rglob("*.jsonl"):
        strict_ndjson(path.read_text())


def test_export_import_round_trips_nonfinite_values(service, tmp_path):
    """export → drop → import restores NaN/±Infinity exactly; the archive's members are strict JSON."""
    client = AnalysisClient(service.client_config)
    h = client.insert_analysis_header(provenance={"analysis_name": "nf", "params": {"tol": NAN}})
    s = client.insert_data_reference_header(h, data_keys={"x": {"dtype": "number"}})
    client.insert_bulk_data_reference(s, [{"data": {"x": [NAN, INF, -INF, 1.5][i % 4]}, "timestamps": {"x": INF},
                                           "seq_num": i} for i in range(8)])
    client.insert_analysis_tail(h, exit_status="success")
    before = {t: list(service.database[t].find({}, {"_id": 0}).sort("uid")) for t in DOC_TYPES}
    (archive,) = export_analyses(client, [h], tmp_path / "out")
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(archive).extractall(unpacked)
    _members_are_strict(unpacked)
    for doc_type in DOC_TYPES:
        service.database[doc_type].delete_many({})
    report = import_archives(client, [archive])
    assert report.ok and report.imported == [h]
    after = {t: list(service.database[t].find({}, {"_id": 0}).sort("uid")) for t in DOC_TYPES}
    assert _same(after, before)
    assert import_archives(client, [archive]).ok  # a second import: every NaN document "already stored"


def test_server_bundle_download_is_strict(service, analysis, tmp_path):
    """GET /api/v1/analysis/{uid}/bundle writes tagged, strict JSON members that read back as floats."""
    record = _weird_record(analysis["stream"]["uid"])
    assert _raw_post(service, "/api/v1/data_reference", json.dumps(record)).status_code == 201
    response = requests.get(f"{service.url}/api/v1/analysis/{analysis['header']['uid']}/bundle", timeout=30)
    archive = tmp_path / "b.zip"
    archive.write_bytes(response.content)
    zipfile.ZipFile(archive).extractall(tmp_path / "b")
    _members_are_strict(tmp_path / "b")
    with Bundle(tmp_path / "b") as bundle:
        bundle.validate()
        (back,) = list(bundle.records(analysis["stream"]["uid"]))
    assert _same(back["data"], record["data"]) and back["timestamps"]["wavelength"] == INF


def test_old_bundle_with_bare_nan_tokens_still_imports(service, tmp_path):
    """A bundle written before tagging (Python's bare NaN/Infinity tokens) validates and imports."""
    header = header_doc(provenance={"analysis_name": "old", "params": {"w": NAN}})
    stream = stream_doc(header["uid"])
    records = [_weird_record(stream["uid"], i) for i in range(3)]
    folder = tmp_path / "old"
    (folder / "data_reference_header").mkdir(parents=True)
    (folder / "data_reference").mkdir()
    (folder / "analysis_header.json").write_text(json.dumps(header))
    (folder / "data_reference_header" / f"{stream['uid']}.json").write_text(json.dumps(stream))
    (folder / "data_reference" / f"{stream['uid']}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert "NaN" in (folder / "analysis_header.json").read_text()
    BundleWriter(folder).finish()
    report = import_archives(AnalysisClient(service.client_config), [folder])
    assert report.ok, report
    stored = service.database.data_reference.find_one({"uid": records[2]["uid"]})
    assert math.isnan(stored["data"]["absorbance"]) and stored["timestamps"]["wavelength"] == INF
    assert math.isnan(service.database.analysis_header.find_one()["provenance"]["params"]["w"])


def test_spool_and_sync_keep_nonfinite_values(start_service, closed_port, tmp_path):
    """Written offline to the spool, NaN values sit in strict JSON on disk and are synced as NaN."""
    from analysisstore.drivers.sync import Syncer

    client = AnalysisClient({"host": "127.0.0.1", "port": closed_port, "spool_dir": str(tmp_path), "retries": 0})
    h = client.insert_analysis_header(provenance={"analysis_name": "offline", "params": {"a": -INF}})
    s = client.insert_data_reference_header(h, data_keys={"x": {"dtype": "number"}})
    client.insert_bulk_data_reference(s, [{"data": {"x": NAN}, "timestamps": {"x": INF}, "seq_num": i}
                                          for i in range(3)])
    client.insert_analysis_tail(h, exit_status="success")
    _members_are_strict(tmp_path / "RUNS_FINISHED")
    service = start_service()
    report = Syncer(tmp_path, lambda: AnalysisClient({"url": service.url, "retries": 1}),
                    progress_bar=False).run_once()
    assert report.ok and len(report.synced) == 1
    stored = list(service.database.data_reference.find({"data_reference_header": s}))
    assert len(stored) == 3 and all(math.isnan(r["data"]["x"]) and r["timestamps"]["x"] == INF for r in stored)
    assert service.database.analysis_header.find_one({"uid": h})["provenance"]["params"]["a"] == -INF


# ---- the browser view ----------------------------------------------------------------------------------


def _chromium() -> str | None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs"))
    from make_screenshots import chromium_path

    return chromium_path()


@pytest.mark.timeout(120)
def test_browser_view_shows_nan_instead_of_breaking(service, analysis):
    """The analysis page renders records holding NaN/Infinity (shown as text) with no error banner."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if _chromium() is None:
        pytest.skip("no Chromium on this machine")
    from make_screenshots import CHROMIUM_ARGS

    header_uid = analysis["header"]["uid"]
    requests.patch(f"{service.url}/api/v1/analysis_header/{header_uid}",
                   json={"$set": {"notes": "n"}}, timeout=30).raise_for_status()
    assert _raw_post(service, "/api/v1/data_reference", json.dumps(
        [_weird_record(analysis["stream"]["uid"], 0), record_doc(analysis["stream"]["uid"], 1)])).status_code == 200
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{service.url}/#/analysis/{header_uid}")
            page.wait_for_selector("main[data-ready=true], #error:not([hidden])", timeout=30_000)
            assert page.is_hidden("#error"), page.text_content("#error")
            page.wait_for_selector("table.records tbody td")
            cells = page.locator("table.records tbody td").all_text_contents()
            assert "NaN" in cells and "-Infinity" in cells
            assert page.locator("svg.plot polyline").count() >= 1  # the finite points still plot
        finally:
            browser.close()
