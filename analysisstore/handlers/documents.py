"""v1 REST endpoints for the four document types: write, get by uid, list and search."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from ..errors import BadRequest
from ..ingest import ingest
from ..queries import (
    check_filter,
    decode_cursor,
    encode_cursor,
    keyset_filter,
    parse_limit,
    parse_lookups,
    parse_order_by,
)
from ..schemas import DOC_TYPES
from .base import BaseHandler

__all__ = ["routes"]

_DOC_TYPE = "(" + "|".join(DOC_TYPES) + ")"
_SEARCH_KEYS = frozenset({"filter", "order_by", "limit", "cursor"})


class DocumentCollectionHandler(BaseHandler):
    """``POST /api/v1/{doc_type}`` (one document or a JSON array) and ``GET`` (exact-match listing)."""

    async def post(self, doc_type: str) -> None:
        body = self.json_body()
        bulk = isinstance(body, list)
        outcome = await ingest(self.store, doc_type, body if bulk else [body], self.config.max_bulk_items)
        if bulk:
            items = [item.as_json() for item in outcome.items]
            self.write_json({
                "items": items,
                "inserted": sum(1 for item in items if item["result"] == "inserted"),
                "already_stored": sum(1 for item in items if item["result"] == "already stored"),
            })
            return
        item = outcome.items[0]
        created = item.result == "inserted"
        self.set_header("Location", f"/api/v1/{doc_type}/{item.uid}")
        self.write_json({"uid": item.uid, "result": item.result, "time": body["time"]},
                        status=201 if created else 200)

    async def get(self, doc_type: str) -> None:
        args = {k: [v.decode("utf-8", "replace") for v in vs] for k, vs in self.request.query_arguments.items()}
        filt = parse_lookups(args)
        await self.write_page(doc_type, filt, self.get_query_argument("order_by", None),
                              self.get_query_argument("limit", None), self.get_query_argument("cursor", None),
                              link_args={k: v[0] for k, v in args.items() if k != "cursor"})

    async def write_page(
        self,
        doc_type: str,
        filt: dict[str, Any],
        order_by: Any,
        limit_arg: Any,
        cursor: Any,
        link_args: dict[str, str] | None = None,
    ) -> None:
        sort = parse_order_by(order_by)
        limit = parse_limit(limit_arg)
        query = filt
        if cursor is not None:
            if not isinstance(cursor, str):
                raise BadRequest("cursor must be the string returned as meta.next_cursor")
            after = decode_cursor(cursor, filt, sort)
            query = {"$and": [filt, keyset_filter(after, sort)]} if filt else keyset_filter(after, sort)
        docs, has_more = await self.store.find_page(doc_type, query, sort, limit)
        next_cursor = encode_cursor(docs[-1], filt, sort) if has_more and docs else None
        if next_cursor and link_args is not None:
            link = f"{self.request.path}?{urlencode({**link_args, 'cursor': next_cursor})}"
            self.set_header("Link", f'<{link}>; rel="next"')
        self.write_json({
            "items": docs,
            "meta": {
                "limit": limit,
                "order_by": [("-" if d < 0 else "") + f for f, d in sort],
                "next_cursor": next_cursor,
                "has_more": has_more,
            },
        })


class SearchHandler(DocumentCollectionHandler):
    """``POST /api/v1/{doc_type}/search`` with ``{"filter", "order_by", "limit", "cursor"}``."""

    async def post(self, doc_type: str) -> None:  # type: ignore[override]
        body = self.json_body()
        if not isinstance(body, dict):
            raise BadRequest("search body must be a JSON object")
        unknown = sorted(set(body) - _SEARCH_KEYS)
        if unknown:
            raise BadRequest(f"unknown search keys {unknown}; allowed: {sorted(_SEARCH_KEYS)}")
        filt = check_filter(body.get("filter", {}))
        await self.write_page(doc_type, filt, body.get("order_by"), body.get("limit"), body.get("cursor"))

    async def get(self, doc_type: str) -> None:  # type: ignore[override]
        raise BadRequest(f"search takes a POST with a JSON body; use GET /api/v1/{doc_type}?field=value to list")


class DocumentHandler(BaseHandler):
    """``GET /api/v1/{doc_type}/{uid}``."""

    async def get(self, doc_type: str, uid: str) -> None:
        self.write_json(await self.store.get(doc_type, uid))


routes = [
    (rf"/api/v1/{_DOC_TYPE}", DocumentCollectionHandler),
    (rf"/api/v1/{_DOC_TYPE}/search", SearchHandler),
    (rf"/api/v1/{_DOC_TYPE}/([^/]+)", DocumentHandler),
]
