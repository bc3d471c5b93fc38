"""`analysisstore upgrade`: a database written by the 0.x service, brought to today's layout."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime
from typing import Any, Iterator

import pytest
import requests
from pymongo import MongoClient

from analysisstore.cli import main
from analysisstore.store._upgrade_values import (
    MISSING,
    Unmappable,
    map_data_keys,
    map_exit_status,
    map_parent_link,
    map_provenance,
    map_time,
)
from legacy_zero import fill_zero_database



def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analysisstore.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def zero_db(mongo: MongoClient) -> Iterator[Any]:
    """A fresh database filled exactly as the 0.x service filled it."""
    name = f"asst_zero_{uuid.uuid4().hex[:12]}"
    db = mongo[name]
    db.expected = fill_zero_database(db)  # type: ignore[attr-defined]
    yield db
    mongo.drop_database(name)


@pytest.mark.subprocess
def test_serve_refuses_a_zero_database_with_one_line(zero_db, mongo_uri):
    """`serve` on an un-upgraded 0.x database exits non-zero with one line naming the upgrade command."""
    result = _cli("serve", "--port", "0", "--mongo-uri", mongo_uri, "--database", zero_db.name)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    # The command is named with the URI's password masked: a refusal line must not print a secret.
    password = mongo_uri.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    masked = mongo_uri.replace(f":{password}@", ":***@")
    assert password not in result.stderr
    assert f"analysisstore upgrade --mongo-uri {masked} --database {zero_db.name}" in lines[0]
    assert "uid_1" not in zero_db.analysis_header.index_information()


# ---- helpers ---------------------------------------------------------------------


def _upgrade(db: Any, mongo_uri: str, *extra: str) -> dict[str, Any]:
    """`analysisstore upgrade ... --json` through the CLI's entry point, in this process (no import cost)."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["upgrade", "--mongo-uri", mongo_uri, "--database", db.name, "--json", *extra])
    assert code == 0, out.getvalue()
    return json.loads(out.getvalue())


def _snapshot(db: Any) -> dict[str, list[dict[str, Any]]]:
    return {name: sorted(db[name].find(), key=lambda d: str(d["_id"]))
            for name in sorted(db.list_collection_names()) if not name.startswith("system.")}


def _finding(report: dict[str, Any], check: str, collection: str, action: str) -> list[dict[str, Any]]:
    return [f for f in report["changes"] + report["notices"]
            if (f["check"], f["collection"], f["action"]) == (check, collection, action)]


class Serve:
    """`analysisstore serve` as a child process on a free port, ready when it says READY=1."""

    def __init__(self, *args: str) -> None:
        import socket

        from analysisstore.readiness import ReadyListener

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready = ReadyListener()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "analysisstore.cli", "serve", "--port", str(self.port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.ready.env())

    def __enter__(self) -> "Serve":
        try:
            self.ready.wait(self.process, 1, 90)
        except Exception:
            self.__exit__()
            raise AssertionError(f"serve did not start: {self.process.stdout.read()}") from None
        return self

    def __exit__(self, *_: Any) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.communicate(timeout=60)
        self.ready.close()


# ---- the report ------------------------------------------------------------------


def test_dry_run_reports_every_finding_and_changes_nothing(zero_db, mongo_uri):
    """Without --apply the upgrade lists duplicates, mappings, flags and missing indexes, and writes nothing."""
    before = _snapshot(zero_db)
    report = _upgrade(zero_db, mongo_uri)
    assert _snapshot(zero_db) == before
    assert report["dry_run"] and not report["applied"] and report["layout_before"] is None
    collapsed = _finding(report, "duplicate uid", "data_reference", "collapse")
    assert collapsed[0]["count"] == 5
    conflicts = _finding(report, "duplicate uid", "analysis_header", "set aside")
    assert conflicts[0]["uids"] == ["h-conflict"]
    mapped = {f["detail"]: f["uids"] for f in _finding(report, "value", "analysis_tail", "map")}
    assert mapped == {"exit_status 'completed' → 'success'": ["t-conflict"], "exit_status 'Failed' → 'fail'": ["t-failed"]}
    assert _finding(report, "second tail", "analysis_tail", "set aside")[0]["uids"] == ["t-failed-again"]
    assert _finding(report, "exit_status", "analysis_tail", "flag")[0]["uids"] == ["t-odd"]
    assert _finding(report, "data_reference_header", "data_reference", "flag")[0]["count"] == 2
    assert "time_1_uid_1" in _finding(report, "index", "analysis_header", "create")[0]["detail"]
    assert _finding(report, "layout", "data_reference", "move")  # to _id = uid (layout 2)
    assert _finding(report, "layout", "meta", "record")


