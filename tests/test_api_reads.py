"""v1 reads: get by uid, exact-match listing, search with a safe filter, keyset paging."""
from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from helpers import as_stored, assert_error, header_doc, open_cursors, post, record_doc


def _list(service, doc_type, **params):
    return requests.get(f"{service.url}/api/v1/{doc_type}", params=params, timeout=30)


def _search(service, doc_type, body):
    return requests.post(f"{service.url}/api/v1/{doc_type}/search", json=body, timeout=30)


def test_get_unknown_uid_is_404(service):
    """An unknown uid is a JSON 404 naming it."""
    assert_error(requests.get(f"{service.url}/api/v1/analysis_header/nope"), 404, "NotFound", "nope")


def test_list_filters_by_exact_value_and_dotted_path(service):
    """field=value and provenance.analysis_name=value select exactly the matching headers."""
    a = header_doc(project="alpha")
    b = header_doc(project="beta", provenance={"analysis_name": "xrd"})
    post(service, "analysis_header", [a, b])
    items = _list(service, "analysis_header", project="alpha").json()["items"]
    assert [d["uid"] for d in items] == [a["uid"]]
    items = _list(service, "analysis_header", **{"provenance.analysis_name": "xrd"}).json()["items"]
    assert [d["uid"] for d in items] == [b["uid"]]


def test_list_matches_numbers_given_as_text(service, analysis):
    """seq_num=3 finds the record whose seq_num is the integer 3."""
    records = [record_doc(analysis["stream"]["uid"], i) for i in range(5)]
    post(service, "data_reference", records)
    items = _list(service, "data_reference", seq_num="3").json()["items"]
    assert [d["uid"] for d in items] == [records[3]["uid"]]


def test_list_envelope_and_limit(service):
    """The envelope carries items and meta; limit bounds the page and has_more tells the rest."""
    headers = [header_doc(time=1_700_000_000.0 + i) for i in range(5)]
    post(service, "analysis_header", headers)
    body = _list(service, "analysis_header", limit=2).json()
    assert set(body) == {"items", "meta"}
    assert body["meta"]["limit"] == 2 and body["meta"]["has_more"] is True
    assert body["meta"]["order_by"] == ["time", "uid"]
    assert [d["uid"] for d in body["items"]] == [h["uid"] for h in headers[:2]]


@pytest.mark.parametrize("limit", ["0", "10001", "ten", "-1"])
def test_bad_limit_is_400(service, limit):
    """limit outside 1..10000 or not a number is a 400."""
    assert_error(_list(service, "analysis_header", limit=limit), 400, "BadRequest", "limit")


def test_keyset_paging_walks_every_document_once(service):
    """Following next_cursor (and the Link header) visits every match exactly once, in order."""
    headers = [header_doc(time=1_700_000_000.0 + (i % 3), project="paged") for i in range(11)]
    post(service, "analysis_header", headers)
    seen, params = [], {"project": "paged", "limit": 4}
    while True:
        response = _list(service, "analysis_header", **params)
        body = response.json()
        seen.extend(d["uid"] for d in body["items"])
        if not body["meta"]["has_more"]:
            assert "Link" not in response.headers
            break
        link = response.headers["Link"]
        assert link.endswith('; rel="next"')
        next_query = parse_qs(urlparse(link[1:link.index(">")]).query)
        assert next_query["cursor"] == [body["meta"]["next_cursor"]]
        params["cursor"] = body["meta"]["next_cursor"]
    expected = [h["uid"] for h in sorted(headers, key=lambda h: (h["time"], h["uid"]))]
    assert seen == expected


def test_descending_order(service):
    """order_by=-time returns the newest first."""
    headers = [header_doc(time=1_700_000_000.0 + i) for i in range(3)]
    post(service, "analysis_header", headers)
    items = _list(service, "analysis_header", order_by="-time").json()["items"]
    assert [d["uid"] for d in items] == [h["uid"] for h in reversed(headers)]


def test_cursor_from_another_filter_is_400(service):
    """A cursor is bound to its filter."""
    post(service, "analysis_header", [header_doc(project="a") for _ in range(3)])
    cursor = _list(service, "analysis_header", project="a", limit=1).json()["meta"]["next_cursor"]
    assert_error(_list(service, "analysis_header", project="b", limit=1, cursor=cursor), 400,
                 contains="different filter")
    assert_error(_list(service, "analysis_header", cursor="garbage!!"), 400, contains="cursor")


