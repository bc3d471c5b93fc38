"""A local mirror: the change feed, `analysisstore pull` between two real services, reads that fall back.

The remote service runs on the test run's database server, the local one on
a second embedded database of this module's own, as a mirror on a laptop
would: two services, two databases, only HTTP between them.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, Callable, Iterator

import pytest
import requests
from pymongo import MongoClient

from analysisstore.client import AnalysisClient, ServiceUnreachable
from analysisstore.embedded import MEMORY, EmbeddedMongo
from analysisstore.store import Store

from helpers import header_doc, post, record_doc, stream_doc, tail_doc
from serving import serve_factory  # noqa: F401 - the fixture

DOC_TYPES = ("analysis_header", "data_reference_header", "data_reference", "analysis_tail")


@pytest.fixture(scope="module")
def mirror_db() -> Iterator[str]:
    """The local side's own embedded database server."""
    with EmbeddedMongo(MEMORY) as embedded:
        yield embedded.uri


@pytest.fixture(scope="module")
def mirror_client(mirror_db: str) -> Iterator[MongoClient]:
    with MongoClient(mirror_db) as client:
        yield client


@pytest.fixture
def pair(start_service: Callable[..., Any], mirror_db: str, mirror_client: MongoClient) -> Iterator[tuple[Any, Any]]:
    """(remote, local): two services, each on its own database server."""
    name = f"asst_mirror_{uuid.uuid4().hex[:12]}"
    store = Store.connect(mirror_db, name)

    async def ensure_indexes() -> None:
        await store.ensure_indexes()
        await store.close()

    asyncio.run(ensure_indexes())
    local = start_service(mongo_uri_override=mirror_db, database=name)
    local.database = mirror_client[name]  # what the local service stored, on its own server
    yield start_service(), local
    mirror_client.drop_database(name)


def _analysis(service: Any, records: int = 3, name: str = "uvvis", tail: bool = True) -> dict[str, Any]:
    header = header_doc(provenance={"analysis_name": name, "params": {}})
    stream = stream_doc(header["uid"])
    assert post(service, "analysis_header", header).status_code == 201
    assert post(service, "data_reference_header", stream).status_code == 201
    if records:
        assert post(service, "data_reference", [record_doc(stream["uid"], i) for i in range(records)]).ok
    if tail:
        assert post(service, "analysis_tail", tail_doc(header["uid"])).status_code == 201
    return {"header": header, "stream": stream}


def _patch(service: Any, doc_type: str, uid: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.patch(f"{service.url}/api/v1/{doc_type}/{uid}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _pull(remote: Any, local: Any, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ASST_URL", "ASST_TOKEN")}
    done = subprocess.run([sys.executable, "-m", "analysisstore.cli", "pull", "--from", remote.url, "--url",
                           local.url, "--no-progress", *args], capture_output=True, text=True, env=env, timeout=120)
    if check is not None:
        assert done.returncode == check, done.stdout + done.stderr
    return done


def _documents(service: Any, doc_type: str) -> dict[str, dict[str, Any]]:
    return {d["uid"]: {k: v for k, v in d.items() if k != "_id"} for d in service.database[doc_type].find()}


def _history(service: Any) -> list[tuple[Any, ...]]:
    return sorted((r["doc_type"], r["uid"], r["revision"], repr(sorted(r["document"].items())))
                  for r in service.database.revisions.find({}, {"_id": 0, "request_id": 0, "replaced_at": 0}))


