"""Lineage of an analysis, as JSON and as a W3C PROV document."""
from __future__ import annotations

import re

from ..errors import BadRequest
from ..w3c_prov import FORMATS, prov_document, serialize
from .base import BaseHandler

__all__ = ["routes", "DEFAULT_DEPTH"]

DEFAULT_DEPTH = 10
_HOST = re.compile(r"[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")


class LineageBase(BaseHandler):
    """Shared parameter parsing: ``depth`` (1..cap) and ``direction``."""

    def depth(self) -> int:
        text = self.get_query_argument("depth", str(DEFAULT_DEPTH))
        if not (text.isascii() and text.isdigit()) or len(text) > 6:  # '²'.isdigit() is true, int('²') fails
            raise BadRequest(f"depth takes a whole number, got {text!r}")
        return int(text)


class LineageHandler(LineageBase):
    """``GET /api/v1/analysis/{uid}/lineage?direction=ancestors|descendants&depth=N``."""

    async def get(self, uid: str) -> None:
        direction = self.get_query_argument("direction", "ancestors")
        self.write_json(await self.store.lineage(uid, direction, self.depth(), self.config.stale_after_seconds))


class ProvHandler(LineageBase):
    """``GET /api/v1/analysis/{uid}/prov?depth=N&format=json|provn|xml``: the analysis and its ancestors in PROV."""

    async def get(self, uid: str) -> None:
        fmt = self.get_query_argument("format", "json")
        if fmt not in FORMATS:
            raise BadRequest(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        lineage = await self.store.lineage(uid, "ancestors", self.depth(), self.config.stale_after_seconds)
        material = await self.store.lineage_documents([n["uid"] for n in lineage["nodes"]])
        if not _HOST.fullmatch(self.request.host):
            raise BadRequest("the Host header is not a host name; PROV identifiers are built from it")
        base_uri = f"{self.request.protocol}://{self.request.host}/api/v1/"
        self.set_header("Content-Type", f"{FORMATS[fmt]}; charset=UTF-8")
        self.finish(serialize(prov_document(lineage, material, base_uri), fmt))


routes = [
    (r"/api/v1/analysis/([^/]+)/lineage", LineageHandler),
    (r"/api/v1/analysis/([^/]+)/prov", ProvHandler),
]
