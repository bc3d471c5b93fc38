"""Exceptions the service raises; each carries the HTTP status it maps to.

Handlers simply raise these; ``handlers.base.BaseHandler.write_error`` turns
every one of them into the single JSON error body of the HTTP API.
"""
from __future__ import annotations

from typing import Any

__all__ = [
    "AnalysisStoreError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "MethodNotAllowed",
    "MisdirectedRequest",
    "Conflict",
    "Finalized",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "UriTooLong",
    "HeadersTooLarge",
    "ValidationFailed",
    "DatabaseUnavailable",
    "NotSupported",
    "WritesInFlight",
    "encodable",
]


def encodable(text: str) -> str:
    """``text`` with every lone surrogate written as a visible ``\\udxxx`` escape: UTF-8 (and JSON) can carry it.

    Messages quote what the client sent; a lone surrogate from a JSON ``"\\ud800"`` escape is not
    Unicode and would make the error body itself unwritable.
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class AnalysisStoreError(Exception):
    """Base class: an error with an HTTP status, a type name and optional details."""

    status: int = 500
    type_name: str = "InternalError"

    def __init__(self, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class BadRequest(AnalysisStoreError):
    """Malformed JSON, an unknown field or operator, a forbidden query."""

    status = 400
    type_name = "BadRequest"


class Unauthorized(AnalysisStoreError):
    """No bearer token, or one the service does not know."""

    status = 401
    type_name = "Unauthorized"


class Forbidden(AnalysisStoreError):
    """The token lacks the scope this call needs."""

    status = 403
    type_name = "Forbidden"


class NotFound(AnalysisStoreError):
    """Unknown uid, unknown parent or unknown route."""

    status = 404
    type_name = "NotFound"


class MethodNotAllowed(AnalysisStoreError):
    """The route exists but not with this method."""

    status = 405
    type_name = "MethodNotAllowed"


class MisdirectedRequest(AnalysisStoreError):
    """The request names a host this service does not answer to (a DNS-rebinding guard, ``hosts.py``)."""

    status = 421
    type_name = "MisdirectedRequest"


class Conflict(AnalysisStoreError):
    """Same uid with different content, or a second tail for one analysis."""

    status = 409
    type_name = "Conflict"


class Finalized(Conflict):
    """The analysis has a tail: no new streams or records may be added."""

    type_name = "Finalized"


class PayloadTooLarge(AnalysisStoreError):
    """Request body or bulk larger than the configured limit."""

    status = 413
    type_name = "PayloadTooLarge"


class UnsupportedMediaType(AnalysisStoreError):
    """A body compressed (Content-Encoding) or not in UTF-8: the service takes neither."""

    status = 415
    type_name = "UnsupportedMediaType"


class UriTooLong(AnalysisStoreError):
    """The request line's target is longer than the service reads (search with a POST body instead)."""

    status = 414
    type_name = "UriTooLong"


class HeadersTooLarge(AnalysisStoreError):
    """The request's header fields together are larger than the service reads."""

    status = 431
    type_name = "RequestHeaderFieldsTooLarge"


class ValidationFailed(AnalysisStoreError):
    """The document does not satisfy its JSON Schema or its stream's data_keys."""

    status = 422
    type_name = "ValidationError"


class NotSupported(AnalysisStoreError):
    """The database behind the service cannot do what was asked (e.g. change streams on a standalone mongod)."""

    status = 501
    type_name = "NotSupported"


class DatabaseUnavailable(AnalysisStoreError):
    """MongoDB does not answer; the client should retry after ``retry_after`` seconds."""

    status = 503
    type_name = "DatabaseUnavailable"
    retry_after = 5


class WritesInFlight(DatabaseUnavailable):
    """A tail waited too long for the analysis's stream and record writes in flight; send it again."""

    type_name = "WritesInFlight"
