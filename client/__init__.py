"""The thin analysisstore client: ``from analysisstore.client import AnalysisClient``.

It depends on requests, ujson and doct only; it never imports the server,
tornado or pymongo.
"""
from .commands import AnalysisClient, Page, RetryPolicy
from .errors import (
    TRANSIENT_ERRORS,
    AnalysisStoreClientError,
    BadRequest,
    Conflict,
    Forbidden,
    IncompleteStream,
    InvalidLookup,
    NotFound,
    PayloadTooLarge,
    ServerError,
    ServiceError,
    ServiceUnavailable,
    ServiceUnreachable,
    TooManyRequests,
    Unauthorized,
    ValidationError,
)

__all__ = [
    "AnalysisClient",
    "AnalysisStoreClientError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "IncompleteStream",
    "InvalidLookup",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "RetryPolicy",
    "ServerError",
    "ServiceError",
    "ServiceUnavailable",
    "ServiceUnreachable",
    "TRANSIENT_ERRORS",
    "TooManyRequests",
    "Unauthorized",
    "ValidationError",
]
