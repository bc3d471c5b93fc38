"""What the fuzz suite found, pinned one case each: every answer is a 4xx in the error shape, never a 5xx."""
from __future__ import annotations

import http.client
import json
from typing import Any

import pytest
import requests

from helpers import assert_error, header_doc, post


def _search(service: Any, raw_body: bytes, doc_type: str = "analysis_header") -> requests.Response:
    return requests.post(f"{service.url}/api/v1/{doc_type}/search", data=raw_body,
                         headers={"Content-Type": "application/json"}, timeout=30)


@pytest.mark.parametrize("order_by", [",", " , ,", ",-"])
def test_order_by_of_blank_names_is_400(service, order_by):
    """order_by that names no field (only commas and blanks) is a 400, not a crash."""
    response = requests.get(f"{service.url}/api/v1/analysis_header", params={"order_by": order_by}, timeout=30)
    assert_error(response, 400, "BadRequest", contains="order_by")


@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("raw", ["1e400", "-1e400", "Infinity", "NaN", "12.7", "0.5", "true"])
def test_search_paging_numbers_must_be_integers(service, name, raw):
    """limit/offset in a search body that are infinite, NaN, fractional or booleans: 400, never truncated."""
    response = _search(service, f'{{"{name}": {raw}}}'.encode())
    assert_error(response, 400, "BadRequest", contains=name)


def test_search_accepts_an_integral_float_limit(service):
    """limit 5.0 (how some JSON writers spell 5) is the integer 5."""
    response = _search(service, b'{"limit": 5.0}')
    assert response.status_code == 200, response.text
    assert response.json()["meta"]["limit"] == 5


@pytest.mark.parametrize("field", ["time", "exit_status"])
def test_a_lone_surrogate_quoted_in_a_schema_error_is_encodable(service, field):
    """A value holding a lone surrogate, quoted back in a 422, still gives a JSON error body (escaped)."""
    header = header_doc()
    assert post(service, "analysis_header", header).status_code == 201
    body = {"uid": "t-1", "time": 1.0, "analysis_header": header["uid"], "exit_status": "success",
            field: "bad\ud800value"}
    response = requests.post(f"{service.url}/api/v1/analysis_tail", data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"}, timeout=30)
    error = assert_error(response, 422, "ValidationError")
    assert "\\ud800" in error["message"]
    assert service.count("analysis_tail") == 0


def test_a_huge_range_bound_is_a_416_or_the_whole_file(service, analysis):
    """Range bounds with thousands of digits: a 416 when they start past the end, never a 500."""
    uid = analysis["header"]["uid"]
    upload = requests.post(f"{service.url}/api/v1/analysis/{uid}/files", params={"name": "a.bin"},
                           data=b"x" * 1024, timeout=30)
    assert upload.status_code == 201, upload.text
    url = f"{service.url}/api/v1/files/{upload.json()['uid']}"
    huge = "9" * 5000
    past_end = requests.get(url, headers={"Range": f"bytes={huge}-"}, timeout=30)
    assert_error(past_end, 416, "RangeNotSatisfiable")
    open_end = requests.get(url, headers={"Range": f"bytes=0-{huge}"}, timeout=30)
    assert open_end.status_code == 200 and open_end.content == b"x" * 1024
    suffix = requests.get(url, headers={"Range": f"bytes=-{huge}"}, timeout=30)
    assert suffix.status_code == 200 and suffix.content == b"x" * 1024


def _raw_get(service: Any, target: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        connection.request("GET", target, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_a_url_longer_than_64_kib_is_a_json_414(service):
    """A request line over 64 KiB gets a JSON 414 instead of a closed connection."""
    status, headers, body = _raw_get(service, "/api/v1/analysis_header?uid=" + "a" * 70_000)
    assert status == 414 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["type"] == "UriTooLong"


def test_headers_over_64_kib_are_a_json_431(service):
    """Header fields over 64 KiB in all get a JSON 431 instead of a closed connection."""
    status, headers, body = _raw_get(service, "/api/v1/analysis_header", {"X-Padding": "a" * 70_000})
    assert status == 431 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["type"] == "RequestHeaderFieldsTooLarge"


def test_a_405_lists_the_allowed_methods(service):
    """A method a route does not serve is a JSON 405 with the Allow header RFC 9110 asks for."""
    response = requests.request("TRACE", f"{service.url}/api/v1/analysis_header", timeout=30)
    assert_error(response, 405, "MethodNotAllowed")
    assert set(response.headers["Allow"].split(", ")) == {"GET", "POST", "OPTIONS"}


def test_a_superscript_digit_is_not_a_depth(service, analysis):
    """depth=² ('²'.isdigit() is true, int('²') fails) is a 400, not a 500."""
    uid = analysis["header"]["uid"]
    response = requests.get(f"{service.url}/api/v1/analysis/{uid}/lineage", params={"depth": "²"}, timeout=30)
    assert_error(response, 400, "BadRequest", contains="depth")


def test_a_superscript_digit_is_not_a_revision(service, analysis):
    """X-Expect-Revision: ² (latin-1 0xB2) is a 400 naming the header, and the header is not changed."""
    uid = analysis["header"]["uid"]
    before = service.database.analysis_header.find_one({"uid": uid}, {"_id": 0})
    response = requests.patch(f"{service.url}/api/v1/analysis_header/{uid}", json={"$set": {"notes": "x"}},
                              headers={"X-Expect-Revision": "²".encode("latin-1")}, timeout=30)
    assert_error(response, 400, "BadRequest", contains="X-Expect-Revision")
    assert service.database.analysis_header.find_one({"uid": uid}, {"_id": 0}) == before
