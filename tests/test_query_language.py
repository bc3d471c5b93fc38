"""The query language on real data: each lookup, sorting on any field, count, offset, latest, fields."""
from __future__ import annotations

import threading

import pytest
import requests

from helpers import assert_error, header_doc, post

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.fixture
def dataset(service):
    """Six headers with varied fields; returned by short name."""
    docs = {
        "a": header_doc(uid="a", time=T0 + 0, sample="Si-1", project="alpha", tags=["x", "y"], owner="Ann",
                        provenance={"analysis_name": "uvvis", "params": {"n": 1}}),
        "b": header_doc(uid="b", time=T0 + 10, sample="Si-2", project="alpha", tags=["y"], owner="bob",
                        provenance={"analysis_name": "uvvis", "params": {"n": 2}}),
        "c": header_doc(uid="c", time=T0 + 20, sample="Ge-1", project="beta", tags=["z"], notes="redo",
                        provenance={"analysis_name": "xrd", "params": {"n": 3}}),
        "d": header_doc(uid="d", time=T0 + 30, sample="Ge-2", project="beta", tags=[], invalid=True,
                        provenance={"analysis_name": "xrd", "params": {"n": 4}}),
        "e": header_doc(uid="e", time=T0 + 40, project="gamma", tags=["x"], owner="ANNA",
                        provenance={"analysis_name": "icp", "params": {"n": 5}}),
        "f": header_doc(uid="f", time=T0 + 50, sample="3", project="gamma", tags=["x", "z"],
                        provenance={"analysis_name": "icp", "params": {"n": 6}}),
    }
    assert post(service, "analysis_header", list(docs.values())).status_code == 200
    return docs


