"""Live events (Server-Sent Events from the change stream): delivered, filtered, resumable after a drop."""
from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from analysisstore.client import AnalysisClient
from helpers import EventReader, assert_error, header_doc, post


def test_inserts_and_updates_arrive_as_events(service: Any) -> None:
    """A header insert, then a PATCH of it: two events with ids, types and the document (no _id)."""
    reader = EventReader(service.url)
    try:
        header = header_doc(sample="s1")
        assert post(service, "analysis_header", header).status_code == 201
        requests.patch(f"{service.url}/api/v1/analysis_header/{header['uid']}", json={"$set": {"notes": "ok"}},
                       timeout=30).raise_for_status()
        first, second = reader.next_event(), reader.next_event()
        assert first["event"] == "insert" and second["event"] == "update" and first["id"] != second["id"]
        inserted, updated = json.loads(first["data"]), json.loads(second["data"])
        assert inserted["doc_type"] == "analysis_header" and inserted["uid"] == header["uid"]
        assert inserted["document"]["sample"] == "s1" and "_id" not in inserted["document"]
        assert updated["document"]["notes"] == "ok"
    finally:
        reader.close()


def test_lookups_and_doc_type_filter_events(service: Any, analysis: dict) -> None:
    """Only documents matching the lookups, of the asked types, are sent."""
    reader = EventReader(service.url, {"doc_type": "analysis_header", "sample__in": "wanted,also"})
    try:
        for sample in ("other", "wanted"):
            assert post(service, "analysis_header", header_doc(sample=sample)).status_code == 201
        assert json.loads(reader.next_event()["data"])["document"]["sample"] == "wanted"
    finally:
        reader.close()


def test_resume_after_a_dropped_connection_misses_nothing(service: Any) -> None:
    """Drop the connection after one event, write two more, resume with Last-Event-ID: exactly those two, in order."""
    reader = EventReader(service.url, {"provenance.analysis_name": "resume"})
    docs = [header_doc(provenance={"analysis_name": "resume"}) for _ in range(3)]
    assert post(service, "analysis_header", docs[0]).status_code == 201
    seen = reader.next_event()
    reader.close()  # the connection drops here
    for doc in docs[1:]:
        assert post(service, "analysis_header", doc).status_code == 201
    assert json.loads(seen["data"])["uid"] == docs[0]["uid"]
    resumed = AnalysisClient(service.client_config).events({"provenance.analysis_name": "resume"},
                                                          last_event_id=seen["id"])
    assert [next(resumed)["uid"] for _ in range(2)] == [d["uid"] for d in docs[1:]]
    resumed.close()


@pytest.mark.parametrize("params, headers, status", [
    ({"doc_type": "revisions"}, {}, 400), ({}, {"Last-Event-ID": "not-a-token"}, 400),
    ({}, {"Last-Event-ID": "82" * 20}, 400), ({"time__bogus": "1"}, {}, 400), ({"$where": "1"}, {}, 400)])
def test_bad_requests_get_a_clear_error(service: Any, params: dict, headers: dict, status: int) -> None:
    """Unknown types, forged resume ids and bad lookups: the one JSON error, before any event."""
    response = requests.get(f"{service.url}/api/v1/events", params=params, headers=headers, timeout=30)
    assert_error(response, status)