def _assert_mirrored(remote: Any, local: Any, header_filter: dict[str, Any] | None = None) -> None:
    """The local copy holds what the remote holds (of the selected analyses), each document once."""
    headers = {d["uid"] for d in remote.database.analysis_header.find(header_filter or {})}
    streams = {d["uid"] for d in remote.database.data_reference_header.find(
        {"analysis_header": {"$in": list(headers)}})}
    wanted = {"analysis_header": {"uid": {"$in": list(headers)}},
              "data_reference_header": {"uid": {"$in": list(streams)}},
              "data_reference": {"data_reference_header": {"$in": list(streams)}},
              "analysis_tail": {"analysis_header": {"$in": list(headers)}}}
    for doc_type in DOC_TYPES:
        expected = {d["uid"]: {k: v for k, v in d.items() if k not in ("_id", "_status")}
                    for d in remote.database[doc_type].find(wanted[doc_type])}
        here = {uid: {k: v for k, v in d.items() if k != "_status"} for uid, d in _documents(local, doc_type).items()}
        assert here == expected, doc_type
        assert local.count(doc_type) == len(expected)  # each exactly once
    selected = headers | {d["uid"] for d in remote.database.analysis_tail.find(wanted["analysis_tail"])}
    assert _history(local) == [h for h in _history(remote) if h[1] in selected]


# ---- the change feed -----------------------------------------------------------------


def test_feed_lists_inserts_and_updates_in_order_and_filters_by_header(service):
    """Every insert and accepted update has a position; keyset paging; lookups filter by the analysis header."""
    first = _analysis(service, records=2, name="uvvis")
    other = _analysis(service, records=1, name="icpms", tail=False)
    _patch(service, "analysis_header", first["header"]["uid"], {"$set": {"tags": ["checked"]}})
    feed = requests.get(f"{service.url}/api/v1/changes", timeout=30).json()
    assert feed["caught_up"] and feed["next"] == feed["last"]
    kinds = [(c["doc_type"], c["operation"], c["revision"]) for c in feed["changes"]]
    assert kinds == [("analysis_header", "insert", 0), ("data_reference_header", "insert", 0),
                     ("data_reference", "insert", 0), ("data_reference", "insert", 0),
                     ("analysis_tail", "insert", 0), ("analysis_header", "insert", 0),
                     ("data_reference_header", "insert", 0), ("data_reference", "insert", 0),
                     ("analysis_header", "update", 1)]
    positions = [c["position"] for c in feed["changes"]]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    # The insert carries the header as inserted; the update the version it made.
    assert "tags" not in feed["changes"][0]["document"] and feed["changes"][-1]["document"]["tags"] == ["checked"]
    assert "_revision" not in feed["changes"][-1]["document"]
    # Keyset paging: three at a time, from `next`, gives the same entries.
    paged, after = [], 0
    while True:
        page = requests.get(f"{service.url}/api/v1/changes", params={"after": after, "limit": 3}, timeout=30).json()
        paged += page["changes"]
        after = page["next"]
        if page["caught_up"]:
            break
    assert [c["position"] for c in paged] == positions
    filtered = requests.get(f"{service.url}/api/v1/changes", params={"provenance.analysis_name": "icpms"},
                            timeout=30).json()
    assert {c["analysis_header"] for c in filtered["changes"]} == {other["header"]["uid"]}
    assert len(filtered["changes"]) == 3 and filtered["next"] == feed["next"]
    # A refused write (a second tail) and an already stored re-send get no position in the feed.
    assert post(service, "analysis_tail", tail_doc(first["header"]["uid"])).status_code == 409
    assert post(service, "analysis_header", other["header"]).status_code == 200
    again = requests.get(f"{service.url}/api/v1/changes", params={"after": feed["next"]}, timeout=30).json()
    assert again["changes"] == [] and again["caught_up"]


@pytest.mark.parametrize("params", [{"after": "-1"}, {"after": "x"}, {"limit": "0"}, {"limit": "5001"},
                                    {"after": "1", "limit": "1", "no__bogus": "1"}])
def test_feed_refuses_bad_parameters(service, params):
    response = requests.get(f"{service.url}/api/v1/changes", params=params, timeout=30)
    assert response.status_code == 400, response.text


