"""The layout version recorded in the database, and the cheap check ``serve`` makes at start-up.

A database records which layout it is in as ``{"_id": "layout", "version": N}``
in the ``meta`` collection. ``analysisstore upgrade --apply`` writes it once a
database is in today's layout; ``serve`` initialises an empty database with it
and refuses anything else that lacks it, because a database written by the
0.x service (or before layouts were recorded) may hold duplicate uids and
values today's schemas refuse.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from .._version import __version__
from ..schemas import DOC_TYPES
from ._common import _database_errors

__all__ = ["LAYOUT_VERSION", "META_COLLECTION", "ASIDE_COLLECTION", "LayoutError", "UpgradeRequired",
           "check_layout", "layout_record"]

log = logging.getLogger(__name__)

#: 0: the 0.x service (nothing recorded). 1: unique uids, today's schemas, today's indexes.
LAYOUT_VERSION = 1
META_COLLECTION = "meta"
#: Where the upgrade keeps every document (or value) it takes out of the way.
ASIDE_COLLECTION = "upgrade_aside"
_LAYOUT_ID = "layout"


class LayoutError(Exception):
    """The database is in a layout this service cannot serve."""


class UpgradeRequired(LayoutError):
    """The database is in an older layout: ``analysisstore upgrade`` brings it to today's."""


def layout_record(now: float | None = None) -> dict[str, Any]:
    """The fields of the layout document for today's layout."""
    return {"version": LAYOUT_VERSION, "recorded_at": time.time() if now is None else now,
            "by": f"analysisstore {__version__}"}


async def check_layout(db: AsyncDatabase) -> None:
    """Return if ``db`` is in today's layout (initialising an empty database); raise LayoutError otherwise.

    One ``find_one`` for a database already marked; a database without the mark
    costs a collection listing and a metadata count per collection.
    """
    with _database_errors():
        layout = await db[META_COLLECTION].find_one({"_id": _LAYOUT_ID})
        if layout is None:
            names = set(await db.list_collection_names())
            holding = [t for t in DOC_TYPES if t in names and await db[t].estimated_document_count()]
            if holding:
                raise UpgradeRequired(
                    f"is in an older layout (it holds {', '.join(holding)} documents but no layout version: "
                    "written by analysisstore 0.x or before layout versions were recorded)")
            try:
                await db[META_COLLECTION].update_one({"_id": _LAYOUT_ID}, {"$setOnInsert": layout_record()},
                                                     upsert=True)
            except DuplicateKeyError:
                pass  # another worker initialised it at the same moment
            log.info("new database %r initialised at layout version %d", db.name, LAYOUT_VERSION)
            return
    version = layout.get("version")
    if version == LAYOUT_VERSION:
        return
    if isinstance(version, int) and version > LAYOUT_VERSION:
        raise LayoutError(f"database {db.name!r} is at layout version {version}, newer than this analysisstore "
                          f"({__version__}, layout {LAYOUT_VERSION}) understands; run a newer analysisstore")
    raise UpgradeRequired(f"is at layout version {version!r}; this analysisstore needs {LAYOUT_VERSION}")
