"""Liveness, readiness and the published schemas."""
from __future__ import annotations

from .._version import __version__
from ..errors import NotFound
from ..schemas import DOC_TYPES, load_schema
from .base import BaseHandler

__all__ = ["routes"]


class HealthHandler(BaseHandler):
    """``GET /healthz``: the process is up (does not touch the database)."""

    def get(self) -> None:
        self.write_json({"status": "ok", "version": __version__})


class ReadyHandler(BaseHandler):
    """``GET /readyz``: the database answers (503 with Retry-After if not)."""

    async def get(self) -> None:
        await self.store.ping()
        self.write_json({"status": "ready", "version": __version__, "database": self.store.db.name})


class SchemaHandler(BaseHandler):
    """``GET /api/v1/schemas/{doc_type}``: the JSON Schema every write is held to."""

    def get(self, doc_type: str) -> None:
        if doc_type not in DOC_TYPES:
            raise NotFound(f"no schema {doc_type!r}; known: {', '.join(DOC_TYPES)}")
        self.set_header("Content-Type", "application/schema+json")
        self.write_json(load_schema(doc_type))


routes = [
    (r"/healthz", HealthHandler),
    (r"/readyz", ReadyHandler),
    (r"/api/v1/schemas/([^/]+)", SchemaHandler),
]
