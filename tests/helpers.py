"""Helpers shared by the tests: the error-shape check, document builders, and what several test modules use."""
from __future__ import annotations

import uuid
from typing import Any, Iterator

import requests
from pymongo import monitoring

ERROR_KEYS = {"status", "type", "message", "details", "request_id"}


def assert_error(response: requests.Response, status: int, type_name: str | None = None,
                 contains: str | None = None) -> dict[str, Any]:
    """The one error shape: JSON, exactly the documented keys, request id echoed in a header."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == ERROR_KEYS
    assert error["status"] == status
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert isinstance(error["details"], list)
    assert "Traceback" not in response.text
    if type_name is not None:
        assert error["type"] == type_name, error
    if contains is not None:
        assert contains in error["message"], error["message"]
    return error


# ---- document builders shared by the tests ------------------------------------


def new_uid() -> str:
    return str(uuid.uuid4())


def header_doc(**extra: Any) -> dict[str, Any]:
    return {"uid": new_uid(), "time": 1_700_000_000.0,
            "provenance": {"analysis_name": "uvvis", "params": {"smooth": 3}}, **extra}


def stream_doc(header_uid: str, **extra: Any) -> dict[str, Any]:
    return {"uid": new_uid(), "time": 1_700_000_001.0, "analysis_header": header_uid,
            "data_keys": {"wavelength": {"dtype": "number", "units": "nm"},
                          "absorbance": {"dtype": "number"},
                          "label": {"dtype": "string"}}, **extra}


def record_doc(stream_uid: str, seq_num: int = 0, **extra: Any) -> dict[str, Any]:
    return {"uid": new_uid(), "time": 1_700_000_002.0 + seq_num, "data_reference_header": stream_uid,
            "seq_num": seq_num, "data": {"wavelength": 400.0 + seq_num, "absorbance": 0.5},
            "timestamps": {"wavelength": 1_700_000_002.0, "absorbance": 1_700_000_002.0}, **extra}


def tail_doc(header_uid: str, **extra: Any) -> dict[str, Any]:
    return {"uid": new_uid(), "time": 1_700_000_100.0, "analysis_header": header_uid,
            "exit_status": "success", **extra}


def as_stored(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` as the service stores it (layout 2: ``_id`` = uid), for tests writing straight to the
    database."""
    return dict(doc, _id=doc["uid"])


def post(service: Any, doc_type: str, body: Any) -> requests.Response:
    return requests.post(f"{service.url}/api/v1/{doc_type}", json=body, timeout=30)


# ---- shared by several test modules ------------------------------------------------


def make_bundle(path: Any, records: int = 5, tail: bool = True) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A finished bundle of one analysis with one stream: (header, stream, manifest)."""
    from analysisstore.client.bundle import BundleWriter

    header = header_doc()
    stream = stream_doc(header["uid"])
    writer = BundleWriter(path)
    writer.write_header(header)
    writer.write_stream(stream)
    writer.append_records(stream["uid"], [record_doc(stream["uid"], i) for i in range(records)])
    if tail:
        writer.write_tail(tail_doc(header["uid"]))
    manifest = writer.finish()
    return header, stream, manifest


def open_cursors(mongo: Any) -> int | None:
    """The database's count of open cursors (None if its serverStatus does not say)."""
    return mongo.admin.command("serverStatus").get("metrics", {}).get("cursor", {}).get("open", {}).get("total")


class EventReader:
    """Reads one SSE connection in a thread; ``connected`` is set once the service says the stream is open."""

    def __init__(self, url: str, params: dict[str, str] | None = None, last_event_id: str | None = None) -> None:
        headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_event_id} if last_event_id else {})}
        self.response = requests.get(f"{url}/api/v1/events", params=params, headers=headers, stream=True,
                                     timeout=(5, 60))
        assert self.response.status_code == 200, self.response.text
        assert self.response.headers["Content-Type"].startswith("text/event-stream")
        self.lines: Iterator[bytes] = self.response.iter_lines(chunk_size=1)
        assert next(self.lines) == b": connected"  # the change stream is open: later writes are delivered

    def next_event(self) -> dict[str, str]:
        fields: dict[str, str] = {}
        for raw in self.lines:
            line = raw.decode()
            if not line:
                if "data" in fields:
                    return fields
                continue
            if not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
        raise AssertionError("the event stream ended")

    def close(self) -> None:
        self.response.close()


class CommandNames(monitoring.CommandListener):
    """Names of the commands the service's database client sends (heartbeats are not commands)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass
