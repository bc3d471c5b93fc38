"""Client lookups (find_*/iter_*/find_page) accept exactly what HTTP accepts, against the real service."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests

from analysisstore import queries
from analysisstore.client import AnalysisClient
from analysisstore.client import lookups as shared
from analysisstore.client.errors import InvalidLookup
from analysisstore.errors import BadRequest
from helpers import header_doc, post

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
UTC = timezone.utc


@pytest.fixture
def client(service):
    with AnalysisClient(service.client_config) as c:
        yield c


@pytest.fixture
def dataset(service):
    """Six headers with varied fields (one sample holds a comma, one field has single underscores)."""
    docs = [
        header_doc(uid="a", time=T0 + 0, sample="Si-1", project="alpha", tags=["x", "y"], owner="Ann",
                   run_type="scan", provenance={"analysis_name": "uvvis", "run": {"id": 1}}),
        header_doc(uid="b", time=T0 + 10, sample="Si-2", project="alpha", tags=["y"], owner="bob",
                   run_type="scan", provenance={"analysis_name": "uvvis", "run": {"id": 2}}),
        header_doc(uid="c", time=T0 + 20, sample="Ge,1", project="beta", tags=["z"], notes="redo",
                   run_type="fit", provenance={"analysis_name": "xrd", "run": {"id": 3}}),
        header_doc(uid="d", time=T0 + 30, sample="Ge-2", project="beta", tags=[], invalid=True,
                   provenance={"analysis_name": "xrd", "run": {"id": 4}}),
        header_doc(uid="e", time=T0 + 40, project="gamma", tags=["x"], owner="ANNA",
                   provenance={"analysis_name": "icp", "run": {"id": 5}}),
        header_doc(uid="f", time=T0 + 50, sample="3", project="gamma", tags=["x", "z"],
                   provenance={"analysis_name": "icp", "run": {"id": 6}}),
    ]
    assert post(service, "analysis_header", docs).status_code == 200


def _http(service, params):
    response = requests.get(f"{service.url}/api/v1/analysis_header", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return "".join(d["uid"] for d in response.json()["items"])


def _found(docs):
    return "".join(d.uid for d in docs)


AT = datetime.fromtimestamp(T0 + 30, UTC)


@pytest.mark.parametrize("keywords, params, expected", [
    ({"time__gte": AT}, {"time__gte": "2023-11-14T22:13:50Z"}, "def"),
    ({"time__gte": AT.replace(tzinfo=None)}, {"time__gte": "2023-11-14T22:13:50"}, "def"),
    ({"time__lt": AT.astimezone(timezone(timedelta(hours=2)))}, {"time__lt": str(T0 + 30)}, "abc"),
    ({"time__range": [AT - timedelta(seconds=20), AT]}, {"time__range": f"{T0 + 10},{T0 + 30}"}, "bcd"),
    ({"project__in": ["alpha", "gamma"]}, {"project__in": "alpha,gamma"}, "abef"),
    ({"project__nin": ("alpha", "gamma")}, {"project__nin": "alpha,gamma"}, "cd"),
    ({"tags__contains": ["x", "z"]}, {"tags__contains": "x,z"}, "f"),
    ({"tags__overlap": {"y", "z"}}, {"tags__overlap": "y,z"}, "abcf"),
    ({"project__ne": "alpha"}, {"project__ne": "alpha"}, "cdef"),
    ({"sample__isnull": True}, {"sample__isnull": "true"}, "e"),
    ({"notes__exists": True}, {"notes__exists": "true"}, "c"),
    ({"invalid": True}, {"invalid": "true"}, "d"),
    ({"sample__startswith": "Si-"}, {"sample__startswith": "Si-"}, "ab"),
    ({"owner__icontains": "ann"}, {"owner__icontains": "ann"}, "ae"),
    ({"provenance__run__id__gte": 5}, {"provenance.run.id__gte": "5"}, "ef"),
    ({"provenance__analysis_name__exact": "xrd"}, {"provenance.analysis_name": "xrd"}, "cd"),
    ({"run_type__in": ["fit"], "time__gt": T0}, {"run_type__in": "fit", "time__gt": str(T0)}, "c"),
])
def test_keyword_lookups_select_what_http_selects(service, dataset, client, keywords, params, expected):
    """Each operator, lists, datetimes (aware, naive = UTC) and nested paths give HTTP's answer, not []."""
    assert _http(service, params) == expected
    assert _found(client.find_analysis_header(**keywords)) == expected
    assert _found(client.iter_analysis_header(**keywords)) == expected


def test_a_list_value_may_hold_a_comma(service, dataset, client):
    """List values travel as repeated parameters, so "Ge,1" is one value, alone or with others."""
    assert _found(client.find_analysis_header(sample__in=["Ge,1"])) == "c"
    assert _found(client.find_analysis_header(sample__in=["Ge,1", "3"])) == "cf"
    assert _found(client.find_analysis_header(sample__nin=["Ge,1", "3"], sample__exists=True)) == "abd"


def test_repeated_list_parameters_over_http(service, dataset):
    """?tags__contains=x&tags__contains=z works like the comma form; a repeated plain field stays a 400."""
    url = f"{service.url}/api/v1/analysis_header"
    assert _http(service, [("tags__contains", "x"), ("tags__contains", "z")]) == "f"
    assert _http(service, [("sample__in", "Ge,1"), ("sample__in", "3")]) == "cf"
    assert _http(service, [("time__range", str(T0 + 10)), ("time__range", str(T0 + 30))]) == "bcd"
    assert requests.get(url, params=[("project", "a"), ("project", "b")], timeout=30).status_code == 400
    assert requests.get(url, params=[("time__range", "1")] * 3, timeout=30).status_code == 400


