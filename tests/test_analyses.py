"""The analysis view, derived status, updates with revisions, NDJSON streaming."""
from __future__ import annotations

import json

import pytest
import requests

from helpers import assert_error, header_doc, post, record_doc, stream_doc, tail_doc


def _patch(service, doc_type, uid, body):
    return requests.patch(f"{service.url}/api/v1/{doc_type}/{uid}", json=body, timeout=30)


def test_analysis_view(service, analysis):
    """Header, streams with record counts, tail and status in one call."""
    header, stream = analysis["header"], analysis["stream"]
    other = stream_doc(header["uid"])
    post(service, "data_reference_header", other)
    post(service, "data_reference", [record_doc(stream["uid"], i) for i in range(7)])
    view = requests.get(f"{service.url}/api/v1/analysis/{header['uid']}").json()
    assert view["header"] == header and view["tail"] is None and view["status"] == "stale"
    assert {s["uid"]: s["record_count"] for s in view["streams"]} == {stream["uid"]: 7, other["uid"]: 0}
    tail = tail_doc(header["uid"], exit_status="fail", reason="diverged")
    post(service, "analysis_tail", tail)
    view = requests.get(f"{service.url}/api/v1/analysis/{header['uid']}").json()
    assert view["tail"] == tail and view["status"] == "fail"
    assert_error(requests.get(f"{service.url}/api/v1/analysis/nope"), 404, contains="nope")


def test_status_is_derived_and_filterable(start_service):
    """running / stale by age without a tail; success / fail / abort from the tail; status= filters."""
    import time

    service = start_service(stale_after_seconds=3600)
    now = time.time()
    docs = {name: header_doc(uid=name, time=t) for name, t in
            [("run", now), ("old", now - 7200), ("ok", now), ("bad", now), ("stop", now)]}
    post(service, "analysis_header", list(docs.values()))
    for name, status in [("ok", "success"), ("bad", "fail"), ("stop", "abort")]:
        post(service, "analysis_tail", tail_doc(name, exit_status=status))
    for status, expected in [("running", ["run"]), ("stale", ["old"]), ("success", ["ok"]),
                             ("fail", ["bad"]), ("abort", ["stop"])]:
        items = requests.get(f"{service.url}/api/v1/analysis_header", params={"status": status}).json()["items"]
        assert [d["uid"] for d in items] == expected, status
        view = requests.get(f"{service.url}/api/v1/analysis/{expected[0]}").json()
        assert view["status"] == status
    body = requests.post(f"{service.url}/api/v1/analysis_header/search",
                         json={"status": "running", "filter": {"uid": {"$in": ["run", "ok"]}}}).json()
    assert [d["uid"] for d in body["items"]] == ["run"]
    assert_error(requests.get(f"{service.url}/api/v1/analysis_header", params={"status": "done"}), 400,
                 contains="done")
    assert_error(requests.get(f"{service.url}/api/v1/analysis_tail", params={"status": "running"}), 400)


def test_patch_updates_and_keeps_every_revision(service, analysis):
    """Each accepted PATCH stores the previous version; revisions are listed oldest first."""
    uid = analysis["header"]["uid"]
    first = _patch(service, "analysis_header", uid, {"$set": {"sample": "S2", "tags": ["a"]}})
    assert first.status_code == 200
    assert first.json()["sample"] == "S2" and first.json()["_revision"] == 1
    second = _patch(service, "analysis_header", uid, {"$set": {"notes": "checked"}, "$unset": ["tags"]})
    assert second.json()["_revision"] == 2 and "tags" not in second.json()
    stored = requests.get(f"{service.url}/api/v1/analysis_header/{uid}").json()
    assert stored["notes"] == "checked" and stored["sample"] == "S2"
    revisions = requests.get(f"{service.url}/api/v1/analysis_header/{uid}/revisions").json()["items"]
    assert [r["revision"] for r in revisions] == [0, 1]
    assert revisions[0]["document"] == analysis["header"]
    assert revisions[1]["document"]["sample"] == "S2" and revisions[1]["document"]["tags"] == ["a"]
    assert all(r["request_id"] for r in revisions)