def test_apply_fixes_keeps_every_original_and_is_idempotent(zero_db, mongo_uri):
    """--apply makes the dry run's changes, keeps every removed or changed original, and a second run is a no-op."""
    original = _snapshot(zero_db)
    planned = _upgrade(zero_db, mongo_uri)
    applied = _upgrade(zero_db, mongo_uri, "--apply")
    assert applied["applied"] and applied["changes"] == planned["changes"]
    assert applied["still_needed"] == [] and applied["layout_after"] == 2

    for doc_type in ("analysis_header", "data_reference_header", "data_reference", "analysis_tail"):
        stored = list(zero_db[doc_type].find())
        assert all(d["_id"] == d["uid"] for d in stored), doc_type  # layout 2: the unique _id is the uid
        assert len({d["uid"] for d in stored}) == len(stored), doc_type
        assert "uid_1" not in zero_db[doc_type].index_information()
    assert zero_db.meta.find_one({"_id": "layout"})["version"] == 2
    assert zero_db.analysis_tail.find_one({"uid": "t-failed"})["exit_status"] == "fail"
    assert zero_db.analysis_header.find_one({"uid": "h-conflict"})["provenance"]["params"] == {"smooth": 3}

    _assert_nothing_lost(zero_db, original)
    assert aside_reason(zero_db, "h-conflict") == "duplicate uid"
    assert zero_db.upgrade_aside.find_one({"_id": {"$regex": "^mapped:analysis_tail:"}, "uid": "t-failed"}
                                          )["original"]["exit_status"] == "Failed"

    upgraded = _snapshot(zero_db)
    again = _upgrade(zero_db, mongo_uri, "--apply")
    assert again["change_count"] == 0 and not again["applied"] and again["changes"] == []
    assert _snapshot(zero_db) == upgraded
    assert {f["check"] for f in again["notices"]} == {"exit_status", "data_reference_header"}


def _assert_nothing_lost(db: Any, original: dict[str, list[dict[str, Any]]]) -> None:
    """Each 0.x document is still stored as it was, kept aside exactly once, or a copy of one still stored."""
    entries = list(db.upgrade_aside.find({"original": {"$exists": True}}))
    aside: dict[Any, list[dict[str, Any]]] = {}
    for entry in entries:
        aside.setdefault(entry["original"]["_id"], []).append(entry)
    for doc_type in ("analysis_header", "data_reference_header", "data_reference", "analysis_tail"):
        for doc in original[doc_type]:
            kept = aside.get(doc["_id"], [])
            assert len(kept) <= 1 and all(entry["original"] == doc for entry in kept), doc
            if kept or db[doc_type].find_one(doc) is not None:
                continue
            copy = {k: v for k, v in doc.items() if k != "_id"}
            assert db[doc_type].find_one(copy) is not None, doc


def aside_reason(db: Any, uid: str) -> str:
    return db.upgrade_aside.find_one({"uid": uid, "check": {"$ne": "value"}})["check"]


@pytest.mark.subprocess
def test_upgraded_zero_database_serves_both_faces_and_takes_new_writes(zero_db, mongo_uri):
    """After --apply, serve starts, every 0.x analysis reads back through v1 and the legacy face, and writes work."""
    _upgrade(zero_db, mongo_uri, "--apply")
    expected = zero_db.expected
    with Serve("--mongo-uri", mongo_uri, "--database", zero_db.name) as service:
        for uid in expected["headers"]:
            view = requests.get(f"{service.url}/api/v1/analysis/{uid}", timeout=30)
            assert view.status_code == 200, view.text
            body = view.json()
            if uid in expected["status"]:
                assert body["status"] == expected["status"][uid]
            for stream in body["streams"]:
                assert stream["record_count"] == expected["streams"][stream["uid"]]
            legacy = requests.get(f"{service.url}/analysis_header?" + json.dumps(
                {"signature": "find_analysis_header", "payload": {"uid": uid}}), timeout=30)
            assert [d["uid"] for d in legacy.json()] == [uid]
        for stream, count in expected["streams"].items():
            records = requests.get(f"{service.url}/data_reference?" + json.dumps(
                {"signature": "find_data_reference", "payload": {"data_reference_header": stream}}), timeout=30)
            assert len(records.json()) == count
        notime = requests.get(f"{service.url}/api/v1/analysis_header/h-notime", timeout=30).json()
        assert isinstance(notime["time"], float) and notime["provenance"] == {
            "legacy_value": "uvvis v1.2 from the beamline notebook"}

        # New writes: a record in a still-running 0.x analysis, a new analysis through the legacy face.
        record = {"uid": "r-new", "data_reference_header": "s-empty", "time": 1.7e9, "seq_num": 3,
                  "data": {"wavelength": 500, "absorbance": 0.1}, "timestamps": {"wavelength": 1.7e9}}
        assert requests.post(f"{service.url}/api/v1/data_reference", json=record, timeout=30).status_code == 201
        new = {"signature": "insert_analysis_header",
               "payload": {"uid": "h-new", "time": 1.7e9, "provenance": {"analysis_name": "uvvis"}}}
        assert requests.post(f"{service.url}/analysis_header", data=json.dumps(new), timeout=30).status_code == 200
        assert requests.get(f"{service.url}/api/v1/analysis_header/h-new", timeout=30).status_code == 200
        resent = {"uid": "h-clean", "time": 1_600_000_000.0, "project": "p1",
                  "provenance": {"analysis_name": "uvvis", "params": {"smooth": 3}}}
        again = requests.post(f"{service.url}/api/v1/analysis_header", json=resent, timeout=30)
        assert again.status_code == 200 and again.json()["result"] == "already stored"


@pytest.mark.subprocess
def test_serve_initialises_an_empty_database(mongo, mongo_uri):
    """serve on a new, empty database starts as before and records today's layout version."""
    name = f"asst_new_{uuid.uuid4().hex[:12]}"
    try:
        with Serve("--mongo-uri", mongo_uri, "--database", name) as service:
            assert requests.get(f"{service.url}/readyz", timeout=30).status_code == 200
        assert mongo[name].meta.find_one({"_id": "layout"})["version"] == 2
    finally:
        mongo.drop_database(name)


@pytest.mark.subprocess
def test_serve_refuses_duplicates_that_appear_after_the_upgrade(mongo, mongo_uri):
    """Duplicate uids the index build trips over give the same one-line refusal, not a traceback."""
    name = f"asst_dup_{uuid.uuid4().hex[:12]}"
    try:
        mongo[name].meta.insert_one({"_id": "layout", "version": 2})
        mongo[name].analysis_tail.insert_many([{"uid": "t", "exit_status": "success"} for _ in range(2)])
        result = _cli("serve", "--port", "0", "--mongo-uri", mongo_uri, "--database", name)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode != 0 and len(lines) == 1, result.stderr
        assert "duplicates in analysis_tail" in lines[0] and "analysisstore upgrade --mongo-uri" in lines[0]
    finally:
        mongo.drop_database(name)


# ---- the documented mappings, without a database ----------------------------------


