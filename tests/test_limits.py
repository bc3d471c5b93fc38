"""Memory and time bounds: bodies checked while they stream, timeouts, filter budgets, stalled streams."""
from __future__ import annotations

import json
import socket
import time
import uuid
from urllib.parse import quote

import pytest
import requests

from analysisstore.errors import BadRequest
from analysisstore.queries import MAX_FILTER_CLAUSES, MAX_FILTER_NODES, check_filter, parse_lookups
from helpers import as_stored, assert_error, header_doc, record_doc

from helpers import open_cursors


def _raw_request(port: int, head: str, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head.encode() + b"\r\n" + body)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _json_error(raw: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body[: int(headers["content-length"])])


def test_a_partial_body_is_closed_after_the_body_timeout(start_service):
    """A client that sends half its body and stalls (slowloris) is disconnected after body_timeout_seconds."""
    service = start_service(body_timeout_seconds=0.5)
    sock = _raw_request(service.port, "POST /api/v1/analysis_header HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        "Content-Type: application/json\r\nContent-Length: 1000\r\n", b'{"uid": ')
    started = time.monotonic()
    with sock:
        sock.settimeout(20)
        _read_until_closed(sock)  # would raise socket.timeout if the server waited for the body
    assert time.monotonic() - started < 10


def test_an_oversized_chunked_body_gets_the_json_413(start_service):
    """A chunked body over the route's limit is answered with the one JSON error body, not a bare 400."""
    service = start_service(max_body_bytes=4096)
    chunks = (b'[' + b'{"uid": "x"},' * 700 + b'{}]' for _ in range(3))  # ~30 KiB, no Content-Length
    response = requests.post(f"{service.url}/api/v1/analysis_header", data=chunks,
                             headers={"Content-Type": "application/json"}, timeout=30)
    assert_error(response, 413, "PayloadTooLarge", "4096")
    assert service.count("analysis_header") == 0


def test_a_search_body_is_held_to_max_query_bytes(service):
    """A search body over max_query_bytes (far below the bulk limit) is refused before it is read or parsed."""
    huge = 64 * 1024 * 1024
    with _raw_request(service.port, "POST /api/v1/analysis_header/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {huge}\r\n") as sock:
        status, headers, body = _json_error(_read_until_closed(sock))
    assert status == 413 and body["error"]["type"] == "PayloadTooLarge"
    assert str(service.config.max_query_bytes) in body["error"]["message"]
    assert headers["connection"] == "close"  # the unread body makes the connection unusable
    just_over = b'{"filter": {"uid": "' + b"x" * service.config.max_query_bytes + b'"}}'
    assert_error(requests.post(f"{service.url}/api/v1/analysis_header/search", data=just_over,
                               timeout=30), 413, "PayloadTooLarge")


def test_a_huge_or_filter_is_refused_quickly(service):
    """A search with tens of thousands of $or clauses gets 400 at once instead of running past its time limit."""
    service.database.analysis_header.insert_many([as_stored(header_doc()) for _ in range(200)])
    filt = {"$or": [{"provenance.analysis_name": f"n{i}", "time": {"$gte": i}} for i in range(10_000)]}
    started = time.monotonic()
    response = requests.post(f"{service.url}/api/v1/analysis_header/search",
                             json={"filter": filt}, timeout=60)
    assert_error(response, 400, "BadRequest", "filter too large")
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("filt", [
    {"$or": [{"a": i} for i in range(MAX_FILTER_CLAUSES + 1)]},
    {"$and": [{"$or": [{"a": i}, {"b": i}]} for i in range(MAX_FILTER_CLAUSES // 2 + 1)]},
    {f"f{i}": {"$in": list(range(1000))} for i in range(MAX_FILTER_NODES // 1000 + 1)},
])
def test_the_filter_budget_counts_the_whole_filter(filt):
    """Lists each within their own cap still add up to a refusal: the budget is over the whole filter."""
    with pytest.raises(BadRequest, match="filter too large"):
        check_filter(filt)


def test_query_string_lookups_share_the_budget():
    """Many list lookups in one query string are held to the same node budget."""
    args = {f"f{i}__in": [",".join(str(v) for v in range(1000))] for i in range(MAX_FILTER_NODES // 1000 + 1)}
    with pytest.raises(BadRequest, match="filter too large"):
        parse_lookups(args)


def test_a_filter_within_the_budget_passes():
    """A large but reasonable filter (one 1000-value $in, 100 clauses) is accepted unchanged."""
    filt = {"uid": {"$in": [str(i) for i in range(1000)]}, "$or": [{"a": i} for i in range(100)]}
    assert check_filter(filt) is filt


@pytest.mark.parametrize("face", ["ndjson", "legacy"])
def test_a_stalled_ndjson_reader_releases_the_database_cursor(start_service, mongo, face):
    """A client that stops reading a stream (NDJSON, legacy find) is cut off after stream_stall_seconds; cursor closed."""
    service = start_service(stream_stall_seconds=1.0)
    baseline = open_cursors(mongo)
    if baseline is None:
        pytest.skip("this database does not report open cursors in serverStatus")
    header = header_doc()
    stream = {"uid": f"s-{header['uid']}", "time": 1.0, "analysis_header": header["uid"],
              "data_keys": {"wavelength": {"dtype": "number"}, "absorbance": {"dtype": "number"},
                            "label": {"dtype": "string"}}}
    service.database.analysis_header.insert_one(as_stored(header))
    service.database.data_reference_header.insert_one(as_stored(stream))
    label = "x" * 3000  # ~9 MB in all: far more than the socket buffers hold
    service.database.data_reference.insert_many(
        [as_stored(record_doc(stream["uid"], i, data={"wavelength": 1.0 * i, "label": label})) for i in range(3_000)])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", service.port))
    with sock:
        if face == "ndjson":
            body = json.dumps({"filter": {"data_reference_header": stream["uid"]}}).encode()
            sock.sendall(f"POST /api/v1/data_reference/search HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/x-ndjson"
                         f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        else:
            query = quote(json.dumps({"signature": "find_data_reference",
                                      "payload": {"data_reference_header": stream["uid"]}}))
            sock.sendall(f"GET /data_reference?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # the stream started; now read nothing more
        assert open_cursors(mongo) > baseline
        deadline = time.monotonic() + 30
        while open_cursors(mongo) > baseline:  # each check is a database round trip, not a sleep
            assert time.monotonic() < deadline, "a stalled reader kept the database cursor open"
    assert requests.get(f"{service.url}/api/v1/data_reference", params={"limit": 1}, timeout=30).status_code == 200


@pytest.mark.subprocess
def test_serve_closes_idle_and_slow_connections(mongo_uri, mongo, monkeypatch):
    """`analysisstore serve` applies idle_timeout_seconds (slow headers) and body_timeout_seconds (slow body)."""
    from serving import Serve

    monkeypatch.setenv("ASST_IDLE_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("ASST_BODY_TIMEOUT_SECONDS", "0.5")
    name = f"asst_limits_{uuid.uuid4().hex[:10]}"
    server = Serve("--mongo-uri", mongo_uri, "--database", name, "--log-level", "WARNING")
    try:
        server.wait_ready()
        for head, body in (("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1", b""),  # headers never finished
                           ("POST /api/v1/analysis_header HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99\r\n", b"{")):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
            with sock:
                sock.sendall(head.encode() + (b"\r\n" + body if body else b""))
                started = time.monotonic()
                _read_until_closed(sock)
                assert time.monotonic() - started < 10
    finally:
        server.terminate()
        mongo.drop_database(name)
