"""status= from the status kept on the header: pages that survive analyses finishing, a field nobody sees,
and a start-up sweep that gives headers written before it their status."""
from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from typing import Any

import requests
import ujson

from analysisstore.client import AnalysisClient
from analysisstore.service_fields import HIDDEN_FIELDS
from helpers import assert_error, header_doc, post, record_doc, stream_doc, tail_doc
from helpers import EventReader


def _running_headers(service: Any, n: int) -> list[dict[str, Any]]:
    now = time.time()
    headers = [header_doc(time=now - 100 + i) for i in range(n)]  # recent: running, not stale
    assert post(service, "analysis_header", headers).status_code == 200
    return headers


def _pages(service: Any, params: dict[str, Any], between: Any = None) -> list[str]:
    """Every uid of every page, following next_cursor; ``between(page_number)`` runs between pages."""
    seen: list[str] = []
    cursor, page = None, 0
    while True:
        response = requests.get(f"{service.url}/api/v1/analysis_header",
                                params={**params, **({"cursor": cursor} if cursor else {})}, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [doc["uid"] for doc in body["items"]]
        cursor, page = body["meta"]["next_cursor"], page + 1
        if cursor is None:
            return seen
        if between is not None:
            between(page)


def test_running_pages_while_analyses_finish(service):
    """status=running, 3 a page: after each page two analyses finish (one already seen, one not yet);
    no 400, no duplicates, and every analysis that stayed running is listed."""
    headers = _running_headers(service, 15)
    uids = [h["uid"] for h in headers]
    finished: list[str] = []

    def finish_two(page: int) -> None:
        for uid in (uids[page * 3 - 1], uids[-page]):  # the last one listed, and one a later page would list
            if uid not in finished:
                assert post(service, "analysis_tail", tail_doc(uid)).status_code == 201
                finished.append(uid)

    seen = _pages(service, {"status": "running", "limit": 3}, finish_two)
    assert len(seen) == len(set(seen))
    assert set(uids) - set(finished) <= set(seen)
    assert not set(seen) - set(uids)
    listed_later = set(seen) & set(finished)
    assert all(uids.index(uid) < 3 * len(finished) for uid in listed_later)  # listed before they finished


def test_success_cursor_survives_other_analyses_finishing(service):
    """status=success, 2 a page: analyses finishing between pages (success or fail) never break the cursor."""
    headers = _running_headers(service, 12)
    done = [h["uid"] for h in headers[:6]]
    for uid in done:
        assert post(service, "analysis_tail", tail_doc(uid)).status_code == 201
    later = [h["uid"] for h in headers[6:]]

    def finish(page: int) -> None:
        status = "fail" if page % 2 else "success"
        assert post(service, "analysis_tail", tail_doc(later[page - 1], exit_status=status)).status_code == 201

    seen = _pages(service, {"status": "success", "limit": 2}, finish)
    assert len(seen) == len(set(seen))
    assert set(done) <= set(seen)
    counts = {s: requests.get(f"{service.url}/api/v1/analysis_header",
                              params={"status": s, "include_count": "true", "limit": 1}).json()["meta"]["count"]
              for s in ("running", "success", "fail")}
    assert sum(counts.values()) == 12


def _assert_hidden(doc: Any, where: str) -> None:
    text = json.dumps(doc)
    for name in HIDDEN_FIELDS:
        assert f'"{name}"' not in text, f"{name} visible in {where}: {text[:300]}"


def test_the_kept_status_is_never_visible(service):
    """GET, list, search, fields=, NDJSON, analysis view, revisions, bundle, legacy find, client, events."""
    reader = EventReader(service.url)
    try:
        header = header_doc(time=time.time())
        stream = stream_doc(header["uid"])
        for doc_type, doc in (("analysis_header", header), ("data_reference_header", stream),
                              ("data_reference", [record_doc(stream["uid"], i) for i in range(3)]),
                              ("analysis_tail", tail_doc(header["uid"]))):
            assert post(service, doc_type, doc).status_code in (200, 201)
        requests.patch(f"{service.url}/api/v1/analysis_header/{header['uid']}", json={"$set": {"notes": "n"}},
                       timeout=30).raise_for_status()
        assert service.database.analysis_header.find_one({"uid": header["uid"]})["_status"] == "success"
        api = f"{service.url}/api/v1"
        reads = {
            "get": requests.get(f"{api}/analysis_header/{header['uid']}").json(),
            "list": requests.get(f"{api}/analysis_header", params={"status": "success"}).json(),
            "search": requests.post(f"{api}/analysis_header/search", json={"status": "success"}).json(),
            "latest": requests.get(f"{api}/analysis_header", params={"latest": "uid"}).json(),
            "analysis": requests.get(f"{api}/analysis/{header['uid']}").json(),
            "revisions": requests.get(f"{api}/analysis_header/{header['uid']}/revisions").json(),
            "ndjson": requests.get(f"{api}/analysis_header", headers={"Accept": "application/x-ndjson"}).text,
            "legacy": requests.get(f"{service.url}/analysis_header", params=ujson.dumps(
                {"signature": "find_analysis_header", "payload": {"uid": header["uid"]}})).json(),
            "client": list(AnalysisClient(service.client_config).find_analysis_header(uid=header["uid"])),
        }
        assert reads["list"]["items"] and reads["search"]["items"]
        for where, doc in reads.items():
            _assert_hidden(doc, where)
        with requests.get(f"{api}/analysis/{header['uid']}/bundle", timeout=30) as response:
            archive = zipfile.ZipFile(io.BytesIO(response.content))
            for name in archive.namelist():
                _assert_hidden(archive.read(name).decode(), f"bundle {name}")
        events = [reader.next_event() for _ in range(7)]
    finally:
        reader.close()
    kinds = [(json.loads(e["data"])["doc_type"], e["event"]) for e in events]
    for event in events:
        _assert_hidden(json.loads(event["data"])["document"], "event")
    # The service's own updates of the header (status, write fence) are not events; the PATCH is.
    assert kinds == [("analysis_header", "insert"), ("data_reference_header", "insert"),
                     *[("data_reference", "insert")] * 3, ("analysis_tail", "insert"), ("analysis_header", "update")]


def test_service_fields_cannot_be_named(service):
    """Neither written, patched, filtered, ordered by nor asked for by a caller."""
    header = header_doc()
    assert_error(post(service, "analysis_header", {**header, "_status": "success"}), 422)
    assert post(service, "analysis_header", header).status_code == 201
    patch = requests.patch(f"{service.url}/api/v1/analysis_header/{header['uid']}",
                           json={"$set": {"_status": "success"}}, timeout=30)
    assert_error(patch, 400, contains="kept by the service")
    for params in ({"_status": "running"}, {"order_by": "_status"}, {"fields": "_closing"}):
        assert_error(requests.get(f"{service.url}/api/v1/analysis_header", params=params), 400)
    search = requests.post(f"{service.url}/api/v1/analysis_header/search", json={"filter": {"_status": "running"}})
    assert_error(search, 400)


def test_startup_sweep_gives_old_headers_their_status(start_service, mongo, mongo_uri):
    """A database written before the status was kept (headers and tails, no _status): serve's start-up sweep
    records every status, once; status= then answers from it."""
    import asyncio

    from analysisstore.store import Store

    name = f"asst_heal_{uuid.uuid4().hex[:8]}"
    now = time.time()
    headers = [header_doc(time=now - i) for i in range(30)]
    # Stored as the upgrade leaves such a database: under their uids (layout 2), without a kept status.
    mongo[name].analysis_header.insert_many([dict(h, _id=h["uid"]) for h in headers])
    statuses = {h["uid"]: ("success", "fail", "abort", None)[i % 4] for i, h in enumerate(headers)}
    tails = [tail_doc(uid, exit_status=s) for uid, s in statuses.items() if s]
    mongo[name].analysis_tail.insert_many([dict(t, _id=t["uid"]) for t in tails])
    service = start_service(database=name)
    before = requests.get(f"{service.url}/api/v1/analysis_header", params={"status": "success"}).json()
    assert before["items"] == []  # nothing swept yet (the test service skips serve's start-up)

    async def startup() -> None:
        store = Store.connect(mongo_uri, name)
        try:
            await store.ensure_indexes()
            await store.heal_status()
        finally:
            await store.close()

    asyncio.run(startup())
    assert mongo[name].analysis_header.count_documents({"_status": {"$exists": False}}) == 0
    for status in ("success", "fail", "abort", "running"):
        expected = {uid for uid, s in statuses.items() if (s or "running") == status}
        found = _pages(service, {"status": status, "limit": 4})
        assert set(found) == expected, status
    asyncio.run(startup())  # idempotent: a second sweep changes nothing
    assert {d["uid"]: d["_status"] for d in mongo[name].analysis_header.find()} == \
        {uid: s or "running" for uid, s in statuses.items()}
