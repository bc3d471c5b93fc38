"""Writes: insert with every invariant (parents, idempotency by uid, one tail, nothing after the tail)."""
from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from ..validation import check_record_keys
from ..errors import AnalysisStoreError, Conflict, Finalized, NotFound, ValidationFailed, WritesInFlight
from ..schemas import PARENT_FIELD
from ..service_fields import RUNNING, STATUS_FIELD
from ._cache import ImmutableCache
from ._database_errors import _DUPLICATE_KEY, _database_errors
from ._resend import _PARENT_PROJECTION, _same_content
from ._results import ALREADY_STORED, INSERTED, ItemResult, WriteOutcome
from ._fence import Fence
from ._ids import by_uid, by_uids, stored_form


class Writes:
    """The write half of :class:`~analysisstore.store.Store`."""

    def __init__(self, db: AsyncDatabase, max_time_ms: int, known: ImmutableCache, fence: Fence) -> None:
        self.db = db
        self.max_time_ms = max_time_ms
        self.known = known
        self.fence = fence

    async def insert(self, doc_type: str, docs: list[tuple[dict[str, Any], bool]]) -> WriteOutcome:
        """Insert validated ``(document, time_filled)`` pairs of one type.

        Every check that can fail on the input (parents, finalization, data
        keys, duplicates inside the request) runs before anything is written;
        if one fails nothing is written and the outcome lists the failures.
        Only a uid conflict with an already stored document can be found
        after writing; it never overwrites anything.
        """
        outcome = WriteOutcome([ItemResult(i, doc.get("uid")) for i, (doc, _) in enumerate(docs)])
        if not docs:
            return outcome
        with _database_errors():
            to_write = self._dedupe_within_request(docs, outcome)
            entered: dict[str, str] = {}  # analysis -> this request's entry on its fence
            try:
                if doc_type in PARENT_FIELD:
                    await self._check_parents(doc_type, docs, to_write, outcome, entered)
                if outcome.failed:
                    return outcome
                if doc_type == "analysis_tail":
                    await self._write_tails(docs, to_write, outcome)
                else:
                    await self._write(doc_type, docs, to_write, outcome, entered)
            finally:
                for header_uid, token in entered.items():
                    await self.fence.leave(header_uid, token)
        return outcome

    @staticmethod
    def _dedupe_within_request(
        docs: list[tuple[dict[str, Any], bool]], outcome: WriteOutcome
    ) -> list[int]:
        first_index: dict[Any, int] = {}
        to_write = []
        for i, (doc, time_filled) in enumerate(docs):
            uid = doc["uid"]
            if uid not in first_index:
                first_index[uid] = i
                to_write.append(i)
                continue
            earlier = docs[first_index[uid]][0]
            if _same_content(earlier, doc, time_filled):
                outcome.items[i].result = ALREADY_STORED
            else:
                outcome.items[i].error = Conflict(
                    f"uid {uid!r} appears twice in this request with different content"
                )
        return to_write

    async def _check_parents(
        self,
        doc_type: str,
        docs: list[tuple[dict[str, Any], bool]],
        to_write: list[int],
        outcome: WriteOutcome,
        entered: dict[str, str],
    ) -> None:
        parent_field = PARENT_FIELD[doc_type]
        wanted = {docs[i][0][parent_field] for i in to_write}
        parents = {uid: p for uid in wanted if (p := self.known.get((parent_field, uid))) is not None}
        missing = wanted - set(parents)
        if missing:
            async for p in self.db[parent_field].find(
                by_uids(missing), _PARENT_PROJECTION[parent_field], max_time_ms=self.max_time_ms
            ):
                parents[p["uid"]] = p
                self.known.put((parent_field, p["uid"]), p)  # streams and headers never change these fields
        header_of = {
            uid: (p["analysis_header"] if parent_field == "data_reference_header" else uid)
            for uid, p in parents.items()
        }
        finalized = await self._enter(set(header_of.values()), entered) if doc_type != "analysis_tail" else set()
        for i in to_write:
            doc = docs[i][0]
            parent = parents.get(doc[parent_field])
            if parent is None:
                outcome.items[i].error = NotFound(
                    f"{parent_field} {doc[parent_field]!r} does not exist; "
                    f"write it before its {doc_type} documents"
                )
                continue
            if header_of[parent["uid"]] in finalized:
                await self._allow_only_resend(doc_type, docs[i], outcome.items[i], header_of[parent["uid"]])
                continue
            if doc_type == "data_reference":
                try:
                    check_record_keys(doc, parent)
                except ValidationFailed as exc:
                    outcome.items[i].error = exc

    async def _enter(self, header_uids: set[str], entered: dict[str, str]) -> set[str]:
        """Enter each analysis's fence (see ``_fence``); the analyses that are closing or closed."""
        closed = {uid for uid in header_uids if self.known.get(("finalized", uid))}
        for uid in sorted(header_uids - closed):
            token, finalized = await self.fence.enter(uid)
            if token is not None:
                entered[uid] = token
                continue
            closed.add(uid)
            if finalized:  # the tail is stored: that never reverts (a closing analysis may reopen)
                self.known.put(("finalized", uid), True)
        return closed

    async def finalized_headers(self, header_uids: set[str]) -> set[str]:
        """Which of these analyses have a tail (only 'finalized' is cached: it never reverts)."""
        finalized = {uid for uid in header_uids if self.known.get(("finalized", uid))}
        unknown = header_uids - finalized
        if not unknown:
            return finalized
        projection = {"_id": 0, "analysis_header": 1}
        if len(unknown) == 1:  # the common case (one analysis per request): no cursor to open and close
            found = await self.db.analysis_tail.find_one(
                {"analysis_header": next(iter(unknown))}, projection, max_time_ms=self.max_time_ms
            )
            tails = [found] if found is not None else []
        else:
            tails = await self.db.analysis_tail.find(
                {"analysis_header": {"$in": list(unknown)}}, projection, max_time_ms=self.max_time_ms
            ).to_list(None)
        for tail in tails:
            finalized.add(tail["analysis_header"])
            self.known.put(("finalized", tail["analysis_header"]), True)
        return finalized

    async def _allow_only_resend(
        self, doc_type: str, item: tuple[dict[str, Any], bool], result: ItemResult, header_uid: str
    ) -> None:
        """After the tail only an identical re-send of a stored document succeeds."""
        doc, time_filled = item
        stored = await self.db[doc_type].find_one(by_uid(doc["uid"]), {"_id": 0})
        if stored is not None and _same_content(stored, doc, time_filled):
            result.result = ALREADY_STORED
        else:
            result.error = Finalized(
                f"analysis {header_uid!r} is finalized (its tail is stored or being stored); "
                f"no new {doc_type} documents may be added"
            )

    async def _write(
        self,
        doc_type: str,
        docs: list[tuple[dict[str, Any], bool]],
        to_write: list[int],
        outcome: WriteOutcome,
        entered: dict[str, str] | None = None,
    ) -> None:
        pending = [i for i in to_write if outcome.items[i].result == INSERTED and outcome.items[i].error is None]
        if not pending:
            return
        batch = [docs[i][0] for i in pending]
        for doc in batch:
            stored_form(doc)  # _id = uid: the primary index refuses a second document with this uid
        if doc_type == "analysis_header":  # open: streams and records may enter (taken out again below)
            for doc in batch:
                doc[STATUS_FIELD] = RUNNING
        outcome.written = True
        try:
            if len(batch) == 1:  # a single document skips the bulk machinery
                await self.fence.under_lease(entered or {}, self.db[doc_type].insert_one(batch[0]))
            else:
                await self.fence.under_lease(entered or {}, self.db[doc_type].insert_many(batch, ordered=False))
        except DuplicateKeyError:
            await self._resolve_duplicate(doc_type, docs[pending[0]], outcome.items[pending[0]])
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                i = pending[error["index"]]
                if error.get("code") != _DUPLICATE_KEY:
                    outcome.items[i].error = AnalysisStoreError(f"database refused the document: {error.get('errmsg')}")
                    continue
                await self._resolve_duplicate(doc_type, docs[i], outcome.items[i])
        finally:
            for doc in batch:
                doc.pop("_id", None)
                doc.pop(STATUS_FIELD, None)

    async def _write_tails(
        self, docs: list[tuple[dict[str, Any], bool]], to_write: list[int], outcome: WriteOutcome
    ) -> None:
        """Close each analysis (no stream or record write in flight, none may start), store its tail, record its
        status; a tail already stored heals the status (an earlier tail write stopped before recording it)."""
        pending = [i for i in to_write if outcome.items[i].result == INSERTED]
        closing: dict[str, AnalysisStoreError | None] = {}
        for i in pending:
            header_uid = docs[i][0]["analysis_header"]
            if header_uid not in closing:
                try:
                    await self.fence.close(header_uid)
                    closing[header_uid] = None
                except WritesInFlight as exc:
                    closing[header_uid] = exc
            outcome.items[i].error = closing[header_uid]
        await self._write("analysis_tail", docs, pending, outcome)
        for i in pending:
            item, tail = outcome.items[i], docs[i][0]
            if isinstance(item.error, WritesInFlight):
                continue
            header_uid = tail["analysis_header"]
            if item.error is None and item.result == INSERTED:
                await self.fence.finish(header_uid, tail["exit_status"])
            else:
                # a re-send or a second tail: the stored tail's status; nothing stored: open again
                await self.fence.heal(header_uid, reopen=True)

    async def _resolve_duplicate(
        self, doc_type: str, item: tuple[dict[str, Any], bool], result: ItemResult
    ) -> None:
        doc, time_filled = item
        stored = await self.db[doc_type].find_one(by_uid(doc["uid"]), {"_id": 0})
        if stored is None:  # not the uid (_id): the unique index on the tail's analysis_header fired
            tail = await self.db.analysis_tail.find_one(
                {"analysis_header": doc["analysis_header"]}, {"_id": 0, "uid": 1}
            )
            result.error = Conflict(
                f"analysis {doc['analysis_header']!r} already has a tail "
                f"({tail['uid'] if tail else 'unknown uid'!r}); only one tail per analysis"
            )
        elif _same_content(stored, doc, time_filled):
            result.result = ALREADY_STORED
        else:
            result.error = Conflict(
                f"a different {doc_type} with uid {doc['uid']!r} is already stored; "
                "uids are immutable, use a new uid"
            )