@pytest.mark.parametrize("value, expected", [
    (1.5e9, None),
    (1_500_000_000, None),
    ("1500000000.5", (1_500_000_000.5, "number written as a string → number")),
    ("2020-09-13T12:26:40+00:00", (1_600_000_000.0, None)),
    (datetime(2020, 9, 13, 12, 26, 40), (1_600_000_000.0, None)),
    (None, (42.0, None)),
    (MISSING, (42.0, None)),
    (float("nan"), (42.0, None)),
    (True, (42.0, None)),
])
def test_time_mapping_table(value, expected):
    """time: numbers stay; dates and numeric strings convert; anything else takes the ObjectId's time."""
    mapped = map_time(value, inserted_at=42.0)
    if expected is None:
        assert mapped is None
    else:
        assert mapped[0] == expected[0]
        assert expected[1] is None or mapped[1] == expected[1]


def test_time_without_objectid_is_flagged():
    """A time no rule maps, on a document without an ObjectId, is reported rather than invented."""
    with pytest.raises(Unmappable):
        map_time(None, inserted_at=None)


@pytest.mark.parametrize("value, expected", [
    ("success", None), ("fail", None), ("abort", None),
    ("Completed", "success"), (" SUCCEEDED ", "success"), ("done", "success"),
    ("failed", "fail"), ("Error", "fail"), ("aborted", "abort"), ("cancelled", "abort"),
])
def test_exit_status_mapping_table(value, expected):
    """exit_status: today's three stay, the documented synonyms map (trimmed, any case)."""
    mapped = map_exit_status(value)
    assert (mapped[0] if mapped else None) == expected


@pytest.mark.parametrize("value", ["paused", "", None, MISSING, 0, "timeout"])
def test_exit_status_without_a_documented_meaning_is_flagged(value):
    """An exit_status outside the table is never guessed; --exit-status OLD=NEW maps it explicitly."""
    with pytest.raises(Unmappable):
        map_exit_status(value)
    if isinstance(value, str):
        assert map_exit_status(value, {value: "abort"})[0] == "abort"


def test_provenance_and_parent_link_mappings():
    """Non-object provenance is wrapped, never dropped; a parent stored as a document becomes its uid."""
    assert map_provenance({"a": 1}) is None
    assert map_provenance("v1.2")[0] == {"legacy_value": "v1.2"}
    assert map_provenance(["x"])[0] == {"legacy_value": ["x"]}
    assert map_provenance(None)[0] == {}
    assert map_parent_link("h1", "analysis_header") is None
    assert map_parent_link({"uid": "h1", "time": 1.0}, "analysis_header")[0] == "h1"
    with pytest.raises(Unmappable):
        map_parent_link(MISSING, "data_reference_header")


def test_data_keys_mapping():
    """data_keys: named dtypes map, missing ones come from the records, undeclared used keys are declared."""
    seen = {"x": {"integer", "number"}, "n": {"integer"}, "label": {"string"}}
    mapped, problems = map_data_keys({"x": {"dtype": "float64", "units": "nm"}, "n": {}}, seen)
    assert problems == []
    assert mapped[0] == {"x": {"dtype": "number", "units": "nm"}, "n": {"dtype": "integer"},
                         "label": {"dtype": "string"}}
    assert map_data_keys({"x": {"dtype": "number"}}, {"x": {"number"}}) == (None, [])
    assert map_data_keys({}, {})[1] == ["data_keys is empty and no record tells which keys the stream has"]
    _, mixed = map_data_keys({"x": {"dtype": "number"}}, {"x": {"number", "string"}})
    assert "declares dtype 'number' but records hold ['string']" in mixed[0]


# ---- indexes the early 0.x service created ----------------------------------------


def test_obstructive_zero_x_indexes_are_dropped_and_recorded(mongo):
    """Early 0.x's unique index on a record's stream (one record per stream!) is dropped, its definition kept."""
    from pymongo import DESCENDING

    from analysisstore.store._upgrade import apply_plan, plan_upgrade

    db = mongo[f"asst_idx_{uuid.uuid4().hex[:12]}"]
    try:
        # What the early 0.x AStore created at start-up.
        db.analysis_header.create_index([("uid", DESCENDING)], unique=True)
        db.data_reference.create_index([("uid", DESCENDING)], unique=True)
        db.data_reference.create_index([("data_reference_header", DESCENDING)], unique=True)
        db.data_reference.insert_one({"time": 1.0, "uid": "r0", "data_reference_header": "s",
                                      "data": {}, "timestamps": {}})
        plan = plan_upgrade(db)
        assert sorted((c, n) for c, n, _ in plan.drop_indexes) == [
            ("analysis_header", "uid_-1"), ("data_reference", "data_reference_header_-1"), ("data_reference", "uid_-1")]
        apply_plan(db, plan)
        # A second record of the stream, stored as the service stores it (under its uid): no longer refused.
        db.data_reference.insert_one({"_id": "r1", "time": 2.0, "uid": "r1", "data_reference_header": "s",
                                      "data": {}, "timestamps": {}})
        kept = db.upgrade_aside.find_one({"_id": "index:data_reference:data_reference_header_-1"})
        assert kept["key"] == [["data_reference_header", -1]] and kept["definition"]["unique"]
        # Unique on uid agreed with layout 1; layout 2's _id is the uid, so it goes too (definition kept).
        assert "uid_-1" not in db.analysis_header.index_information()
        assert db.upgrade_aside.find_one({"_id": "index:analysis_header:uid_-1"})["definition"]["unique"]
        assert plan_upgrade(db).change_count == 0
    finally:
        mongo.drop_database(db.name)


# ---- the embedded database ---------------------------------------------------------


@pytest.mark.subprocess
def test_embedded_data_dir_is_refused_then_upgraded(tmp_path):
    """Without --mongo-uri both serve and upgrade open the embedded database in --data-dir."""
    from analysisstore.embedded import EmbeddedMongo

    data_dir = tmp_path / "db"
    with EmbeddedMongo(data_dir) as embedded, MongoClient(embedded.uri) as client:
        fill_zero_database(client.analysisstore)
    refused = _cli("serve", "--port", "0", "--data-dir", str(data_dir), "--log-level", "warning")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert f"analysisstore upgrade --data-dir {data_dir} --database analysisstore" in refused.stderr
    applied = _cli("upgrade", "--data-dir", str(data_dir), "--apply", "--json")
    assert applied.returncode == 0, applied.stderr
    report = json.loads(applied.stdout)  # --apply re-reads the database: still_needed is what is left to do
    assert report["applied"] and report["layout_after"] == 2 and report["still_needed"] == []
    assert _finding(report, "duplicate uid", "analysis_header", "set aside")[0]["uids"] == ["h-conflict"]


def test_operator_maps_an_unknown_exit_status_explicitly(zero_db, mongo_uri):
    """--exit-status OLD=NEW maps a value the table leaves alone; the original is kept aside."""
    report = _upgrade(zero_db, mongo_uri, "--apply", "--exit-status", "paused=abort")
    assert {"exit_status 'paused' → 'abort' (given with --exit-status)"} <= {
        f["detail"] for f in _finding(report, "value", "analysis_tail", "map")}
    assert zero_db.analysis_tail.find_one({"uid": "t-odd"})["exit_status"] == "abort"
    kept = zero_db.upgrade_aside.find_one({"check": "value", "uid": "t-odd"})
    assert kept["original"]["exit_status"] == "paused"