def test_feed_waits_for_a_write_that_commits_late(service, service_loop, mongo_uri):
    """A position handed out to a write still in flight holds back every later one; a vanished writer's
    position is resolved after the settle window."""
    store = Store.connect(mongo_uri, service.config.database)
    feed = store.feed
    late = header_doc()
    pending = feed.inserting("analysis_header", [late])
    flight = service_loop.run(pending.__aenter__())  # the late writer took its position and stalls
    early = header_doc()
    assert post(service, "analysis_header", early).status_code == 201  # a later position, committed first
    page = requests.get(f"{service.url}/api/v1/changes", timeout=30).json()
    assert page["changes"] == [] and page["next"] == 0 and not page["caught_up"]

    async def commit_late() -> None:
        flight.outcome = await store.insert("analysis_header", [(late, False)])
        await pending.__aexit__(None, None, None)

    service_loop.run(commit_late())
    page = requests.get(f"{service.url}/api/v1/changes", timeout=30).json()
    assert [c["uid"] for c in page["changes"]] == [late["uid"], early["uid"]] and page["caught_up"]

    # A writer that vanished after taking a position (no entry) and one that vanished while pending.
    service_loop.run(feed._allocate(1))
    stuck = header_doc()
    service_loop.run(feed.inserting("analysis_header", [stuck]).__aenter__())
    assert post(service, "analysis_header", header_doc()).status_code == 201
    assert requests.get(f"{service.url}/api/v1/changes", params={"after": page["next"]},
                        timeout=30).json()["changes"] == []
    feed.settle_seconds = 0.0  # a reader with no settle window treats both as abandoned
    settled = service_loop.run(feed.read(page["next"], 100, None))
    assert len(settled["changes"]) == 1 and settled["caught_up"]  # the stuck header was never written: void
    service_loop.run(store.close())


# ---- pull --------------------------------------------------------------------------------


def test_filtered_pull_then_updates_then_nothing(pair):
    """--where brings the matching analyses whole; updates replay with equal histories; a second pull is a no-op."""
    remote, local = pair
    wanted = _analysis(remote, records=5, name="uvvis")
    _analysis(remote, records=2, name="icpms")
    running = _analysis(remote, records=1, name="uvvis", tail=False)
    done = _pull(remote, local, "--where", "provenance.analysis_name=uvvis")
    assert "brought 2 analysis_header, 2 data_reference_header, 6 data_reference, 1 analysis_tail" in done.stdout
    _assert_mirrored(remote, local, {"provenance.analysis_name": "uvvis"})
    # Updates, two on one header: both revisions are replayed in order.
    _patch(remote, "analysis_header", running["header"]["uid"], {"$set": {"sample": "a"}})
    _patch(remote, "analysis_header", running["header"]["uid"], {"$set": {"sample": "b"}, "$unset": ["tags"]})
    tail = _documents(remote, "analysis_tail")
    tail_uid = next(uid for uid, t in tail.items() if t["analysis_header"] == wanted["header"]["uid"])
    _patch(remote, "analysis_tail", tail_uid, {"$set": {"notes": "fine"}})
    post(remote, "data_reference", [record_doc(running["stream"]["uid"], 10)])
    done = _pull(remote, local, "--where", "provenance.analysis_name=uvvis")
    assert "brought 1 data_reference, 2 analysis_header updates, 1 analysis_tail updates" in done.stdout
    _assert_mirrored(remote, local, {"provenance.analysis_name": "uvvis"})
    assert local.database.analysis_header.find_one({"uid": running["header"]["uid"]})["_revision"] == 2
    before = {t: _documents(local, t) for t in DOC_TYPES}
    done = _pull(remote, local, "--where", "provenance.analysis_name=uvvis")
    assert "brought nothing new; 0 already here; 0 conflicts" in done.stdout
    assert {t: _documents(local, t) for t in DOC_TYPES} == before
    # Another filter is another position: it brings the rest.
    _pull(remote, local)
    _assert_mirrored(remote, local)


def test_a_remote_whose_feed_ends_before_the_recorded_position_is_refused(pair):
    """A remote reset or replaced under the same URL: its feed ends before where this mirror got to.

    Taken as "caught up", every pull brought nothing until the new feed passed
    the old position, and then skipped everything before it.
    """
    remote, local = pair
    _analysis(remote, records=1)
    _pull(remote, local)
    local.database.mirror_positions.update_many({}, {"$inc": {"position": 1_000_000}})  # as if the remote was reset
    _analysis(remote, records=1)
    done = _pull(remote, local, check=None)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert "before the position" in done.stderr.strip().splitlines()[-1]
    assert local.database.analysis_header.count_documents({}) == 1  # nothing was taken as caught up


