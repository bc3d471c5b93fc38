"""AnalysisClient against a real running service: every member of the API, errors, retries."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from doct import Document

from analysisstore.client import (
    AnalysisClient,
    Conflict,
    NotFound,
    ServiceUnavailable,
    ServiceUnreachable,
    ValidationError,
)
from helpers import header_doc, record_doc

KEYS = {"x": {"dtype": "number"}, "y": {"dtype": "number"}}


@pytest.fixture
def client(service):
    with AnalysisClient(service.client_config) as c:
        yield c


def test_import_stays_thin():
    """Importing the client loads neither tornado nor pymongo (nor the server)."""
    code = ("import sys, analysisstore.client, analysisstore.client.commands; "
            "bad = [m for m in ('tornado', 'pymongo', 'motor', 'analysisstore.store') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_urls_match_the_predecessor(service, client):
    """The 0.x URL properties point at the legacy collections."""
    base = f"http://127.0.0.1:{service.port}/"
    assert client._host_url == base
    assert client.aheader_url == base + "analysis_header"
    assert client.atail_url == base + "analysis_tail"
    assert client.dref_header_url == base + "data_reference_header"
    assert client.dref_url == base + "data_reference"
    assert (client.host, client.port) == ("127.0.0.1", service.port)


def test_url_config_and_extra_keys(service):
    """config may give a url; unrelated keys from old configs are ignored."""
    c = AnalysisClient({"url": service.url, "database": "old-setting", "timezone": "US/Eastern"})
    assert c.connection_status() is True


def test_connection_status(client, closed_port):
    """True with a service, False (not an exception) without one."""
    assert client.connection_status() is True
    assert AnalysisClient({"host": "127.0.0.1", "port": closed_port}).connection_status() is False


def test_proxy_environment_is_read_once_when_the_client_is_made(service, closed_port, monkeypatch):
    """HTTP_PROXY/NO_PROXY at construction decide the route; later changes do not (read once, not per call)."""
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    proxied = AnalysisClient({"url": service.url, "retries": 0})
    assert proxied.connection_status() is False  # it went to the (dead) proxy
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert proxied.connection_status() is False
    bypassing = AnalysisClient({"url": service.url, "retries": 0})
    monkeypatch.setenv("NO_PROXY", "")
    assert bypassing.connection_status() is True


def test_unreachable_service_raises_after_retries(closed_port):
    """No service: a ServiceUnreachable, which old code catches as requests.ConnectionError."""
    c = AnalysisClient({"host": "127.0.0.1", "port": closed_port, "retries": 1})
    with pytest.raises(ServiceUnreachable) as info:
        c.insert_analysis_header(provenance={})
    assert isinstance(info.value, requests.ConnectionError)


def test_insert_and_find_every_type(service, client):
    """insert_* return uids; find_* return lists of doct.Document with the stored content."""
    h = client.insert_analysis_header(uid=None, time=None, provenance={"analysis_name": "fit"}, project="p")
    s = client.insert_data_reference_header(h, None, None, KEYS, name="primary")
    r = client.insert_data_reference(s, None, None, {"x": 1.0, "y": 2.0}, {"x": 1.0, "y": 1.0}, seq_num=0)
    t = client.insert_analysis_tail(h, None, None, "success", reason="done")
    header, = client.find_analysis_header(uid=h)
    assert isinstance(header, Document) and header.project == "p"
    assert header.provenance == {"analysis_name": "fit"}
    stream, = client.find_data_reference_header(analysis_header=h)
    assert stream.uid == s and stream.name == "primary"
    record, = client.find_data_reference(data_reference_header=s)
    assert record.uid == r and record.data == {"x": 1.0, "y": 2.0}
    tail, = client.find_analysis_tail(analysis_header=h)
    assert tail.uid == t and tail.exit_status == "success" and tail.reason == "done"


def test_parents_may_be_documents(client):
    """A parent can be passed as the document returned by find_*."""
    h = client.insert_analysis_header(provenance={})
    header, = client.find_analysis_header(uid=h)
    s = client.insert_data_reference_header(header, data_keys=KEYS)
    stream, = client.find_data_reference_header(uid=s)
    client.insert_data_reference(stream, data={"x": 1}, timestamps={"x": 1.0})
    assert len(client.find_data_reference(data_reference_header=s)) == 1


def test_bulk_chunks_any_iterable(service, client):
    """A generator of 1234 records in chunks of 500 stores all, in 3 requests, returning their uids."""
    h = client.insert_analysis_header(provenance={})
    s = client.insert_data_reference_header(h, data_keys=KEYS)
    records = ({"data": {"x": float(i)}, "timestamps": {"x": 0.0}, "seq_num": i} for i in range(1234))
    uids = client.insert_bulk_data_reference(s, records, chunk_size=500)
    assert len(uids) == len(set(uids)) == 1234
    assert service.count("data_reference", {"data_reference_header": s}) == 1234
    found = client.find_data_reference(data_reference_header=s)
    assert sorted(r.seq_num for r in found) == list(range(1234))


def test_bulk_resend_is_harmless(service, client):
    """Re-sending a bulk (as a retry would) stores nothing twice."""
    h = client.insert_analysis_header(provenance={})
    s = client.insert_data_reference_header(h, data_keys=KEYS)
    records = [{"uid": f"r{i}", "time": 5.0, "data": {"x": i}, "timestamps": {"x": 5.0}} for i in range(10)]
    assert client.insert_bulk_data_reference(s, records) == client.insert_bulk_data_reference(s, records)
    assert service.count("data_reference") == 10


def test_find_pages_past_one_page(service, client):
    """find_* returns every match even beyond one server page."""
    headers = [header_doc(project="big") for _ in range(12)]
    requests.post(f"{service.url}/api/v1/analysis_header", json=headers)
    found = list(client.iter_find("analysis_header", {"project": "big"}, paged=True, page_size=5))
    assert sorted(d.uid for d in found) == sorted(h["uid"] for h in headers)


def test_find_and_insert_dispatch(client):
    """find(doc_type, query) and insert(doc_type, **kw) route to the typed methods."""
    h = client.insert("analysis_header", provenance={"n": 1}, sample="S1")
    assert [d.uid for d in client.find("analysis_header", {"sample": "S1"})] == [h]
    with pytest.raises(ValueError, match="unknown document type"):
        client.find("nope", {})
    with pytest.raises(ValueError, match="unknown document type"):
        client.insert("nope")


def test_service_errors_are_typed_with_the_servers_message(client):
    """422, 404 and 409 arrive as ValidationError, NotFound, Conflict carrying the service's text."""
    with pytest.raises(ValidationError, match="provenance") as info:
        client.insert_analysis_header()
    assert info.value.status == 422 and info.value.request_id
    assert isinstance(info.value, requests.HTTPError)
    with pytest.raises(NotFound, match="ghost"):
        client.insert_analysis_tail("ghost", exit_status="success")
    h = client.insert_analysis_header(uid="fixed", provenance={"a": 1})
    with pytest.raises(Conflict):
        client.insert_analysis_header(uid=h, provenance={"a": 2})


