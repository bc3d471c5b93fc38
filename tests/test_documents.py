"""Edge validation without I/O: schemas, filled time, field names, records against their stream."""
from __future__ import annotations

import pytest

from analysisstore.validation import check_record_keys, prepare
from analysisstore.errors import ValidationFailed
from analysisstore.schemas import DOC_TYPES, load_schema

STREAM = {"uid": "s", "data_keys": {"n": {"dtype": "integer"}, "x": {"dtype": "number"},
                                    "flag": {"dtype": "boolean"}, "arr": {"dtype": "array"},
                                    "name": {"dtype": "string"}, "meta": {"dtype": "object"}}}


def test_every_schema_loads_and_names_its_type():
    """Each shipped schema is valid JSON Schema titled after its document type."""
    for doc_type in DOC_TYPES:
        assert load_schema(doc_type)["title"] == doc_type


def test_prepare_fills_time_and_reports_it():
    """A missing or null time is filled with the given clock."""
    doc, filled = prepare("analysis_header", {"uid": "a", "provenance": {}, "time": None}, now=42.0)
    assert doc["time"] == 42.0 and filled is True
    doc, filled = prepare("analysis_header", {"uid": "a", "provenance": {}, "time": 7}, now=42.0)
    assert doc["time"] == 7 and filled is False


@pytest.mark.parametrize("doc_type, doc, needle", [
    ("analysis_header", {"uid": "", "provenance": {}}, "uid"),
    ("analysis_header", {"uid": "a" * 300, "provenance": {}}, "uid"),
    ("analysis_header", {"uid": 5, "provenance": {}}, "uid"),
    ("data_reference_header", {"uid": "s", "analysis_header": "h", "data_keys": {}}, "data_keys"),
    ("data_reference_header", {"uid": "s", "analysis_header": "h", "data_keys": {"x": {}}}, "dtype"),
    ("data_reference", {"uid": "r", "data_reference_header": "s", "data": {}, "timestamps": {"x": "t"}},
     "timestamps"),
    ("data_reference", {"uid": "r", "data_reference_header": "s", "data": {}, "timestamps": {}, "seq_num": -1},
     "seq_num"),
    ("analysis_tail", {"uid": "t", "analysis_header": "h"}, "exit_status"),
    ("analysis_header", {"uid": "a", "provenance": {"x": {"$gt": 1}}}, "$gt"),
    ("analysis_header", {"uid": "a", "provenance": {"list": [{"a.b": 1}]}}, "a.b"),
])
def test_prepare_refuses(doc_type, doc, needle):
    """Schema violations and operator-like field names are 422s naming the field."""
    with pytest.raises(ValidationFailed, match=__import__("re").escape(needle)):
        prepare(doc_type, doc, now=1.0)


@pytest.mark.parametrize("data", [
    {"n": 3}, {"n": 3.0}, {"x": 1}, {"x": 2.5}, {"flag": False}, {"arr": [1, 2]}, {"name": "a"},
    {"meta": {"k": 1}}, {"x": None}, {},
])
def test_record_values_matching_dtypes_pass(data):
    """Values of the declared dtype (or null) are accepted."""
    check_record_keys({"data": data, "timestamps": {k: 1.0 for k in data}}, STREAM)


@pytest.mark.parametrize("data", [
    {"n": 3.5}, {"n": True}, {"x": "1"}, {"x": False}, {"flag": 1}, {"arr": "12"}, {"name": 1}, {"meta": []},
])
def test_record_values_of_other_dtypes_fail(data):
    """A value not of the declared dtype is refused, naming the key."""
    with pytest.raises(ValidationFailed, match=next(iter(data))):
        check_record_keys({"data": data, "timestamps": {}}, STREAM)


@pytest.mark.parametrize("field, value", [("seq_num", True), ("time", False), ("seq_num", 1.5)])
def test_booleans_are_not_numbers(field, value):
    """JSON true is not an integer or a number, whatever Python's bool subclassing says."""
    doc = {"uid": "r", "time": 1.0, "data_reference_header": "s", "data": {}, "timestamps": {}, field: value}
    with pytest.raises(ValidationFailed, match=field):
        prepare("data_reference", doc, now=1.0)
