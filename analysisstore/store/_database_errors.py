"""Database failures as the service's errors: a timeout is the caller's 400, a lost database a 503."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

from pymongo.errors import ConnectionFailure, ExecutionTimeout

from ..errors import BadRequest, DatabaseUnavailable

__all__ = ["_database_errors", "_DUPLICATE_KEY"]

log = logging.getLogger("analysisstore.store")

#: MongoDB's error code for a unique index violation.
_DUPLICATE_KEY = 11000


@contextmanager
def _database_errors() -> Iterator[None]:
    try:
        yield
    except ExecutionTimeout as exc:
        # (The driver's text carries the whole server reply, cluster-time signature included: not for clients.)
        log.info("query stopped at its time limit: %s", exc)
        raise BadRequest("query took longer than the server allows (query_max_time_ms); narrow the filter, "
                         "e.g. with a time range") from None
    except ConnectionFailure as exc:
        log.warning("database unavailable: %s", exc)
        raise DatabaseUnavailable("the database is not answering; retry later") from None
