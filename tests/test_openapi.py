"""The OpenAPI document is valid, served, and true to the routes; fuzzing it finds no 5xx."""
from __future__ import annotations

import re

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.web import RequestHandler

from analysisstore.handlers import analyses, documents, events, feed, files, health, lineage
from analysis_routes import documented_operations
from analysisstore.openapi import openapi_spec

METHODS = ("get", "post", "patch", "put", "delete")


def _v1_routes():
    for rule in [*analyses.routes, *documents.routes, *health.routes, *lineage.routes, *events.routes, *feed.routes, *files.routes]:
        pattern, handler = rule[0], rule[1]
        yield pattern, handler


def _implemented(handler: type) -> set[str]:
    return {m for m in METHODS if getattr(handler, m) is not getattr(RequestHandler, m)}


def test_spec_is_valid_openapi():
    """The document passes an OpenAPI 3.1 validator."""
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(openapi_spec())


def test_spec_is_served(service):
    """GET /api/v1/openapi.json returns the document."""
    assert requests.get(f"{service.url}/api/v1/openapi.json").json() == openapi_spec()


def test_every_documented_operation_exists():
    """Each documented path and method is routed to a handler implementing that method."""
    for path, method, url in documented_operations(openapi_spec()):
        handlers = [h for pattern, h in _v1_routes() if re.fullmatch(pattern, url)]
        assert handlers, f"{path} ({url}) is documented but not routed"
        assert method in _implemented(handlers[0]), f"{method.upper()} {path} documented but not implemented"


def test_every_route_is_documented():
    """Each v1 route and each method its handler implements appears in the document."""
    operations = list(documented_operations(openapi_spec()))
    for pattern, handler in _v1_routes():
        urls = {url for _, _, url in operations if re.fullmatch(pattern, url)}
        assert urls, f"route {pattern} is not documented"
        documented = {method for _, method, url in operations if url in urls}
        assert _implemented(handler) <= documented, f"{pattern}: {_implemented(handler) - documented} undocumented"


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                     st.text(max_size=20))
_json = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)
_names = st.one_of(st.sampled_from(["uid", "time", "limit", "order_by", "cursor", "offset", "include_count",
                                    "latest", "fields", "status", "time__gt", "tags__contains", "x__range",
                                    "provenance.params.n__in", "sample__icontains", "$where", "a__bogus"]),
                   st.text(max_size=15))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzing_the_documented_api_finds_no_5xx(service, data):
    """Random parameters and bodies on every documented operation: 2xx or a 4xx in the error shape."""
    path, method, url = data.draw(st.sampled_from(list(documented_operations(openapi_spec()))))
    params = data.draw(st.dictionaries(_names, st.text(max_size=30), max_size=4))
    body = data.draw(st.one_of(_json, st.dictionaries(st.sampled_from(
        ["filter", "order_by", "limit", "cursor", "fields", "$set", "$unset", "uid", "time", "provenance"]),
        _json, max_size=4)))
    # stream=True: /api/v1/events never ends by design, so only its status line and headers are judged
    with requests.request(method.upper(), service.url + url, params=params, stream=True,
                          json=body if method in ("post", "patch") else None, timeout=30) as response:
        if response.headers.get("Content-Type", "").startswith("text/event-stream"):
            assert response.status_code == 200, (method, url, params)
            return
        response.content  # the rest of the answers are finite: read them whole
    assert response.status_code < 500, (method, url, params, body, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["status"] == response.status_code and error["message"]
