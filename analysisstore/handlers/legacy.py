"""The legacy face: wire-compatible with the NSLS-II analysisstore 0.x service.

Old scripts POST ``{"signature": "insert_analysis_header", "payload": {...}}``
and GET with that JSON as the whole query string. Everything goes through the
same validation, invariants and query safety as the v1 API.
"""
from __future__ import annotations

from contextlib import aclosing
from typing import Any
from urllib.parse import unquote

from ..errors import BadRequest, ValidationFailed
from ..ingest import ingest
from ..queries import check_filter
from ._stream_end import end_broken_stream
from .base import OPEN, BaseHandler, dumps, loads

__all__ = ["routes"]

#: The 0.x service returned the newest documents first.
_LEGACY_SORT = [("time", -1), ("uid", -1)]


def _uid_of(doc_or_uid: Any) -> Any:
    return doc_or_uid.get("uid") if isinstance(doc_or_uid, dict) else doc_or_uid


class LegacyHandler(BaseHandler):
    """One 0.x collection URL; the doc type comes from the route."""

    def initialize(self, doc_type: str) -> None:
        self.doc_type = doc_type

    def _signed(self, message: Any) -> tuple[str, Any]:
        if not isinstance(message, dict):
            raise BadRequest('expected a JSON object {"signature": ..., "payload": ...}')
        if "signature" not in message:
            raise BadRequest("no signature provided by the client")
        if "payload" not in message:
            raise BadRequest("no payload provided by the client")
        return message["signature"], message["payload"]

    def _unknown_signature(self, signature: Any, expected: list[str]) -> BadRequest:
        return BadRequest(f"unknown signature {signature!r} for {self.request.path}; expected one of {expected}")

    async def post(self) -> None:
        signature, payload = self._signed(await self.json_body_off_loop())
        if signature == f"insert_{self.doc_type}":
            if not isinstance(payload, dict):
                raise BadRequest("the payload of an insert must be a JSON object")
            outcome = await ingest(self.store, self.doc_type, [payload], self.config.max_bulk_items, self.metrics)
            self.write_json({"status": True, "uid": outcome.items[0].uid})
        elif signature == "bulk_data_reference_insert" and self.doc_type == "data_reference":
            records = self._bulk_records(payload)
            outcome = await ingest(self.store, "data_reference", records, self.config.max_bulk_items, self.metrics,
                                   off_loop=self.large_body)
            self.write_json({"status": True, "items": [item.as_json() for item in outcome.items]})
        else:
            expected = [f"insert_{self.doc_type}"]
            if self.doc_type == "data_reference":
                expected.append("bulk_data_reference_insert")
            raise self._unknown_signature(signature, expected)

    @staticmethod
    def _bulk_records(payload: Any) -> list[Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("data_references"), list):
            raise BadRequest("bulk_data_reference_insert takes {\"data_header\": uid, \"data_references\": [...]}")
        stream = _uid_of(payload.get("data_header"))
        if not isinstance(stream, str):
            raise BadRequest("bulk_data_reference_insert needs data_header: the stream's uid or document")
        records = payload["data_references"]
        for i, record in enumerate(records):
            if isinstance(record, dict) and record.setdefault("data_reference_header", stream) != stream:
                raise ValidationFailed(
                    f"data_references[{i}] names stream {record['data_reference_header']!r} "
                    f"but data_header is {stream!r}"
                )
        return records

    def _query_message(self) -> Any:
        raw = unquote(self.request.query)
        try:
            return loads(raw)
        except ValueError:
            pass
        if len(self.request.query_arguments) == 1:  # tornado split the JSON at '&' or '='
            try:
                return loads(next(iter(self.request.query_arguments)))
            except ValueError:
                pass
        raise BadRequest('the query string must be the JSON {"signature": "find_...", "payload": {...}}')

    async def get(self) -> None:
        signature, payload = self._signed(self._query_message())
        if signature != f"find_{self.doc_type}":
            raise self._unknown_signature(signature, [f"find_{self.doc_type}"])
        filt = check_filter(payload)
        # Stream the whole array (the 0.x contract is "every match") in constant memory.
        self.write("[")
        first = True
        try:
            async with aclosing(self.store.iter_find(self.doc_type, filt, _LEGACY_SORT)) as batches:
                async for batch in batches:
                    self.write(("" if first else ",") + ",".join(dumps(doc) for doc in batch))
                    first = False
                    if not await self.flush_or_abandon():
                        return
        except Exception as exc:
            if first:
                raise  # nothing went out yet: the ordinary error response
            # Never a valid short array: the array stays open and the transfer is cut.
            await end_broken_stream(self, exc, None)
            return
        self.finish("]")


class IsConnectedHandler(BaseHandler):
    """``GET /is_connected``: the 0.x liveness probe (200, empty body). Open."""

    scopes = OPEN

    def get(self) -> None:
        self.finish()


routes = [
    *[(rf"/{doc_type}", LegacyHandler, {"doc_type": doc_type})
      for doc_type in ("analysis_header", "analysis_tail", "data_reference_header", "data_reference")],
    (r"/is_connected", IsConnectedHandler),
]
