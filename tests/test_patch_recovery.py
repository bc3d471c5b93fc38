"""A PATCH interrupted between its two writes (revision, then document) never locks the document."""
from __future__ import annotations

import threading
import time

import requests

from faults import fault_db, faulty_service  # noqa: F401 - fixtures
from helpers import header_doc, post


def _patch(service, uid: str, changes: dict) -> requests.Response:
    return requests.patch(f"{service.url}/api/v1/analysis_header/{uid}", json={"$set": changes}, timeout=60)


def _revisions(service, uid: str) -> list[dict]:
    return requests.get(f"{service.url}/api/v1/analysis_header/{uid}/revisions", timeout=30).json()["items"]


def test_patch_after_a_failed_update_succeeds_and_keeps_one_revision(faulty_service):
    """The database fails the document update after the revision was written (503); the next PATCH succeeds."""
    service = faulty_service.service
    header = header_doc()
    assert post(service, "analysis_header", header).status_code == 201
    faulty_service.db.failpoint("alwaysOn", "update")
    failed = _patch(service, header["uid"], {"sample": "S1"})
    assert failed.status_code == 503, failed.text
    assert faulty_service.database.revisions.count_documents({"uid": header["uid"]}) == 1  # the orphan
    faulty_service.db.failpoint("off")
    retried = _patch(service, header["uid"], {"sample": "S1"})
    assert retried.status_code == 200, retried.text
    assert retried.json()["sample"] == "S1" and retried.json()["_revision"] == 1
    revisions = _revisions(service, header["uid"])
    assert [r["revision"] for r in revisions] == [0] and revisions[0]["document"] == header
    assert revisions[0]["request_id"] == retried.headers["X-Request-ID"]
    again = _patch(service, header["uid"], {"sample": "S2"})
    assert again.status_code == 200 and again.json()["_revision"] == 2
    assert [r["document"].get("sample") for r in _revisions(service, header["uid"])] == [None, "S1"]


def test_a_stalled_update_loses_to_the_next_patch_without_losing_its_revision(faulty_service):
    """PATCH A stalls between its writes; PATCH B takes over A's revision and wins; A gets 409 and the
    revision B relies on stays."""
    service = faulty_service.service
    header = header_doc()
    assert post(service, "analysis_header", header).status_code == 201
    faulty_service.db.failpoint({"times": 1}, "update", close_connection=False, blockConnection=True,
                                blockTimeMS=3_000)
    answers: dict[str, requests.Response] = {}
    stalled = threading.Thread(target=lambda: answers.setdefault("a", _patch(service, header["uid"], {"sample": "A"})))
    stalled.start()
    deadline = time.monotonic() + 30
    while not faulty_service.database.revisions.find_one({"uid": header["uid"]}):  # A wrote its revision
        assert time.monotonic() < deadline, "PATCH A never wrote its revision"
    winner = _patch(service, header["uid"], {"sample": "B"})
    stalled.join(60)
    assert winner.status_code == 200, winner.text
    assert answers["a"].status_code == 409, answers["a"].text
    stored = faulty_service.database.analysis_header.find_one({"uid": header["uid"]}, {"_id": 0})
    assert stored["sample"] == "B" and stored["_revision"] == 1
    revisions = _revisions(service, header["uid"])
    assert [(r["revision"], r["document"]) for r in revisions] == [(0, header)]


def test_concurrent_patches_keep_a_revision_for_every_change(service):
    """Many PATCHes of one header at once: every accepted change leaves the version it replaced.

    A PATCH that took over a revision record from a PATCH still running, and
    then lost the race to it, used to delete that record: the winner's
    history was gone although it had answered 200.
    """
    header = header_doc()
    assert post(service, "analysis_header", header).status_code == 201
    answers: list[requests.Response] = []

    def patch_many(worker: int) -> None:
        for round_ in range(6):
            answers.append(_patch(service, header["uid"], {"notes": f"{worker}-{round_}"}))

    workers = [threading.Thread(target=patch_many, args=(n,)) for n in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    accepted = sorted(r.json()["_revision"] for r in answers if r.status_code == 200)
    assert {r.status_code for r in answers} <= {200, 409}
    assert accepted == list(range(1, len(accepted) + 1))
    revisions = _revisions(service, header["uid"])
    assert [r["revision"] for r in revisions] == list(range(len(accepted)))
