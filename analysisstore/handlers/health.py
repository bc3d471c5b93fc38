"""Liveness, readiness, the published schemas and the OpenAPI document."""
from __future__ import annotations

from .._version import __version__
from ..errors import NotFound
from ..openapi import openapi_spec
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


class OpenAPIHandler(BaseHandler):
    """``GET /api/v1/openapi.json``: the OpenAPI 3 description of the v1 API."""

    def get(self) -> None:
        self.write_json(openapi_spec())


routes = [
    (r"/api/v1/openapi.json", OpenAPIHandler),
    (r"/healthz", HealthHandler),
    (r"/readyz", ReadyHandler),
    (r"/api/v1/schemas/([^/]+)", SchemaHandler),
]