def test_update_methods_change_documents_and_keep_revisions(client):
    """update_analysis_header / update_analysis_tail set fields on every match; history is kept."""
    h1 = client.insert_analysis_header(provenance={}, project="upd", sample="A")
    h2 = client.insert_analysis_header(provenance={}, project="upd", sample="B")
    updated = client.update_analysis_header({"project": "upd"}, {"tags": ["reviewed"]})
    assert sorted(d.uid for d in updated) == sorted([h1, h2])
    assert all(d.tags == ["reviewed"] for d in client.find_analysis_header(project="upd"))
    client.update_analysis_header({"uid": h1}, {"$unset": ["sample"]})
    assert "sample" not in client.find_analysis_header(uid=h1)[0]
    assert [r["document"].get("tags") for r in client.revisions("analysis_header", h1)] == [None, ["reviewed"]]
    t = client.insert_analysis_tail(h1, exit_status="success")
    client.update_analysis_tail({"analysis_header": h1}, {"$set": {"invalid": True}})
    assert client.find_analysis_tail(uid=t)[0].invalid is True
    with pytest.raises(Conflict, match="finalized"):
        client.update_analysis_header({"uid": h1}, {"sample": "late"})
    with pytest.raises(ValueError, match="needs a query"):
        client.update_analysis_header({}, {"tags": []})


def test_find_order_by_limit_stream_and_iterators(client):
    """find_* take order_by and limit; find(stream=True) and iter_* walk results lazily."""
    h = client.insert_analysis_header(provenance={})
    s = client.insert_data_reference_header(h, data_keys=KEYS)
    client.insert_bulk_data_reference(s, [{"data": {"x": i}, "timestamps": {}, "seq_num": i, "time": 10.0 + i}
                                          for i in range(30)])
    newest = client.find_data_reference(data_reference_header=s, order_by="-time", limit=3)
    assert [r.seq_num for r in newest] == [29, 28, 27]
    streamed = client.find("data_reference", {"data_reference_header": s}, order_by=["seq_num"], stream=True)
    assert not isinstance(streamed, list)
    assert [r.seq_num for r in streamed] == list(range(30))
    lazy = client.iter_data_reference(data_reference_header=s)
    assert next(lazy).seq_num == 0 and isinstance(next(lazy), Document)
    assert len(list(client.iter_find("data_reference", {"data_reference_header": s}, limit=7,
                                     paged=True, page_size=3))) == 7
    assert len(list(client.iter_find("data_reference", {"data_reference_header": s}, limit=7))) == 7
    paged = [r.seq_num for r in client.iter_find("data_reference", {"data_reference_header": s},
                                                  order_by="-time", paged=True, page_size=4)]
    assert paged == list(range(29, -1, -1))
    assert [d.uid for d in client.iter_analysis_header(uid=h)] == [h]