@pytest.mark.parametrize("layout, tail, refused", [
    (None, {"exit_status": "success"}, True),   # filled by an older analysisstore: under ObjectIds, upgrade
    (None, {"exit_status": "paused"}, True),    # what only 0.x stored
    (None, {"exit_status": "success", "analysis_header": {"uid": "h"}}, True),
    (0, {"exit_status": "success"}, True),
    (1, {"exit_status": "success"}, True),      # layout 1: documents under ObjectIds, upgrade
    (2, {"exit_status": "paused"}, False),      # recorded: not probed again
    (3, {"exit_status": "success"}, True),
])
def test_layout_check_at_start_up(mongo, mongo_uri, layout, tail, refused):
    """serve's start-up check: today's layout passes; any other database with documents needs the upgrade."""
    import asyncio

    from analysisstore.store import Store
    from analysisstore.upgrade import LayoutError, check_layout

    name = f"asst_layout_{uuid.uuid4().hex[:12]}"
    mongo[name].analysis_header.insert_one({"uid": "h", "time": 1.0, "provenance": {}})
    mongo[name].analysis_tail.insert_one({"uid": "t", "time": 2.0, "analysis_header": "h", **tail})
    if layout is not None:
        mongo[name].meta.insert_one({"_id": "layout", "version": layout})

    async def check() -> str | None:
        store = Store.connect(mongo_uri, name)
        try:
            await check_layout(store.db)
        except LayoutError as exc:
            return str(exc)
        finally:
            await store.close()
        return None

    try:
        problem = asyncio.run(check())
        assert (problem is not None) == refused, problem
        if layout == 3:
            assert "newer than this analysisstore" in problem
        if layout is None:
            assert "0.x" in problem and mongo[name].meta.find_one({"_id": "layout"}) is None
        if tail["exit_status"] == "paused" and layout is None:
            assert "exit_status" in problem  # the probe names what only 0.x stored
    finally:
        mongo.drop_database(name)


@pytest.mark.subprocess
def test_apply_interrupted_by_a_database_error_completes_when_run_again(tmp_path):
    """A database error half-way through --apply (a real failpoint) loses nothing; running it again finishes."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
                               "--storage-path", str(tmp_path / "db"), "--enable-test-commands",
                               "--log-level", "WARNING"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    try:
        with MongoClient(uri, serverSelectionTimeoutMS=60_000) as client:
            client.admin.command("ping")  # waits (server selection) until the database answers
            db = client.zero
            fill_zero_database(db)
            original = _snapshot(db)
            # The upgrade's first delete (one collection's removals) goes through, the next one fails.
            client.admin.command("configureFailPoint", "failCommand", mode={"skip": 1, "times": 1}, data={
                "failCommands": ["delete"], "errorCode": 2, "appName": "analysisstore-upgrade"})
            out = io.StringIO()
            with redirect_stdout(out):
                assert main(["upgrade", "--mongo-uri", uri, "--database", "zero", "--apply"]) == 1
            assert db.analysis_header.count_documents({"uid": "h-clean"}) == 1  # the first removals happened
            assert db.data_reference.count_documents({"uid": "r-clean-0"}) == 2  # later ones did not
            assert db.analysis_tail.find_one({"uid": "t-failed"})["exit_status"] == "Failed"
            assert db.meta.find_one({"_id": "layout"}) is None
            _assert_nothing_lost(db, original)

            report = _upgrade(db, uri, "--apply")
            assert report["applied"] and report["still_needed"] == []
            _assert_nothing_lost(db, original)
            assert db.analysis_header.count_documents({"uid": "h-clean"}) == 1
            assert _upgrade(db, uri)["change_count"] == 0
    finally:
        server.terminate()
        server.wait(60)


def test_a_document_under_an_id_other_than_its_uid_stops_the_upgrade_before_anything_is_removed(mongo, mongo_uri):
    """0.x stored what clients sent: a header under ``_id`` "C" whose uid is "D" took the place that the
    header with uid "C" moves to, and the move took that one's duplicate key for its own copy and removed it."""
    db = mongo[f"asst_ids_{uuid.uuid4().hex[:12]}"]
    try:
        db.analysis_header.insert_one({"_id": "C", "uid": "D", "time": 1000.0, "provenance": {"analysis_name": "d"}})
        db.analysis_header.insert_one({"uid": "C", "time": 1000.0, "provenance": {"analysis_name": "c"}})
        before = sorted(db.analysis_header.find({}, {"_id": 0}), key=lambda d: d["uid"])
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["upgrade", "--mongo-uri", mongo_uri, "--database", db.name, "--apply"])
        assert code == 2, out.getvalue() + err.getvalue()
        assert "'C'" in err.getvalue() and "uid 'D'" in err.getvalue(), err.getvalue()
        assert sorted(db.analysis_header.find({}, {"_id": 0}), key=lambda d: d["uid"]) == before
        assert db.meta.find_one({"_id": "layout"}) is None  # not recorded as upgraded
    finally:
        mongo.drop_database(db.name)
