"""Build the Tornado application from its parts (no I/O here)."""
from __future__ import annotations

import logging
from typing import Any

from tornado.web import Application, RequestHandler

from .config import ServiceConfig
from .metrics import Metrics
from .handlers import analyses, documents, events, feed, files, health, legacy, lineage, web
from .handlers.base import NotFoundHandler
from .store import Store

__all__ = ["make_app"]

access_log = logging.getLogger("analysisstore.access")


def _log_request(handler: RequestHandler) -> None:
    status = handler.get_status()
    level = logging.INFO if status < 500 else logging.ERROR
    if not access_log.isEnabledFor(level):
        return  # e.g. --log-level warning: nothing to format
    duration = 1000.0 * handler.request.request_time()
    request_id = getattr(handler, "request_id", "-")
    access_log.log(
        level, "%d %s %s %.1fms [%s]", status, handler.request.method, handler.request.uri, duration, request_id,
        extra={"request_id": request_id, "status": status, "method": handler.request.method,
               "path": handler.request.path, "duration_ms": round(duration, 2)},
    )


def make_app(store: Store, config: ServiceConfig, metrics: Metrics | None = None) -> Application:
    """The service's application: every module's routes, then a JSON 404 for the rest."""
    routes: list[Any] = [*analyses.routes, *lineage.routes, *events.routes, *feed.routes, *files.routes,
                         *documents.routes, *legacy.routes, *health.routes, *web.routes]
    return Application(
        routes,
        store=store,
        config=config,
        metrics=metrics or Metrics(),
        tokens=config.tokens,
        default_handler_class=NotFoundHandler,
        log_function=_log_request,
        compress_response=False,
    )