def test_repeated_lookups_page_through_the_link_header(service, dataset):
    """The next link of a repeated lookup carries every value, so following it continues the same query."""
    params = [("project__in", "alpha"), ("project__in", "gamma"), ("limit", "2")]
    first = requests.get(f"{service.url}/api/v1/analysis_header", params=params, timeout=30)
    assert [d["uid"] for d in first.json()["items"]] == ["a", "b"]
    second = requests.get(service.url + first.links["next"]["url"], timeout=30)
    assert second.status_code == 200, second.text
    assert [d["uid"] for d in second.json()["items"]] == ["e", "f"]


@pytest.mark.parametrize("keywords, needle", [
    ({"time__regex": ".*"}, "regex"),
    ({"provenance__analysis_name": "xrd"}, "__exact"),
    ({"time__gte": [1, 2]}, "one value"),
    ({"time__range": [1]}, "two bounds"),
    ({"sample__in": []}, "at least one"),
    ({"sample": {"$regex": "x"}, "time__gt": 1}, "JSON filter"),
    ({"cursor": "abc"}, "find_page"),
    # options of iter_find, not fields: taken as a filter they silently matched nothing
    ({"paged": True}, "iter_find"),
    ({"project": "x", "page_size": 50}, "iter_find"),
    ({"time__gt": float("nan")}, "finite"),
])
def test_bad_lookups_fail_in_the_client(closed_port, keywords, needle):
    """Unknown operators, unsplittable paths and values HTTP cannot carry raise InvalidLookup before any request."""
    offline = AnalysisClient({"host": "127.0.0.1", "port": closed_port, "retries": 0})
    with pytest.raises(InvalidLookup, match=needle):
        offline.find_analysis_header(**keywords)
    with pytest.raises(ValueError):  # old code catching ValueError keeps working
        list(offline.iter_analysis_header(**keywords))


def test_plain_keywords_keep_typed_exact_matches(service, dataset, client):
    """Without lookups, keywords stay a typed JSON filter: "3" finds the string, datetimes become epoch seconds."""
    assert _found(client.find_analysis_header(sample="3")) == "f"
    assert _found(client.find_analysis_header(sample=3)) == ""
    assert _found(client.find_analysis_header(time=datetime.fromtimestamp(T0 + 10, UTC))) == "b"
    assert _found(client.find("analysis_header", {"time": {"$lt": datetime.fromtimestamp(T0 + 10, UTC)}})) == "a"


def test_find_page_returns_items_and_meta(service, dataset, client):
    """find_page exposes the count and the next cursor; following cursors visits every match once."""
    page = client.find_page("analysis_header", {"tags__overlap": ["x", "y"]}, limit=2, include_count=True)
    assert [d.uid for d in page.items] == ["a", "b"] and page.count == 4 and page.has_more
    seen = [d.uid for d in page.items]
    while page.next_cursor:
        page = client.find_page("analysis_header", {"tags__overlap": ["x", "y"]}, limit=2, cursor=page.next_cursor)
        seen += [d.uid for d in page.items]
    assert seen == ["a", "b", "e", "f"] and page.count is None
    newest = client.find_page("analysis_header", {"provenance.analysis_name": "xrd"}, order_by="-time",
                              fields=["sample"])
    assert [(d.uid, d.sample) for d in newest.items] == [("d", "Ge-2"), ("c", "Ge,1")]
    assert "project" not in newest.items[0]


def test_find_with_lookups_honours_limit_and_order(service, dataset, client):
    """limit and order_by apply to lookup queries as to plain ones."""
    assert _found(client.find_analysis_header(time__gte=T0, order_by="-time", limit=3)) == "fed"


def test_status_keyword_filters_by_derived_status(service, dataset, client):
    """status= is the service's derived status (every header here is old and tail-less: stale), not a field."""
    assert len(client.find_analysis_header(status="stale")) == 6
    assert client.find_analysis_header(status="running") == []


def test_one_vocabulary_for_client_and_service():
    """The service's operators and reserved names are the shared module's, in the same order."""
    assert tuple(queries.LOOKUPS) == shared.OPERATORS
    assert queries.RESERVED_PARAMS is shared.RESERVED_PARAMS


@pytest.mark.parametrize("args, expected", [
    ({"tags__contains": ["x", "y,z"]}, {"tags": {"$all": ["x", "y,z"]}}),
    ({"sample__in": ["a,b", "c"]}, {"sample": {"$in": ["a,b", "c"]}}),
    ({"time__range": ["1", "2"]}, {"time": {"$gte": 1, "$lte": 2}}),
])
def test_parse_lookups_takes_repeated_list_parameters(args, expected):
    """Repeated list parameters are one value each (commas kept); range takes its two bounds."""
    assert queries.parse_lookups(args) == expected


@pytest.mark.parametrize("args", [{"time__gte": ["1", "2"]}, {"time__range": ["1", "2", "3"]},
                                  {"x__in": ["a"] * 1001}])
def test_parse_lookups_refuses_other_repeats(args):
    """Single-valued operators repeated, range with three bounds and oversize lists are 400s."""
    with pytest.raises(BadRequest):
        queries.parse_lookups(args)


def test_query_params_writes_python_values_as_http_text():
    """The client's encoding: names, datetimes, booleans, None, repeated lists."""
    assert shared.query_params({
        "time__gte": datetime(2026, 1, 1), "invalid": False, "notes__isnull": True, "reason": None,
        "provenance__run__id__in": [1, 2], "data___gte": 1,
    }) == [("time__gte", "1767225600.0"), ("invalid", "false"), ("notes__isnull", "true"), ("reason", "null"),
           ("provenance.run.id__in", "1"), ("provenance.run.id__in", "2"), ("data___gte", "1")]
