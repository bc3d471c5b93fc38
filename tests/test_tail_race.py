"""Nothing after the tail, under a race: writers bulk-post records while the tail is posted, 2 worker processes."""
from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from pymongo import AsyncMongoClient

from analysisstore.ingest import ingest
from analysisstore.store import Store

from faults import fault_db, faulty_service  # noqa: F401 - fixtures
from helpers import CommandNames, header_doc, record_doc, stream_doc, tail_doc
from serving import Serve


WRITERS = 4
CHUNK = 500
TRIALS = 4


def _stored_after_tail(changes: Any, records: int) -> int:
    """How many record inserts the database's change stream orders after the tail's insert."""
    seen, after, tail_seen = 0, 0, False
    while seen < records or not tail_seen:
        change = changes.try_next()
        if change is None:
            continue  # the next batch is on its way (try_next waited max_await_time_ms)
        if change["ns"]["coll"] == "analysis_tail":
            tail_seen = True
        else:
            seen += 1
            after += tail_seen
    return after


def _trial(url: str, db: Any) -> tuple[int, int, int, list[int]]:
    """One analysis: WRITERS threads post chunks until refused; the tail goes in once each has stored one.

    Returns (records stored when the tail's 201 arrived, records stored in the end, records the database
    stored after the tail, statuses the writers saw).
    """
    header = header_doc()
    stream = stream_doc(header["uid"])
    assert requests.post(f"{url}/api/v1/analysis_header", json=header, timeout=30).status_code == 201
    assert requests.post(f"{url}/api/v1/data_reference_header", json=stream, timeout=30).status_code == 201
    changes = db.watch([{"$match": {"operationType": "insert", "$or": [
        {"ns.coll": "analysis_tail", "fullDocument.analysis_header": header["uid"]},
        {"ns.coll": "data_reference", "fullDocument.data_reference_header": stream["uid"]}]}},
        {"$project": {"ns": 1}}], max_await_time_ms=1_000)
    first_chunks = threading.Barrier(WRITERS + 1, timeout=60)
    statuses: list[int] = []

    def write(n: int) -> None:
        with requests.Session() as session:
            for i in range(10_000):
                chunk = [record_doc(stream["uid"], seq_num=i * CHUNK + k) for k in range(CHUNK)]
                response = session.post(f"{url}/api/v1/data_reference", json=chunk, timeout=60)
                statuses.append(response.status_code)
                if i == 0:
                    first_chunks.wait()
                if response.status_code != 200:
                    error = response.json()["error"]
                    # Refused whole, with the documented error: nothing of a refused chunk is stored.
                    assert (response.status_code, error["type"]) == (409, "Finalized"), error
                    assert db.data_reference.count_documents({"_id": {"$in": [r["uid"] for r in chunk]}}) == 0  # _id = uid
                    return

    with ThreadPoolExecutor(WRITERS) as pool:
        futures = [pool.submit(write, n) for n in range(WRITERS)]
        first_chunks.wait()  # every writer has stored a chunk and is posting its next one
        tail = requests.post(f"{url}/api/v1/analysis_tail", json=tail_doc(header["uid"]), timeout=60)
        at_tail = db.data_reference.count_documents({"data_reference_header": stream["uid"]})
        assert tail.status_code == 201, tail.text
        for future in futures:
            future.result()
    final = db.data_reference.count_documents({"data_reference_header": stream["uid"]})
    with changes:
        return at_tail, final, _stored_after_tail(changes, final), statuses


@pytest.mark.subprocess
@pytest.mark.timeout(300)
def test_no_record_is_stored_after_the_tail(mongo_uri, mongo):
    """4 writers bulk-post records while the tail is posted (2 workers, several trials): every record is
    either stored before the tail's 201 or refused with 409 Finalized; none lands after it."""
    name = f"asst_tailrace_{uuid.uuid4().hex[:8]}"
    server = Serve("--mongo-uri", mongo_uri, "--database", name, "--processes", "2", "--log-level", "warning")
    try:
        server.wait_ready()
        late, after = [], []
        for _ in range(TRIALS):
            at_tail, final, stored_after, statuses = _trial(server.url, mongo[name])
            assert set(statuses) <= {200, 409}
            late.append(final - at_tail)
            after.append(stored_after)
        assert (late, after) == ([0] * TRIALS, [0] * TRIALS), \
            f"records stored after the tail's 201 {late}, after the tail in the database's order {after}, per trial"
    finally:
        server.kill()
        mongo.drop_database(name)


