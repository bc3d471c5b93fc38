"""What ``analysisstore pull`` needs of a service: its change feed, one document, a PATCH, mirror positions."""
from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import quote

from ._transport import Transport

__all__ = ["MirrorMixin"]


class MirrorMixin:
    """Change-feed and mirror-position calls of :class:`~analysisstore.client.AnalysisClient`."""

    _transport: Transport

    def changes(self, after: int = 0, limit: int = 1_000, lookups: Mapping[str, str] | None = None) -> dict[str, Any]:
        """One page of the service's change feed: ``{"changes": [...], "next", "last", "caught_up"}``.

        ``lookups`` filter by the analysis header each document belongs to (as on the listings).
        """
        params = {**dict(lookups or {}), "after": str(after), "limit": str(limit)}
        return self._transport.json("GET", "api/v1/changes", params=params)

    def get_document(self, doc_type: str, uid: str) -> dict[str, Any]:
        """One document by uid, as stored (with ``_revision`` once updated); NotFound if there is none."""
        return self._transport.json("GET", f"api/v1/{doc_type}/{quote(uid, safe='')}")

    def patch(self, doc_type: str, uid: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """One PATCH (``{"$set": {...}, "$unset": [...]}``) of a header or tail; the updated document."""
        return self._transport.json("PATCH", f"api/v1/{doc_type}/{quote(uid, safe='')}", body=dict(changes))

    def mirror_position(self, key: str) -> dict[str, Any] | None:
        """Where pulls recorded under ``key`` got to, or None before the first."""
        from .errors import NotFound

        try:
            return self._transport.json("GET", f"api/v1/mirror_positions/{quote(key, safe='')}")
        except NotFound:
            return None

    def set_mirror_position(self, key: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """Record ``{"position": n, "remote": ..., "where": [...], "conflicts": [...]}`` under ``key``."""
        return self._transport.json("PUT", f"api/v1/mirror_positions/{quote(key, safe='')}", body=dict(record))
