"""The base handler: dependencies from app settings, bounded bodies, one JSON error body."""
from __future__ import annotations

import logging
import uuid
from http import HTTPStatus
from typing import Any

import ujson
from tornado.web import HTTPError, RequestHandler, stream_request_body

from ..config import ServiceConfig
from ..auth import scopes_for
from ..errors import (
    AnalysisStoreError,
    BadRequest,
    DatabaseUnavailable,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from ..metrics import Metrics
from ..schemas.json_numbers import mentions_tag, tag_nonfinite, untag_nonfinite
from ..store import Store

__all__ = ["BaseHandler", "NotFoundHandler", "OPEN", "dumps", "error_body", "loads"]

log = logging.getLogger(__name__)


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
        if needed not in granted:
            raise Forbidden(f"the token may {' and '.join(sorted(granted))}, but this call needs {needed!r}")

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

    def prepare(self) -> None:
        self._chunks: list[bytes] = []
        self._received = 0
        if self.request.method != "OPTIONS":
            self._authorize()
        declared = self.request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.config.max_body_bytes:
            raise self._too_large()

    def data_received(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._received > self.config.max_body_bytes:
            raise self._too_large()
        self._chunks.append(chunk)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"request body larger than {self.config.max_body_bytes} bytes; send smaller chunks"
        )

    @property
    def body(self) -> bytes:
        return b"".join(self._chunks)

    def json_body(self) -> Any:
        """The request body parsed as JSON, or a 400 naming the problem."""
        body = self.body
        if not body.strip():
            raise BadRequest("request body is empty; expected JSON")
        try:
            return loads(body)
        except (ValueError, OverflowError) as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from None

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
        self.finish(dumps(error_body(status, type_name, message, details, self.request_id)))

    def on_finish(self) -> None:
        route = type(self).__name__
        self.metrics.requests.labels(route, self.request.method, str(self.get_status())).inc()
        self.metrics.latency.labels(route, self.request.method).observe(self.request.request_time())

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


class NotFoundHandler(BaseHandler):
    """Every unknown route: a JSON 404, never an HTML page."""

    scopes: dict[str, str | None] = {}

    def prepare(self) -> None:
        raise NotFound(f"no route for {self.request.method} {self.request.path}")


OPEN: dict[str, str | None] = {"GET": None, "HEAD": None, "OPTIONS": None}
