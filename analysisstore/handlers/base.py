"""The base handler: dependencies from app settings, bounded bodies, one JSON error body."""
from __future__ import annotations

import asyncio
import logging
import math
import uuid
from http import HTTPStatus
from typing import Any, Awaitable
from urllib.parse import urlsplit

import ujson
from tornado.http1connection import HTTP1Connection
from tornado.web import HTTPError, RequestHandler, stream_request_body

from ..config import ServiceConfig
from ..auth import scopes_for
from ..hosts import host_allowed, host_name
from ..request_body import check_content_encoding, utf8_body
from ..contract.vocabulary import RESTORE_TIME_HEADER
from ..errors import (
    AnalysisStoreError,
    BadRequest,
    DatabaseUnavailable,
    Forbidden,
    HeadersTooLarge,
    MisdirectedRequest,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UriTooLong,
    encodable,
)
from ..metrics import Metrics
from ..schemas.json_numbers import mentions_tag, tag_nonfinite, untag_nonfinite
from ..store import Store

__all__ = ["BaseHandler", "HEADER_READ_BYTES", "MAX_HEADER_BYTES", "MAX_URI_BYTES", "NotFoundHandler", "OFF_LOOP_BYTES", "OPEN",
           "dumps", "error_body", "loads"]

log = logging.getLogger(__name__)

#: Bytes of an unwanted request body read and thrown away so that an early error
#: (401, 403, 404, 413) reaches a keep-alive client intact; beyond this the
#: connection is closed after the answer instead.
DRAIN_BYTES = 1 << 20
#: A body larger than this is parsed and validated in a worker thread, so the event loop keeps
#: answering other requests (``/readyz`` included) meanwhile. Parsing plus validation costs about
#: 22 µs per small record (~250 bytes), so a body below 64 KiB holds the loop for at most a few
#: milliseconds, while the hop to a thread (~0.1 ms) is then under 2% of the work; single documents
#: (the latency-bound case) stay on the loop.
OFF_LOOP_BYTES = 64 * 1024
#: The transport must never cut a body short with its bare-text 400: every handler
#: streams its body and enforces its own limit with the JSON 413.
_UNBOUNDED = 1 << 62
#: Longest request target and largest header block a handler accepts (JSON 414 / 431 above).
MAX_URI_BYTES = 64 * 1024
MAX_HEADER_BYTES = 64 * 1024
#: What the HTTP server reads of a request's head before giving up and closing the connection
#: (Tornado's max_header_size): larger than the limits above, so that they are answered in JSON.
HEADER_READ_BYTES = 1024 * 1024


def dumps(obj: Any) -> str:
    """Serialise a response body as strict JSON (ujson: fast, and round-trips floats exactly).

    NaN/±Infinity are written tagged (``{"$numberDouble": "NaN"}``, docs/json-numbers.md). ujson refuses
    them with allow_nan=False, so only a document that holds one pays for the walk that tags it.
    """
    try:
        return ujson.dumps(obj, ensure_ascii=False, escape_forward_slashes=False, reject_bytes=True, allow_nan=False)
    except OverflowError:
        return ujson.dumps(tag_nonfinite(obj), ensure_ascii=False, escape_forward_slashes=False, reject_bytes=True,
                           allow_nan=False)


def loads(data: bytes | str) -> Any:
    """Parse a request's JSON: bare NaN/Infinity (and 1e400, as Infinity) and the tagged form both become floats.

    Raises ValueError (or OverflowError) when ``data`` is not JSON.
    """
    parsed = ujson.loads(data)
    return untag_nonfinite(parsed) if mentions_tag(data) else parsed


def error_body(status: int, type_name: str, message: str, details: list[Any], request_id: str) -> dict[str, Any]:
    """The one error shape of the whole API."""
    return {
        "error": {
            "status": status,
            "type": type_name,
            "message": message,
            "details": details,
            "request_id": request_id,
        }
    }


def _type_name_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.title().replace(" ", "").replace("-", "")
    except ValueError:
        return "HTTPError"


