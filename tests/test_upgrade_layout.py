"""Layout 2 (``_id`` = uid): a layout-1 database is refused by serve, upgraded in place, and served whole."""
from __future__ import annotations

import io
import socket
import subprocess
import sys
import uuid
from contextlib import redirect_stdout
from typing import Any, Iterator

import pytest
import requests
from bson import ObjectId
from pymongo import MongoClient

from analysisstore.cli import main
from analysisstore.store import index_models
from legacy_one import fill_layout_one_database
from test_upgrade import Serve, _cli, _upgrade

DOC_TYPES = ("analysis_header", "data_reference_header", "data_reference", "analysis_tail")


@pytest.fixture
def one_db(mongo: MongoClient) -> Iterator[Any]:
    """A fresh database as analysisstore wrote it at layout 1."""
    name = f"asst_one_{uuid.uuid4().hex[:12]}"
    db = mongo[name]
    db.expected = fill_layout_one_database(db)  # type: ignore[attr-defined]
    yield db
    mongo.drop_database(name)


def _assert_layout_two(db: Any, expected: dict[str, list[dict[str, Any]]]) -> None:
    """Every document stored once, under its uid, with its fields unchanged; only today's indexes."""
    for doc_type in DOC_TYPES:
        stored = {doc["_id"]: doc for doc in db[doc_type].find()}
        assert all(uid == doc["uid"] for uid, doc in stored.items()), doc_type
        assert len(stored) == len(expected[doc_type]), doc_type
        for doc in expected[doc_type]:
            kept = {k: v for k, v in stored[doc["uid"]].items() if k not in ("_id", "_status")}
            assert kept == doc, doc["uid"]
        keys = {tuple((f, int(d)) for f, d in info["key"]) for name, info in db[doc_type].index_information().items()
                if name != "_id_"}
        assert keys == {tuple(m.document["key"].items()) for m in index_models(doc_type)}, doc_type
    assert db.meta.find_one({"_id": "layout"})["version"] == 2


@pytest.mark.subprocess
def test_layout_one_database_is_refused_then_upgraded_and_served_whole(one_db, mongo_uri):
    """serve refuses layout 1 naming the upgrade; after --apply every document reads back and writes work."""
    refused = _cli("serve", "--port", "0", "--mongo-uri", mongo_uri, "--database", one_db.name)
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode != 0 and len(lines) == 1, refused.stderr
    assert "layout version 1" in lines[0] and "analysisstore upgrade --mongo-uri" in lines[0]

    report = _upgrade(one_db, mongo_uri, "--apply")
    assert report["layout_before"] == 1 and report["layout_after"] == 2 and report["still_needed"] == []
    moves = {f["collection"]: f["count"] for f in report["changes"] if f["action"] == "move"}
    assert moves == {t: len(one_db.expected[t]) for t in DOC_TYPES}
    dropped = {(f["collection"], f["detail"].split(":")[0]) for f in report["changes"] if f["action"] == "drop"}
    assert ("data_reference", "uid_1") in dropped and ("data_reference", "data_reference_header_1_seq_num_1") in dropped
    _assert_layout_two(one_db, one_db.expected)
    assert one_db.upgrade_aside.count_documents({"check": "index"}) == len(dropped)  # definitions kept

    expected = one_db.expected
    with Serve("--mongo-uri", mongo_uri, "--database", one_db.name) as service:
        api = f"{service.url}/api/v1"
        for doc_type in ("analysis_header", "data_reference_header", "analysis_tail"):
            for doc in expected[doc_type]:
                got = requests.get(f"{api}/{doc_type}/{doc['uid']}", timeout=30)
                assert got.status_code == 200 and got.json() == doc, got.text
        # A stream's records page in (time, uid) order, exactly as stored, no _id anywhere.
        paged: list[dict[str, Any]] = []
        params: dict[str, Any] = {"data_reference_header": "s-big", "limit": 1000}
        while True:
            page = requests.get(f"{api}/data_reference", params=params, timeout=60).json()
            paged += page["items"]
            if not page["meta"]["has_more"]:
                break
            params["cursor"] = page["meta"]["next_cursor"]
        big = [r for r in expected["data_reference"] if r["data_reference_header"] == "s-big"]
        assert paged == sorted(big, key=lambda r: (r["time"], r["uid"]))
        by_uid = requests.get(f"{api}/data_reference", params={"uid__in": f"{big[7]['uid']},{big[9]['uid']}"},
                              timeout=30).json()["items"]
        assert by_uid == [big[7], big[9]]
        view = requests.get(f"{api}/analysis/h-done", timeout=30).json()
        assert view["status"] == "success" and view["streams"][0]["record_count"] == len(big)
        assert [r["revision"] for r in requests.get(f"{api}/analysis_header/h-done/revisions", timeout=30).json()
                ["items"]] == [0]
        changes = requests.get(f"{api}/changes", params={"after": 0}, timeout=30).json()["changes"]
        assert {c["uid"] for c in changes} >= {r["uid"] for r in expected["data_reference"] if r["seq_num"] < 5
                                               and r["data_reference_header"] == "s-open"}
        assert all("_id" not in c["document"] for c in changes)

        # Re-sends stay idempotent, a different document under a stored uid is a conflict, new writes work.
        again = requests.post(f"{api}/data_reference", json=big[:3], timeout=30)
        assert again.status_code == 200 and {i["result"] for i in again.json()["items"]} == {"already stored"}
        header = {k: v for k, v in expected["analysis_header"][1].items()}
        assert requests.post(f"{api}/analysis_header", json=header, timeout=30).json()["result"] == "already stored"
        changed = requests.post(f"{api}/analysis_header", json={**header, "project": "other"}, timeout=30)
        assert changed.status_code == 409
        record = {"uid": "r-new", "time": 1.8e9, "data_reference_header": "s-open", "seq_num": 5,
                  "data": {"x": 1.0}, "timestamps": {"x": 1.8e9}}
        assert requests.post(f"{api}/data_reference", json=record, timeout=30).status_code == 201
        assert requests.get(f"{api}/data_reference/r-new", timeout=30).json() == record
        late = requests.post(f"{api}/data_reference", json={**record, "uid": "r-late", "data_reference_header": "s-big"},
                             timeout=30)
        assert late.status_code == 409  # h-done is finalized
    assert one_db.data_reference.find_one({"_id": "r-new"})["uid"] == "r-new"