def test_unsupported_lookup_operator_is_400(service):
    """Unknown lookup operators are refused, naming the operator."""
    assert_error(_list(service, "analysis_header", time__regex="5"), 400, contains="regex")


def test_search_with_allowed_operators(service):
    """The JSON filter of /search accepts the documented Mongo subset."""
    headers = [header_doc(time=1_700_000_000.0 + i, tags=["t%d" % i]) for i in range(5)]
    post(service, "analysis_header", headers)
    body = {"filter": {"$or": [{"time": {"$gte": 1_700_000_003.0}}, {"tags": {"$all": ["t0"]}}]}}
    items = _search(service, "analysis_header", body).json()["items"]
    assert {d["uid"] for d in items} == {headers[0]["uid"], headers[3]["uid"], headers[4]["uid"]}


@pytest.mark.parametrize("filt, needle", [
    ({"$where": "sleep(1000)"}, "$where"),
    ({"uid": {"$regex": ".*"}}, "$regex"),
    ({"$expr": {"$eq": ["$uid", "$uid"]}}, "$expr"),
    ({"time": {"$function": {}}}, "$function"),
    ({"a$b": 1}, "a$b"),
    ({"uid": {"$in": list(range(2000))}}, "1000"),
    ({"$or": "x"}, "$or"),
])
def test_search_refuses_hostile_filters(service, filt, needle):
    """$where, $regex, $expr, $function, $ in field names and oversized lists are 400s."""
    assert_error(_search(service, "analysis_header", {"filter": filt}), 400, "BadRequest", needle)


def test_search_unknown_key_is_400(service):
    """Typos in the search body are reported, not ignored."""
    assert_error(_search(service, "analysis_header", {"filtr": {}}), 400, contains="filtr")


def test_search_paging_with_cursor(service):
    """Search pages by cursor like the listing does."""
    headers = [header_doc(time=1_700_000_000.0 + i) for i in range(5)]
    post(service, "analysis_header", headers)
    first = _search(service, "analysis_header", {"filter": {}, "limit": 3}).json()
    second = _search(service, "analysis_header",
                     {"filter": {}, "limit": 3, "cursor": first["meta"]["next_cursor"]}).json()
    uids = [d["uid"] for d in first["items"] + second["items"]]
    assert uids == [h["uid"] for h in headers]
    assert second["meta"]["has_more"] is False and second["meta"]["next_cursor"] is None


def test_a_client_hanging_up_mid_stream_releases_the_database_cursor(service, mongo):
    """Read 10 lines of a 20 000-record NDJSON stream and hang up: the service closes its cursor and goes on."""
    baseline = open_cursors(mongo)
    if baseline is None:
        pytest.skip("this database does not report open cursors in serverStatus")
    header = header_doc()
    stream = {"uid": f"s-{header['uid']}", "time": 1.0, "analysis_header": header["uid"],
              "data_keys": {"wavelength": {"dtype": "number"}, "absorbance": {"dtype": "number"}}}
    service.database.analysis_header.insert_one(as_stored(header))
    service.database.data_reference_header.insert_one(as_stored(stream))
    service.database.data_reference.insert_many([as_stored(record_doc(stream["uid"], i)) for i in range(20_000)])
    response = requests.post(f"{service.url}/api/v1/data_reference/search",
                             json={"filter": {"data_reference_header": stream["uid"]}},
                             headers={"Accept": "application/x-ndjson"}, stream=True, timeout=60)
    lines = response.iter_lines()
    assert [next(lines) for _ in range(10)]
    assert open_cursors(mongo) > baseline  # the stream is still being served
    response.close()  # hang up with most of the stream unread
    deadline = time.monotonic() + 30
    while open_cursors(mongo) > baseline:  # each check is a database round trip, not a sleep
        assert time.monotonic() < deadline, "the service kept its cursor open after the client left"
    assert requests.get(f"{service.url}/api/v1/data_reference", params={"limit": 1}, timeout=30).status_code == 200


def test_order_by_id_is_refused_rather_than_paged_forever(service):
    """Reads drop _id, so a cursor after a page ordered by it held null and every page was the first."""
    for doc in [header_doc() for _ in range(3)]:
        assert requests.post(f"{service.url}/api/v1/analysis_header", json=doc, timeout=30).status_code == 201
    for order in ("_id", "-_id", "time,_id", "_id.x"):
        assert_error(_list(service, "analysis_header", order_by=order, limit=1), 400, "BadRequest", "_id")
    assert_error(_search(service, "analysis_header", {"filter": {}, "order_by": ["_id"], "limit": 1}), 400,
                 "BadRequest", "_id")
