"""Retries live in one place (the client's policy): attempts are counted on real sockets, never timed."""
from __future__ import annotations

import collections
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from analysisstore.cli import main
from analysisstore.client import AnalysisClient, ServiceUnavailable, ServiceUnreachable
from analysisstore.drivers.analysis import AnalysisInput, BaseAnalysis
from analysisstore.drivers.driver import AnalysisDriver
from analysisstore.drivers.sync import Syncer

pytestmark = pytest.mark.timeout(120)


class _Unavailable(BaseHTTPRequestHandler):
    """Answers every request 503 (as a service whose database is down) and counts them."""

    calls = 0
    lock = threading.Lock()

    def _answer(self) -> None:
        with type(self).lock:
            type(self).calls += 1
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"error": {"status": 503, "type": "DatabaseUnavailable", "message": "database down",
                                     "details": [], "request_id": "r"}}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815 - http.server API

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def unavailable():
    """A real HTTP server on 127.0.0.1 answering 503 to everything; ``.handler.calls`` counts requests."""
    handler = type("Unavailable", (_Unavailable,), {"calls": 0, "lock": threading.Lock()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.handler = handler
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def connect_attempts(monkeypatch):
    """TCP connection attempts by destination port (each connect really happens; this only counts them)."""
    counts: collections.Counter[int] = collections.Counter()
    real_connect = socket.socket.connect

    def counting_connect(sock: socket.socket, address: object) -> None:
        if isinstance(address, tuple):
            counts[address[1]] += 1
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", counting_connect)
    return counts


def _spool_finished(spool, closed_port, n):
    """n finished analyses spooled by a client that found no service."""
    offline = AnalysisClient({"host": "127.0.0.1", "port": closed_port, "spool_dir": str(spool), "retries": 0})
    for _ in range(n):
        h = offline.insert_analysis_header(provenance={"analysis_name": "offline"})
        s = offline.insert_data_reference_header(h, data_keys={"x": {"dtype": "number"}})
        offline.insert_bulk_data_reference(s, [{"data": {"x": 1.0}, "timestamps": {}}])
        offline.insert_analysis_tail(h, exit_status="success")
    assert len(list((spool / "RUNS_FINISHED").iterdir())) == n


def test_client_makes_one_plus_retries_attempts(unavailable):
    """A write against a 503 service is tried 1 + ``retries`` times, then raises ServiceUnavailable."""
    client = AnalysisClient({"url": unavailable.url, "retries": 2})
    with pytest.raises(ServiceUnavailable, match="database down"):
        client.insert_analysis_header(provenance={})
    assert unavailable.handler.calls == 3


def test_sync_pass_spends_one_policy_then_defers_everything(unavailable, closed_port, tmp_path):
    """Against a 503 service a sync pass makes the client's attempts for one bundle and defers the rest at once."""
    _spool_finished(tmp_path, closed_port, 3)
    syncer = Syncer(tmp_path, lambda: AnalysisClient({"url": unavailable.url, "retries": 2}), progress_bar=False)
    report = syncer.run_once()
    assert sorted(report.deferred) == sorted(p.name for p in (tmp_path / "RUNS_FINISHED").iterdir())
    assert len(report.deferred) == 3 and not report.synced and not report.quarantined
    assert unavailable.handler.calls == 3  # 1 + 2 retries, once per pass: not per bundle, not multiplied


def test_analysis_driver_does_not_multiply_the_clients_retries(unavailable):
    """The analysis driver leaves retrying to the client: one policy of attempts, then a 'failed' outcome."""
    class Tiny(BaseAnalysis):
        analysis_name = "tiny"
        output_keys = {"out": {"x": {"dtype": "number"}}}

        def calc_output(self):
            return {"out": [{"x": 1.0}]}

    source = AnalysisInput({"uid": "input-1", "time": 1.0, "provenance": {}}, {}, {})
    driver = AnalysisDriver(lambda: AnalysisClient({"url": unavailable.url, "retries": 1}),
                            skip_existing=False, progress_bar=False)
    driver.submit(Tiny([source]))
    report = driver.run()
    assert len(report.failed) == 1 and "could not be stored" in next(iter(report.errors.values()))
    assert unavailable.handler.calls == 2


def test_typed_sync_command_fails_fast_on_connection_refused(closed_port, tmp_path, connect_attempts, capsys):
    """`analysisstore sync` against a refused port makes one connection attempt per pass, and says so."""
    _spool_finished(tmp_path, closed_port, 2)
    connect_attempts.clear()
    code = main(["sync", str(tmp_path), "--url", f"http://127.0.0.1:{closed_port}", "--no-progress"])
    assert code == 1
    assert connect_attempts[closed_port] == 1
    assert "deferred 2" in capsys.readouterr().out


def test_retry_policy_is_configurable(closed_port, connect_attempts):
    """The retries key takes a count or a policy; a policy without connect retries fails at the first refusal."""
    from analysisstore.client import RetryPolicy

    with pytest.raises(ServiceUnreachable):
        AnalysisClient({"url": f"http://127.0.0.1:{closed_port}",
                        "retries": {"retries": 3, "connect_retries": 0}}).insert_analysis_header(provenance={})
    assert connect_attempts[closed_port] == 1
    with pytest.raises(ServiceUnreachable):
        AnalysisClient({"url": f"http://127.0.0.1:{closed_port}",
                        "retries": RetryPolicy(retries=2, backoff=0.0)}).insert_analysis_header(provenance={})
    assert connect_attempts[closed_port] == 1 + 3
    assert RetryPolicy.interactive().connect_retries == 0
