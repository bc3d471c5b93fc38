"""v1 REST endpoints for the four document types: write, get by uid, list, search, stream."""
from __future__ import annotations

from contextlib import aclosing
from typing import Any
from urllib.parse import quote, urlencode

from ..changes import REVISION_FIELD, Changes
from ..contract.vocabulary import EXPECT_REVISION_HEADER, SINGLE_VALUED_PARAMS, UPDATABLE_TYPES as UPDATABLE
from ..errors import BadRequest, MethodNotAllowed
from ..ingest import ingest
from ..queries import (
    PageRequest,
    check_filter,
    combine,
    decode_cursor,
    encode_cursor,
    keyset_clauses,
    parse_lookups,
    parse_page,
    projection,
)
from ..schemas import DOC_TYPES
from ..updates import update
from ._stream_end import END_PREFERENCE, end_broken_stream, end_line, error_line, wants_end_line
from .base import BaseHandler, dumps

__all__ = ["routes", "DOC_TYPE_PATTERN", "NDJSON"]

DOC_TYPE_PATTERN = "(" + "|".join(DOC_TYPES) + ")"
NDJSON = "application/x-ndjson"
_SEARCH_KEYS = SINGLE_VALUED_PARAMS | {"filter"}


class PagingHandler(BaseHandler):
    """Answers a PageRequest as one page in the envelope, or as an NDJSON stream of every match."""

    _sent = 0  # documents the current NDJSON stream has written

    async def cursor_secret(self) -> str:
        """The key cursors are signed with: configured, else the one kept in the database for every worker."""
        return self.config.cursor_secret or await self.store.cursor_secret()

    async def respond(self, doc_type: str, page: PageRequest, link_args: dict[str, list[str]] | None = None) -> None:
        if page.status is not None and doc_type != "analysis_header":
            raise BadRequest("status filters analysis_header only")
        # A cursor binds what the caller asked for, not the status expansion below (which changes
        # as analyses finish), and is checked before anything reaches the database.
        asked = {"doc_type": doc_type, "filter": page.filter, "status": page.status}
        after = None
        if page.cursor is not None:
            after = decode_cursor(page.cursor, asked, page.sort, secret=await self.cursor_secret())
        if page.status is not None:
            status = self.store.status_filter(page.status, self.config.stale_after_seconds)
            page.filter = {"$and": [page.filter, status]} if page.filter else status
        queries = [page.filter]
        if after is not None:
            queries = [combine(page.filter, clause) for clause in keyset_clauses(after, page.sort)]
        if NDJSON in self.request.headers.get("Accept", ""):
            await self.stream(doc_type, queries, page)
            return
        if page.latest is not None:
            docs, has_more = await self.store.latest_page(doc_type, page.filter, page.latest, page.sort,
                                                          page.limit, projection(page))
        else:
            docs, has_more = await self.store.find_page(doc_type, queries, page.sort, page.limit, page.offset,
                                                        projection(page), keyset=after is not None)
        pageable = has_more and docs and page.latest is None
        next_cursor = None
        if pageable:
            next_cursor = encode_cursor(docs[-1], asked, page.sort, secret=await self.cursor_secret())
        meta: dict[str, Any] = {
            "limit": page.limit,
            "order_by": [("-" if d < 0 else "") + f for f, d in page.sort],
            "next_cursor": next_cursor,
            "has_more": has_more,
        }
        if page.include_count:
            meta["count"] = await self.store.count(doc_type, page.filter)
        if next_cursor and link_args is not None:
            link = f"{self.request.path}?{urlencode({**link_args, 'cursor': next_cursor}, doseq=True)}"
            self.set_header("Link", f'<{link}>; rel="next"')
        self.write_json({"items": docs, "meta": meta})

    async def stream(self, doc_type: str, queries: list[dict[str, Any]], page: PageRequest) -> None:
        """Every match, one JSON document a line, flushed batch by batch (constant server memory).

        How a stream ends — the ``$end`` line, or the ``$error`` line and a
        cut transfer after a failure — is described in ``_stream_end``.
        """
        if page.latest is not None or page.offset:
            raise BadRequest("NDJSON streams every match; latest and offset do not apply")
        self.set_header("Content-Type", f"{NDJSON}; charset=UTF-8")
        end_wanted = wants_end_line(self.request)
        if end_wanted:
            self.set_header("Preference-Applied", END_PREFERENCE)
        self._sent, self._abandoned = 0, False
        try:
            await self._write_matches(doc_type, queries, page)
        except Exception as exc:
            if not self._sent:
                raise  # nothing went out yet: the ordinary error response
            await end_broken_stream(self, exc, error_line(exc, self.request_id))
            return
        if self._abandoned:  # the client stopped reading; its connection is closed
            return
        if end_wanted:
            self.write(end_line(self._sent))
        self.finish()

    async def _write_matches(self, doc_type: str, queries: list[dict[str, Any]], page: PageRequest) -> None:
        remaining = page.limit if page.limit_given else None
        for query in queries:
            if remaining == 0:
                break
            # aclosing: a client that hangs up mid-stream closes the cursor now, not at garbage collection.
            async with aclosing(self.store.iter_find(doc_type, query, page.sort, projection=projection(page),
                                                     limit=remaining or 0)) as batches:
                async for batch in batches:
                    if remaining is not None:
                        remaining -= len(batch)
                    self.write("".join(dumps(doc) + "\n" for doc in batch))
                    self._sent += len(batch)
                    if not await self.flush_or_abandon():
                        self._abandoned = True
                        return


