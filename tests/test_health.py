"""Liveness, readiness, unknown routes and methods, an unreachable database, published schemas."""
from __future__ import annotations

import requests

from analysisstore import __version__
from helpers import assert_error, header_doc, post


def test_healthz_and_readyz(service):
    """healthz says the process is up; readyz that the database answers."""
    assert requests.get(f"{service.url}/healthz").json() == {"status": "ok", "version": __version__}
    ready = requests.get(f"{service.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_unknown_route_is_json_404(service):
    """No HTML anywhere: unknown paths get the JSON error body."""
    for path in ("/nope", "/api/v1/nope", "/api/v1/analysis_header/a/b/c"):
        assert_error(requests.get(service.url + path), 404, "NotFound", path)
    assert_error(requests.post(f"{service.url}/api/v2/x", json={}), 404)


def test_wrong_method_is_json_405(service):
    """DELETE on a collection is not allowed, and says so in JSON."""
    assert_error(requests.delete(f"{service.url}/api/v1/analysis_header"), 405, "MethodNotAllowed", "DELETE")


def test_request_id_is_echoed(service):
    """A caller's X-Request-ID is used; otherwise one is made."""
    response = requests.get(f"{service.url}/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    assert len(requests.get(f"{service.url}/healthz").headers["X-Request-ID"]) == 32


def test_database_down_gives_503_with_retry_after(start_service, closed_port):
    """When MongoDB does not answer: readyz and writes are 503 with Retry-After; healthz stays 200."""
    uri = f"mongodb://127.0.0.1:{closed_port}/?directConnection=true"
    service = start_service(mongo_uri_override=uri, db_timeout_ms=300)
    assert requests.get(f"{service.url}/healthz").status_code == 200
    ready = requests.get(f"{service.url}/readyz")
    assert_error(ready, 503, "DatabaseUnavailable")
    assert ready.headers["Retry-After"] == "5"
    write = post(service, "analysis_header", header_doc())
    assert_error(write, 503, "DatabaseUnavailable")
    assert write.headers["Retry-After"] == "5"
    assert_error(requests.get(f"{service.url}/api/v1/analysis_header/x"), 503)


def test_schemas_are_published(service):
    """GET /api/v1/schemas/{doc_type} serves the schema the service validates with."""
    schema = requests.get(f"{service.url}/api/v1/schemas/data_reference").json()
    assert schema["title"] == "data_reference"
    assert schema["additionalProperties"] is False
    assert_error(requests.get(f"{service.url}/api/v1/schemas/nope"), 404, contains="nope")
