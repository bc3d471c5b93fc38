"""A lookup by uid: one database command, one GET on a kept-alive connection, the session's settings kept."""
from __future__ import annotations

import collections
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
import requests
from pymongo import AsyncMongoClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from analysisstore.app import make_app
from analysisstore.client import AnalysisClient, NotFound, ServiceUnavailable, ServiceUnreachable
from analysisstore.metrics import Metrics
from analysisstore.store import Store
from helpers import CommandNames, header_doc, post, record_doc, stream_doc

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def watched(service, service_loop, mongo_uri) -> Iterator[tuple[str, _Commands, Metrics]]:
    """A second service on ``service``'s database whose database commands and request metrics are recorded."""
    commands, metrics = CommandNames(), Metrics()

    async def start() -> tuple[HTTPServer, Store, int]:
        store = Store(AsyncMongoClient(mongo_uri, event_listeners=[commands]), service.config.database)
        server = HTTPServer(make_app(store, service.config, metrics))
        sockets = bind_sockets(0, "127.0.0.1")
        server.add_sockets(sockets)
        return server, store, sockets[0].getsockname()[1]

    server, store, port = service_loop.run(start())
    yield f"http://127.0.0.1:{port}", commands, metrics

    async def stop() -> None:
        server.stop()
        await server.close_all_connections()
        await store.close()

    service_loop.run(stop())


def _stored_record(service) -> dict[str, Any]:
    header = header_doc()
    stream = stream_doc(header["uid"])
    record = record_doc(stream["uid"])
    for doc_type, doc in (("analysis_header", header), ("data_reference_header", stream), ("data_reference", record)):
        assert post(service, doc_type, doc).status_code == 201
    return record


def _requests(metrics: Metrics, route: str, method: str) -> float:
    return metrics.registry.get_sample_value("analysisstore_requests_total",
                                             {"route": route, "method": method, "status": "200"}) or 0.0


def test_a_lookup_by_uid_sends_one_database_command(service, watched):
    """client.document, find_data_reference(uid=...) and find(doc_type, {"uid": ...}): one GET, one database find."""
    url, commands, metrics = watched
    record = _stored_record(service)
    client = AnalysisClient({"url": url})
    assert client.document("data_reference", record["uid"]) == record
    commands.names.clear()
    assert client.document("data_reference", record["uid"]) == record
    assert commands.names == ["find"]
    commands.names.clear()
    assert [dict(doc) for doc in client.find_data_reference(uid=record["uid"])] == [record]
    assert commands.names == ["find"]
    commands.names.clear()
    assert [dict(doc) for doc in client.find("data_reference", {"uid": record["uid"]})] == [record]
    assert commands.names == ["find"]
    # On the client's one connection the service finishes a request, metrics included, before the next.
    client.status()
    assert _requests(metrics, "DocumentHandler", "GET") == 4
    assert _requests(metrics, "SearchHandler", "POST") == 0  # find_*(uid=) and find() are GETs by uid, not searches


def test_find_by_uid_answers_what_a_search_answers(service):
    """find_*(uid=...) returns the same documents as the filter {"uid": ...}, [] for an unknown uid."""
    client = AnalysisClient(service.client_config)
    header = client.insert_analysis_header(provenance={"analysis_name": "fit"}, project="p")
    stream = client.insert_data_reference_header(header, data_keys={"x": {"dtype": "number"}})
    record = client.insert_data_reference(stream, None, None, {"x": 1.0}, {"x": 0.0}, seq_num=0)
    client.update_analysis_header({"uid": header}, {"tags": ["a"]})  # a revision: the header now has _revision 1
    tail = client.insert_analysis_tail(header, exit_status="success")
    finders = {"analysis_header": (client.find_analysis_header, header),
               "data_reference_header": (client.find_data_reference_header, stream),
               "data_reference": (client.find_data_reference, record),
               "analysis_tail": (client.find_analysis_tail, tail)}
    for doc_type, (find, uid) in finders.items():
        by_uid = [dict(doc) for doc in find(uid=uid)]
        searched = [dict(doc) for doc in client.iter_find(doc_type, {"uid": uid})]
        assert by_uid == searched and len(by_uid) == 1, doc_type
        assert "_status" not in by_uid[0]
        assert find(uid="no-such-uid") == [] and [dict(doc) for doc in find(uid=uid, limit=1)] == by_uid
        assert [dict(doc) for doc in client.find(doc_type, {"uid": uid})] == by_uid  # the 0.x find()
        assert client.find(doc_type, {"uid": "no-such-uid"}) == []
    assert [d.uid for d in client.iter_analysis_header(uid=header)] == [header]


@pytest.mark.parametrize("uid", ["search", "a/b c?d#e", "%2F..", "é"])
def test_find_by_uid_finds_uids_that_are_not_plain_path_steps(service, uid):
    """A uid naming a route or holding URL syntax is still found by find_*(uid=...)."""
    client = AnalysisClient(service.client_config)
    header = client.insert_analysis_header(provenance={"analysis_name": "fit"})
    stream = client.insert_data_reference_header(header, data_keys={"x": {"dtype": "number"}})
    client.insert_data_reference(stream, uid, None, {"x": 1.0}, {"x": 0.0})
    assert [d.uid for d in client.find_data_reference(uid=uid)] == [uid]


