"""Tokens and scopes on every class of route, CORS, and the metrics endpoint."""
from __future__ import annotations

import json

import pytest
import requests

from analysisstore.auth import digest
from analysisstore.client import AnalysisClient, Forbidden, Unauthorized
from analysisstore.config import TokenEntry
from helpers import as_stored, assert_error, header_doc, record_doc, stream_doc

READ, WRITE = "read-token", "write-token"
TOKENS = (TokenEntry("reader", digest(READ), frozenset({"read"})),
          TokenEntry("writer", digest(WRITE), frozenset({"read", "write"})))


@pytest.fixture
def secured(start_service):
    service = start_service(require_auth=True, tokens=TOKENS)
    requests.post(f"{service.url}/api/v1/analysis_header", json=header_doc(uid="h1"),
                  headers={"Authorization": f"Bearer {WRITE}"}).raise_for_status()
    return service


def _call(service, method, path, token=None, body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, service.url + path, json=body, headers=headers, timeout=30)


# (method, path, body, scope needed: None = open)
ROUTES = [
    ("GET", "/healthz", None, None),
    ("GET", "/readyz", None, None),
    ("GET", "/is_connected", None, None),
    ("GET", "/api/v1/openapi.json", None, None),
    ("GET", "/api/v1/schemas/analysis_header", None, None),
    ("GET", "/", None, None),
    ("GET", "/ui/app.js", None, None),
    ("GET", "/api/v1/analysis/h1/bundle", None, "read"),
    ("GET", "/api/v1/analysis_header", None, "read"),
    ("GET", "/api/v1/analysis_header/h1", None, "read"),
    ("POST", "/api/v1/analysis_header/search", {"filter": {}}, "read"),
    ("GET", "/api/v1/analysis/h1", None, "read"),
    ("GET", "/api/v1/analysis_header/h1/revisions", None, "read"),
    ("GET", "/api/v1/status", None, "read"),
    ("GET", "/metrics", None, "read"),
    ("GET", '/analysis_header?{"signature":"find_analysis_header","payload":{}}', None, "read"),
    ("POST", "/api/v1/analysis_header", header_doc(), "write"),
    ("PATCH", "/api/v1/analysis_header/h1", {"$set": {"tags": ["x"]}}, "write"),
    ("POST", "/analysis_header", {"signature": "insert_analysis_header", "payload": header_doc()}, "write"),
]


@pytest.mark.parametrize("method, path, body, scope", ROUTES)
def test_tokens_and_scopes_per_route(secured, method, path, body, scope):
    """Open routes answer anyone; others 401 without/with a bad token, 403 with too small a scope, else 2xx."""
    if scope is None:
        assert _call(secured, method, path, body=body).status_code == 200
        return
    unauthorized = _call(secured, method, path, body=body)
    assert_error(unauthorized, 401, "Unauthorized", "bearer token")
    assert unauthorized.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(_call(secured, method, path, "wrong-token", body), 401, "Unauthorized", "not known")
    if scope == "write":
        assert_error(_call(secured, method, path, READ, body), 403, "Forbidden", "write")
    good = _call(secured, method, path, READ if scope == "read" else WRITE, body)
    assert good.status_code in (200, 201), good.text


def test_refused_writes_store_nothing(secured):
    """A write without the write scope leaves the database untouched."""
    before = secured.count("analysis_header")
    _call(secured, "POST", "/api/v1/analysis_header", READ, [header_doc() for _ in range(3)])
    assert secured.count("analysis_header") == before


def test_client_sends_its_token(secured):
    """AnalysisClient(token=...) authenticates; errors are the typed 401/403."""
    assert AnalysisClient({"url": secured.url, "token": WRITE}).insert_analysis_header(provenance={})
    with pytest.raises(Forbidden):
        AnalysisClient({"url": secured.url, "token": READ}).insert_analysis_header(provenance={})
    with pytest.raises(Unauthorized):
        AnalysisClient({"url": secured.url}).find_analysis_header(uid="h1")
    assert AnalysisClient({"url": secured.url, "token": READ}).find_analysis_header(uid="h1")[0].uid == "h1"


def test_metrics_can_be_public(start_service):
    """metrics_public opens /metrics while the API stays closed."""
    service = start_service(require_auth=True, tokens=TOKENS, metrics_public=True)
    assert requests.get(f"{service.url}/metrics").status_code == 200
    assert requests.get(f"{service.url}/api/v1/analysis_header").status_code == 401


def test_cors_is_off_by_default(service):
    """No allowlist: no CORS headers, and a preflight is refused."""
    response = requests.get(f"{service.url}/healthz", headers={"Origin": "https://ui.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = requests.options(f"{service.url}/api/v1/analysis_header", headers={
        "Origin": "https://ui.example", "Access-Control-Request-Method": "POST"})
    assert_error(preflight, 403, "Forbidden", "ui.example")