@pytest.mark.parametrize("field", ["uid", "time", "provenance", "provenance.params", "_revision"])
def test_patch_of_immutable_field_is_400_and_changes_nothing(service, analysis, field):
    """uid, time, provenance (and anything inside it) cannot change."""
    uid = analysis["header"]["uid"]
    assert_error(_patch(service, "analysis_header", uid, {"$set": {field: 1}}), 400, "BadRequest",
                 field.split(".")[0])
    assert requests.get(f"{service.url}/api/v1/analysis_header/{uid}").json() == analysis["header"]
    assert requests.get(f"{service.url}/api/v1/analysis_header/{uid}/revisions").json()["items"] == []


def test_after_tail_only_annotations_change(service, analysis):
    """Finalized: invalid, tags, notes may change (header and tail); anything else is 409."""
    uid = analysis["header"]["uid"]
    tail = tail_doc(uid)
    post(service, "analysis_tail", tail)
    assert_error(_patch(service, "analysis_header", uid, {"$set": {"sample": "late"}}), 409, "Finalized", "sample")
    assert _patch(service, "analysis_header", uid, {"$set": {"invalid": True}}).status_code == 200
    assert _patch(service, "analysis_tail", tail["uid"], {"$set": {"notes": "ok"}}).status_code == 200
    assert_error(_patch(service, "analysis_tail", tail["uid"], {"$set": {"reason": "x"}}), 409, "Finalized")
    assert_error(_patch(service, "analysis_tail", tail["uid"], {"$set": {"exit_status": "fail"}}), 400)
    assert requests.get(f"{service.url}/api/v1/analysis_tail/{tail['uid']}").json()["exit_status"] == "success"


def test_patch_producing_invalid_document_is_422(service, analysis):
    """The updated document must still satisfy its schema."""
    uid = analysis["header"]["uid"]
    assert_error(_patch(service, "analysis_header", uid, {"$set": {"tags": "not-a-list"}}), 422, contains="tags")
    assert_error(_patch(service, "analysis_header", uid, {"$set": {"x": {"$gt": 1}}}), 422)


@pytest.mark.parametrize("body, needle", [
    ({}, "$set"), ({"$inc": {"n": 1}}, "$set"), ({"$set": []}, "$set"), ({"$set": {}}, "nothing"),
    ({"$set": {"a": 1}, "$unset": ["a"]}, "both"), ({"$set": {"$where": 1}}, "$where"),
])
def test_malformed_patch_is_400(service, analysis, body, needle):
    """Only $set / $unset with plain field names."""
    assert_error(_patch(service, "analysis_header", analysis["header"]["uid"], body), 400, contains=needle)


def test_patch_unknown_uid_and_immutable_types(service):
    """404 for an unknown document; streams and records are immutable (405)."""
    assert_error(_patch(service, "analysis_header", "ghost", {"$set": {"tags": []}}), 404, contains="ghost")
    assert_error(_patch(service, "data_reference", "x", {"$set": {"seq_num": 1}}), 405, contains="immutable")


def test_ndjson_streams_every_match(service, analysis):
    """Accept: application/x-ndjson returns all matches, one document per line, in order."""
    stream_uid = analysis["stream"]["uid"]
    records = [record_doc(stream_uid, i) for i in range(2_345)]
    post(service, "data_reference", records)
    response = requests.get(f"{service.url}/api/v1/data_reference",
                            params={"data_reference_header": stream_uid, "order_by": "-time"},
                            headers={"Accept": "application/x-ndjson"}, stream=True)
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [d["seq_num"] for d in lines] == list(range(2_344, -1, -1))
    searched = requests.post(f"{service.url}/api/v1/data_reference/search",
                             json={"filter": {"seq_num": {"$lt": 10}}, "fields": ["seq_num"]},
                             headers={"Accept": "application/x-ndjson"})
    assert [json.loads(line)["seq_num"] for line in searched.text.splitlines()] == list(range(10))
