"""Helpers shared by the tests: the error-shape check and document builders."""
from __future__ import annotations

import uuid
from typing import Any

import requests

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


def post(service: Any, doc_type: str, body: Any) -> requests.Response:
    return requests.post(f"{service.url}/api/v1/{doc_type}", json=body, timeout=30)