def _open_analysis(service: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    header = header_doc()
    stream = stream_doc(header["uid"])
    assert requests.post(f"{service.url}/api/v1/analysis_header", json=header, timeout=30).status_code == 201
    assert requests.post(f"{service.url}/api/v1/data_reference_header", json=stream, timeout=30).status_code == 201
    return header, stream


def test_the_tail_waits_for_a_write_in_flight_and_refuses_new_ones(service):
    """A write in flight (its fence entry, live lease): the tail closes the analysis and waits; a new record
    meanwhile is 409 Finalized; once the entry is gone the tail is stored (201)."""
    header, stream = _open_analysis(service)
    fence = service.database.write_fence
    fence.insert_one({"_id": "in-flight", "analysis": header["uid"], "until": time.time() + 600})
    with ThreadPoolExecutor(1) as pool:
        tail = pool.submit(requests.post, f"{service.url}/api/v1/analysis_tail", json=tail_doc(header["uid"]),
                           timeout=60)
        with service.database.analysis_header.watch(
                [{"$match": {"documentKey._id": service.database.analysis_header.find_one(
                    {"uid": header["uid"]})["_id"]}}], full_document="updateLookup") as changes:
            if service.database.analysis_header.find_one({"uid": header["uid"]})["_status"] != "closing":
                while (change := changes.next())["fullDocument"]["_status"] != "closing":
                    pass  # the tail has not closed the analysis yet
        refused = requests.post(f"{service.url}/api/v1/data_reference", json=record_doc(stream["uid"]), timeout=30)
        assert refused.status_code == 409 and refused.json()["error"]["type"] == "Finalized"
        assert not tail.done()  # still waiting for the write in flight
        fence.delete_one({"_id": "in-flight"})
        assert tail.result().status_code == 201
    assert service.database.analysis_header.find_one({"uid": header["uid"]})["_status"] == "success"


def test_a_crashed_writers_entry_does_not_hold_the_tail(service):
    """An entry whose lease has passed (its writer crashed) is not waited for."""
    header, _ = _open_analysis(service)
    service.database.write_fence.insert_one({"_id": "crashed", "analysis": header["uid"], "until": time.time() - 1})
    started = time.monotonic()
    assert requests.post(f"{service.url}/api/v1/analysis_tail", json=tail_doc(header["uid"]), timeout=60).status_code == 201
    assert time.monotonic() - started < 5
    assert service.database.write_fence.count_documents({"analysis": header["uid"]}) == 0


def test_a_tail_write_that_stopped_while_closing_does_not_lock_the_analysis(service):
    """Closing by a tail write whose lease has passed and no tail stored: the next record write reopens it."""
    header, stream = _open_analysis(service)
    service.database.analysis_header.update_one({"uid": header["uid"]}, {"$set": {
        "_status": "closing", "_closing": {"id": "gone", "until": time.time() - 1}}})
    assert requests.post(f"{service.url}/api/v1/data_reference", json=record_doc(stream["uid"]),
                         timeout=30).status_code == 201
    assert service.database.analysis_header.find_one({"uid": header["uid"]})["_status"] == "running"
    # ... and when that tail write did store its tail, the analysis is finished instead.
    header, stream = _open_analysis(service)
    service.database.analysis_tail.insert_one(tail_doc(header["uid"], exit_status="fail"))
    service.database.analysis_header.update_one({"uid": header["uid"]}, {"$set": {
        "_status": "closing", "_closing": {"id": "gone", "until": time.time() - 1}}})
    late = requests.post(f"{service.url}/api/v1/data_reference", json=record_doc(stream["uid"]), timeout=30)
    assert late.status_code == 409 and late.json()["error"]["type"] == "Finalized"
    assert service.database.analysis_header.find_one({"uid": header["uid"]})["_status"] == "fail"


def test_no_file_is_attached_while_the_tail_is_being_stored(service):
    """A file upload finishing while a tail write holds the analysis closing is refused whole (409, nothing
    kept): files go through the same fence as records."""
    header, _ = _open_analysis(service)
    db = service.database
    db.analysis_header.update_one({"uid": header["uid"]}, {"$set": {
        "_status": "closing", "_closing": {"id": "a-tail-write", "until": time.time() + 600}}})
    chunks_before = db["files.chunks"].count_documents({})
    refused = requests.post(f"{service.url}/api/v1/analysis/{header['uid']}/files", params={"name": "late.txt"},
                            data=b"too late", timeout=30)
    assert refused.status_code == 409 and refused.json()["error"]["type"] == "Finalized", refused.text
    assert db.analysis_file.count_documents({"analysis_header": header["uid"]}) == 0
    assert db["files.chunks"].count_documents({}) == chunks_before
    # The tail write went away without storing its tail: the next file reopens the analysis.
    db.analysis_header.update_one({"uid": header["uid"]}, {"$set": {
        "_closing": {"id": "a-tail-write", "until": time.time() - 1}}})
    stored = requests.post(f"{service.url}/api/v1/analysis/{header['uid']}/files", params={"name": "late.txt"},
                           data=b"in time", timeout=30)
    assert stored.status_code == 201, stored.text
    assert db.write_fence.count_documents({"analysis": header["uid"]}) == 0


def test_a_record_insert_held_up_in_the_database_holds_the_tail_by_its_change_feed_entry(faulty_service):
    """A record write's pending change-feed entry is its entry on the fence (no write_fence entry of its own):
    a tail posted while the record's insert is held up in the database is stored only after the record, or
    the record is refused whole."""
    service, db = faulty_service.service, faulty_service.database
    header, stream = _open_analysis(service)
    record = record_doc(stream["uid"])
    faulty_service.db.failpoint({"times": 1}, "insert", close_connection=False, blockConnection=True,
                                blockTimeMS=3000)
    with ThreadPoolExecutor(2) as pool:
        writing = pool.submit(requests.post, f"{service.url}/api/v1/data_reference", json=record, timeout=60)
        while not db.change_feed.find_one({"doc_type": "data_reference", "uids": record["uid"]}):
            assert not writing.done(), writing.result().text  # the record's positions are being taken
        tail = pool.submit(requests.post, f"{service.url}/api/v1/analysis_tail", json=tail_doc(header["uid"]),
                           timeout=60)
        while db.analysis_header.find_one({"uid": header["uid"]})["_status"] == "running":
            assert not tail.done(), tail.result().text  # the tail has not closed the analysis yet
        own_entries = db.write_fence.count_documents({})  # while the tail waits (or the record was refused)
        stored = tail.result()
        records_at_the_tail = db.data_reference.count_documents({"uid": record["uid"]})
        assert stored.status_code == 201, stored.text
        written = writing.result()
    assert own_entries == 0
    if written.status_code == 201:  # it entered before the tail closed the analysis: stored before the tail
        assert records_at_the_tail == 1
    else:  # the tail closed the analysis first
        assert written.status_code == 409 and written.json()["error"]["type"] == "Finalized", written.text
        assert db.data_reference.count_documents({"uid": record["uid"]}) == 0
    assert db.change_feed.count_documents({"until": {"$gt": time.time()}}) == 0  # settled: no hold is left


def test_a_single_record_insert_takes_five_database_commands(service, service_loop, mongo_uri):
    """Position, pending entry (also the fence entry), the header's status, the insert, the settle."""
    _, stream = _open_analysis(service)
    commands = CommandNames()
    store = Store(AsyncMongoClient(mongo_uri, event_listeners=[commands]), service.config.database)

    async def insert_two() -> None:
        await ingest(store, "data_reference", [record_doc(stream["uid"], seq_num=0)], max_items=10)
        commands.names.clear()  # the first one also looked up its stream (kept: a stream's header never changes)
        await ingest(store, "data_reference", [record_doc(stream["uid"], seq_num=1)], max_items=10)

    service_loop.run(insert_two())
    assert commands.names == ["findAndModify", "findAndModify", "find", "insert", "update"]
    service_loop.run(store.close())
