"""Nothing after the tail, atomically, across worker processes and hosts: a write fence per analysis.

A stream or record write first *enters* its analysis: it inserts an entry
``{_id, analysis, until}`` in the ``write_fence`` collection, and only then
reads the header's ``_status``; it goes on only if the analysis is running,
and removes its entry when done. A tail write first *closes* the analysis:
one conditional update sets the header's ``_status`` to ``closing``, then it
re-reads the entries until none with a live lease is left, and only then
inserts the tail and records its ``exit_status`` as the header's status.

Each side writes first and reads the other's document second, so of a
write entering and a tail closing, at least one sees the other: a write
that read ``running`` had its entry stored before the tail closed, so the
tail finds it and waits; a write that reads ``closing`` is refused. Every
step is a single-document operation, atomic in every MongoDB deployment: no
transaction is needed (a standalone MongoDB has none), writers never
conflict with each other, and a write costs three small operations on a
tiny collection and one indexed read (updates of the header itself are
several times dearer).

Leases keep a crash from blocking an analysis for good: an entry whose
``until`` has passed is not waited for (a write still running renews its
entry every third of a lease), and a ``closing`` whose own lease has passed
(a tail write that stopped) is taken over by the next write once it has
checked that no tail was stored. Leases are compared with the hosts'
clocks, so hosts sharing a database keep their clocks within a fraction of
the lease of each other (NTP).

An insert's pending change-feed entry (``_changes``) is stored before the
write reaches the fence, names the analyses of its documents and carries a
lease (``until``) that its settle ends: for those analyses it *is* the
write's entry (:data:`HELD`), so a record write stores no entry of its own
and removes none (two commands fewer). A tail waits for both kinds. Writes
without a feed entry (files) and analyses the feed entry does not name
store their own entry in ``write_fence`` as before.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from ..errors import WritesInFlight
from ..service_fields import CLOSING, CLOSING_FIELD, RUNNING, STATUS_FIELD
from ._changes import FEED_COLLECTION, LEASE_SECONDS, held_entries
from ._status import EXIT_STATUSES

__all__ = ["Fence", "FENCE_COLLECTION", "LEASE_SECONDS", "TAIL_WAIT_SECONDS", "HELD"]

log = logging.getLogger(__name__)

#: Entries of the stream and record writes in flight; never served by the API.
FENCE_COLLECTION = "write_fence"
#: The token of a write whose entry is its insert's pending change-feed entry (tokens of own entries are hex).
HELD = "change-feed"
#: How long a tail write waits for the writes in flight before answering 503 (send it again).
TAIL_WAIT_SECONDS = 30.0
_FIRST_PAUSE, _LONGEST_PAUSE = 0.002, 0.1
_SWEEP_BATCH = 1_000


def _open(now: float) -> dict[str, Any]:
    """A header a tail write may close: running, or closing by a tail write whose lease has passed."""
    return {"$or": [{STATUS_FIELD: RUNNING}, {STATUS_FIELD: CLOSING, f"{CLOSING_FIELD}.until": {"$lt": now}}]}


class Fence:
    """Enter / leave for stream and record writes, close / finish for tail writes, heal for status."""

    def __init__(self, headers: AsyncCollection, tails: AsyncCollection, entries: AsyncCollection,
                 lease: float = LEASE_SECONDS, wait: float = TAIL_WAIT_SECONDS) -> None:
        self.headers = headers
        self.tails = tails
        self.entries = entries
        self.feed = headers.database[FEED_COLLECTION]
        self.lease = lease
        self.wait = wait

    async def ensure_indexes(self) -> None:
        await self.entries.create_index([("analysis", ASCENDING), ("until", ASCENDING)])
        # Only inserts in flight have an ``until`` in the future: a tail's look-up reads a handful of keys.
        await self.feed.create_index([("until", ASCENDING)])

    # ---- stream and record writes -------------------------------------------------------------

    async def enter(self, header_uid: str) -> tuple[str | None, bool]:
        """Register a write on the analysis: (its token, False); (None, whether its tail is stored) when the
        analysis is closing or closed."""
        hold = held_entries()
        if hold is not None and header_uid in hold.analyses:
            token = HELD  # stored before this read of the status, live until the insert settles
        else:
            token = secrets.token_hex(8)
            # An upsert of a new _id costs what an insert does, and leaves the insert command to the documents.
            await self.entries.update_one({"_id": token}, {"$set": {"analysis": header_uid,
                                                                    "until": time.time() + self.lease}}, upsert=True)
        try:
            for _ in range(3):  # a status to heal or a stopped tail write to take over, then read again
                header = await self.headers.find_one({"_id": header_uid}, {"_id": 0, STATUS_FIELD: 1,
                                                                           CLOSING_FIELD: 1})
                status = None if header is None else header.get(STATUS_FIELD)
                if status == RUNNING:
                    return token, False
                if header is None or status in EXIT_STATUSES:
                    break
                if status is None:  # no status recorded yet (a header an older analysisstore wrote)
                    await self.heal(header_uid)
                    continue
                closing = header.get(CLOSING_FIELD) or {}
                if status != CLOSING or closing.get("until", 0) >= time.time():
                    break  # a tail is being stored
                if await self._take_over(header_uid, closing) is not None:
                    break
        except BaseException:
            await self.leave(header_uid, token)
            raise
        await self.leave(header_uid, token)
        return None, status in EXIT_STATUSES

    async def _take_over(self, header_uid: str, closing: dict[str, Any]) -> str | None:
        """A tail write stopped while closing: its exit status if it stored the tail, else reopen (None)."""
        exit_status = await self._stored_tail_status(header_uid)
        if exit_status is not None:
            await self.finish(header_uid, exit_status)
            return exit_status
        reopened = await self.headers.update_one(
            {"_id": header_uid, STATUS_FIELD: CLOSING, f"{CLOSING_FIELD}.id": closing.get("id"),
             f"{CLOSING_FIELD}.until": {"$lt": time.time()}},
            {"$set": {STATUS_FIELD: RUNNING}, "$unset": {CLOSING_FIELD: ""}})
        if reopened.modified_count:
            log.warning("analysis %r: a tail write stopped before storing the tail; writes are accepted again",
                        header_uid)
        return None

    async def leave(self, header_uid: str, token: str) -> None:
        """Remove a write's entry (best effort: an entry left behind only holds until its lease ends).
        A held change-feed entry is left to the feed: its settle ends the hold."""
        if token == HELD:
            return
        try:
            await self.entries.delete_one({"_id": token})
        except PyMongoError as exc:
            log.warning("analysis %r: could not remove write entry %s (%s); it lapses in %.0f s",
                        header_uid, token, exc, self.lease)

    async def renew(self, header_uid: str, token: str) -> None:
        """Extend a write's lease while it is still running."""
        until = time.time() + self.lease
        hold = held_entries()
        if token == HELD and hold is not None:
            renewed = await hold.collection.update_many({"_id": {"$in": hold.entries}, "until": {"$gt": 0}},
                                                        {"$set": {"until": until}})
            if renewed.matched_count != len(hold.entries):
                log.error("analysis %r: change-feed positions from %d outlived their lease", header_uid,
                          hold.entries[0])
            return
        renewed = await self.entries.update_one({"_id": token}, {"$set": {"until": until}})
        if renewed.matched_count != 1:
            log.error("analysis %r: write %s outlived its lease and was given up by a tail write", header_uid, token)

    async def under_lease(self, entered: dict[str, str], operation: Any) -> Any:
        """Await ``operation``, renewing the entries in ``entered`` every third of a lease while it runs."""
        if not entered:
            return await operation
        task = asyncio.ensure_future(operation)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.lease / 3)
                if done:
                    return task.result()
                for header_uid, token in entered.items():
                    await self.renew(header_uid, token)
        finally:
            if not task.done():
                task.cancel()

    # ---- tail writes --------------------------------------------------------------------------

    async def close(self, header_uid: str) -> bool:
        """Stop new writes to the analysis and wait for those in flight.

        False when the analysis already has an exit status (its tail is
        stored: the tail write goes on to find out whether it is a re-send).
        WritesInFlight when writes are still running after ``wait`` seconds.
        """
        owner = secrets.token_hex(8)
        deadline = time.monotonic() + self.wait
        pause = _FIRST_PAUSE
        while True:
            now = time.time()
            closed = await self.headers.update_one(
                {"_id": header_uid, "$or": [_open(now), {STATUS_FIELD: None}]},
                {"$set": {STATUS_FIELD: CLOSING, CLOSING_FIELD: {"id": owner, "until": now + self.lease}}})
            if closed.matched_count:
                break
            header = await self.headers.find_one({"_id": header_uid}, {"_id": 0, STATUS_FIELD: 1})
            if header is None or header.get(STATUS_FIELD) in EXIT_STATUSES:
                return False
            pause = await self._pause(deadline, pause, header_uid, "another tail write")
        while await self._in_flight(header_uid):
            try:
                pause = await self._pause(deadline, pause, header_uid, "its stream and record writes")
            except WritesInFlight:
                await self.reopen(header_uid, owner)
                raise
        # Still ours, with a fresh lease for the insert that follows.
        kept = await self.headers.update_one({"_id": header_uid, STATUS_FIELD: CLOSING, f"{CLOSING_FIELD}.id": owner},
                                             {"$set": {f"{CLOSING_FIELD}.until": time.time() + self.lease}})
        if kept.matched_count != 1:
            raise WritesInFlight(f"analysis {header_uid!r} was reopened while its tail waited; send the tail again")
        return True

    async def _in_flight(self, header_uid: str) -> bool:
        """Is a write with a live lease in flight on the analysis: its own entry, or its insert's feed entry?"""
        now = time.time()
        if await self.entries.find_one({"analysis": header_uid, "until": {"$gt": now}}, {"_id": 1}):
            return True
        return await self.feed.find_one({"until": {"$gt": now}, "headers": header_uid}, {"_id": 1}) is not None

    async def _pause(self, deadline: float, pause: float, header_uid: str, waiting_for: str) -> float:
        if time.monotonic() + pause > deadline:
            raise WritesInFlight(f"the tail of analysis {header_uid!r} waited {self.wait:.0f} s for {waiting_for} "
                                 "to finish; send it again")
        await asyncio.sleep(pause)
        return min(pause * 2, _LONGEST_PAUSE)

    async def reopen(self, header_uid: str, owner: str | None = None) -> None:
        """Accept writes again after a tail write that stored nothing."""
        condition: dict[str, Any] = {"_id": header_uid, STATUS_FIELD: CLOSING}
        if owner is not None:
            condition[f"{CLOSING_FIELD}.id"] = owner
        await self.headers.update_one(condition, {"$set": {STATUS_FIELD: RUNNING}, "$unset": {CLOSING_FIELD: ""}})

    async def finish(self, header_uid: str, exit_status: str) -> None:
        """The tail is stored: its exit status becomes the analysis's status (entries of crashed writes go)."""
        await self.headers.update_one({"_id": header_uid}, {"$set": {STATUS_FIELD: exit_status},
                                                            "$unset": {CLOSING_FIELD: ""}})
        await self.entries.delete_many({"analysis": header_uid})

    # ---- healing ------------------------------------------------------------------------------

    async def heal(self, header_uid: str, reopen: bool = False) -> str | None:
        """Set the status from the stored tail (a tail re-send, a tail write that stopped after storing it);
        without a tail the analysis is running (``reopen``: even when closing, by the caller's own tail write).
        The exit status, or None without a tail."""
        exit_status = await self._stored_tail_status(header_uid)
        if exit_status is None:
            unset = [None, CLOSING] if reopen else [None]
            await self.headers.update_one({"_id": header_uid, STATUS_FIELD: {"$in": unset}},
                                          {"$set": {STATUS_FIELD: RUNNING}, "$unset": {CLOSING_FIELD: ""}})
            return None
        await self.finish(header_uid, exit_status)
        return exit_status

    async def _stored_tail_status(self, header_uid: str) -> str | None:
        tail = await self.tails.find_one({"analysis_header": header_uid}, {"_id": 0, "exit_status": 1})
        if tail is None:
            return None
        # A 0.x exit status today's schema refuses stays unmapped until the upgrade maps it: "fail" meanwhile.
        return tail.get("exit_status") if tail.get("exit_status") in EXIT_STATUSES else "fail"

    async def heal_all(self) -> int:
        """Start-up sweep: give every header without a status (written before statuses were kept) its status,
        and finish every closing analysis whose tail is stored. Idempotent; returns how many were set."""
        healed = 0
        while True:
            batch = await self.headers.find({STATUS_FIELD: None}, {"_id": 0, "uid": 1}).limit(_SWEEP_BATCH).to_list()
            if not batch:
                break
            uids = [doc["uid"] for doc in batch]
            status = await self._tail_statuses(uids)
            result = await self.headers.bulk_write(
                [UpdateOne({"_id": uid, STATUS_FIELD: None}, {"$set": {STATUS_FIELD: status.get(uid, RUNNING)}})
                 for uid in uids], ordered=False)
            healed += result.modified_count
            if result.matched_count == 0 and result.modified_count == 0:
                break  # nothing this sweep can set (another worker is sweeping the same headers)
        closing = [doc["uid"] async for doc in self.headers.find({STATUS_FIELD: CLOSING}, {"_id": 0, "uid": 1})]
        for uid, exit_status in (await self._tail_statuses(closing)).items():
            await self.finish(uid, exit_status)
            healed += 1
        return healed

    async def _tail_statuses(self, uids: list[Any]) -> dict[Any, str]:
        if not uids:
            return {}
        tails = self.tails.find({"analysis_header": {"$in": uids}}, {"_id": 0, "analysis_header": 1, "exit_status": 1})
        # A 0.x exit status today's schema refuses stays unmapped until the upgrade maps it: "fail" meanwhile.
        return {tail["analysis_header"]: tail["exit_status"] if tail.get("exit_status") in EXIT_STATUSES else "fail"
                async for tail in tails}