class DocumentCollectionHandler(PagingHandler):
    """``POST /api/v1/{doc_type}`` (one document or a JSON array) and ``GET`` (lookups, paging)."""

    async def post(self, doc_type: str) -> None:
        body = await self.json_body_off_loop()
        bulk = isinstance(body, list)
        outcome = await ingest(self.store, doc_type, body if bulk else [body], self.config.max_bulk_items, self.metrics,
                               off_loop=self.large_body)
        if bulk:
            items = [item.as_json() for item in outcome.items]
            self.write_json({
                "items": items,
                "inserted": sum(1 for item in items if item["result"] == "inserted"),
                "already_stored": sum(1 for item in items if item["result"] == "already stored"),
            })
            return
        item = outcome.items[0]
        self.set_header("Location", f"/api/v1/{doc_type}/{quote(item.uid, safe='')}")  # any uid, as ASCII
        # A re-send whose time the service filled in would carry this request's time, not the stored one.
        stored_time = body["time"] if item.result == "inserted" else (await self.store.get(doc_type, item.uid))["time"]
        self.write_json({"uid": item.uid, "result": item.result, "time": stored_time},
                        status=201 if item.result == "inserted" else 200)

    async def get(self, doc_type: str) -> None:
        args = {k: [v.decode("utf-8", "replace") for v in vs] for k, vs in self.request.query_arguments.items()}
        for name, values in args.items():
            if name in SINGLE_VALUED_PARAMS and len(values) != 1:
                raise BadRequest(f"query parameter {name!r} given {len(values)} times")
        params = {k: v[0] for k, v in args.items()}
        page = parse_page(parse_lookups(args, reserved=("status",)), params)
        page.status = params.get("status")
        # Every value of a repeated lookup goes into the next link, or the cursor would not match its filter.
        await self.respond(doc_type, page, link_args={k: v for k, v in args.items() if k != "cursor"})


class SearchHandler(PagingHandler):
    """``POST /api/v1/{doc_type}/search`` with a JSON filter and the same paging as GET."""

    scopes = {"POST": "read"}  # a search only reads

    def body_limit(self) -> int:
        return self.config.max_query_bytes

    async def post(self, doc_type: str) -> None:
        body = self.json_body()
        if not isinstance(body, dict):
            raise BadRequest("search body must be a JSON object")
        unknown = sorted(set(body) - _SEARCH_KEYS)
        if unknown:
            raise BadRequest(f"unknown search keys {unknown}; allowed: {sorted(_SEARCH_KEYS)}")
        page = parse_page(check_filter(body.get("filter", {})), body)
        status = body.get("status")
        if status is not None and not isinstance(status, str):
            raise BadRequest("status takes one of running, success, fail, abort, stale")
        page.status = status
        await self.respond(doc_type, page)


class DocumentHandler(BaseHandler):
    """``GET /api/v1/{doc_type}/{uid}``; ``PATCH`` for headers and tails (``{"$set": ..., "$unset": [...]}``)."""

    def body_limit(self) -> int:
        return self.config.max_query_bytes  # a PATCH carries a few fields, never documents

    async def get(self, doc_type: str, uid: str) -> None:
        self.write_json(await self.store.get(doc_type, uid))

    async def patch(self, doc_type: str, uid: str) -> None:
        if doc_type not in UPDATABLE:
            raise MethodNotAllowed(f"{doc_type} documents are immutable; only analysis_header and "
                                   "analysis_tail can be updated")
        changes = Changes.parse(self.json_body())
        updated = await update(self.store, doc_type, uid, changes, self.request_id,
                               expect_revision=self._expected_revision(), replaced_at=self.restore_time())
        if not self.may_read:  # a write-only token must not read documents through the answer
            updated = {"uid": updated["uid"], REVISION_FIELD: updated[REVISION_FIELD]}
        self.write_json(updated)


    def _expected_revision(self) -> int | None:
        """``X-Expect-Revision: n``: apply the PATCH only to revision n (a replayed history resumes safely)."""
        raw = self.request.headers.get(EXPECT_REVISION_HEADER)
        if raw is None:
            return None
        if not (raw.strip().isascii() and raw.strip().isdigit()) or len(raw.strip()) > 12:  # not '²' (latin-1 0xB2)
            raise BadRequest(f"{EXPECT_REVISION_HEADER} is a revision number (0, 1, ...), not {raw[:40]!r}")
        return int(raw)


routes = [
    (rf"/api/v1/{DOC_TYPE_PATTERN}", DocumentCollectionHandler),
    (rf"/api/v1/{DOC_TYPE_PATTERN}/search", SearchHandler),
    (rf"/api/v1/{DOC_TYPE_PATTERN}/([^/]+)", DocumentHandler),
]