@pytest.fixture
def failpoint_server(tmp_path) -> Iterator[str]:
    """A database server of its own that takes failpoints (configureFailPoint)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
                               "--storage-path", str(tmp_path / "db"), "--enable-test-commands",
                               "--log-level", "WARNING"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"mongodb://127.0.0.1:{port}/?directConnection=true"
    finally:
        server.terminate()
        server.wait(60)


def _stopped_upgrade(client: MongoClient, uri: str, command: str, skip: int) -> None:
    """--apply with the ``skip+1``-th ``command`` of the upgrade failing: the run stops there, exit status 1."""
    client.admin.command("configureFailPoint", "failCommand", mode={"skip": skip, "times": 1}, data={
        "failCommands": [command], "errorCode": 2, "appName": "analysisstore-upgrade"})
    with redirect_stdout(io.StringIO()):
        assert main(["upgrade", "--mongo-uri", uri, "--database", "one", "--apply"]) == 1


@pytest.mark.subprocess
def test_upgrade_stopped_during_the_move_finishes_when_run_again(failpoint_server):
    """An --apply stopped mid-copy, then again before the originals go, loses nothing; a third run finishes."""
    with MongoClient(failpoint_server, serverSelectionTimeoutMS=60_000) as client:
        client.admin.command("ping")  # waits (server selection) until the database answers
        db = client.one
        expected = fill_layout_one_database(db)
        # Copies go in batches of 1000: headers, tails, then the 2 505 records' second batch fails.
        _stopped_upgrade(client, failpoint_server, "insert", skip=3)
        assert db.data_reference.count_documents({"_id": {"$type": "string"}}) == 1_000
        assert db.data_reference.count_documents({"_id": {"$type": "objectId"}}) == len(expected["data_reference"])
        assert db.meta.find_one({"_id": "layout"})["version"] == 1

        plan = _upgrade(db, failpoint_server)  # a dry run: the half-done pairs are no duplicates
        assert not [f for f in plan["changes"] if f["check"] == "duplicate uid"]
        # The next run copies the rest and stops before removing the originals.
        _stopped_upgrade(client, failpoint_server, "delete", skip=0)
        assert db.data_reference.count_documents({}) == 2 * len(expected["data_reference"])

        report = _upgrade(db, failpoint_server, "--apply")
        assert report["applied"] and report["still_needed"] == []
        assert not [f for f in report["changes"] if f["check"] == "duplicate uid"]
        _assert_layout_two(db, expected)
        assert not db.data_reference.find_one({"_id": {"$type": "objectId"}})
        assert _upgrade(db, failpoint_server)["change_count"] == 0
        assert isinstance(db.revisions.find_one()["_id"], ObjectId)  # other collections are left as they are


def test_no_read_shows_the_stored_id(service, analysis):
    """_id (the uid, in layout 2) is never returned, even when a caller names it among the fields."""
    header_uid = analysis["header"]["uid"]
    for params in ({"fields": "_id"}, {"fields": "_id,time"}, {"uid": header_uid}):
        listed = requests.get(f"{service.url}/api/v1/analysis_header", params=params, timeout=30)
        assert listed.status_code == 200, listed.text
        assert listed.json()["items"] and all("_id" not in d for d in listed.json()["items"]), params
    searched = requests.post(f"{service.url}/api/v1/analysis_header/search",
                             json={"filter": {"uid": header_uid}, "fields": ["_id"]}, timeout=30)
    assert searched.status_code == 200 and searched.json()["items"] == [{"uid": header_uid, "time": analysis[
        "header"]["time"]}], searched.text
