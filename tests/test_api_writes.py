"""v1 writes: every invariant of the data model, over real HTTP, against a real database."""
from __future__ import annotations

import requests

from helpers import assert_error, header_doc, post, record_doc, stream_doc, tail_doc


def test_header_insert_then_get_returns_it_without_internal_id(service):
    """A stored header comes back exactly as sent, with no MongoDB _id."""
    header = header_doc(project="p1", tags=["a"])
    response = post(service, "analysis_header", header)
    assert response.status_code == 201
    assert response.json() == {"uid": header["uid"], "result": "inserted", "time": header["time"]}
    assert response.headers["Location"] == f"/api/v1/analysis_header/{header['uid']}"
    got = requests.get(f"{service.url}/api/v1/analysis_header/{header['uid']}").json()
    assert got == header


def test_server_fills_time_when_omitted(service):
    """A header without time gets the server's clock."""
    header = header_doc()
    del header["time"]
    response = post(service, "analysis_header", header)
    assert response.status_code == 201
    stored = service.database.analysis_header.find_one({"uid": header["uid"]})
    assert isinstance(stored["time"], float) and stored["time"] > 1_700_000_000


def test_identical_resend_is_already_stored(service):
    """Re-sending the same document succeeds without a second copy."""
    header = header_doc()
    assert post(service, "analysis_header", header).status_code == 201
    again = post(service, "analysis_header", header)
    assert again.status_code == 200
    assert again.json()["result"] == "already stored"
    assert service.count("analysis_header") == 1


def test_resend_without_time_is_already_stored(service):
    """A retry of a document whose time the server filled is recognised as the same document."""
    header = header_doc()
    del header["time"]
    first = post(service, "analysis_header", dict(header))
    assert first.status_code == 201
    again = post(service, "analysis_header", dict(header))
    assert again.json()["result"] == "already stored"
    assert service.count("analysis_header") == 1
    stored = service.database.analysis_header.find_one({"uid": header["uid"]})
    # the answer names the stored document's time, not the time this retry would have had
    assert again.json()["time"] == first.json()["time"] == stored["time"]


def test_same_uid_different_content_is_conflict_and_keeps_original(service):
    """409 for a changed document under an existing uid; the stored one is untouched."""
    header = header_doc(project="original")
    assert post(service, "analysis_header", header).status_code == 201
    changed = dict(header, project="changed")
    assert_error(post(service, "analysis_header", changed), 409, "Conflict", header["uid"])
    assert service.database.analysis_header.find_one({"uid": header["uid"]})["project"] == "original"


def test_stream_for_unknown_header_is_404_naming_it(service):
    """A stream whose analysis_header does not exist is refused with the missing uid."""
    stream = stream_doc("no-such-header")
    assert_error(post(service, "data_reference_header", stream), 404, "NotFound", "no-such-header")
    assert service.count("data_reference_header") == 0


def test_record_for_unknown_stream_is_404(service):
    """A record for an unknown stream is refused and nothing is stored."""
    assert_error(post(service, "data_reference", record_doc("ghost-stream")), 404, contains="ghost-stream")
    assert service.count("data_reference") == 0


def test_tail_for_unknown_header_is_404(service):
    """A tail for an unknown analysis is refused."""
    assert_error(post(service, "analysis_tail", tail_doc("ghost")), 404, contains="ghost")
    assert service.count("analysis_tail") == 0


def test_one_tail_per_header(service, analysis):
    """A second, different tail for the same analysis is a conflict."""
    uid = analysis["header"]["uid"]
    assert post(service, "analysis_tail", tail_doc(uid)).status_code == 201
    assert_error(post(service, "analysis_tail", tail_doc(uid, exit_status="fail")), 409, "Conflict",
                 "already has a tail")
    assert service.count("analysis_tail") == 1


def test_no_records_or_streams_after_the_tail(service, analysis):
    """Once finalized, new records and streams are 409 Finalized; nothing is stored."""
    header, stream = analysis["header"], analysis["stream"]
    assert post(service, "analysis_tail", tail_doc(header["uid"])).status_code == 201
    assert_error(post(service, "data_reference", record_doc(stream["uid"])), 409, "Finalized", "finalized")
    assert_error(post(service, "data_reference_header", stream_doc(header["uid"])), 409, "Finalized")
    assert service.count("data_reference") == 0
    assert service.count("data_reference_header") == 1


def test_resend_of_stored_record_after_tail_still_succeeds(service, analysis):
    """Idempotency wins over finalization: a retry of an already stored record is fine."""
    record = record_doc(analysis["stream"]["uid"])
    assert post(service, "data_reference", record).status_code == 201
    assert post(service, "analysis_tail", tail_doc(analysis["header"]["uid"])).status_code == 201
    again = post(service, "data_reference", record)
    assert again.status_code == 200 and again.json()["result"] == "already stored"


