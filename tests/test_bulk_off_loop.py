"""A large bulk body is parsed and validated off the event loop; the client's chunks fit the service's limit."""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests
import ujson

from analysisstore.client import AnalysisClient
from analysisstore.client.limits import MAX_BULK_ITEMS
from analysisstore.config import ServiceConfig
from analysisstore.handlers.base import OFF_LOOP_BYTES

from helpers import assert_error, header_doc, post, record_doc, stream_doc

JSON = {"Content-Type": "application/json"}


def _stream(service: Any) -> str:
    header = header_doc()
    post(service, "analysis_header", header)
    stream = stream_doc(header["uid"])
    post(service, "data_reference_header", stream)
    return stream["uid"]


def _post_while_probing(service: Any, body: bytes) -> tuple[requests.Response, float, list[tuple[float, float]]]:
    """POST ``body`` as a bulk while another connection asks ``/readyz`` over and over.

    Returns the POST's answer, when it arrived, and the (asked, answered) times
    of every readiness answer that arrived before it; times in seconds from the POST's start.
    """
    answer: list[tuple[requests.Response, float]] = []
    start = time.perf_counter()

    def send() -> None:
        response = requests.post(f"{service.url}/api/v1/data_reference", data=body, headers=JSON, timeout=300)
        answer.append((response, time.perf_counter() - start))

    poster = threading.Thread(target=send)
    poster.start()
    probes = []
    with requests.Session() as probe:
        while poster.is_alive():
            asked = time.perf_counter() - start
            assert probe.get(f"{service.url}/readyz", timeout=300).status_code == 200
            probes.append((asked, time.perf_counter() - start))
    poster.join()
    response, answered = answer[0]
    print(f"POST answered after {answered:.3f}s; probes (asked, answered): "
          + " ".join(f"({a:.3f}, {b:.3f})" for a, b in probes))
    return response, answered, [p for p in probes if p[1] < answered]


def test_readyz_answers_while_a_large_bulk_is_stored(service):
    """A MAX_BULK_ITEMS-record bulk is stored whole while /readyz keeps being answered, none kept waiting long."""
    stream = _stream(service)
    body = ujson.dumps([record_doc(stream, i) for i in range(MAX_BULK_ITEMS)]).encode()
    assert len(body) > OFF_LOOP_BYTES
    response, answered, probes = _post_while_probing(service, body)
    assert response.status_code == 200, response.text
    assert response.json()["inserted"] == MAX_BULK_ITEMS
    assert len(probes) >= 3, f"only {len(probes)} readiness answers during a {answered:.2f}s POST"
    longest = max(end - asked for asked, end in probes)
    assert longest < answered / 4, f"/readyz waited {longest:.2f}s during a {answered:.2f}s POST"


def test_readyz_answers_while_a_large_bulk_is_validated(service):
    """The last record invalid, so the POST ends with validation: /readyz is answered while it runs, and the
    422 is the usual one (item and field named, nothing stored).

    On the event loop, validation would hold every other request until the 422 went out: no readiness
    answer could arrive in the POST's last third (the body itself is sent in a few milliseconds).
    """
    stream = _stream(service)
    records = [record_doc(stream, i) for i in range(MAX_BULK_ITEMS)]
    records[-1]["seq_num"] = "last"
    response, answered, probes = _post_while_probing(service, ujson.dumps(records).encode())
    error = assert_error(response, 422, "ValidationError", f"1 of {MAX_BULK_ITEMS} data_reference documents")
    assert error["details"][0]["index"] == MAX_BULK_ITEMS - 1 and "seq_num" in error["details"][0]["message"]
    assert service.count("data_reference") == 0
    late = [p for p in probes if p[1] > answered * 2 / 3]
    assert len(late) >= 2, f"{len(late)} readiness answers in the last third of a {answered:.2f}s POST"


@pytest.mark.parametrize("route", ["/api/v1/data_reference", "/data_reference"])
def test_large_body_that_is_not_json_is_the_same_400(service, route):
    """Parsed off the loop, a broken body above the threshold is still the documented 400."""
    body = b'[{"uid": "' + b"x" * (OFF_LOOP_BYTES + 10) + b'", '
    response = requests.post(service.url + route, data=body, headers=JSON, timeout=60)
    assert_error(response, 400, "BadRequest", "request body is not valid JSON")


def test_large_legacy_bulk_is_validated_and_stored(service):
    """The 0.x bulk_data_reference_insert above the threshold goes through the same validation and store."""
    stream = _stream(service)
    records = [{k: v for k, v in record_doc(stream, i).items() if k != "data_reference_header"} for i in range(600)]
    message = {"signature": "bulk_data_reference_insert", "payload": {"data_header": stream, "data_references": records}}
    body = ujson.dumps(message).encode()
    assert len(body) > OFF_LOOP_BYTES
    response = requests.post(f"{service.url}/data_reference", data=body, headers=JSON, timeout=60)
    assert response.status_code == 200 and response.json()["status"] is True
    assert service.count("data_reference", {"data_reference_header": stream}) == 600


def test_service_default_bulk_limit_is_the_clients_largest_chunk():
    """Out of the box the service takes exactly as many documents per request as the client ever sends."""
    assert ServiceConfig().max_bulk_items == MAX_BULK_ITEMS


def test_client_never_builds_a_bulk_the_service_refuses(start_service):
    """A chunk_size above the limit is cut to it; insert_many above it is refused before anything is sent."""
    service = start_service(max_bulk_items=MAX_BULK_ITEMS)
    client = AnalysisClient(service.client_config)
    stream = _stream(service)
    records = [{"data": {"wavelength": 1.0 * i, "absorbance": 0.5}, "timestamps": {}, "seq_num": i}
               for i in range(MAX_BULK_ITEMS + 1)]
    uids = client.insert_bulk_data_reference(stream, records, chunk_size=3 * MAX_BULK_ITEMS)
    assert len(uids) == MAX_BULK_ITEMS + 1
    assert service.count("data_reference", {"data_reference_header": stream}) == MAX_BULK_ITEMS + 1
    headers = [header_doc() for _ in range(MAX_BULK_ITEMS + 1)]
    with pytest.raises(ValueError, match=f"at most {MAX_BULK_ITEMS}"):
        client.insert_many("analysis_header", headers)
    assert service.count("analysis_header", {"uid": {"$in": [h["uid"] for h in headers[:5]]}}) == 0
    assert client.insert_many("analysis_header", headers[:MAX_BULK_ITEMS])["inserted"] == MAX_BULK_ITEMS
