"""How a streamed response ends: complete, or visibly broken.

Once the headers of a streamed response are out, its status can no longer
change, so a failure half-way must show in the body and in the transfer:

* NDJSON gets a last line ``{"$error": {...}}`` holding the one error body;
  a complete stream ends with ``{"$end": {"count": n}}`` when the request
  carries ``Prefer: stream-end``. Stored documents never have a key starting
  with ``$``, so neither line can be taken for a document.
* Every streamed response that fails is cut without its terminating chunk,
  so any HTTP client (curl, requests, a browser) reports a broken transfer
  rather than a short answer that looks whole.
"""
from __future__ import annotations

import logging
from typing import Any

from tornado.httputil import HTTPServerRequest
from tornado.iostream import StreamClosedError

from ..errors import AnalysisStoreError, DatabaseUnavailable
from .base import BaseHandler, dumps, error_body

__all__ = ["END_PREFERENCE", "wants_end_line", "end_line", "error_line", "cut_transfer", "end_broken_stream"]

log = logging.getLogger(__name__)

#: ``Prefer: stream-end`` asks for the ``$end`` line; the answer confirms with ``Preference-Applied``.
END_PREFERENCE = "stream-end"


def wants_end_line(request: HTTPServerRequest) -> bool:
    """Does the ``Prefer`` header (RFC 7240: comma-separated tokens, ``;`` parameters) ask for the end line?"""
    for header in request.headers.get_list("Prefer"):
        for preference in header.split(","):
            if preference.split(";", 1)[0].strip().lower() == END_PREFERENCE:
                return True
    return False


def end_line(count: int) -> str:
    """The last line of a complete NDJSON stream: how many documents it carried."""
    return dumps({"$end": {"count": count}}) + "\n"


def error_line(exc: BaseException, request_id: str) -> str:
    """The last line of a failed NDJSON stream: the one error body, under ``$error``."""
    if isinstance(exc, AnalysisStoreError):
        body = error_body(exc.status, exc.type_name, exc.message, exc.details, request_id)
    else:
        body = error_body(500, "InternalError",
                          f"internal error; report request id {request_id} to the operators", [], request_id)
    return dumps({"$error": body["error"]}) + "\n"


async def end_broken_stream(handler: BaseHandler, exc: Exception, last_line: str | None) -> None:
    """After a failure mid-stream: log it, send ``last_line`` if the client is still there, cut the transfer."""
    if isinstance(exc, StreamClosedError):
        log.info("%s %s: the client left mid-stream [%s]", handler.request.method, handler.request.path,
                 handler.request_id)
    else:
        status = exc.status if isinstance(exc, AnalysisStoreError) else 500
        log.warning("%s %s: stream broken off after the headers were sent (%d %s) [%s]", handler.request.method,
                    handler.request.path, status, exc, handler.request_id,
                    exc_info=None if isinstance(exc, AnalysisStoreError) else exc)
        if isinstance(exc, DatabaseUnavailable):
            handler.metrics.database_errors.inc()
        if last_line is not None:
            try:
                handler.write(last_line)
                await handler.flush()
            except StreamClosedError:
                pass  # the client is gone too; there is nobody left to tell
        # The client already has "200"; the access log and metrics record what really happened.
        handler.set_status(status)
    cut_transfer(handler.request)
    handler.finish()


def cut_transfer(request: HTTPServerRequest) -> None:
    """Close the connection without the terminating chunk: the client sees an incomplete response."""
    stream: Any = getattr(request.connection, "stream", None)
    if stream is not None and not stream.closed():
        stream.close()
