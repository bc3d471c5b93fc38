"""The thin analysisstore client: ``from analysisstore.client import AnalysisClient``.

It depends on requests, ujson and doct only; it never imports the server,
tornado or pymongo.
"""
from .commands import AnalysisClient
from .errors import (
    AnalysisStoreClientError,
    BadRequest,
    Conflict,
    Forbidden,
    IncompleteStream,
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
    "NotFound",
    "PayloadTooLarge",
    "ServerError",
    "ServiceError",
    "ServiceUnavailable",
    "ServiceUnreachable",
    "TooManyRequests",
    "Unauthorized",
    "ValidationError",
]
