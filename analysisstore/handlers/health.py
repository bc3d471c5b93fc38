"""Liveness, readiness, the published schemas and the OpenAPI document."""
from __future__ import annotations

from .._version import __version__
from ..errors import DatabaseUnavailable, NotFound
from ..openapi import openapi_spec
from ..schemas import DOC_TYPES, load_schema
from ..metrics import CONTENT_TYPE
from .base import OPEN, BaseHandler

__all__ = ["routes"]


class HealthHandler(BaseHandler):
    """``GET /healthz``: the process is up, and so is its embedded database child (no query). Always open."""

    scopes = OPEN

    def get(self) -> None:
        embedded = self.settings.get("embedded")
        if embedded is not None and not embedded.alive:
            raise DatabaseUnavailable("the embedded database process is not running; the service is "
                                      "restarting it")
        self.write_json({"status": "ok", "version": __version__})


class ReadyHandler(BaseHandler):
    """``GET /readyz``: the database answers (503 with Retry-After if not). Open, for load balancers."""

    scopes = OPEN

    async def get(self) -> None:
        await self.store.ping()
        self.write_json({"status": "ready", "version": __version__, "database": self.store.db.name})


class SchemaHandler(BaseHandler):
    """``GET /api/v1/schemas/{doc_type}``: the JSON Schema every write is held to (public)."""

    scopes = OPEN

    def get(self, doc_type: str) -> None:
        if doc_type not in DOC_TYPES:
            raise NotFound(f"no schema {doc_type!r}; known: {', '.join(DOC_TYPES)}")
        self.set_header("Content-Type", "application/schema+json")
        self.write_json(load_schema(doc_type))


class OpenAPIHandler(BaseHandler):
    """``GET /api/v1/openapi.json``: the OpenAPI 3 description of the v1 API (public)."""

    scopes = OPEN

    def get(self) -> None:
        self.write_json(openapi_spec())


class MetricsHandler(BaseHandler):
    """``GET /metrics``: Prometheus text format; needs the read scope unless metrics_public."""

    def required_scope(self) -> str | None:
        return None if self.config.metrics_public else "read"

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(self.metrics.render())


class StatusHandler(BaseHandler):
    """``GET /api/v1/status``: version, database and document counts (for `analysisstore status`)."""

    async def get(self) -> None:
        self.write_json({"version": __version__, "database": self.store.db.name,
                         "counts": await self.store.counts(),
                         "stale_after_seconds": self.config.stale_after_seconds,
                         "auth": self.config.auth_enabled})


routes = [
    (r"/metrics", MetricsHandler),
    (r"/api/v1/status", StatusHandler),
    (r"/api/v1/openapi.json", OpenAPIHandler),
    (r"/healthz", HealthHandler),
    (r"/readyz", ReadyHandler),
    (r"/api/v1/schemas/([^/]+)", SchemaHandler),
]
