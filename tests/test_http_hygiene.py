"""HTTP hygiene: safety headers, early errors on keep-alive connections, what a write-only token may see."""
from __future__ import annotations

import codecs
import gzip
import json

import pytest
import requests

from analysisstore.auth import digest
from analysisstore.config import TokenEntry
from helpers import assert_error, header_doc

WRITE_ONLY, READ_WRITE = "write-only-token", "read-write-token"
TOKENS = (TokenEntry("writer", digest(WRITE_ONLY), frozenset({"write"})),
          TokenEntry("editor", digest(READ_WRITE), frozenset({"read", "write"})))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_response_says_nosniff(service):
    """JSON answers, errors, the page and NDJSON streams all carry X-Content-Type-Options: nosniff."""
    responses = [
        requests.get(f"{service.url}/healthz", timeout=30),
        requests.get(f"{service.url}/api/v1/analysis_header/nope", timeout=30),
        requests.get(f"{service.url}/no/such/route", timeout=30),
        requests.get(f"{service.url}/", timeout=30),
        requests.get(f"{service.url}/ui/app.js", timeout=30),
        requests.get(f"{service.url}/api/v1/analysis_header", headers={"Accept": "application/x-ndjson"}, timeout=30),
    ]
    for response in responses:
        assert response.headers.get("X-Content-Type-Options") == "nosniff", response.url


def test_the_page_may_not_be_framed(service):
    """The HTML page forbids framing: CSP frame-ancestors 'none' and X-Frame-Options: DENY."""
    page = requests.get(f"{service.url}/", timeout=30)
    assert page.headers["Content-Type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"


def test_refused_posts_leave_a_pooled_connection_usable(start_service):
    """200 POSTs with a body and a bad token on one keep-alive session: every one a JSON 401, no dead connection."""
    service = start_service(require_auth=True, tokens=TOKENS)
    body = [header_doc(note="n" * 2000) for _ in range(20)]  # ~50 KiB, read only after the 401 is decided
    with requests.Session() as session:
        for _ in range(200):
            response = session.post(f"{service.url}/api/v1/analysis_header", json=body,
                                    headers=_bearer("not-a-token"), timeout=30)
            assert_error(response, 401, "Unauthorized", "not known")
    assert service.count("analysis_header") == 0


def test_an_oversized_body_on_a_keep_alive_connection_is_drained(start_service):
    """A 413 for a small oversized body leaves the session's connection usable for the next request."""
    service = start_service(max_query_bytes=4096)
    with requests.Session() as session:
        for _ in range(50):
            too_big = session.post(f"{service.url}/api/v1/analysis_header/search",
                                   json={"filter": {"uid": "x" * 8000}}, timeout=30)
            assert_error(too_big, 413, "PayloadTooLarge")
            assert session.get(f"{service.url}/healthz", timeout=30).status_code == 200


def test_a_write_only_token_cannot_read_through_patch(start_service):
    """PATCH with only the write scope answers uid and revision, not the document; with read it is the document."""
    service = start_service(require_auth=True, tokens=TOKENS)
    header = header_doc(sample="secret-sample")
    assert requests.post(f"{service.url}/api/v1/analysis_header", json=header,
                         headers=_bearer(WRITE_ONLY), timeout=30).status_code == 201
    patch = requests.patch(f"{service.url}/api/v1/analysis_header/{header['uid']}",
                           json={"$set": {"tags": ["a"]}}, headers=_bearer(WRITE_ONLY), timeout=30)
    assert patch.status_code == 200, patch.text
    assert patch.json() == {"uid": header["uid"], "_revision": 1}
    full = requests.patch(f"{service.url}/api/v1/analysis_header/{header['uid']}",
                          json={"$set": {"tags": ["b"]}}, headers=_bearer(READ_WRITE), timeout=30)
    assert full.json()["sample"] == "secret-sample" and full.json()["_revision"] == 2


def test_a_compressed_body_is_refused_naming_its_encoding(service, analysis):
    """Content-Encoding other than identity is a 415 naming it, on every face; nothing is stored."""
    document = json.dumps(header_doc(uid="zipped")).encode()
    for encoding in ("gzip", "br", "deflate, gzip", "x-custom"):
        for path in ("/api/v1/analysis_header", "/api/v1/analysis_header/search", "/analysis_header"):
            response = requests.post(service.url + path, data=gzip.compress(document),
                                     headers={"Content-Encoding": encoding, "Content-Type": "application/json"},
                                     timeout=30)
            assert_error(response, 415, "UnsupportedMediaType", repr(encoding))
    upload = requests.post(f"{service.url}/api/v1/analysis/{analysis['header']['uid']}/files",
                           params={"name": "a.txt"}, data=gzip.compress(b"text"),
                           headers={"Content-Encoding": "gzip"}, timeout=30)
    assert_error(upload, 415, "UnsupportedMediaType", "'gzip'")
    assert service.count("analysis_header", {"uid": "zipped"}) == 0
    assert service.database.analysis_file.count_documents({}) == 0
    plain = requests.post(f"{service.url}/api/v1/analysis_header", data=document,
                          headers={"Content-Encoding": "identity"}, timeout=30)
    assert plain.status_code == 201, plain.text


def test_gzip_bytes_without_content_encoding_are_named(service):
    """A gzip body sent without Content-Encoding is a 400 that says it looks compressed, not just 'not JSON'."""
    response = requests.post(f"{service.url}/api/v1/analysis_header", data=gzip.compress(b"{}"), timeout=30)
    assert_error(response, 400, "BadRequest", "gzip")


def test_a_utf8_byte_order_mark_is_accepted(service):
    """A body starting with the UTF-8 BOM (Windows tools write one) is the JSON after it."""
    document = header_doc(sample="Probe µ-1")
    for path, body in (("/api/v1/analysis_header", document),
                       ("/api/v1/analysis_header/search", {"filter": {"uid": document["uid"]}})):
        response = requests.post(service.url + path, data=codecs.BOM_UTF8 + json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, timeout=30)
        assert response.status_code in (200, 201), response.text
    found = requests.post(f"{service.url}/api/v1/analysis_header/search", json={"filter": {"uid": document["uid"]}},
                          timeout=30).json()["items"]
    assert [item["sample"] for item in found] == ["Probe µ-1"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_a_utf16_or_utf32_body_is_refused_saying_utf8(service, encoding):
    """JSON in UTF-16/32 (with or without BOM) is a 415 saying the body must be UTF-8; nothing is stored."""
    document = header_doc(uid="wide")
    response = requests.post(f"{service.url}/api/v1/analysis_header", data=json.dumps(document).encode(encoding),
                             headers={"Content-Type": f"application/json; charset={encoding}"}, timeout=30)
    error = assert_error(response, 415, "UnsupportedMediaType", "UTF-8")
    assert ("UTF-16" if "16" in encoding else "UTF-32") in error["message"]  # what the body looks like
    assert service.count("analysis_header", {"uid": "wide"}) == 0
