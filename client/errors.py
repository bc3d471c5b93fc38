"""Exceptions raised by the client.

Service errors subclass ``requests.HTTPError`` and an unreachable service
subclasses ``requests.ConnectionError``, so scripts written for the 0.x
client (which let ``raise_for_status`` raise) keep catching what they caught.
"""
from __future__ import annotations

from typing import Any

import requests

__all__ = [
    "AnalysisStoreClientError",
    "ServiceUnreachable",
    "IncompleteStream",
    "ServiceError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "ValidationError",
    "TooManyRequests",
    "ServiceUnavailable",
    "ServerError",
    "InvalidLookup",
    "TRANSIENT_ERRORS",
    "error_for_status",
    "error_from_body",
]


class AnalysisStoreClientError(Exception):
    """Base class of every error the client raises on purpose."""


class ServiceUnreachable(AnalysisStoreClientError, requests.ConnectionError):
    """No analysisstore service answered at the configured URL (after retries)."""


class IncompleteStream(ServiceUnreachable):
    """A streamed read ended before the service confirmed it complete: the documents received are not
    the whole answer. ``received`` counts them; ``error`` is the service's own error (a ServiceError)
    when it reported one, else None (the connection broke or the end line never came).

    A ServiceUnreachable, so code that retries an unreachable service retries this too.
    """

    def __init__(self, message: str, received: int, error: "ServiceError | None" = None) -> None:
        super().__init__(message)
        self.received = received
        self.error = error


class ServiceError(AnalysisStoreClientError, requests.HTTPError):
    """The service answered with an error; ``status``, ``type``, ``message``, ``details``, ``request_id``."""

    status: int = 0

    def __init__(self, status: int, type_name: str, message: str, details: list[Any] | None = None,
                 request_id: str | None = None, response: requests.Response | None = None) -> None:
        text = f"{status} {type_name}: {message}"
        if request_id:
            text += f" (request id {request_id})"
        super().__init__(text, response=response)
        self.status = status
        self.type = type_name
        self.message = message
        self.details = details or []
        self.request_id = request_id


class BadRequest(ServiceError):
    """400: malformed JSON or a query the service refuses."""


class Unauthorized(ServiceError):
    """401: no token, or a token the service does not know."""


class Forbidden(ServiceError):
    """403: the token lacks the scope for this call."""


class NotFound(ServiceError):
    """404: unknown uid, unknown parent or unknown route."""


class Conflict(ServiceError):
    """409: a different document with this uid exists, or the analysis is finalized."""


class PayloadTooLarge(ServiceError):
    """413: body or bulk above the service's limit; send smaller chunks."""


class ValidationError(ServiceError):
    """422: the document does not satisfy its schema or its stream's data_keys."""


class TooManyRequests(ServiceError):
    """429: the service asks to slow down (retried automatically first)."""


class ServiceUnavailable(ServiceError):
    """503: the service's database is not answering (retried automatically first)."""


class ServerError(ServiceError):
    """Any other 5xx."""


class InvalidLookup(AnalysisStoreClientError, ValueError):
    """A query the service would refuse (unknown operator, paging name as a field, value HTTP cannot express).

    Raised by the client before anything is sent.
    """


#: Errors that say "not now" rather than "no": the client has already retried
#: them under its retry policy; a caller may spool, defer or try a later pass.
TRANSIENT_ERRORS: tuple[type[AnalysisStoreClientError], ...] = (
    ServiceUnreachable, ServiceUnavailable, TooManyRequests)


_BY_STATUS: dict[int, type[ServiceError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: BadRequest,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationError,
    429: TooManyRequests,
    503: ServiceUnavailable,
}


def error_from_body(body: dict[str, Any]) -> ServiceError:
    """The exception for an error body (``{"status", "type", "message", "details", "request_id"}``)."""
    given = body.get("status")
    status = given if isinstance(given, int) else 500
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ServiceError)
    return cls(status, str(body.get("type", "Error")), str(body.get("message", "")), body.get("details") or [],
               body.get("request_id"))


def error_for_status(response: requests.Response) -> ServiceError:
    """The exception for an error response, carrying the service's own message."""
    status = response.status_code
    try:
        body = response.json()["error"]
        type_name, message = body.get("type", "Error"), body.get("message", "")
        details, request_id = body.get("details", []), body.get("request_id")
    except (ValueError, KeyError, TypeError):
        type_name, message, details = response.reason or "Error", response.text[:500], []
        request_id = response.headers.get("X-Request-ID")
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ServiceError)
    return cls(status, type_name, message, details, request_id, response)