def test_conflict_is_reported_never_overwritten(pair):
    """A uid stored locally with other content: the rest is pulled, the conflict listed, exit 1, every time."""
    remote, local = pair
    clash = _analysis(remote, records=0, tail=False)
    fine = _analysis(remote, records=3)
    mine = {**clash["header"], "provenance": {"analysis_name": "mine", "params": {}}}
    assert post(local, "analysis_header", mine).status_code == 201
    done = _pull(remote, local, check=1)
    assert f"conflict analysis_header {clash['header']['uid']}" in done.stdout
    assert local.database.analysis_header.find_one({"uid": mine["uid"]})["provenance"]["analysis_name"] == "mine"
    assert local.count("data_reference", {"data_reference_header": fine["stream"]["uid"]}) == 3
    assert local.count("analysis_tail", {"analysis_header": fine["header"]["uid"]}) == 1
    assert local.count("data_reference_header", {"uid": clash["stream"]["uid"]}) == 1  # its stream matches
    again = _pull(remote, local, check=1)  # still unresolved: still reported
    assert f"conflict analysis_header {clash['header']['uid']}" in again.stdout
    dry = _pull(remote, local, "--dry-run", check=1)
    assert "would bring nothing new" in dry.stdout and "1 conflicts" in dry.stdout


def test_dry_run_lists_what_would_come_and_writes_nothing(pair):
    remote, local = pair
    first = _analysis(remote, records=4)
    _patch(remote, "analysis_header", first["header"]["uid"], {"$set": {"tags": ["x"]}})
    mine = {**stream_doc(first["header"]["uid"]), "uid": first["stream"]["uid"], "time": 1.0}
    dry = _pull(remote, local, "--dry-run")
    assert ("would bring 1 analysis_header, 1 data_reference_header, 4 data_reference, 1 analysis_tail, "
            "1 analysis_header updates; 0 already here; 0 conflicts") in dry.stdout
    assert all(local.count(t) == 0 for t in DOC_TYPES) and local.database.mirror_positions.count_documents({}) == 0
    assert post(local, "analysis_header", first["header"]).status_code == 201
    assert post(local, "data_reference_header", mine).status_code == 201
    dry = _pull(remote, local, "--dry-run", check=1)
    assert "1 already here; 1 conflicts" in dry.stdout and f"data_reference_header {mine['uid']}" in dry.stdout