@pytest.fixture
def connects(monkeypatch) -> collections.Counter[int]:
    """TCP connections opened, by destination port (each connect really happens; this only counts them)."""
    counts: collections.Counter[int] = collections.Counter()
    real_connect = socket.socket.connect

    def counting_connect(sock: socket.socket, address: Any) -> None:
        if isinstance(address, tuple):
            counts[address[1]] += 1
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", counting_connect)
    return counts


def test_lookups_share_one_kept_alive_connection(service, connects):
    """Lookups by uid, a 404 among them, and streamed finds travel over one TCP connection."""
    record = _stored_record(service)
    connects.clear()
    client = AnalysisClient(service.client_config)
    for _ in range(10):
        assert client.document("data_reference", record["uid"])["uid"] == record["uid"]
    with pytest.raises(NotFound, match="no data_reference with uid"):
        client.document("data_reference", "no-such-uid")
    for _ in range(10):
        assert [d.uid for d in client.find_data_reference(uid=record["uid"])] == [record["uid"]]
    for _ in range(5):  # NDJSON streams, read to their end line
        stream = record["data_reference_header"]
        assert [d.uid for d in client.find_data_reference(data_reference_header=stream)] == [record["uid"]]
        assert [d.uid for d in client.find("data_reference", {"seq_num": {"$gte": 0}}, limit=1)] == [record["uid"]]
    assert connects[service.port] == 1


class _Recording(BaseHTTPRequestHandler):
    """Answers GETs with ``{}`` after ``failures`` 503s; sets a cookie on its first answer; records what came."""

    protocol_version = "HTTP/1.1"
    failures = 0
    seen: list[dict[str, str]]

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        type(self).seen.append(dict(self.headers))
        failing = len(type(self).seen) <= type(self).failures
        body = json.dumps({"error": {"status": 503, "type": "DatabaseUnavailable", "message": "busy", "details": [],
                                     "request_id": "r"}} if failing else {"path": self.path}).encode()
        self.send_response(503 if failing else 200)
        if failing:
            self.send_header("Retry-After", "0")
        if len(type(self).seen) == 1:
            self.send_header("Set-Cookie", "affinity=node-2; Path=/")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recording() -> Iterator[Any]:
    """Start a recording HTTP server on 127.0.0.1 that fails its first ``failures`` GETs with 503."""
    servers: list[ThreadingHTTPServer] = []

    def start(failures: int = 0) -> tuple[str, type[_Recording]]:
        handler = type("Recording", (_Recording,), {"failures": failures, "seen": []})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", handler

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_cookie_the_service_sets_is_sent_back(recording):
    """A cookie set by the service (or a load balancer before it) comes back on the next GET, as with requests."""
    url, handler = recording()
    client = AnalysisClient({"url": url, "token": "t0k"})
    assert client.document("data_reference", "a b")["path"] == "/api/v1/data_reference/a%20b"
    client.document("data_reference", "u")
    first, second = handler.seen
    assert "Cookie" not in first and second["Cookie"] == "affinity=node-2"
    assert first["Authorization"] == second["Authorization"] == "Bearer t0k"
    assert first["User-Agent"] == "analysisstore-client" and first["Accept"] == "application/json"


def test_a_lookup_is_retried_under_the_clients_policy(recording):
    """A GET answered 503 is retried (Retry-After honoured) and succeeds; past the policy it is ServiceUnavailable."""
    url, handler = recording(failures=2)
    assert AnalysisClient({"url": url, "retries": 2}).document("data_reference", "u") == {
        "path": "/api/v1/data_reference/u"}
    assert len(handler.seen) == 3
    url, handler = recording(failures=100)
    with pytest.raises(ServiceUnavailable, match="busy"):
        AnalysisClient({"url": url, "retries": 1}).document("data_reference", "u")
    assert len(handler.seen) == 2


def test_a_lookup_goes_through_the_proxy_of_the_environment(service, closed_port, monkeypatch):
    """HTTP_PROXY read when the client is made routes lookups too; NO_PROXY lets them go direct."""
    record = _stored_record(service)
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    with pytest.raises(ServiceUnreachable) as info:
        AnalysisClient({"url": service.url, "retries": 0}).document("data_reference", record["uid"])
    assert isinstance(info.value, requests.ConnectionError)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert AnalysisClient({"url": service.url, "retries": 0}).document("data_reference", record["uid"]) == record


def test_a_lookup_without_a_service_is_unreachable(closed_port):
    """No service: ServiceUnreachable (a requests.ConnectionError), as for every other call."""
    client = AnalysisClient({"host": "127.0.0.1", "port": closed_port, "retries": 0})
    with pytest.raises(ServiceUnreachable) as info:
        client.document("analysis_header", "u")
    assert isinstance(info.value, requests.ConnectionError)
    with pytest.raises(ServiceUnreachable):
        client.find_analysis_header(uid="u")