@stream_request_body
class BaseHandler(RequestHandler):
    """Every handler of the service derives from this."""

    _request_id: str | None = None
    _granted: frozenset[str] | None = None
    _close_after_error = False

    # ---- dependencies, created once at startup --------------------------------

    @property
    def store(self) -> Store:
        return self.settings["store"]

    @property
    def config(self) -> ServiceConfig:
        return self.settings["config"]

    @property
    def request_id(self) -> str:
        if self._request_id is None:
            incoming = self.request.headers.get("X-Request-ID", "")
            ok = 0 < len(incoming) <= 64 and incoming.replace("-", "").isalnum()
            self._request_id = incoming if ok else uuid.uuid4().hex
        return self._request_id

    @property
    def metrics(self) -> Metrics:
        return self.settings["metrics"]

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Request-ID", self.request_id)
        origin = self.request.headers.get("Origin")
        if origin and origin in self.config.cors_origins:  # set here so error responses carry it too
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Expose-Headers", "X-Request-ID, Link, Retry-After")
            self.set_header("Vary", "Origin")

    # ---- authorisation -------------------------------------------------------------

    #: Scope each method needs; None means open. Handlers override (search is a read).
    scopes: dict[str, str | None] = {"GET": "read", "HEAD": "read", "POST": "write", "PATCH": "write",
                                      "PUT": "write", "DELETE": "write"}

    def required_scope(self) -> str | None:
        return self.scopes.get(self.request.method or "GET", "write")

    def _authorize(self) -> None:
        needed = self.required_scope()
        if needed is None or not self.config.auth_enabled:
            return
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self.set_header("WWW-Authenticate", 'Bearer realm="analysisstore"')
            raise Unauthorized("this service needs a bearer token: Authorization: Bearer <token>")
        granted = scopes_for(token.strip(), self.settings["tokens"])
        if granted is None:
            self.set_header("WWW-Authenticate", 'Bearer realm="analysisstore", error="invalid_token"')
            raise Unauthorized("the bearer token is not known to this service")
        self._granted = granted
        if needed not in granted:
            raise Forbidden(f"the token may {' and '.join(sorted(granted))}, but this call needs {needed!r}")

    def restore_time(self) -> float | None:
        """The original time an import asks to keep (``X-Restore-Time``), checked; None without the header.

        Only a caller with the ``restore`` scope (or any caller when auth is off) may set it: it
        writes history, which a write token alone cannot.
        """
        raw = self.request.headers.get(RESTORE_TIME_HEADER)
        if raw is None:
            return None
        if self.config.auth_enabled and (self._granted is None or "restore" not in self._granted):
            raise Forbidden(f"{RESTORE_TIME_HEADER} needs a token with the restore scope")
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise BadRequest(f"{RESTORE_TIME_HEADER} is a UNIX time in seconds (a finite number, not {raw[:40]!r})")
        return value

    @property
    def may_read(self) -> bool:
        """May this caller read documents (no auth, or a token with the read scope)?"""
        return not self.config.auth_enabled or (self._granted is not None and "read" in self._granted)

    def options(self, *args: Any) -> None:
        """CORS preflight: 204 for a listed origin, 403 otherwise."""
        origin = self.request.headers.get("Origin")
        if not origin or origin not in self.config.cors_origins:
            raise Forbidden(f"origin {origin!r} is not allowed to call this service")
        self.set_header("Access-Control-Allow-Methods", "GET, POST, PATCH, OPTIONS")
        self.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, X-Request-ID")
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    # ---- request bodies, bounded while they arrive ----------------------------

    def body_limit(self) -> int:
        """Largest body this route accepts; routes that only read (search) accept far less."""
        return self.config.max_body_bytes

    @property
    def http1(self) -> HTTP1Connection | None:
        """The request's HTTP/1 connection, whose body limits and socket are ours to manage."""
        connection = self.request.connection
        return connection if isinstance(connection, HTTP1Connection) else None

    def prepare(self) -> Awaitable[None] | None:
        self._chunks: list[bytes] = []
        self._received = 0
        self._refusal: AnalysisStoreError | None = None
        self._drain_until = 0
        if self.http1 is not None:
            self.http1.set_max_body_size(_UNBOUNDED)
            self.http1.set_body_timeout(self.config.body_timeout_seconds)
        try:
            self._check_head_size()
            self.check_request()
        except AnalysisStoreError as exc:
            self._refuse(exc)
        return None  # Tornado's signature: subclasses may prepare asynchronously

    def _check_head_size(self) -> None:
        """The JSON 414/431 that Tornado itself would answer by closing the connection (see HEADER_READ_BYTES)."""
        if len(self.request.uri or "") > MAX_URI_BYTES:
            raise UriTooLong(f"the request target is longer than {MAX_URI_BYTES} bytes; "
                             "send a long query as the body of POST /api/v1/{doc_type}/search")
        size = sum(len(name) + len(value) + 4 for name, value in self.request.headers.get_all())
        if size > MAX_HEADER_BYTES:
            raise HeadersTooLarge(f"the request's header fields are larger than {MAX_HEADER_BYTES} bytes in all")

    def check_request(self) -> None:
        """Checks made before any of the body is read: addressed host, token and declared size."""
        self._refuse_foreign_hosts()
        if self.request.method != "OPTIONS":
            self._authorize()
            self._refuse_other_sites_writes()
        declared = self._declared_length()
        if declared or "chunked" in self.request.headers.get("Transfer-Encoding", "").lower():
            check_content_encoding(self.request.headers.get("Content-Encoding"))
        if declared is not None and declared > self.body_limit():
            raise self._too_large()

    def _refuse_other_sites_writes(self) -> None:
        """A page of another site may not write here (CSRF): without auth nothing else would stop it.

        A browser sends ``Origin`` with every cross-site POST, also the "simple"
        text/plain ones it sends without a preflight; scripts and curl send none.
        """
        origin = self.request.headers.get("Origin")
        if origin is None or self.required_scope() in (None, "read") or origin in self.config.cors_origins:
            return
        try:
            site = urlsplit(origin).netloc.lower()
        except ValueError:  # e.g. "http://[" : no site at all
            site = ""
        if site and site == (self.request.host or "").lower():
            return  # the service's own page
        raise Forbidden(f"a write from a page at {origin!r} is refused; list that origin in cors_origins "
                        "to allow it")

    def _refuse_foreign_hosts(self) -> None:
        """A request addressed to a name this service does not answer to is refused (DNS rebinding).

        A page whose name was re-pointed at this address is same-origin to the
        browser: the ``Origin`` check above does not see it, but its ``Host`` names it.
        """
        host = self.request.host or ""
        if not host_allowed(host, self.config):
            raise MisdirectedRequest(
                f"this service does not answer to the host name {host_name(host)[:100]!r}; address it as "
                "localhost or by IP address, or list the name in allowed_hosts")

    def _declared_length(self) -> int | None:
        declared = self.request.headers.get("Content-Length")
        return int(declared) if declared is not None and declared.isascii() and declared.isdigit() else None

    def _refuse(self, exc: AnalysisStoreError) -> None:
        """Answer ``exc`` after reading a small body to its end, else at once and close the connection.

        An error sent while the body is still unread makes the server close a
        connection the client believes reusable; its next request then fails.
        """
        declared = self._declared_length()
        chunked = "chunked" in self.request.headers.get("Transfer-Encoding", "").lower()
        if not declared and not chunked:
            raise exc  # no body: answer now, the connection stays usable
        if declared is not None and declared > DRAIN_BYTES:
            self._close_after_error = True
            raise exc
        self._defer(exc)

    def _defer(self, exc: AnalysisStoreError) -> None:
        self._refusal = exc
        self._drain_until = self._received + DRAIN_BYTES
        # Tornado calls the HTTP method once the body is complete: answer the refusal there instead.
        setattr(self, (self.request.method or "get").lower(), self._raise_refusal)

    async def _raise_refusal(self, *args: Any, **kwargs: Any) -> None:
        assert self._refusal is not None
        raise self._refusal

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        self._received += len(chunk)
        if self._refusal is None and self._received > self.body_limit():
            self._chunks.clear()
            self._defer(self._too_large())
        if self._refusal is None:
            self._chunks.append(chunk)
        elif self._received > self._drain_until and not self._finished:
            self._close_after_error = True  # too much to drain: answer now, then close
            self.send_error(self._refusal.status, exc_info=(type(self._refusal), self._refusal, None))
        return None

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"request body larger than {self.body_limit()} bytes, the limit of this route; send smaller chunks"
        )

    @property
    def body(self) -> bytes:
        return b"".join(self._chunks)

    @property
    def large_body(self) -> bool:
        """Is the body big enough to be parsed and validated off the event loop (``OFF_LOOP_BYTES``)?"""
        return self._received > OFF_LOOP_BYTES

    async def json_body_off_loop(self) -> Any:
        """``json_body()``, in a worker thread when the body is large; the same 400 when it is not JSON."""
        if not self.large_body:
            return self.json_body()
        return await asyncio.to_thread(self.json_body)

    def json_body(self) -> Any:
        """The request body parsed as JSON (a UTF-8 BOM dropped), or a 400/415 naming the problem."""
        body = utf8_body(self.body)
        if not body.strip():
            raise BadRequest("request body is empty; expected JSON")
        try:
            return loads(body)
        except (ValueError, OverflowError) as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from None

    async def flush_or_abandon(self) -> bool:
        """Send what is written; False, with the connection closed, when the client read nothing for too long.

        A streamed read whose client stops reading would otherwise hold its
        database cursor and the batches in flight for as long as the socket stays open.
        """
        try:
            await asyncio.wait_for(self.flush(), self.config.stream_stall_seconds)
            return True
        except asyncio.TimeoutError:
            log.warning("%s %s: the client read nothing for %.0fs; stream aborted [%s]", self.request.method,
                        self.request.path, self.config.stream_stall_seconds, self.request_id)
            if self.http1 is not None:
                self.http1.close()
            return False

    def write_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(dumps(obj))

    # ---- errors -----------------------------------------------------------------

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, AnalysisStoreError):
            status, type_name, message, details = exc.status, exc.type_name, exc.message, exc.details
            if isinstance(exc, DatabaseUnavailable):
                self.set_header("Retry-After", str(self.config.retry_after_seconds))
                self.metrics.database_errors.inc()
            if isinstance(exc, Unauthorized):
                self.set_header("WWW-Authenticate", 'Bearer realm="analysisstore"')
        elif isinstance(exc, HTTPError):
            status, type_name, details = exc.status_code, _type_name_for(exc.status_code), []
            message = exc.log_message % exc.args if exc.log_message else (exc.reason or self._reason)
            if status == 405:
                message = f"method {self.request.method} is not allowed on {self.request.path}"
        else:
            status, type_name, details = 500, "InternalError", []
            message = f"internal error; report request id {self.request_id} to the operators"
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        if status == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        if self._close_after_error:
            self.set_header("Connection", "close")
        body = error_body(status, type_name, message, details, self.request_id)
        try:
            text = dumps(body)
        except (TypeError, ValueError, OverflowError):  # UnicodeEncodeError is a ValueError
            # A message or detail quoting what JSON cannot carry: escape it rather than lose the answer.
            log.warning("error body of %s %s needed escaping [%s]", self.request.method, self.request.path,
                        self.request_id)
            text = dumps(_encodable_value(body))
        self.finish(text)

    def allowed_methods(self) -> list[str]:
        """The methods this route serves (the Allow header of a 405)."""
        return [method for method in self.SUPPORTED_METHODS
                if getattr(type(self), method.lower()) is not getattr(RequestHandler, method.lower())]

    def on_finish(self) -> None:
        self.metrics.observe_request(type(self).__name__, self.request.method or "GET", self.get_status(),
                                     self.request.request_time())

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, AnalysisStoreError) and value.status < 500:
            # The access log already records the status; the reason is for debugging.
            log.debug("%s %s -> %d %s [%s]", self.request.method, self.request.path,
                     value.status, value.message, self.request_id)
        elif isinstance(value, (AnalysisStoreError, HTTPError)):
            log.warning("%s %s -> %s [%s]", self.request.method, self.request.path, value, self.request_id)
        else:
            log.error("unhandled error on %s %s [%s]", self.request.method, self.request.path,
                      self.request_id, exc_info=(typ, value, tb))


def _encodable_value(value: Any) -> Any:
    """A JSON value any encoder can write: strings escaped, anything unknown as its escaped text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):  # beyond 64 bits ujson refuses it
        return value if -(1 << 63) <= value < (1 << 64) else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {encodable(str(key)): _encodable_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encodable_value(item) for item in value]
    return encodable(value if isinstance(value, str) else repr(value))


class NotFoundHandler(BaseHandler):
    """Every unknown route: a JSON 404, never an HTML page."""

    scopes: dict[str, str | None] = {}

    def check_request(self) -> None:
        self._refuse_foreign_hosts()  # a rebinding page learns nothing, not even which routes exist
        raise NotFound(f"no route for {self.request.method} {self.request.path}")


OPEN: dict[str, str | None] = {"GET": None, "HEAD": None, "OPTIONS": None}