def test_undeclared_data_key_is_422(service, analysis):
    """Record keys must be declared in the stream's data_keys."""
    record = record_doc(analysis["stream"]["uid"])
    record["data"]["temperature"] = 300.0
    error = assert_error(post(service, "data_reference", record), 422, "ValidationError", "temperature")
    assert error["details"][0]["path"] == "/data/temperature"
    assert service.count("data_reference") == 0


def test_undeclared_timestamp_key_is_422(service, analysis):
    """timestamps keys are held to data_keys too."""
    record = record_doc(analysis["stream"]["uid"])
    record["timestamps"]["pressure"] = 1.0
    assert_error(post(service, "data_reference", record), 422, contains="pressure")


def test_value_of_wrong_dtype_is_422(service, analysis):
    """A string where the stream declares a number is refused."""
    record = record_doc(analysis["stream"]["uid"])
    record["data"]["absorbance"] = "high"
    assert_error(post(service, "data_reference", record), 422, contains="absorbance")


def test_data_reference_is_strict(service, analysis):
    """Extra top-level fields on a record are refused."""
    record = record_doc(analysis["stream"]["uid"], colour="red")
    assert_error(post(service, "data_reference", record), 422, contains="colour")


def test_missing_required_field_is_422_naming_it(service):
    """A header without provenance is refused, naming the field."""
    header = header_doc()
    del header["provenance"]
    assert_error(post(service, "analysis_header", header), 422, "ValidationError", "provenance")
    assert service.count("analysis_header") == 0


def test_wrongly_typed_field_is_422(service):
    """provenance must be an object, time a number."""
    assert_error(post(service, "analysis_header", header_doc(provenance="text")), 422, contains="provenance")
    assert_error(post(service, "analysis_header", header_doc(time="yesterday")), 422, contains="time")
    assert service.count("analysis_header") == 0


def test_bad_exit_status_is_422(service, analysis):
    """exit_status is one of success / fail / abort."""
    tail = tail_doc(analysis["header"]["uid"], exit_status="finished")
    assert_error(post(service, "analysis_tail", tail), 422, contains="exit_status")


def test_operator_like_field_names_are_refused(service):
    """Field names starting with $ or containing dots never reach the database."""
    assert_error(post(service, "analysis_header", header_doc(provenance={"$where": "1"})), 422,
                 contains="$where")
    assert_error(post(service, "analysis_header", header_doc(**{"a.b": 1})), 422, contains="a.b")
    assert service.count("analysis_header") == 0


def test_client_supplied_id_is_refused(service):
    """_id belongs to the database."""
    assert_error(post(service, "analysis_header", header_doc(_id="mine")), 422, contains="_id")


def test_malformed_json_is_400(service):
    """A body that is not JSON is a 400 with the one error shape."""
    response = requests.post(f"{service.url}/api/v1/analysis_header", data=b"{not json", timeout=10)
    assert_error(response, 400, "BadRequest", "not valid JSON")


def test_empty_body_is_400(service):
    """An empty body is a 400, not a 500."""
    assert_error(requests.post(f"{service.url}/api/v1/analysis_header", data=b"", timeout=10), 400)


def test_non_object_document_is_422(service):
    """A JSON scalar is not a document."""
    assert_error(post(service, "analysis_header", 42), 422, contains="JSON object")


def test_oversized_body_is_413_and_nothing_stored(start_service):
    """A body over the configured limit is refused before it is read."""
    service = start_service(max_body_bytes=2_000)
    big = header_doc(notes="x" * 5_000)
    assert_error(post(service, "analysis_header", big), 413, "PayloadTooLarge")
    assert service.count("analysis_header") == 0


def test_bulk_inserts_and_reports_per_item(service, analysis):
    """A JSON array is a bulk write answered item by item."""
    stream_uid = analysis["stream"]["uid"]
    records = [record_doc(stream_uid, i) for i in range(5)]
    assert post(service, "data_reference", records[:2]).status_code == 200
    response = post(service, "data_reference", records)
    assert response.status_code == 200
    body = response.json()
    assert body["inserted"] == 3 and body["already_stored"] == 2
    assert [item["result"] for item in body["items"]] == ["already stored"] * 2 + ["inserted"] * 3
    assert [item["index"] for item in body["items"]] == list(range(5))
    assert service.count("data_reference") == 5


def test_bulk_with_one_invalid_item_writes_nothing(service, analysis):
    """Validation failures anywhere in a bulk reject the whole bulk, naming the item."""
    stream_uid = analysis["stream"]["uid"]
    records = [record_doc(stream_uid, i) for i in range(4)]
    records[2]["data"]["bogus"] = 1
    error = assert_error(post(service, "data_reference", records), 422, "ValidationError", "nothing was written")
    assert [d["index"] for d in error["details"]] == [2]
    assert error["details"][0]["uid"] == records[2]["uid"]
    assert service.count("data_reference") == 0


