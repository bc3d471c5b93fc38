"""Files attached to analyses: streamed both ways, checked by sha256, immutable by name, none after the tail."""
from __future__ import annotations

import hashlib
import io
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from analysisstore.client import AnalysisClient
from analysisstore.client.errors import Conflict
from helpers import assert_error, post, tail_doc
from serving import Serve

MIB = 1024 * 1024


def _upload(service: Any, header_uid: str, body: bytes, name: str = "plot.png", **params: str) -> requests.Response:
    return requests.post(f"{service.url}/api/v1/analysis/{header_uid}/files", params={"name": name, **params},
                         data=body, headers={"Content-Type": "image/png"}, timeout=60)


def _gridfs_counts(service: Any) -> tuple[int, int, int]:
    db = service.database
    return db.analysis_file.count_documents({}), db["files.files"].count_documents({}), \
        db["files.chunks"].count_documents({})


def test_upload_download_and_listing(service: Any, analysis: dict) -> None:
    """A file goes up, is listed with its analysis, and comes back byte for byte with its sha256 as ETag."""
    body = os.urandom(300_000)
    uid = analysis["header"]["uid"]
    response = _upload(service, uid, body, sha256=hashlib.sha256(body).hexdigest())
    assert response.status_code == 201, response.text
    doc = response.json()
    assert doc["result"] == "inserted" and doc["size"] == len(body) and doc["name"] == "plot.png"
    assert response.headers["Location"] == f"/api/v1/files/{doc['uid']}"
    listed = requests.get(f"{service.url}/api/v1/analysis/{uid}", timeout=30).json()["files"]
    assert [f["uid"] for f in listed] == [doc["uid"]] and "gridfs_id" not in listed[0]
    down = requests.get(f"{service.url}/api/v1/files/{doc['uid']}", timeout=30)
    assert down.content == body and down.headers["ETag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    assert down.headers["Content-Type"] == "image/png" and "filename=\"plot.png\"" in down.headers["Content-Disposition"]
    again = requests.get(f"{service.url}/api/v1/files/{doc['uid']}", headers={"If-None-Match": down.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""


def test_same_name_same_content_is_already_stored_other_content_conflicts(service: Any, analysis: dict) -> None:
    """Re-sending a file is harmless; another content under its name is a 409; no orphan chunks either way."""
    uid = analysis["header"]["uid"]
    first = _upload(service, uid, b"abc" * 1000).json()
    second = _upload(service, uid, b"abc" * 1000)
    assert second.status_code == 200 and second.json()["result"] == "already stored"
    assert second.json()["uid"] == first["uid"]
    assert_error(_upload(service, uid, b"xyz" * 1000), 409, contains="different file named")
    assert _gridfs_counts(service) == (1, 1, 1)


def test_no_file_after_the_tail(service: Any, analysis: dict) -> None:
    """Once the analysis has its tail, an upload is refused and leaves nothing stored."""
    uid = analysis["header"]["uid"]
    assert post(service, "analysis_tail", tail_doc(uid)).status_code == 201
    assert_error(_upload(service, uid, b"late"), 409, contains="finalized")
    assert _gridfs_counts(service) == (0, 0, 0)


def test_identical_resend_after_the_tail_is_already_stored(service: Any, analysis: dict) -> None:
    """After the tail, re-sending a stored file (an import or sync run again) is "already stored"; a different
    content under its name is refused; neither writes a chunk."""
    uid = analysis["header"]["uid"]
    first = _upload(service, uid, b"abc" * 100_000).json()
    assert post(service, "analysis_tail", tail_doc(uid)).status_code == 201
    again = _upload(service, uid, b"abc" * 100_000, uid=str(uuid.uuid4()))
    assert again.status_code == 200 and again.json()["result"] == "already stored", again.text
    assert again.json()["uid"] == first["uid"]
    assert_error(_upload(service, uid, b"xyz" * 100_000), 409)
    assert _gridfs_counts(service) == (1, 1, 2)


def test_a_chosen_uid_is_kept_and_must_be_unique(service: Any, analysis: dict) -> None:
    """``uid=`` names the stored file (a spooled or archived one); another file cannot take it."""
    uid = analysis["header"]["uid"]
    chosen = str(uuid.uuid4())
    assert _upload(service, uid, b"one", name="a.txt", uid=chosen).json()["uid"] == chosen
    assert_error(_upload(service, uid, b"two", name="b.txt", uid=chosen), 409, contains="uid")
    assert _gridfs_counts(service) == (1, 1, 1)


def test_a_damaged_transfer_is_refused(service: Any, analysis: dict) -> None:
    """An announced sha256 that does not match the body: 422, and the partial content is removed."""
    response = _upload(service, analysis["header"]["uid"], b"x" * 600_000, sha256="0" * 64)
    assert_error(response, 422, contains="sha256")
    assert _gridfs_counts(service) == (0, 0, 0)


@pytest.mark.parametrize("name, params, status", [
    ("", {}, 400), ("a/b", {}, 400), ("..", {}, 400), ("ok.txt", {"sha256": "abc"}, 400)])
def test_bad_names_and_digests(service: Any, analysis: dict, name: str, params: dict, status: int) -> None:
    """A missing or path-like name, or a digest that is not 64 hex digits: a 400 before anything is written."""
    assert_error(_upload(service, analysis["header"]["uid"], b"data", name=name, **params), status)
    assert _gridfs_counts(service) == (0, 0, 0)


def test_unknown_analysis_is_a_404(service: Any) -> None:
    """Files need an existing analysis."""
    assert_error(_upload(service, "no-such-analysis", b"data"), 404, contains="no-such-analysis")
    assert_error(requests.get(f"{service.url}/api/v1/files/{uuid.uuid4()}", timeout=30), 404)


def test_file_size_limit(start_service: Any) -> None:
    """Above max_file_bytes: 413, whether announced by Content-Length or found while streaming (chunked)."""
    service = start_service(max_file_bytes=100_000)
    header = {"uid": str(uuid.uuid4()), "time": 1.0, "provenance": {}}
    assert post(service, "analysis_header", header).status_code == 201
    assert_error(_upload(service, header["uid"], b"x" * 100_001), 413)
    chunked = requests.post(f"{service.url}/api/v1/analysis/{header['uid']}/files", params={"name": "big.bin"},
                            data=iter([b"x" * 60_000, b"y" * 60_000]), timeout=60)
    assert chunked.status_code == 413
    assert _gridfs_counts(service) == (0, 0, 0)


@pytest.mark.parametrize("range_header, status, expected", [
    ("bytes=0-9", 206, slice(0, 10)), ("bytes=-5", 206, slice(-5, None)), ("bytes=995-", 206, slice(995, None)),
    ("bytes=0-99999", 200, slice(0, None)), ("bytes=2000-", 416, None), ("items=1-2", 200, slice(0, None)),
    ("bytes=3-1", 200, slice(0, None)), ("bytes=1023-1000", 200, slice(0, None)), ("bytes=1024-", 416, None),
    ("bytes=1024-2000", 416, None), ("bytes=-0", 416, None), ("bytes=1023-1023", 206, slice(1023, None))])
def test_byte_ranges(service: Any, analysis: dict, range_header: str, status: int, expected: slice | None) -> None:
    """Single byte ranges come back as 206 with Content-Range; an unsatisfiable one is a 416."""
    body = bytes(range(256)) * 4  # 1 024 bytes
    doc = _upload(service, analysis["header"]["uid"], body).json()
    response = requests.get(f"{service.url}/api/v1/files/{doc['uid']}", headers={"Range": range_header}, timeout=30)
    if status == 416:
        assert_error(response, 416)
        assert response.headers["Content-Range"] == "bytes */1024"
        return
    assert response.status_code == status
    assert response.content == body[expected]


def test_a_range_is_ignored_when_if_range_names_another_version(service: Any, analysis: dict) -> None:
    """If-Range with the file's ETag keeps the range; with any other validator the whole file comes back (200)."""
    body = bytes(range(256)) * 4
    doc = _upload(service, analysis["header"]["uid"], body).json()
    url = f"{service.url}/api/v1/files/{doc['uid']}"
    same = requests.get(url, headers={"Range": "bytes=0-9", "If-Range": f'"{doc["sha256"]}"'}, timeout=30)
    assert same.status_code == 206 and same.content == body[:10]
    for validator in ('"0000"', "Sun, 06 Dec 2026 08:00:00 GMT"):
        other = requests.get(url, headers={"Range": "bytes=0-9", "If-Range": validator}, timeout=30)
        assert other.status_code == 200 and other.content == body


def test_a_suffix_range_of_an_empty_file_is_the_empty_file(service: Any, analysis: dict) -> None:
    """An empty file: a suffix range (bytes=-5) is satisfiable (RFC 9110) and answers the whole, empty, content."""
    doc = _upload(service, analysis["header"]["uid"], b"").json()
    response = requests.get(f"{service.url}/api/v1/files/{doc['uid']}", headers={"Range": "bytes=-5"}, timeout=30)
    assert response.status_code == 200 and response.content == b""
    assert_error(requests.get(f"{service.url}/api/v1/files/{doc['uid']}", headers={"Range": "bytes=0-"},
                              timeout=30), 416)


def test_client_insert_file_and_get_file(service: Any, analysis: dict, tmp_path: Path) -> None:
    """The client attaches a file by path and fetches it back, checking its sha256; a clash raises Conflict."""
    client = AnalysisClient(service.client_config)
    source = tmp_path / "fit.csv"
    source.write_text("x,y\n1,2\n")
    uid = client.insert_file(analysis["header"], source)
    assert client.insert_file(analysis["header"], source) == uid
    target = tmp_path / "copy.csv"
    info = client.get_file(uid, target)
    assert target.read_bytes() == source.read_bytes() and info["content_type"] == "text/csv"
    with pytest.raises(Conflict):
        client.insert_file(analysis["header"], io.BytesIO(b"other"), name="fit.csv")


@pytest.mark.subprocess
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to read memory")
def test_50_mib_file_streams_through_in_bounded_memory(mongo_uri: str, mongo: Any, tmp_path: Path) -> None:
    """A 50 MiB file up and down through a real `serve` process: same sha256, service peak memory grows < 32 MiB."""
    name = f"asst_files_{uuid.uuid4().hex[:10]}"
    source = tmp_path / "big.h5"
    with open(source, "wb") as handle:
        for _ in range(50):
            handle.write(os.urandom(MIB))
    server = Serve("--mongo-uri", mongo_uri, "--database", name, "--log-level", "WARNING")
    try:
        server.wait_ready()
        client = AnalysisClient({"url": server.url})
        header = client.insert_analysis_header(provenance={"analysis_name": "files"})
        client.insert_file(header, io.BytesIO(os.urandom(MIB)), name="warm-up.h5")  # buffers settle
        before = _memory(server.process.pid)["VmRSS"]
        Path(f"/proc/{server.process.pid}/clear_refs").write_text("5")  # the peak counts from here
        uid = client.insert_file(header, source)
        info = client.get_file(uid, tmp_path / "back.h5")
        peak = _memory(server.process.pid)["VmHWM"]
        assert info["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        assert (tmp_path / "back.h5").stat().st_size == 50 * MIB
        assert peak - before < 32 * MIB, f"service grew by {(peak - before) / MIB:.1f} MiB"
    finally:
        server.terminate()
        mongo.drop_database(name)


def _memory(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


@pytest.mark.parametrize("content_type, served_as", [
    ("image/svg+xml", "image/svg+xml"), ("text/html; charset=utf-8", "text/html; charset=utf-8"),
    ("text/html;\tx=1", "application/octet-stream"), ("not a type", "application/octet-stream")])
def test_a_download_cannot_run_in_the_services_origin(service: Any, analysis: dict, content_type: str,
                                                       served_as: str) -> None:
    """An uploaded SVG or HTML with script is served as an attachment, never sniffed, in a CSP sandbox without
    script; a content type that is not a plain media type is served as application/octet-stream, not a 500."""
    body = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'
    response = requests.post(f"{service.url}/api/v1/analysis/{analysis['header']['uid']}/files",
                             params={"name": "x.svg"}, data=body, headers={"Content-Type": content_type}, timeout=60)
    assert response.status_code == 201, response.text
    down = requests.get(f"{service.url}/api/v1/files/{response.json()['uid']}", timeout=30)
    assert down.status_code == 200 and down.content == body
    assert down.headers["Content-Type"] == served_as
    assert down.headers["Content-Disposition"].startswith("attachment;")
    assert down.headers["X-Content-Type-Options"] == "nosniff"
    policy = [p.strip() for p in down.headers["Content-Security-Policy"].split(";")]
    assert "sandbox" in policy and "default-src 'none'" in policy
