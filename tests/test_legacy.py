"""The legacy face, spoken exactly as the 0.x client spoke it (raw requests + ujson)."""
from __future__ import annotations

import requests
import ujson

from helpers import assert_error, header_doc, record_doc, stream_doc, tail_doc


def _post(service, collection, signature, payload):
    """What 0.x ``AnalysisClient.post`` sent: the JSON as a raw body."""
    body = ujson.dumps({"signature": signature, "payload": payload})
    return requests.post(f"{service.url}/{collection}", data=body, timeout=30)


def _get(service, collection, signature, payload):
    """What 0.x ``AnalysisClient.get`` sent: the JSON as the whole query string."""
    query = ujson.dumps({"signature": signature, "payload": payload})
    return requests.get(f"{service.url}/{collection}", params=query, timeout=30)


def test_is_connected(service):
    """GET /is_connected answers 200."""
    assert requests.get(f"{service.url}/is_connected").status_code == 200


def test_full_analysis_through_the_legacy_face(service):
    """insert_* for all four types, bulk records, then find_* returning plain JSON lists."""
    header = header_doc(time=None)
    stream = stream_doc(header["uid"])
    records = [record_doc(stream["uid"], i) for i in range(3)]
    tail = tail_doc(header["uid"])
    assert _post(service, "analysis_header", "insert_analysis_header", header).json()["status"] is True
    assert _post(service, "data_reference_header", "insert_data_reference_header", stream).status_code == 200
    assert _post(service, "data_reference", "insert_data_reference", records[0]).status_code == 200
    bulk = {"data_header": stream["uid"],
            "data_references": [{k: v for k, v in r.items() if k != "data_reference_header"} for r in records[1:]]}
    response = _post(service, "data_reference", "bulk_data_reference_insert", bulk)
    assert response.status_code == 200 and response.json()["status"] is True
    assert _post(service, "analysis_tail", "insert_analysis_tail", tail).status_code == 200

    found = _get(service, "analysis_header", "find_analysis_header", {"uid": header["uid"]}).json()
    assert len(found) == 1 and found[0]["provenance"] == header["provenance"]
    assert isinstance(found[0]["time"], float)  # filled by the server: 0.x clients sent time=None
    refs = _get(service, "data_reference", "find_data_reference", {"data_reference_header": stream["uid"]}).json()
    assert sorted(r["seq_num"] for r in refs) == [0, 1, 2]
    assert all("_id" not in r for r in refs)
    tails = _get(service, "analysis_tail", "find_analysis_tail", {"analysis_header": header["uid"]}).json()
    assert [t["uid"] for t in tails] == [tail["uid"]]
    streams = _get(service, "data_reference_header", "find_data_reference_header",
                   {"analysis_header": header["uid"]}).json()
    assert [s["uid"] for s in streams] == [stream["uid"]]


def test_legacy_find_returns_newest_first_and_every_match(service):
    """Like 0.x: sorted by time descending, and all matches however many (streamed)."""
    headers = [header_doc(time=1_700_000_000.0 + i, project="many") for i in range(2_500)]
    requests.post(f"{service.url}/api/v1/analysis_header", json=headers, timeout=60)
    found = _get(service, "analysis_header", "find_analysis_header", {"project": "many"}).json()
    assert len(found) == 2_500
    assert [d["time"] for d in found] == sorted((h["time"] for h in headers), reverse=True)


def test_legacy_find_with_operators_and_empty_result(service):
    """Allowlisted operators work in the payload; no match is an empty list, not an error."""
    headers = [header_doc(time=1_700_000_000.0 + i) for i in range(3)]
    for h in headers:
        _post(service, "analysis_header", "insert_analysis_header", h)
    found = _get(service, "analysis_header", "find_analysis_header", {"time": {"$gt": 1_700_000_000.5}}).json()
    assert {d["uid"] for d in found} == {headers[1]["uid"], headers[2]["uid"]}
    assert _get(service, "analysis_header", "find_analysis_header", {"uid": "none"}).json() == []


def test_legacy_where_is_refused(service):
    """The 0.x service passed $where straight to MongoDB; this one refuses it."""
    response = _get(service, "analysis_header", "find_analysis_header", {"$where": "sleep(100)"})
    assert_error(response, 400, "BadRequest", "$where")


def test_unknown_signature_is_400(service):
    """A signature that does not belong to the URL is a 400 naming it."""
    assert_error(_post(service, "analysis_header", "insert_everything", header_doc()), 400, contains="insert_everything")
    assert_error(_post(service, "analysis_header", "insert_analysis_tail", header_doc()), 400)
    assert_error(_get(service, "analysis_tail", "find_analysis_header", {}), 400, contains="find_analysis_tail")
    assert service.count("analysis_header") == 0


def test_missing_signature_or_payload_is_400(service):
    """Both signature and payload are required."""
    response = requests.post(f"{service.url}/analysis_header", data=ujson.dumps({"payload": {}}))
    assert_error(response, 400, contains="signature")
    response = requests.post(f"{service.url}/analysis_header", data=ujson.dumps({"signature": "insert_analysis_header"}))
    assert_error(response, 400, contains="payload")
    assert_error(requests.get(f"{service.url}/analysis_header", params="not json"), 400)


def test_legacy_writes_keep_every_invariant(service):
    """Unknown parent, conflicting uid and records after the tail are refused here too."""
    assert_error(_post(service, "analysis_tail", "insert_analysis_tail", tail_doc("ghost")), 404, contains="ghost")
    header = header_doc()
    _post(service, "analysis_header", "insert_analysis_header", header)
    assert_error(_post(service, "analysis_header", "insert_analysis_header", dict(header, project="x")), 409)
    stream = stream_doc(header["uid"])
    _post(service, "data_reference_header", "insert_data_reference_header", stream)
    _post(service, "analysis_tail", "insert_analysis_tail", tail_doc(header["uid"]))
    bulk = {"data_header": stream["uid"], "data_references": [record_doc(stream["uid"])]}
    assert_error(_post(service, "data_reference", "bulk_data_reference_insert", bulk), 409, "Finalized")
    assert service.count("data_reference") == 0


def test_bulk_record_naming_another_stream_is_refused(service, analysis):
    """data_header fills records' stream; a record naming a different stream is refused."""
    bulk = {"data_header": analysis["stream"]["uid"],
            "data_references": [record_doc(analysis["stream"]["uid"]), record_doc("other-stream")]}
    error = assert_error(_post(service, "data_reference", "bulk_data_reference_insert", bulk), 422,
                         contains="other-stream")
    assert "data_references[1]" in error["message"]
    assert service.count("data_reference") == 0
