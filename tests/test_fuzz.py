"""Fuzzing the whole API: no answer is a 5xx, every 4xx has the one error shape, a refused write stores nothing.

Two kinds of fuzzing against a real service on the embedded database: schemathesis
generates requests from the OpenAPI document the service serves (every route but the
endless event stream), and hypothesis strategies (tests/fuzzing.py) send hostile
documents, lookups, JSON filters, PATCH bodies, paths, headers and legacy messages.
``ANALYSISSTORE_FUZZ_EXAMPLES`` sets the examples per test (a fixed 30 in CI).
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Iterator
from urllib.parse import quote

import pytest
import requests
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import unsupported_method

from analysisstore.handlers.base import HEADER_READ_BYTES, MAX_URI_BYTES
from fuzzing import (
    DOC_TYPES, EXAMPLES, LONG_RUN, Snapshot, assert_sound, encode_json, filters, fuzz_settings, garbage_bodies,
    header_values, hostile_documents, hostile_text, legacy_messages, lookups, patch_bodies, query_string,
    search_bodies, uids,
)
from helpers import header_doc, post, record_doc, stream_doc, tail_doc

log = logging.getLogger(__name__)

#: The suite's 120 s per test fits the CI count; a longer run by hand gets time in proportion.
pytestmark = pytest.mark.timeout(max(120, EXAMPLES * 6))

#: Requests sent per test, logged when the test ends (the figures of a long run by hand).
SENT: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _tally(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    log.info("%s: %d requests", request.node.name, SENT.pop(request.node.name, 0))


def _send(request: pytest.FixtureRequest, method: str, url: str, **kwargs: Any) -> requests.Response:
    SENT[request.node.name] += 1
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return requests.request(method, url, headers=headers, timeout=30, **kwargs)


@pytest.fixture
def seeded(service: Any) -> dict[str, str]:
    """An open analysis with a stream and a record, and a finalized one: parents for the documents drawn."""
    header, finalized = header_doc(), header_doc()
    stream = stream_doc(header["uid"])
    tail = tail_doc(finalized["uid"])
    for doc_type, doc in (("analysis_header", header), ("data_reference_header", stream),
                          ("data_reference", record_doc(stream["uid"])), ("analysis_header", finalized),
                          ("analysis_tail", tail)):
        assert post(service, doc_type, doc).status_code == 201
    return {"analysis_header": header["uid"], "data_reference_header": stream["uid"],
            "analysis_tail": tail["uid"], "finalized_header": finalized["uid"]}


def _assert_refusal_stored_nothing(response: requests.Response, body: Any, before: Snapshot, after: Snapshot) -> None:
    if response.status_code < 400:
        return
    error = response.json()["error"]
    if isinstance(body, list) and " were stored" in error["message"]:
        # A bulk refused in the database for some items: only the others may be new.
        assert all(grown <= len(body) - len(error["details"]) for grown in before.grown(after).values()), \
            (before, after, error)
        return
    assert before == after, (response.status_code, error["message"], before.grown(after))
    assert before.feed_since() <= {"void"}, (response.status_code, error["message"])


# ---- schemathesis over the served OpenAPI document -------------------------------------------------


@pytest.fixture
def served_openapi(service: Any) -> Any:
    """The OpenAPI document as the running service serves it."""
    # The coverage phase (boundary values, undeclared methods: over a thousand requests) runs in long runs only.
    config = schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": LONG_RUN}}})
    return schemathesis.openapi.from_url(f"{service.url}/api/v1/openapi.json", config=config)


# /api/v1/events never ends by design; test_event_stream_parameters below judges its status line instead.
schema = schemathesis.pytest.from_fixture("served_openapi").exclude(path="/api/v1/events")


@schema.parametrize()
@fuzz_settings(examples=EXAMPLES if LONG_RUN else EXAMPLES // 3)  # 21 operations: a third keeps CI within budget
def test_openapi_operations(case: Any, service: Any, request: pytest.FixtureRequest) -> None:
    """Requests generated from the served document on every route: no 5xx, one error shape, refusals store nothing."""
    kwargs = case.as_transport_kwargs(base_url=service.url)
    writes = case.method.upper() not in ("GET", "HEAD", "OPTIONS")
    before = Snapshot(service.database) if writes else None
    SENT[request.node.name] += 1
    response = requests.request(**{**kwargs, "timeout": 30})
    assert_sound(response, case.as_curl_command(base_url=service.url))
    case.validate_response(response, checks=[not_a_server_error, unsupported_method])
    if before is not None:
        _assert_refusal_stored_nothing(response, case.body, before, Snapshot(service.database))


# ---- hypothesis: documents, lookups, filters, PATCH, paths, legacy face ----------------------------


@fuzz_settings()
@given(data=st.data())
def test_hostile_documents(service: Any, seeded: dict[str, str], request: pytest.FixtureRequest, data: Any) -> None:
    """Documents of every type with wrong types, odd uids, NaN times, deep nesting, $ and dotted keys."""
    doc_type = data.draw(st.sampled_from(DOC_TYPES))
    document = hostile_documents(doc_type, seeded)
    body = data.draw(st.one_of(document, st.lists(document, min_size=1, max_size=4)))
    before = Snapshot(service.database)
    response = _send(request, "POST", f"{service.url}/api/v1/{doc_type}", data=encode_json(body))
    assert_sound(response, body)
    _assert_refusal_stored_nothing(response, body, before, Snapshot(service.database))


@fuzz_settings()
@given(raw=garbage_bodies, doc_type=st.sampled_from(DOC_TYPES))
def test_bodies_that_are_not_json(service: Any, request: pytest.FixtureRequest, raw: bytes, doc_type: str) -> None:
    """Bytes that are not a JSON document (or JSON that is not one) on every write route: 4xx, nothing stored."""
    before = Snapshot(service.database)
    for method, path in (("POST", f"/api/v1/{doc_type}"), ("POST", f"/api/v1/{doc_type}/search"),
                         ("PATCH", f"/api/v1/{doc_type}/some-uid"), ("POST", f"/{doc_type}")):
        assert_sound(_send(request, method, service.url + path, data=raw), (method, path, raw))
    assert Snapshot(service.database) == before and before.feed_since() == set()


@fuzz_settings()
@given(pairs=lookups(), doc_type=st.sampled_from(DOC_TYPES), ndjson=st.booleans())
def test_lookups_in_query_strings(service: Any, seeded: dict[str, str], request: pytest.FixtureRequest,
                                  pairs: list[tuple[str, str]], doc_type: str, ndjson: bool) -> None:
    """field__op=value with every operator, bad dates, 64-bit overflows, odd paging: 2xx or a 4xx error."""
    headers = {"Accept": "application/x-ndjson"} if ndjson else {}
    query = query_string(pairs)
    for path in (f"/api/v1/{doc_type}", "/api/v1/changes"):
        response = _send(request, "GET", f"{service.url}{path}?{query}", headers=headers)
        assert_sound(response, (path, pairs))


@fuzz_settings()
@given(body=search_bodies(), doc_type=st.sampled_from(DOC_TYPES))
def test_json_filters(service: Any, seeded: dict[str, str], request: pytest.FixtureRequest, body: Any,
                      doc_type: str) -> None:
    """Search bodies with allowed and forbidden operators ($where, $regex, $function), huge $or, odd paging."""
    response = _send(request, "POST", f"{service.url}/api/v1/{doc_type}/search", data=encode_json(body))
    assert_sound(response, body)


@fuzz_settings()
@given(data=st.data())
def test_patch_bodies(service: Any, seeded: dict[str, str], request: pytest.FixtureRequest, data: Any) -> None:
    """PATCH of headers and tails with hostile bodies: a refused one changes neither the document nor anything else."""
    doc_type = data.draw(st.sampled_from(["analysis_header", "analysis_tail", "data_reference"]))
    known = {"analysis_header": [seeded["analysis_header"], seeded["finalized_header"]],
             "analysis_tail": [seeded["analysis_tail"]], "data_reference": []}[doc_type]
    uid = data.draw(st.one_of(st.sampled_from(known), hostile_text) if known else hostile_text)
    body = data.draw(patch_bodies())
    searchable = isinstance(uid, str) and uid == uid.encode("utf-8", "replace").decode()  # pymongo refuses the rest
    stored = service.database[doc_type].find_one({"uid": uid}, {"_id": 0}) if searchable else None
    before = Snapshot(service.database)
    url = f"{service.url}/api/v1/{doc_type}/{quote(str(uid).encode('utf-8', 'surrogatepass'), safe='')}"
    response = _send(request, "PATCH", url, data=encode_json(body))
    assert_sound(response, (uid, body))
    if response.status_code >= 400:
        assert Snapshot(service.database) == before and before.feed_since() <= {"void"}
        if searchable:
            assert service.database[doc_type].find_one({"uid": uid}, {"_id": 0}) == stored


_RANGES = st.sampled_from(["bytes=0-", "bytes=-5", "bytes=5-1", "bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000,
                           "bytes=1-2,3-4", "bytes=-", "bytes=²-", "items=0-1"])


@fuzz_settings()
@given(data=st.data())
def test_paths_and_headers(service: Any, seeded: dict[str, str], request: pytest.FixtureRequest, data: Any) -> None:
    """Hostile uids in every path, with odd Range, revision, restore-time and request-id headers."""
    uid = data.draw(uids(list(seeded.values())))
    segment = quote(str(uid).encode("utf-8", "surrogatepass"), safe="")
    doc_type = data.draw(st.one_of(st.sampled_from(DOC_TYPES), hostile_text))
    typed = quote(str(doc_type).encode("utf-8", "surrogatepass"), safe="")
    header_names = ["Range", "X-Expect-Revision", "X-Restore-Time", "X-Request-ID", "If-None-Match", "Accept"]
    headers = data.draw(st.dictionaries(st.sampled_from(header_names), st.one_of(header_values, _RANGES), max_size=3))
    extra = query_string(data.draw(st.lists(st.tuples(st.sampled_from(["depth", "direction", "name", "uid", "x"]),
                                                      st.one_of(hostile_text, header_values)), max_size=2)))
    routes = [("GET", f"/api/v1/{typed}/{segment}"), ("GET", f"/api/v1/{typed}/{segment}/revisions"),
              ("GET", f"/api/v1/analysis/{segment}"), ("GET", f"/api/v1/analysis/{segment}/bundle"),
              ("GET", f"/api/v1/analysis/{segment}/lineage"), ("GET", f"/api/v1/analysis/{segment}/prov"),
              ("GET", f"/api/v1/files/{segment}"), ("GET", f"/api/v1/schemas/{typed}"),
              ("GET", f"/api/v1/mirror_positions/{segment}"), ("POST", f"/api/v1/analysis/{segment}/files")]
    before = Snapshot(service.database)
    for method, path in data.draw(st.lists(st.sampled_from(routes), min_size=1, max_size=4, unique=True)):
        sent = {k: v.encode("latin-1") for k, v in headers.items()}
        response = _send(request, method, f"{service.url}{path}?{extra}", headers=sent,
                         data=b"file content" if method == "POST" else None)
        assert_sound(response, (method, path, extra, headers))
        if method == "POST" and response.status_code >= 400:
            assert Snapshot(service.database) == before and before.feed_since() <= {"void"}, (path, extra, headers)


@fuzz_settings()
@given(data=st.data())
def test_legacy_face(service: Any, seeded: dict[str, str], request: pytest.FixtureRequest, data: Any) -> None:
    """0.x messages with right and wrong signatures and hostile payloads, POSTed and as GET query strings."""
    doc_type = data.draw(st.sampled_from(DOC_TYPES))
    message = data.draw(legacy_messages(doc_type, seeded))
    before = Snapshot(service.database)
    response = _send(request, "POST", f"{service.url}/{doc_type}", data=encode_json(message))
    assert_sound(response, message)
    payload = message.get("payload") if isinstance(message, dict) else None
    bulk = payload.get("data_references") if isinstance(payload, dict) else None
    _assert_refusal_stored_nothing(response, bulk if isinstance(bulk, list) else message, before,
                                   Snapshot(service.database))
    find = {"signature": f"find_{doc_type}", "payload": data.draw(filters)}
    raw = data.draw(st.sampled_from(["quoted", "plain", "garbage"]))
    if raw == "garbage":
        query = query_string(data.draw(lookups()))
    else:
        text = encode_json(find).decode()
        query = quote(text, safe="") if raw == "quoted" else text.replace(" ", "%20").replace("#", "%23")
    if len(query) > HEADER_READ_BYTES:  # a head the server does not read at all: the connection is closed
        query = query[:MAX_URI_BYTES + 1]  # what it does answer: a JSON 414
    assert_sound(_send(request, "GET", f"{service.url}/{doc_type}?{query}"), find)


@fuzz_settings(examples=max(5, EXAMPLES // 3))  # each example opens a stream
@given(pairs=lookups(), last_id=st.one_of(st.none(), header_values))
def test_event_stream_parameters(service: Any, request: pytest.FixtureRequest, pairs: list[tuple[str, str]],
                                 last_id: str | None) -> None:
    """GET /api/v1/events with hostile lookups: the stream opens (200) or a 4xx in the error shape."""
    headers = {"Last-Event-ID": last_id.encode("latin-1")} if last_id is not None else {}
    with _send(request, "GET", f"{service.url}/api/v1/events?{query_string(pairs)}", headers=headers,
               stream=True) as response:
        if response.status_code == 200:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            return
        response.content  # an error answer is finite: read it whole
    assert_sound(response, pairs)