def test_get_analysis(client):
    """get_analysis returns header, streams with counts, tail and status."""
    h = client.insert_analysis_header(provenance={"analysis_name": "view"})
    s = client.insert_data_reference_header(h, data_keys=KEYS)
    client.insert_bulk_data_reference(s, [{"data": {"x": i}, "timestamps": {}} for i in range(4)])
    client.insert_analysis_tail(h, exit_status="abort", reason="beam lost")
    view = client.get_analysis(h)
    assert view["header"].provenance == {"analysis_name": "view"}
    assert [(st.uid, st.record_count) for st in view["streams"]] == [(s, 4)]
    assert view["tail"].reason == "beam lost" and view["status"] == "abort"
    with pytest.raises(NotFound):
        client.get_analysis("ghost")


def test_raw_legacy_get_and_post(client):
    """get(url, query) / post(url, params) speak the 0.x signature protocol."""
    header = header_doc()
    assert client.post(client.aheader_url, {"signature": "insert_analysis_header", "payload": header})["status"]
    found = client.get(client.aheader_url, {"signature": "find_analysis_header", "payload": {"uid": header["uid"]}})
    assert [d["uid"] for d in found] == [header["uid"]]


class _Flaky(BaseHTTPRequestHandler):
    """Answers the first ``failures`` POSTs with ``status``, then 201."""

    failures = 2
    status = 503
    calls = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        type(self).calls += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).calls <= type(self).failures:
            body = json.dumps({"error": {"status": self.status, "type": "X", "message": "busy",
                                         "details": [], "request_id": "r"}}).encode()
            self.send_response(self.status)
            self.send_header("Retry-After", "0")
        else:
            body = b'{"uid": "u", "result": "inserted", "time": 1.0}'
            self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky_server():
    def start(status: int, failures: int):
        handler = type("Flaky", (_Flaky,), {"status": status, "failures": failures, "calls": 0})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, handler
    servers: list[ThreadingHTTPServer] = []
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [503, 429])
def test_retries_503_and_429_then_succeeds(flaky_server, status):
    """Transient 503/429 are retried (honouring Retry-After) until the write lands."""
    server, handler = flaky_server(status, failures=2)
    c = AnalysisClient({"host": "127.0.0.1", "port": server.server_address[1], "retries": 3})
    assert c.insert_analysis_header(uid="u", provenance={}) == "u"
    assert handler.calls == 3


def test_gives_up_after_retries_with_service_unavailable(flaky_server):
    """A service that stays unavailable ends in ServiceUnavailable after the configured retries."""
    server, handler = flaky_server(503, failures=100)
    c = AnalysisClient({"host": "127.0.0.1", "port": server.server_address[1], "retries": 2})
    with pytest.raises(ServiceUnavailable, match="busy"):
        c.insert_analysis_header(provenance={})
    assert handler.calls == 3


def test_client_errors_are_not_retried(flaky_server):
    """A 422 is final: exactly one request."""
    server, handler = flaky_server(422, failures=100)
    c = AnalysisClient({"host": "127.0.0.1", "port": server.server_address[1], "retries": 3})
    with pytest.raises(ValidationError):
        c.insert_analysis_header(provenance={})
    assert handler.calls == 1


def test_bulk_rejects_records_of_another_stream(client):
    """A record naming a different stream than data_header is refused before sending."""
    with pytest.raises(ValueError, match="names stream"):
        client.insert_bulk_data_reference("s1", [record_doc("s2")])
    with pytest.raises(TypeError, match="unexpected"):
        client.insert_bulk_data_reference("s1", [], colour="red")


def test_numpy_values_are_sent_as_plain_json(service, client):
    """Arrays and NumPy scalars from an analysis can be passed straight in."""
    np = pytest.importorskip("numpy")
    h = client.insert_analysis_header(provenance={"params": {"n": np.int64(3), "w": np.float32(0.5)}})
    s = client.insert_data_reference_header(h, data_keys={"spectrum": {"dtype": "array", "shape": [4]},
                                                          "peak": {"dtype": "integer"}})
    client.insert_data_reference(s, data={"spectrum": np.arange(4.0), "peak": np.int64(2)},
                                 timestamps={"spectrum": 1.0, "peak": 1.0})
    record, = client.find_data_reference(data_reference_header=s)
    assert record.data == {"spectrum": [0.0, 1.0, 2.0, 3.0], "peak": 2}
    assert client.find_analysis_header(uid=h)[0].provenance == {"params": {"n": 3, "w": 0.5}}
