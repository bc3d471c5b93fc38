"""Writing history: X-Restore-Time needs the restore scope; X-Expect-Revision makes a replayed PATCH apply once."""
from __future__ import annotations

import io

import pytest
import requests

from analysisstore.auth import digest
from analysisstore.client import AnalysisClient, Forbidden
from analysisstore.config import TokenEntry
from analysisstore.drivers.archive import export_analyses, import_archives
from helpers import assert_error, header_doc

WRITER, RESTORER = "write-read-token", "restore-token"
TOKENS = (TokenEntry("writer", digest(WRITER), frozenset({"read", "write"})),
          TokenEntry("restorer", digest(RESTORER), frozenset({"read", "write", "restore"})))


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _header(service, token: str = WRITER) -> str:
    header = header_doc(sample="S1")
    response = requests.post(f"{service.url}/api/v1/analysis_header", json=header, headers=_auth(token), timeout=30)
    assert response.status_code == 201, response.text
    return header["uid"]


def _patch(service, uid: str, token: str, **headers: str) -> requests.Response:
    return requests.patch(f"{service.url}/api/v1/analysis_header/{uid}", json={"$set": {"sample": "S2"}},
                          headers={**_auth(token), **headers}, timeout=30)


def test_restore_time_needs_the_restore_scope(start_service):
    """A read+write token may not set a revision's or a file's time (403, nothing changes); a restore token may."""
    service = start_service(require_auth=True, tokens=TOKENS)
    uid = _header(service)
    assert_error(_patch(service, uid, WRITER, **{"X-Restore-Time": "1600000000.5"}), 403, contains="restore scope")
    upload = requests.post(f"{service.url}/api/v1/analysis/{uid}/files", params={"name": "a.txt"}, data=b"a",
                           headers={**_auth(WRITER), "X-Restore-Time": "1600000000.5"}, timeout=30)
    assert_error(upload, 403, contains="restore scope")
    assert service.count("revisions") == 0 and service.count("analysis_file") == 0
    assert _patch(service, uid, RESTORER, **{"X-Restore-Time": "1600000000.5", "X-Request-ID": "abc-123"}).ok
    [revision] = service.database.revisions.find({"uid": uid})
    assert revision["replaced_at"] == 1600000000.5 and revision["request_id"] == "abc-123"
    upload = requests.post(f"{service.url}/api/v1/analysis/{uid}/files", params={"name": "a.txt"}, data=b"a",
                           headers={**_auth(RESTORER), "X-Restore-Time": "1600000001.25"}, timeout=30)
    assert upload.status_code == 201 and upload.json()["time"] == 1600000001.25


@pytest.mark.parametrize("value", ["soon", "nan", "-1", "inf"])
def test_a_bad_restore_time_is_a_400(service, value):
    """The original time is a finite, non-negative UNIX time."""
    uid = _header(service)
    assert_error(_patch(service, uid, WRITER, **{"X-Restore-Time": value}), 400, contains="X-Restore-Time")
    assert service.count("revisions") == 0


def test_expect_revision_applies_a_replayed_patch_once(service):
    """X-Expect-Revision: the PATCH applies only to that revision; sent again it is a 409 and changes nothing."""
    uid = _header(service)
    assert _patch(service, uid, WRITER, **{"X-Expect-Revision": "0"}).status_code == 200
    assert_error(_patch(service, uid, WRITER, **{"X-Expect-Revision": "0"}), 409, contains="revision 1")
    assert_error(_patch(service, uid, WRITER, **{"X-Expect-Revision": "one"}), 400)
    assert service.count("revisions") == 1
    assert service.database.analysis_header.find_one({"uid": uid})["_revision"] == 1


def test_import_with_history_needs_the_restore_scope(start_service, tmp_path):
    """Importing revisions with a token lacking restore fails clearly; with it the history arrives."""
    source = start_service()
    client = AnalysisClient(source.client_config)
    uid = client.insert_analysis_header(provenance={"analysis_name": "scoped"}, sample="S1")
    client.insert_file(uid, io.BytesIO(b"data"), name="d.bin")
    client.update_analysis_header({"uid": uid}, {"sample": "S2"})
    bundles = export_analyses(client, [uid], tmp_path / "out")
    target = start_service(require_auth=True, tokens=TOKENS)
    with pytest.raises(Forbidden, match="restore scope"):
        import_archives(AnalysisClient({"url": target.url, "token": WRITER}), bundles)
    restorer = AnalysisClient({"url": target.url, "token": RESTORER})
    report = import_archives(restorer, bundles)
    assert report.ok, report
    assert restorer.revisions("analysis_header", uid) == client.revisions("analysis_header", uid)
    assert restorer.files(uid) == client.files(uid)


def test_cli_import_of_files_with_a_write_token_and_new_file_times(start_service, tmp_path, capsys):
    """`import --new-file-times` brings a bundle's files in with a token that may not restore times."""
    from analysisstore import cli

    source = start_service()
    client = AnalysisClient(source.client_config)
    uid = client.insert_analysis_header(provenance={"analysis_name": "cli"})
    client.insert_file(uid, io.BytesIO(b"data"), name="d.bin")
    client.insert_analysis_tail(uid, exit_status="success")
    [bundle] = export_analyses(client, [uid], tmp_path / "out")
    target = start_service(require_auth=True, tokens=TOKENS)
    args = ["import", str(bundle), "--url", target.url, "--token", WRITER]
    assert cli.main([*args, "--new-file-times"]) == 0
    assert "imported 1 analyses" in capsys.readouterr().out
    [stored] = AnalysisClient({"url": target.url, "token": WRITER}).files(uid)
    [original] = client.files(uid)
    assert stored["uid"] == original["uid"] and stored["sha256"] == original["sha256"]
    assert stored["time"] != original["time"]
