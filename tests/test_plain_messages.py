"""What the service tells a scientist is plain and true: JSON words, not Python's; no claim it did not do."""
from __future__ import annotations

import requests

from helpers import assert_error, header_doc, post, record_doc

PYTHON_WORDS = ("NoneType", "True", "False", "None", "dict", "'object'", "is not of type")


def _assert_plain(text: str) -> None:
    for word in PYTHON_WORDS:
        assert word not in text, f"{word!r} in {text!r}"


def test_non_object_document_is_explained_in_json_words(service):
    """A null body is 'not null', never 'got NoneType'."""
    response = requests.post(f"{service.url}/api/v1/analysis_header", data="null", timeout=30,
                             headers={"Content-Type": "application/json"})
    error = assert_error(response, 422, "ValidationError")
    assert error["message"] == "an analysis_header must be a JSON object {...}, not null"


def test_schema_errors_name_the_field_and_the_json_value(service):
    """provenance=true reads 'provenance must be an object, not true', in the message and the details."""
    error = assert_error(post(service, "analysis_header", header_doc(provenance=True)), 422, "ValidationError")
    assert "provenance must be an object, not true" in error["message"]
    _assert_plain(error["message"])
    for detail in error["details"]:
        _assert_plain(detail["message"])
    missing = assert_error(post(service, "analysis_header", {"provenance": {}}), 422, "ValidationError")
    assert "the required field 'uid' is missing" in missing["message"]


def test_record_of_wrong_dtype_names_the_json_value(service, analysis):
    """A boolean where a number is declared reads 'is true', not 'is bool'."""
    record = record_doc(analysis["stream"]["uid"])
    record["data"]["absorbance"] = True
    error = assert_error(post(service, "data_reference", record), 422, "ValidationError")
    assert "data['absorbance'] is true" in error["message"]


def test_bulk_details_say_rejected_items_were_not_written(service, analysis):
    """A rejected item of a bulk is reported with result 'error', never 'inserted'."""
    records = [record_doc(analysis["stream"]["uid"], i) for i in range(3)]
    records[1]["data"]["bogus"] = 1
    error = assert_error(post(service, "data_reference", records), 422, "ValidationError", "nothing was written")
    assert [(d["index"], d["result"]) for d in error["details"]] == [(1, "error")]
    assert service.count("data_reference") == 0


def test_patch_that_changes_nothing_makes_no_revision(service, analysis):
    """Setting a field to the value it already has stores no revision and leaves _revision alone."""
    uid = analysis["header"]["uid"]
    url = f"{service.url}/api/v1/analysis_header/{uid}"
    first = requests.patch(url, json={"$set": {"invalid": True, "notes": "saturated"}}, timeout=30)
    assert first.status_code == 200 and first.json()["_revision"] == 1
    again = requests.patch(url, json={"$set": {"invalid": True, "notes": "saturated"}}, timeout=30)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    unset_absent = requests.patch(url, json={"$unset": ["tags"]}, timeout=30)
    assert unset_absent.status_code == 200 and unset_absent.json()["_revision"] == 1
    revisions = requests.get(f"{url}/revisions", timeout=30).json()["items"]
    assert [r["revision"] for r in revisions] == [0]
    assert service.count("revisions") == 1
