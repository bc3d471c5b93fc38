"""``GET /api/v1/events``: Server-Sent Events of inserts and updates, filterable with the lookups, resumable."""
from __future__ import annotations

import asyncio
import re
from contextlib import aclosing
from typing import Any, AsyncIterator

from tornado.iostream import StreamClosedError

from ..errors import BadRequest
from ..queries import parse_lookups
from ..schemas import DOC_TYPES
from .base import BaseHandler, dumps

__all__ = ["routes", "KEEPALIVE_SECONDS"]

KEEPALIVE_SECONDS = 15.0
_TOKEN = re.compile(r"[0-9A-Fa-f]{2,4096}")
_OWN_PARAMS = ("doc_type", "last_event_id")


class EventsHandler(BaseHandler):
    """One event per insert or update: ``id`` (resume token), ``event`` (insert/update), ``data`` (JSON)."""

    _relay: "asyncio.Future[None] | None" = None

    def _doc_types(self) -> list[str]:
        asked = [t for value in self.get_query_arguments("doc_type") for t in value.split(",") if t]
        unknown = sorted(set(asked) - set(DOC_TYPES))
        if unknown:
            raise BadRequest(f"unknown doc_type {', '.join(unknown)}; known: {', '.join(DOC_TYPES)}")
        return asked or list(DOC_TYPES)

    def _resume_token(self) -> str | None:
        token = self.request.headers.get("Last-Event-ID") or self.get_query_argument("last_event_id", None)
        if token is not None and not _TOKEN.fullmatch(token):
            raise BadRequest("Last-Event-ID must be the id of an event this service sent")
        return token or None

    async def get(self) -> None:
        args = {k: [v.decode("utf-8", "replace") for v in vs] for k, vs in self.request.query_arguments.items()}
        filt = parse_lookups(args, reserved=_OWN_PARAMS)
        events = self.store.watch(self._doc_types(), filt, self._resume_token(),
                                  idle_ms=int(KEEPALIVE_SECONDS * 1000))
        async with aclosing(events):
            first = await anext(events)  # the change stream is open, or the request failed with a 4xx/5xx
            self.set_header("Content-Type", "text/event-stream; charset=UTF-8")
            self.set_header("Cache-Control", "no-cache")
            self.set_header("X-Accel-Buffering", "no")  # proxies must pass events through at once
            self._relay = asyncio.ensure_future(self._relay_events(events, first))
            try:
                await self._relay
            except (StreamClosedError, asyncio.CancelledError):
                return  # the client went away; leaving the block closes the change stream

    def on_connection_close(self) -> None:
        """Stop at once when the client hangs up, not at the next keep-alive."""
        if self._relay is not None:
            self._relay.cancel()

    async def _relay_events(self, events: AsyncIterator[dict[str, Any] | None], first: dict[str, Any] | None) -> None:
        await self._send(": connected\n\n" if first is None else "")
        async for event in events:
            if event is None:
                await self._send(": keep-alive\n\n")
                continue
            event_id = event.pop("id")
            await self._send(f"id: {event_id}\nevent: {event['operation']}\ndata: {dumps(event)}\n\n")

    async def _send(self, text: str) -> None:
        self.write(text)
        await self.flush()


routes = [(r"/api/v1/events", EventsHandler)]
