"""The layout version recorded in the database, and the cheap check ``serve`` makes at start-up.

A database records which layout it is in as ``{"_id": "layout", "version": N}``
in the ``meta`` collection. ``analysisstore upgrade --apply`` writes it once a
database is in today's layout. ``serve`` writes it on a new, empty database;
it refuses any other database not in today's layout (layout 1, or documents
without a layout record: the 0.x service's or an older analysisstore's), as
their documents are stored under ObjectIds where today's store finds a
document by its uid as ``_id``.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from .._version import __version__
from ..schemas import DOC_TYPES
from ._database_errors import _database_errors
from ._status import EXIT_STATUSES

__all__ = ["LAYOUT_VERSION", "META_COLLECTION", "ASIDE_COLLECTION", "LayoutError", "UpgradeRequired",
           "check_layout", "layout_record", "obstructive_unique_index"]

log = logging.getLogger(__name__)

#: 0: the 0.x service (nothing recorded). 1: unique uid indexes, today's schemas. 2: ``_id`` is the uid
#: (no separate uid index), each collection only the indexes its queries need.
LAYOUT_VERSION = 2
META_COLLECTION = "meta"
#: Where the upgrade keeps every document (or value) it takes out of the way.
ASIDE_COLLECTION = "upgrade_aside"
_LAYOUT_ID = "layout"


#: Unique indexes early 0.x versions built that refuse valid writes today: one stream per analysis,
#: one record per stream. (Its unique uid and tail-per-analysis indexes agree with today's and stay.)
_ZERO_X_OBSTRUCTIVE = {("data_reference_header", (("analysis_header", -1),)),
                       ("data_reference", (("data_reference_header", -1),))}


def obstructive_unique_index(doc_type: str, info: dict[str, Any]) -> bool:
    """Is this one of early 0.x's unique indexes that would refuse valid writes today?"""
    key = tuple((field, int(direction) if isinstance(direction, (int, float)) else direction)
                for field, direction in info["key"])
    return bool(info.get("unique")) and (doc_type, key) in _ZERO_X_OBSTRUCTIVE


class LayoutError(Exception):
    """The database is in a layout this service cannot serve."""


class UpgradeRequired(LayoutError):
    """The database is in an older layout: ``analysisstore upgrade`` brings it to today's."""


def layout_record(now: float | None = None) -> dict[str, Any]:
    """The fields of the layout document for today's layout."""
    return {"version": LAYOUT_VERSION, "recorded_at": time.time() if now is None else now,
            "by": f"analysisstore {__version__}"}


async def check_layout(db: AsyncDatabase) -> None:
    """Return if ``db`` is in today's layout (recording it on a new, empty database); raise otherwise.

    One ``find_one`` for a database already marked. A database without the
    mark is new (then marked), or was filled by an older analysisstore or by
    the 0.x service: UpgradeRequired, naming what the probe found when it
    shows what only the 0.x service stored.
    """
    with _database_errors():
        layout = await db[META_COLLECTION].find_one({"_id": _LAYOUT_ID})
        if layout is None:
            names = set(await db.list_collection_names())
            holding = [t for t in DOC_TYPES if t in names and await db[t].estimated_document_count()]
            if holding:
                await _probe_unmarked(db, holding)
                raise UpgradeRequired(f"has no layout version and holds documents ({', '.join(holding)}) stored "
                                      f"by an older analysisstore or the 0.x service; this analysisstore needs "
                                      f"layout {LAYOUT_VERSION}")
            try:
                await db[META_COLLECTION].update_one({"_id": _LAYOUT_ID}, {"$setOnInsert": layout_record()},
                                                     upsert=True)
            except DuplicateKeyError:
                pass  # another worker recorded it at the same moment
            log.info("database %r recorded at layout version %d", db.name, LAYOUT_VERSION)
            return
    version = layout.get("version")
    if version == LAYOUT_VERSION:
        return
    if isinstance(version, int) and version > LAYOUT_VERSION:
        raise LayoutError(f"database {db.name!r} is at layout version {version}, newer than this analysisstore "
                          f"({__version__}, layout {LAYOUT_VERSION}) understands; run a newer analysisstore")
    raise UpgradeRequired(f"is at layout version {version!r}; this analysisstore needs {LAYOUT_VERSION}")


_NOT_A_TIME: list[dict[str, Any]] = [{"time": {"$not": {"$type": "number"}}}, {"time": {"$in": [math.nan, math.inf, -math.inf]}}]
_NOT_A_UID = {"$not": {"$type": "string"}}
#: What only the 0.x service stored, per collection (records are left out: probing them means a full scan,
#: and nothing odd in a record stops the service; their duplicates are found by the index build).
_ZERO_X_SIGNS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "analysis_header": ("a time or provenance today's schema refuses", [
        *_NOT_A_TIME, {"uid": _NOT_A_UID}, {"provenance": {"$not": {"$type": "object"}}},
        {"provenance": {"$type": "array"}}]),
    "data_reference_header": ("a time, parent link or data_keys today's schema refuses", [
        *_NOT_A_TIME, {"uid": _NOT_A_UID}, {"analysis_header": _NOT_A_UID},
        {"data_keys": {"$not": {"$type": "object"}}}, {"data_keys": {"$type": "array"}}, {"data_keys": {}}]),
    "analysis_tail": ("an exit_status, time or parent link today's schema refuses", [
        *_NOT_A_TIME, {"uid": _NOT_A_UID}, {"analysis_header": _NOT_A_UID},
        {"exit_status": {"$nin": list(EXIT_STATUSES)}}]),
}


async def _probe_unmarked(db: AsyncDatabase, holding: list[str]) -> None:
    """UpgradeRequired naming what only the 0.x service stored, if a database without a layout record shows it.

    Headers, streams and tails are probed with one query each, and the
    indexes for 0.x's unique ones that would refuse valid writes. Reads only.
    """
    for doc_type in holding:
        for name, info in (await db[doc_type].index_information()).items():
            if obstructive_unique_index(doc_type, info):
                raise UpgradeRequired(f"has no layout version and a 0.x unique index {doc_type}.{name} "
                                      "that would refuse valid writes")
        if doc_type in _ZERO_X_SIGNS:
            what, signs = _ZERO_X_SIGNS[doc_type]
            odd = await db[doc_type].find_one({"$or": signs}, {"_id": 0, "uid": 1})
            if odd is not None:
                raise UpgradeRequired(f"has no layout version and a 0.x {doc_type} ({odd.get('uid')!r}) with {what}")