def test_killed_mid_pull_and_rerun_stores_everything_exactly_once(pair):
    """SIGKILL while pulling, then pull again: every document once, histories equal."""
    remote, local = pair
    analyses = [_analysis(remote, records=0, tail=False) for _ in range(3)]
    for a in analyses:
        assert post(remote, "data_reference", [record_doc(a["stream"]["uid"], i) for i in range(600)]).ok
        _patch(remote, "analysis_header", a["header"]["uid"], {"$set": {"sample": "s1"}})
        assert post(remote, "analysis_tail", tail_doc(a["header"]["uid"])).status_code == 201
        _patch(remote, "analysis_header", a["header"]["uid"], {"$set": {"tags": ["t"]}})
    total = remote.count("data_reference")
    env = {k: v for k, v in os.environ.items() if k not in ("ASST_URL", "ASST_TOKEN")}
    process = subprocess.Popen([sys.executable, "-m", "analysisstore.cli", "pull", "--from", remote.url, "--url",
                                local.url, "--no-progress", "--page-size", "20"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while local.count("data_reference") < total // 3:
            try:  # look at the local database every 20 ms until the pull is well under way
                process.wait(0.02)
                break
            except subprocess.TimeoutExpired:
                pass
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    assert process.returncode == -signal.SIGKILL, "the pull finished before it could be killed"
    assert local.count("data_reference") < total
    position = local.database.mirror_positions.find_one()
    assert position is not None and 0 < position["position"]
    _pull(remote, local)
    _assert_mirrored(remote, local)
    done = _pull(remote, local)
    assert "brought nothing new" in done.stdout


# ---- reads that fall back ------------------------------------------------------------------


def test_reads_fall_back_to_the_mirror_when_the_remote_is_down(pair, caplog):
    remote, local = pair
    kept = _analysis(remote, records=3)
    _pull(remote, local)
    client = AnalysisClient({"url": remote.url, "fallback_url": local.url, "retries": 0})
    assert client.find_analysis_header(uid=kept["header"]["uid"])
    assert client.answered_by == remote.url
    remote.stop()
    with caplog.at_level(logging.WARNING, logger="analysisstore.client"):
        found = client.find_analysis_header(uid=kept["header"]["uid"])
        records = list(client.iter_data_reference(data_reference_header=kept["stream"]["uid"]))
    assert found[0]["uid"] == kept["header"]["uid"] and len(records) == 3
    assert client.answered_by == local.url
    assert len([r for r in caplog.records if "fallback" in r.getMessage()]) == 1  # logged once
    with pytest.raises(ServiceUnreachable):  # writes still go to the remote only
        client.insert_analysis_header(provenance={"analysis_name": "offline"})
    assert local.count("analysis_header", {"provenance.analysis_name": "offline"}) == 0


def test_pull_from_a_remote_nobody_answers_is_one_line(pair, closed_port):
    remote, local = pair
    remote.url = f"http://127.0.0.1:{closed_port}"
    done = _pull(remote, local, check=3)
    assert "no analysisstore service answers" in done.stderr and "(--from)" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_reads_fall_back_when_the_remote_does_not_answer_in_time(pair):
    """A remote that accepts connections but never answers: reads time out and the mirror answers."""
    remote, local = pair
    kept = _analysis(remote, records=1)
    _pull(remote, local)
    with socket.socket() as silent:  # a real listening socket that never answers a request
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = AnalysisClient({"url": url, "fallback_url": local.url, "timeout": 1.0, "retries": 0})
        assert client.find_analysis_header(uid=kept["header"]["uid"])[0]["uid"] == kept["header"]["uid"]
        assert client.answered_by == local.url


@pytest.mark.subprocess
def test_concurrent_writers_on_several_workers_miss_nothing(serve_factory, tmp_path):  # noqa: F811
    """Writers racing on two worker processes while a reader follows the feed: every write, once, in order."""
    server = serve_factory("--data-dir", str(tmp_path / "db"), "--processes", "2")
    server.wait_ready()
    written: list[str] = []

    def writer() -> None:
        with requests.Session() as session:
            for _ in range(15):
                header = header_doc()
                stream = stream_doc(header["uid"])
                records = [record_doc(stream["uid"], i) for i in range(3)]
                for doc_type, body in (("analysis_header", header), ("data_reference_header", stream),
                                       ("data_reference", records)):
                    assert session.post(f"{server.url}/api/v1/{doc_type}", json=body, timeout=30).ok
                written.extend([header["uid"], stream["uid"], *(r["uid"] for r in records)])

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    seen: list[dict[str, Any]] = []
    after = 0
    while True:  # read as the writes happen, in small pages, as a --watch pull would
        writing = any(thread.is_alive() for thread in threads)
        page = requests.get(f"{server.url}/api/v1/changes", params={"after": after, "limit": 7}, timeout=30).json()
        assert page["next"] >= after
        seen += page["changes"]
        after = page["next"]
        if not writing and page["caught_up"]:
            break
    for thread in threads:
        thread.join()
    positions = [c["position"] for c in seen]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert sorted(c["uid"] for c in seen) == sorted(written)  # none missed, none twice
    first = {c["uid"]: c["position"] for c in seen}
    for change in seen:  # parents before their children
        parent = change["document"].get("analysis_header") or change["document"].get("data_reference_header")
        assert parent is None or first[parent] < change["position"]


def test_watch_keeps_pulling_what_comes_later(pair):
    remote, local = pair
    _analysis(remote, records=1)
    env = {k: v for k, v in os.environ.items() if k not in ("ASST_URL", "ASST_TOKEN")}
    process = subprocess.Popen([sys.executable, "-m", "analysisstore.cli", "pull", "--from", remote.url, "--url",
                                local.url, "--no-progress", "--watch", "--interval", "0.2"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        later = _analysis(remote, records=2)  # written while the pull watches
        deadline = time.monotonic() + 60
        while local.count("analysis_tail", {"analysis_header": later["header"]["uid"]}) == 0:
            assert time.monotonic() < deadline, "the watching pull never brought the later analysis"
            with pytest.raises(subprocess.TimeoutExpired):  # still running, and polled every 50 ms
                process.wait(0.05)
    finally:
        process.terminate()
        process.wait(30)
    _assert_mirrored(remote, local)


def test_filtered_feed_over_many_analyses(service):
    """A page spanning hundreds of analyses is filtered by their headers within the time limits."""
    headers = [header_doc(provenance={"analysis_name": "even" if i % 2 == 0 else "odd", "params": {}})
               for i in range(600)]
    assert post(service, "analysis_header", headers).ok
    page = requests.get(f"{service.url}/api/v1/changes", params={"provenance.analysis_name": "odd", "limit": 5000},
                        timeout=60).json()
    assert [c["uid"] for c in page["changes"]] == [h["uid"] for h in headers[1::2]] and page["caught_up"]


def test_a_large_write_spans_several_entries_and_keeps_its_order(service):
    """4500 records in one request (three feed entries), 700 of them re-sent: the 3800 new ones, in order."""
    first = _analysis(service, records=0, tail=False)
    stream = first["stream"]["uid"]
    records = [record_doc(stream, i) for i in range(4_500)]
    assert post(service, "data_reference", records[1_600:2_300]).ok  # stored before: void in the big request
    before = requests.get(f"{service.url}/api/v1/changes", timeout=30).json()["next"]
    assert post(service, "data_reference", records).ok
    seen, after = [], before
    while True:
        page = requests.get(f"{service.url}/api/v1/changes", params={"after": after, "limit": 1_000},
                            timeout=60).json()
        seen += page["changes"]
        after = page["next"]
        if page["caught_up"]:
            break
    expected = [r["uid"] for r in records[:1_600] + records[2_300:]]
    assert [c["uid"] for c in seen] == expected
    assert [c["position"] - before for c in seen] == [*range(1, 1_601), *range(2_301, 4_501)]
    assert seen[0]["document"] == records[0]


def test_writers_racing_on_a_new_database_all_get_positions(mongo_uri, mongo):
    """Two workers' first writes on a database whose counter does not exist yet (the embedded database answers
    some racing creators with nothing): every write gets its own positions, none fails."""
    name = f"asst_counter_{uuid.uuid4().hex[:8]}"
    workers = [Store.connect(mongo_uri, name) for _ in range(2)]

    async def race() -> list[int]:
        try:
            return await asyncio.gather(*[workers[i % 2].feed._allocate(2) for i in range(16)])
        finally:
            for store in workers:
                await store.close()

    try:
        firsts = asyncio.run(race())
        assert len(set(firsts)) == 16 and all(first % 2 == 1 for first in firsts)  # disjoint pairs of positions
    finally:
        mongo.drop_database(name)


def test_start_up_creates_the_counter_once(mongo_uri, mongo):
    """ensure_indexes makes the counter (so writers never race to create it), and keeps it when run again."""
    name = f"asst_counter_{uuid.uuid4().hex[:8]}"

    async def start(allocate: int) -> None:
        store = Store.connect(mongo_uri, name)
        try:
            await store.ensure_indexes()
            if allocate:
                await store.feed._allocate(allocate)
        finally:
            await store.close()

    try:
        asyncio.run(start(0))
        assert mongo[name].meta.find_one({"_id": "change_feed"}) == {"_id": "change_feed", "last": 0}
        asyncio.run(start(3))
        asyncio.run(start(0))
        assert mongo[name].meta.find_one({"_id": "change_feed"})["last"] == 3
    finally:
        mongo.drop_database(name)
