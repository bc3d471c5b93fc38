"""HTTP hygiene: safety headers, early errors on keep-alive connections, what a write-only token may see."""
from __future__ import annotations

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
