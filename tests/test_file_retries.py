"""A file sent from a bundle survives the client's retry: the member is rewound and sent again whole."""
from __future__ import annotations

import hashlib
import os
import socket
import time
from urllib.parse import urlsplit

import requests

from analysisstore.client import AnalysisClient
from analysisstore.client.bundle import Bundle, BundleWriter, zip_bundle
from faults import fault_db, faulty_service  # noqa: F401 - fixtures
from helpers import header_doc


def test_a_bundle_file_is_resent_whole_after_a_database_error(faulty_service, tmp_path):
    """The database fails the first chunk write (the service answers 503, the client retries): the zipped
    member is read again from its start and the file is stored once, whole, with its sha256."""
    content = os.urandom(3 * 1024 * 1024)
    header = header_doc()
    writer = BundleWriter(tmp_path / "b")
    writer.write_header(header)
    entry = writer.add_file("file-1", "data.bin", "application/octet-stream", 1.7e9, lambda out: out.write(content))
    writer.finish()
    zip_bundle(tmp_path / "b", tmp_path / "b.zip")
    client = AnalysisClient({**faulty_service.service.client_config, "retries": {"retries": 2, "backoff": 0.01}})
    client.insert_many("analysis_header", [header])
    with Bundle(tmp_path / "b.zip") as bundle, bundle.open_file(entry) as reader:
        faulty_service.db.failpoint({"times": 1}, "insert", close_connection=False, errorCode=91)
        uid = client.insert_file(header["uid"], reader, "data.bin", uid="file-1", sha256=entry["sha256"])
        reader.check()
    assert uid == "file-1"
    database = faulty_service.database
    [doc] = list(database.analysis_file.find({}))
    digest = hashlib.sha256(b"".join(c["data"] for c in database["files.chunks"].find(
        {"files_id": doc["gridfs_id"]}).sort("n", 1)))
    assert doc["sha256"] == digest.hexdigest() == hashlib.sha256(content).hexdigest()
    assert database["files.files"].count_documents({}) == 1


def test_a_database_error_mid_upload_is_a_503_and_keeps_nothing(faulty_service):
    """The database failing while the body arrives: the upload gets the JSON 503 (not a reset connection),
    and no file is listed or half-published."""
    import requests

    from helpers import assert_error

    service = faulty_service.service
    header = header_doc()
    assert requests.post(f"{service.url}/api/v1/analysis_header", json=header, timeout=30).status_code == 201
    faulty_service.db.failpoint({"skip": 1, "times": 1}, "insert", close_connection=False, errorCode=91)
    response = requests.post(f"{service.url}/api/v1/analysis/{header['uid']}/files", params={"name": "d.bin"},
                             data=os.urandom(3 * 1024 * 1024), timeout=60)
    assert_error(response, 503)
    faulty_service.db.failpoint("off")
    database = faulty_service.database
    assert database.analysis_file.count_documents({}) == 0
    assert database["files.files"].count_documents({}) == 0


def test_a_client_hanging_up_while_its_file_is_published_never_loses_the_content(faulty_service):
    """The client goes away after the file's document is stored but before the answer: the stored file keeps its
    content (a hang-up used to remove the chunks of a file already listed, leaving an empty file with a sha256)."""
    service, database = faulty_service.service, faulty_service.database
    header = header_doc()
    assert requests.post(f"{service.url}/api/v1/analysis_header", json=header, timeout=30).status_code == 201
    content = os.urandom(300_000)
    # The fence entry's removal comes right after the file's document is inserted: hold it there.
    faulty_service.db.failpoint({"times": 1}, "delete", close_connection=False, blockConnection=True,
                                blockTimeMS=2_000)
    target = urlsplit(service.url)
    with socket.create_connection((target.hostname, target.port), timeout=30) as sock:
        sock.sendall((f"POST /api/v1/analysis/{header['uid']}/files?name=result.bin HTTP/1.1\r\n"
                      f"Host: {target.netloc}\r\nContent-Type: application/octet-stream\r\n"
                      f"Content-Length: {len(content)}\r\n\r\n").encode() + content)
        deadline = time.monotonic() + 60
        while database.analysis_file.count_documents({}) == 0:  # each check a database round trip
            assert time.monotonic() < deadline, "the file was never published"
    # Hung up while the service is still inside the publish; wait for it to finish with the fence entry.
    deadline = time.monotonic() + 60
    while database.write_fence.count_documents({}):
        assert time.monotonic() < deadline, "the publish never finished"
    got = requests.get(f"{service.url}/api/v1/files/{database.analysis_file.find_one({})['uid']}", timeout=30)
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == hashlib.sha256(content).hexdigest()
    assert database["files.files"].count_documents({}) == 1