def test_bulk_with_unknown_parent_writes_nothing(service, analysis):
    """One record naming an unknown stream rejects the bulk."""
    records = [record_doc(analysis["stream"]["uid"], 0), record_doc("ghost", 1)]
    error = assert_error(post(service, "data_reference", records), 404, contains="ghost")
    assert [d["index"] for d in error["details"]] == [1]
    assert service.count("data_reference") == 0


def test_bulk_duplicate_uid_with_different_content_inside_request(service, analysis):
    """The same uid twice in one request with different content is a conflict; nothing written."""
    first = record_doc(analysis["stream"]["uid"], 0)
    second = dict(first, seq_num=1)
    assert_error(post(service, "data_reference", [first, second]), 409, "Conflict", "twice")
    assert service.count("data_reference") == 0


def test_bulk_conflict_with_stored_document_keeps_the_rest(service, analysis):
    """A uid conflict with a stored record is reported; valid items are stored; nothing overwritten."""
    stream_uid = analysis["stream"]["uid"]
    stored = record_doc(stream_uid, 0)
    assert post(service, "data_reference", stored).status_code == 201
    clash = dict(stored, seq_num=99)
    fresh = record_doc(stream_uid, 1)
    error = assert_error(post(service, "data_reference", [clash, fresh]), 409, "Conflict", "the other 1 were stored")
    assert error["details"][0]["uid"] == stored["uid"]
    assert service.database.data_reference.find_one({"uid": stored["uid"]})["seq_num"] == 0
    assert service.count("data_reference") == 2


def test_bulk_over_item_limit_is_413(start_service):
    """More documents than max_bulk_items in one request is refused."""
    service = start_service(max_bulk_items=3)
    headers = [header_doc() for _ in range(4)]
    assert_error(post(service, "analysis_header", headers), 413, contains="limit is 3")
    assert service.count("analysis_header") == 0


def test_empty_bulk_is_a_no_op(service):
    """An empty array stores nothing and says so."""
    response = post(service, "analysis_header", [])
    assert response.status_code == 200
    assert response.json() == {"items": [], "inserted": 0, "already_stored": 0}


def test_stream_declares_valid_dtypes_only(service, analysis):
    """A data key with an unknown dtype is refused."""
    stream = stream_doc(analysis["header"]["uid"], data_keys={"x": {"dtype": "float64"}})
    assert_error(post(service, "data_reference_header", stream), 422, contains="float64")


def test_integer_too_large_for_mongodb_is_422(service):
    """An integer beyond 64 bits is refused up front, not a 500."""
    assert_error(post(service, "analysis_header", header_doc(provenance={"n": 2**70})), 422, contains="8-byte")
    assert service.count("analysis_header") == 0


def test_absurdly_deep_document_is_422(service):
    """Nesting beyond 64 levels is refused."""
    deep: dict = {"x": 1}
    for _ in range(100):
        deep = {"a": deep}
    assert_error(post(service, "analysis_header", header_doc(provenance=deep)), 422, contains="deeper")


def test_document_over_16mb_is_413_and_bulk_writes_nothing(service, analysis):
    """A record bigger than MongoDB's document limit rejects its bulk before anything is written."""
    stream = stream_doc(analysis["header"]["uid"], data_keys={"blob": {"dtype": "string"}})
    assert post(service, "data_reference_header", stream).status_code == 201
    small = {"uid": "small", "time": 1.0, "data_reference_header": stream["uid"], "data": {"blob": "x"},
             "timestamps": {}}
    huge = dict(small, uid="huge", data={"blob": "x" * (17 * 1024 * 1024)})
    error = assert_error(post(service, "data_reference", [small, huge]), 413, "PayloadTooLarge", "nothing was written")
    assert error["details"][0]["uid"] == "huge"
    assert service.count("data_reference") == 0


def test_parent_checks_stay_correct_with_the_cache(service, analysis):
    """Cached parents and finalization never let a write through that the database would refuse."""
    stream_uid, header_uid = analysis["stream"]["uid"], analysis["header"]["uid"]
    assert post(service, "data_reference", record_doc(stream_uid, 0)).status_code == 201  # caches the stream
    assert_error(post(service, "data_reference", record_doc("never-written", 1)), 404)
    assert post(service, "analysis_tail", tail_doc(header_uid)).status_code == 201
    # the stream is cached as existing, but the new tail must still be seen: finalization is never cached negatively
    assert_error(post(service, "data_reference", record_doc(stream_uid, 2)), 409, "Finalized")
    assert_error(post(service, "data_reference", record_doc(stream_uid, 3)), 409, "Finalized")
    assert service.count("data_reference") == 1
