"""An inclusive upper bound includes the documents on it, whatever index the database answers it from.

The embedded database answers ``$lte`` on the middle field of a compound index
(``time`` in ``(stream, time, uid)`` and ``(status, time, uid)``) without the
documents equal to the bound: every lookup with ``time__lte`` or
``time__range`` on one stream, and the stale listing, silently lost them.
"""
from __future__ import annotations

from typing import Any

import pytest
import requests

from helpers import assert_error, header_doc, post, record_doc, tail_doc

T0 = 1_700_000_002.0


def _list(service: Any, doc_type: str, **params: Any) -> list[dict[str, Any]]:
    answer = requests.get(f"{service.url}/api/v1/{doc_type}", params=params, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def _search(service: Any, doc_type: str, filt: dict[str, Any]) -> list[dict[str, Any]]:
    answer = requests.post(f"{service.url}/api/v1/{doc_type}/search", json={"filter": filt}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


@pytest.fixture
def three_records(service: Any, analysis: dict[str, Any]) -> str:
    """A stream with records at T0, T0 + 1 and T0 + 2."""
    stream = analysis["stream"]["uid"]
    assert post(service, "data_reference", [record_doc(stream, seq_num=i) for i in range(3)]).status_code == 200
    return stream


@pytest.mark.parametrize("params, seqs", [
    ({"time__lte": str(T0 + 1)}, [0, 1]),
    ({"time__lte": str(int(T0) + 2)}, [0, 1, 2]),  # an integer bound
    ({"time__range": f"{T0},{T0 + 1}"}, [0, 1]),
    ({"time__range": f"{T0 + 1},{T0 + 1}"}, [1]),
    ({"time__lt": str(T0 + 1)}, [0]),
    ({"time__gte": str(T0 + 1)}, [1, 2]),
])
def test_a_stream_lookup_includes_its_bounds(service, three_records, params, seqs):
    items = _list(service, "data_reference", data_reference_header=three_records, **params)
    assert [r["seq_num"] for r in items] == seqs


def test_search_filters_include_their_upper_bound(service, three_records):
    bound = {"$lte": T0 + 1}
    for filt in ({"data_reference_header": three_records, "time": bound},
                 {"$and": [{"data_reference_header": three_records}, {"time": bound}]},
                 {"data_reference_header": three_records, "$or": [{"time": bound}, {"seq_num": 2}]},
                 {"data_reference_header": three_records, "time": {"$not": {"$gt": T0 + 1}}}):
        assert sorted(r["seq_num"] for r in _search(service, "data_reference", filt)) == [0, 1, 2][:2] + (
            [2] if "$or" in filt else []), filt


def test_counts_and_ndjson_streams_include_the_bound(service, three_records):
    params = {"data_reference_header": three_records, "time__lte": str(T0 + 1)}
    counted = requests.get(f"{service.url}/api/v1/data_reference", params={**params, "include_count": "true"}, timeout=30)
    assert counted.json()["meta"]["count"] == 2
    streamed = requests.get(f"{service.url}/api/v1/data_reference", params=params,
                            headers={"Accept": "application/x-ndjson"}, timeout=30)
    lines = [line for line in streamed.text.splitlines() if '"seq_num"' in line]
    assert len(lines) == 2


def test_status_with_a_time_bound_includes_the_bound(service):
    headers = [header_doc(time=1_700_000_000.0 + i) for i in range(3)]
    for header in headers:
        assert post(service, "analysis_header", header).status_code == 201
        assert post(service, "analysis_tail", tail_doc(header["uid"])).status_code == 201
    items = _list(service, "analysis_header", status="success", time__lte=str(1_700_000_001.0))
    assert [h["uid"] for h in items] == [h["uid"] for h in headers[:2]]


def test_large_and_tiny_bounds_stay_exact(service, analysis):
    stream = analysis["stream"]["uid"]
    records = [record_doc(stream, seq_num=i, time=t) for i, t in enumerate([-2.5e-100, 0.0, 1e-100, 2.0**52 + 0.5])]
    assert post(service, "data_reference", records).status_code == 200
    for bound, seqs in ((0.0, [0, 1]), (1e-100, [0, 1, 2]), (2.0**52 + 0.5, [0, 1, 2, 3]), (-2.5e-100, [0])):
        got = _search(service, "data_reference", {"data_reference_header": stream, "time": {"$lte": bound}})
        assert sorted(r["seq_num"] for r in got) == seqs, (bound, got)


@pytest.mark.parametrize("bound", ["1e-300", "-1e-200", "1e200", "-1.7e308"])
def test_a_time_bound_the_index_cannot_order_is_a_400_not_a_wrong_answer(service, three_records, bound):
    """The embedded database's index misplaces such numbers: time__gt=1e-300 used to match nothing."""
    for op in ("gt", "gte", "lt", "lte"):
        answer = requests.get(f"{service.url}/api/v1/data_reference", timeout=30,
                              params={"data_reference_header": three_records, f"time__{op}": bound})
        assert_error(answer, 400, "BadRequest", "out of range")
    answer = requests.post(f"{service.url}/api/v1/data_reference/search", timeout=30,
                           json={"filter": {"$or": [{"time": {"$gt": float(bound)}}, {"seq_num": 1}]}})
    assert_error(answer, 400, "BadRequest", "out of range")
    for nested in ({"$not": {"$gt": float(bound)}}, {"$elemMatch": {"$lte": float(bound)}}):
        answer = requests.post(f"{service.url}/api/v1/data_reference/search", timeout=30,
                               json={"filter": {"data_reference_header": three_records, "time": nested}})
        assert_error(answer, 400, "BadRequest", "out of range")
    answer = requests.post(f"{service.url}/api/v1/data_reference/search", timeout=30,
                           data='{"filter": {"time": {"$lte": 1' + "0" * 400 + '}}}')
    assert answer.status_code == 400, answer.text  # an integer past any float: refused, whatever the reason


@pytest.mark.parametrize("when", [1e-130, -1e-200, 1e121, -1.5e308])
def test_a_time_the_index_cannot_order_is_refused_at_write(service, analysis, when):
    """Stored, such a record was left out of listings in time order while the count still included it."""
    stream = analysis["stream"]["uid"]
    record = record_doc(stream, time=when)
    assert_error(post(service, "data_reference", record), 422, contains="magnitude")
    assert_error(post(service, "analysis_header", header_doc(time=when)), 422, contains="magnitude")
    assert _list(service, "data_reference", data_reference_header=stream) == []
