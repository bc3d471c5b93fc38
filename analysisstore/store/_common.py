"""What the store's parts share: result types, index definitions, database-error mapping."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from pymongo import ASCENDING, IndexModel
from pymongo.errors import ConnectionFailure, ExecutionTimeout

from ..changes import REVISION_FIELD
from ..errors import AnalysisStoreError, BadRequest, DatabaseUnavailable
from ..service_fields import HIDDEN_FIELDS, STATUS_FIELD

log = logging.getLogger("analysisstore.store")

EXIT_STATUSES = ("success", "fail", "abort")
STATUSES = ("running", *EXIT_STATUSES, "stale")
INSERTED = "inserted"
ALREADY_STORED = "already stored"
ERROR = "error"
_DUPLICATE_KEY = 11000

_INDEXES: dict[str, list[IndexModel]] = {
    # The query scientists run most: an analysis by name over a time range.
    "analysis_header": [IndexModel([("provenance.analysis_name", ASCENDING), ("time", ASCENDING)]),
                        # "who used X": the descendants' direction of the lineage walks this multikey index
                        IndexModel([("provenance.inputs", ASCENDING)]),
                        # status=...: one index range, in the default (time, uid) order
                        IndexModel([(STATUS_FIELD, ASCENDING), ("time", ASCENDING), ("uid", ASCENDING)])],
    "data_reference_header": [IndexModel([("analysis_header", ASCENDING)])],
    # (stream, seq_num) also serves every lookup by stream alone; (stream, time, uid)
    # lets a stream's records be paged in time order without sorting in memory.
    "data_reference": [
        IndexModel([("data_reference_header", ASCENDING), ("seq_num", ASCENDING)]),
        IndexModel([("data_reference_header", ASCENDING), ("time", ASCENDING), ("uid", ASCENDING)]),
    ],
    "analysis_tail": [IndexModel([("analysis_header", ASCENDING)], unique=True)],
}
_PARENT_PROJECTION = {
    "analysis_header": {"_id": 0, "uid": 1},
    "data_reference_header": {"_id": 0, "uid": 1, "analysis_header": 1, "data_keys": 1},
}


@dataclass
class ItemResult:
    """What happened to one document of a write: inserted, already stored, or an error."""

    index: int
    uid: Any
    result: str = INSERTED
    error: AnalysisStoreError | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "uid": self.uid, "result": self.result}
        if self.error is not None:  # not written, whatever it would have been
            out.update(result=ERROR, status=self.error.status, type=self.error.type_name, message=self.error.message)
        return out


@dataclass
class WriteOutcome:
    """Per-item results of one write request, in request order."""

    items: list[ItemResult] = field(default_factory=list)
    #: True once anything reached the database; failures found before that wrote nothing.
    written: bool = False

    @property
    def failed(self) -> list[ItemResult]:
        return [item for item in self.items if item.error is not None]


@contextmanager
def _database_errors() -> Iterator[None]:
    try:
        yield
    except ExecutionTimeout as exc:
        raise BadRequest(f"query took longer than the server allows; narrow the filter ({exc})") from None
    except ConnectionFailure as exc:
        log.warning("database unavailable: %s", exc)
        raise DatabaseUnavailable("the database is not answering; retry later") from None


def _same_content(stored: dict[str, Any], incoming: dict[str, Any], time_filled: bool) -> bool:
    """Is ``incoming`` a re-send of ``stored``? A server-filled time is not part of the content."""
    stored = {k: v for k, v in stored.items() if k not in ("_id", REVISION_FIELD, *HIDDEN_FIELDS)}
    incoming = {k: v for k, v in incoming.items() if k not in ("_id", *HIDDEN_FIELDS)}
    if time_filled:
        stored.pop("time", None)
        incoming.pop("time", None)
    # == first (fast); NaN != NaN, so a re-send holding NaN needs the walk that treats NaN as equal.
    return stored == incoming or _equal_nan_aware(stored, incoming)


def _equal_nan_aware(a: Any, b: Any) -> bool:
    """``a == b`` at every depth, except that NaN equals NaN (as it does for MongoDB's own matching)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal_nan_aware(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal_nan_aware(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return bool(a == b)


def index_models(doc_type: str) -> list[IndexModel]:
    """Every index of one collection (also used by the benchmarks to index their direct side alike)."""
    return [
        IndexModel([("uid", ASCENDING)], unique=True),
        IndexModel([("time", ASCENDING), ("uid", ASCENDING)]),
        *_INDEXES[doc_type],
    ]


def derive_status(header: dict[str, Any], tail: dict[str, Any] | None, stale_after: float) -> str:
    """running / success / fail / abort / stale (no tail and older than ``stale_after`` seconds)."""
    if tail is not None:
        return tail["exit_status"]
    return "stale" if header["time"] <= time.time() - stale_after else "running"


class ImmutableCache:
    """A small TTL cache for facts that never become false: a stream's declaration, a header's existence,
    an analysis being finalized. It saves a database round trip per write; the TTL bounds how long a
    document deleted behind the service's back (there is no delete API) could still be believed in."""

    def __init__(self, ttl: float = 60.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._entries) >= self.size:
            self._entries.pop(next(iter(self._entries)))  # the oldest
        self._entries[key] = (time.monotonic() + self.ttl, value)