def _uids(service, **params):
    response = requests.get(f"{service.url}/api/v1/analysis_header", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return [d["uid"] for d in response.json()["items"]]


@pytest.mark.parametrize("params, expected", [
    ({"project": "alpha"}, "ab"),
    ({"project__exact": "beta"}, "cd"),
    ({"project__ne": "alpha"}, "cdef"),
    ({"time__gt": str(T0 + 30)}, "ef"),
    ({"time__gte": "2023-11-14T22:13:50Z"}, "def"),
    ({"time__lt": str(T0 + 10)}, "a"),
    ({"time__lte": str(T0 + 10)}, "ab"),
    ({"time__range": f"{T0 + 10},{T0 + 30}"}, "bcd"),
    ({"project__in": "alpha,gamma"}, "abef"),
    ({"project__nin": "alpha,gamma"}, "cd"),
    ({"tags__contains": "x,z"}, "f"),
    ({"tags__overlap": "y,z"}, "abcf"),
    ({"sample__isnull": "true"}, "e"),
    ({"sample__isnull": "false"}, "abcdf"),
    ({"notes__exists": "true"}, "c"),
    ({"invalid__exists": "false"}, "abcef"),
    ({"sample__startswith": "Si-"}, "ab"),
    ({"owner__icontains": "ann"}, "ae"),
    ({"provenance.analysis_name": "xrd"}, "cd"),
    ({"provenance.params.n__gte": "5"}, "ef"),
    ({"sample": "3"}, "f"),
    ({"invalid": "true"}, "d"),
    ({"provenance.analysis_name": "uvvis", "time__gte": str(T0 + 5)}, "b"),
])
def test_each_lookup_selects_the_right_documents(service, dataset, params, expected):
    """Every lookup operator, on real stored documents."""
    assert _uids(service, **params) == list(expected)


def test_startswith_is_literal_not_a_regex(service):
    """Regex metacharacters in startswith/icontains are matched literally."""
    post(service, "analysis_header", [header_doc(uid="dot", sample="a.c"), header_doc(uid="abc", sample="abc")])
    assert _uids(service, sample__startswith="a.") == ["dot"]
    assert _uids(service, sample__icontains=".*") == []


@pytest.mark.parametrize("params, needle", [
    ({"$where": "1"}, "$where"),
    ({"uid__regex": ".*"}, "regex"),
    ({"provenance.$x": "1"}, "$x"),
    ({"uid__icontains": "a" * 1000}, "icontains"),
])
def test_hostile_lookups_are_400(service, params, needle):
    """$-names, unknown operators and oversized patterns never reach the database."""
    response = requests.get(f"{service.url}/api/v1/analysis_header", params=params)
    assert_error(response, 400, "BadRequest", needle)


@pytest.mark.parametrize("params", [
    {"time__gte": "yesterday"},
    {"time__lt": "nan"},
    {"time__gt": "NaN"},
    {"time__range": "2026-01-01,tomorrow"},
    {"time__range": ["yesterday", "2026-01-01"]},
])
def test_a_time_bound_that_is_not_a_time_is_400(service, dataset, params):
    """``time`` is epoch seconds in every document: text (or NaN) as its bound matched nothing, silently."""
    response = requests.get(f"{service.url}/api/v1/analysis_header", params=params)
    assert_error(response, 400, "BadRequest", "ISO-8601")


def test_order_by_any_field_pages_with_missing_values(service, dataset):
    """Sorting on an optional field puts missing values first and pages through every document once."""
    expected_asc = ["e", "f", "c", "d", "a", "b"]  # missing sample first, then by sample, uid
    assert _walk(service, order_by="sample", limit=2) == expected_asc
    assert _walk(service, order_by="-sample", limit=4) == list(reversed(expected_asc))


def _walk(service, **params):
    """Every uid of a listing, following next_cursor page by page."""
    seen, cursor = [], None
    while True:
        page = {**params, **({"cursor": cursor} if cursor else {})}
        body = requests.get(f"{service.url}/api/v1/analysis_header", params=page, timeout=30).json()
        seen += [d["uid"] for d in body["items"]]
        cursor = body["meta"]["next_cursor"]
        if not cursor:
            return seen


def test_include_count_offset_and_fields(service, dataset):
    """count is exact; offset skips; fields projects (keeping uid and sort keys)."""
    body = requests.get(f"{service.url}/api/v1/analysis_header",
                        params={"project__in": "alpha,beta", "include_count": "true", "limit": 1, "offset": 1,
                                "fields": "project"}).json()
    assert body["meta"]["count"] == 4
    assert body["items"] == [{"uid": "b", "project": "alpha", "time": T0 + 10}]
    assert "count" not in requests.get(f"{service.url}/api/v1/analysis_header").json()["meta"]


def test_latest_per_distinct_value(service, dataset):
    """latest=field returns the newest document per value; missing values form one group."""
    items = requests.get(f"{service.url}/api/v1/analysis_header",
                         params={"latest": "project", "order_by": "-time"}).json()["items"]
    assert [d["uid"] for d in items] == ["f", "d", "b"]
    items = requests.get(f"{service.url}/api/v1/analysis_header",
                         params={"latest": "owner", "order_by": "time"}).json()["items"]
    assert [d["uid"] for d in items] == ["a", "b", "e", "f"]  # f: newest without owner


def test_search_body_takes_the_same_paging(service, dataset):
    """/search accepts order_by, limit, offset, include_count, fields and latest too."""
    body = requests.post(f"{service.url}/api/v1/analysis_header/search", json={
        "filter": {"tags": {"$in": ["x"]}}, "order_by": ["-time"], "limit": 2, "include_count": True,
        "fields": ["tags"]}).json()
    assert [d["uid"] for d in body["items"]] == ["f", "e"]
    assert body["meta"]["count"] == 3 and body["meta"]["has_more"] is True
    assert set(body["items"][0]) == {"uid", "tags", "time"}


@pytest.mark.parametrize("params, needle", [
    ({"offset": "-1"}, "offset"),
    ({"offset": "1", "cursor": "abc"}, "offset or cursor"),
    ({"latest": "project", "cursor": "abc"}, "latest"),
    ({"include_count": "perhaps"}, "include_count"),
    ({"fields": "a,$b"}, "$b"),
    ({"order_by": "a,b,c,d,e"}, "at most 4"),
])
def test_bad_paging_parameters_are_400(service, params, needle):
    """Each paging parameter is checked."""
    assert_error(requests.get(f"{service.url}/api/v1/analysis_header", params=params), 400, contains=needle)


def test_paging_is_stable_while_a_writer_inserts(service):
    """2 500 documents paged by 100 while newer ones arrive: each pre-existing one seen exactly once."""
    existing = [header_doc(time=T0 + i, project="stable") for i in range(2_500)]
    for start in range(0, len(existing), 1_000):
        assert post(service, "analysis_header", existing[start:start + 1_000]).status_code == 200
    stop = threading.Event()
    written = []

    def writer() -> None:
        with requests.Session() as session:
            i = 0
            while not stop.is_set() and i < 2_000:
                doc = header_doc(time=T0 + 10_000 + i, project="stable")
                session.post(f"{service.url}/api/v1/analysis_header", json=doc, timeout=30)
                written.append(doc["uid"])
                i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen, cursor = [], None
        while True:
            params = {"project": "stable", "limit": 100, **({"cursor": cursor} if cursor else {})}
            body = requests.get(f"{service.url}/api/v1/analysis_header", params=params, timeout=30).json()
            seen += [d["uid"] for d in body["items"]]
            cursor = body["meta"]["next_cursor"]
            if not cursor or len(seen) >= 2_500 + 2_000:
                break
    finally:
        stop.set()
        thread.join()
    assert written, "the writer wrote nothing while paging"
    pre = [d["uid"] for d in existing]
    assert [uid for uid in seen if uid in set(pre)] == pre  # every pre-existing one, once, in order
    assert len(seen) == len(set(seen))
