"""GET /api/v1/analysis/{uid}/bundle: a valid bundle .zip, streamed while it is read, never staged on disk."""
from __future__ import annotations

import io
import random
import tempfile
import zipfile

import requests

from analysisstore.client.bundle import read_bundle

from helpers import as_stored, assert_error, header_doc, new_uid, post, record_doc, stream_doc, tail_doc


def _download(service, uid: str, path) -> None:
    with requests.get(f"{service.url}/api/v1/analysis/{uid}/bundle", stream=True, timeout=60) as response:
        assert response.status_code == 200, response.text
        path.write_bytes(response.content)


def test_downloaded_bundle_validates_and_holds_everything(service, tmp_path):
    """Header, both streams (one without records), every record and the tail, with a manifest that checks out."""
    header = header_doc(sample="S1")
    full, empty = stream_doc(header["uid"]), stream_doc(header["uid"])
    records = [record_doc(full["uid"], i) for i in range(5_200)]  # more than one database batch
    for doc_type, body in (("analysis_header", header), ("data_reference_header", full),
                           ("data_reference_header", empty), ("data_reference", records),
                           ("analysis_tail", tail_doc(header["uid"]))):
        assert post(service, doc_type, body).status_code in (200, 201)
    _download(service, header["uid"], tmp_path / "b.zip")
    [bundle] = read_bundle(tmp_path / "b.zip")
    with bundle:
        manifest = bundle.validate()
        assert manifest["streams"] == {full["uid"]: 5_200, empty["uid"]: 0}
        assert manifest["analysis_tail"] is not None
        assert bundle.header == header
        assert [r["uid"] for r in bundle.records(full["uid"])] == [r["uid"] for r in records]


def test_bundle_is_streamed_without_a_temporary_file(service, tmp_path, monkeypatch):
    """The first bytes arrive while the service is still sending a bundle larger than the socket buffers,
    and the service writes no temporary file for it."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # the in-process service's temporary directory
    header = header_doc()
    stream = {**stream_doc(header["uid"]), "data_keys": {"x": {"dtype": "array"}}}
    assert post(service, "analysis_header", header).status_code == 201
    assert post(service, "data_reference_header", stream).status_code == 201
    rng = random.Random(7)
    for start in range(0, 2_400, 400):  # ~25 MB of JSON that hardly compresses
        service.database.data_reference.insert_many([as_stored(
            {"uid": new_uid(), "time": 1.7e9 + i, "data_reference_header": stream["uid"], "seq_num": i,
             "data": {"x": [rng.random() for _ in range(600)]}, "timestamps": {}})
            for i in range(start, start + 400)])
    with requests.get(f"{service.url}/api/v1/analysis/{header['uid']}/bundle", stream=True, timeout=60) as response:
        assert response.status_code == 200
        assert "Content-Length" not in response.headers  # sent as it is made
        first = response.raw.read(4)
        assert first == b"PK\x03\x04"
        assert list(scratch.iterdir()) == []
        rest = response.raw.read()
    assert len(rest) > 8_000_000
    assert list(scratch.iterdir()) == []
    with zipfile.ZipFile(io.BytesIO(first + rest)) as archive:
        assert archive.namelist()[0] == "analysis_header.json"
        assert sum(1 for _ in archive.open(f"data_reference/{stream['uid']}.jsonl")) == 2_400


def test_downloaded_bundle_of_an_updated_analysis_imports_elsewhere(start_service, tmp_path):
    """An updated header is written without the service's revision counter, so the bundle imports into another
    service, which then shows the same document and the same revisions."""
    from analysisstore.client import AnalysisClient
    from analysisstore.drivers.archive import import_archives

    source = start_service()
    header = header_doc(sample="S1")
    assert post(source, "analysis_header", header).status_code == 201
    patched = requests.patch(f"{source.url}/api/v1/analysis_header/{header['uid']}",
                             json={"$set": {"sample": "S2"}}, timeout=30)
    assert patched.status_code == 200, patched.text
    _download(source, header["uid"], tmp_path / "b.zip")
    target = start_service()
    report = import_archives(AnalysisClient(target.client_config), [tmp_path / "b.zip"])
    assert report.ok, report
    revisions = [requests.get(f"{s.url}/api/v1/analysis_header/{header['uid']}/revisions", timeout=30).json()
                 for s in (source, target)]
    assert revisions[0] == revisions[1] and len(revisions[0]["items"]) == 1
    assert target.database.analysis_header.find_one({"uid": header["uid"]}, {"_id": 0}) == \
        source.database.analysis_header.find_one({"uid": header["uid"]}, {"_id": 0})


def test_the_first_piece_is_out_before_any_record_is_read(service, service_loop, mongo_uri):
    """bundle_zip hands out the header's piece before reading records: a record stored after it is in the bundle."""
    from analysisstore.bundle_download import bundle_zip
    from analysisstore.store import Store

    header = header_doc()
    stream = stream_doc(header["uid"])
    for doc_type, body in (("analysis_header", header), ("data_reference_header", stream),
                           ("data_reference", [record_doc(stream["uid"], i) for i in range(3)])):
        assert post(service, doc_type, body).status_code in (200, 201)

    async def open_store() -> Store:  # on the service's loop, where the generator runs
        return Store.for_service(service.config, mongo_uri)

    async def rest_of(pieces) -> bytes:
        return b"".join([piece async for piece in pieces])

    store = service_loop.run(open_store())
    try:
        pieces = bundle_zip(store, header["uid"], service.url)
        first = service_loop.run(pieces.__anext__())
        assert first.startswith(b"PK\x03\x04") and b"analysis_header.json" in first
        assert stream["uid"].encode() not in first  # nothing of the stream yet
        late = record_doc(stream["uid"], 3)  # stored while the download waits after its first piece
        assert post(service, "data_reference", late).status_code == 201
        rest = service_loop.run(rest_of(pieces))
    finally:
        service_loop.run(store.close())
    with zipfile.ZipFile(io.BytesIO(first + rest)) as archive:
        lines = archive.read(f"data_reference/{stream['uid']}.jsonl").decode().splitlines()
    assert len(lines) == 4 and late["uid"] in lines[-1]


def test_the_bundle_of_an_unknown_analysis_is_a_json_404(service):
    """No analysis, no zip: the one JSON error body, without the zip's headers."""
    response = requests.get(f"{service.url}/api/v1/analysis/{new_uid()}/bundle", timeout=30)
    assert_error(response, 404, contains="analysis_header")
    assert "Content-Disposition" not in response.headers