def test_cors_allowlist(start_service):
    """A listed origin gets a proper preflight and CORS headers, errors included; others do not."""
    service = start_service(cors_origins=("https://ui.example",))
    preflight = requests.options(f"{service.url}/api/v1/analysis_header", headers={
        "Origin": "https://ui.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://ui.example"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    error = requests.get(f"{service.url}/api/v1/analysis_header/nope", headers={"Origin": "https://ui.example"})
    assert error.status_code == 404 and error.headers["Access-Control-Allow-Origin"] == "https://ui.example"
    other = requests.options(f"{service.url}/api/v1/analysis_header", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert other.status_code == 403 and "Access-Control-Allow-Origin" not in other.headers


def test_a_web_page_of_another_site_cannot_write(start_service):
    """Without auth (the loopback default) a page elsewhere could POST text/plain here without a preflight.

    Browsers send Origin with such a request: a write from an origin that is
    neither this service's own nor listed in cors_origins is refused and
    nothing is stored. Clients that send no Origin (scripts, curl) and the
    service's own page are unaffected.
    """
    service = start_service(cors_origins=("https://ui.example",))
    simple = {"Content-Type": "text/plain"}
    for body, path in ((header_doc(uid="csrf"), "/api/v1/analysis_header"),
                       ({"signature": "insert_analysis_header", "payload": header_doc(uid="csrf-0x")},
                        "/analysis_header")):
        for origin in ("https://evil.example", "null", "http://["):
            response = requests.post(service.url + path, data=json.dumps(body),
                                     headers={**simple, "Origin": origin}, timeout=30)
            assert response.status_code == 403, response.text
            assert response.json()["error"]["type"] == "Forbidden"
    assert service.count("analysis_header") == 0
    own = f"http://127.0.0.1:{service.port}"
    for origin, uid in ((own, "own-page"), ("https://ui.example", "listed")):
        response = requests.post(f"{service.url}/api/v1/analysis_header", data=json.dumps(header_doc(uid=uid)),
                                 headers={**simple, "Origin": origin}, timeout=30)
        assert response.status_code == 201, response.text
    search = requests.post(f"{service.url}/api/v1/analysis_header/search", json={"filter": {}},
                           headers={"Origin": "https://evil.example"}, timeout=30)
    assert search.status_code == 200  # a read: its answer stays unreadable to that page without CORS
    assert service.count("analysis_header") == 2


def test_a_web_page_of_another_site_cannot_attach_a_file(service, analysis):
    """A file upload is a write like any other: a foreign Origin is refused (403) and no file is stored."""
    uid = analysis["header"]["uid"]
    response = requests.post(f"{service.url}/api/v1/analysis/{uid}/files", params={"name": "planted.txt"},
                             data=b"from another site", headers={"Origin": "https://evil.example"}, timeout=30)
    assert_error(response, 403, "Forbidden", "evil.example")
    assert service.database.analysis_file.count_documents({}) == 0
    own = requests.post(f"{service.url}/api/v1/analysis/{uid}/files", params={"name": "own.txt"}, data=b"ok",
                        headers={"Origin": f"http://127.0.0.1:{service.port}"}, timeout=30)
    assert own.status_code == 201, own.text


def _metric(text, name, **labels):
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_inserts_and_requests_exactly(service, analysis):
    """/metrics: documents inserted by type, requests by route and status, latency histogram."""
    stream_uid = analysis["stream"]["uid"]
    records = [{"uid": f"m{i}", "time": 1.0, "data_reference_header": stream_uid, "data": {}, "timestamps": {}}
               for i in range(37)]
    requests.post(f"{service.url}/api/v1/data_reference", json=records[:30]).raise_for_status()
    requests.post(f"{service.url}/api/v1/data_reference", json=records).raise_for_status()  # 30 already stored
    requests.get(f"{service.url}/api/v1/analysis_header/nope")
    text = requests.get(f"{service.url}/metrics").text
    assert _metric(text, "analysisstore_documents_inserted_total", doc_type="data_reference") == 37
    assert _metric(text, "analysisstore_documents_inserted_total", doc_type="analysis_header") == 1
    assert _metric(text, "analysisstore_requests_total", route="DocumentCollectionHandler", method="POST",
                   status="200") == 2
    assert _metric(text, "analysisstore_requests_total", route="DocumentHandler", status="404") == 1
    assert _metric(text, "analysisstore_request_duration_seconds_count", route="DocumentCollectionHandler",
                   method="POST") == 4  # 2 bulks, plus header and stream from the fixture


def _many_records(service, n):
    """n records of one stream, written straight to the database (setup, not what is tested)."""
    header = header_doc()
    stream = stream_doc(header["uid"])
    service.database.analysis_header.insert_one(as_stored(header))
    service.database.data_reference_header.insert_one(as_stored(stream))
    service.database.data_reference.insert_many([as_stored(record_doc(stream["uid"], i)) for i in range(n)])
    return stream["uid"]


def _stream(service, body):
    return requests.post(f"{service.url}/api/v1/data_reference/search", json=body,
                         headers={"Accept": "application/x-ndjson"}, stream=True, timeout=120)


def test_time_limits_for_pages_and_for_streams(start_service):
    """1 ms page limit: a slow page query is a clear 400, yet a stream of 20 000 records is not cut short;
    1 ms stream limit (same data): the stream is refused or ends early."""
    pages_strict = start_service(query_max_time_ms=1)
    stream = _many_records(pages_strict, 20_000)
    response = requests.get(f"{pages_strict.url}/api/v1/data_reference", params={"data.absorbance__gt": 0.9},
                            timeout=120)  # an unindexed field: the database scans every record
    assert_error(response, 400, "BadRequest", "took longer than the server allows")
    assert "clusterTime" not in response.text and "errmsg" not in response.text  # not the database's raw reply
    with _stream(pages_strict, {"filter": {"data_reference_header": stream}}) as response:
        assert response.status_code == 200, response.text
        assert sum(1 for line in response.iter_lines() if line) == 20_000
    streams_strict = start_service(database=pages_strict.config.database, stream_max_time_ms=1)
    with _stream(streams_strict, {"filter": {"data_reference_header": stream}}) as response:
        if response.status_code == 200:  # the limit struck after the first batch went out: the transfer is cut
            with pytest.raises(requests.exceptions.ChunkedEncodingError):
                sum(1 for line in response.iter_lines() if line)
        else:
            assert_error(response, 400, "BadRequest", "took longer than the server allows")
