"""Build the Tornado application from its parts (no I/O here)."""
from __future__ import annotations

import logging

from tornado.web import Application, RequestHandler

from .config import ServiceConfig
from .handlers import analyses, documents, health, legacy
from .handlers.base import NotFoundHandler
from .store import Store

__all__ = ["make_app"]

access_log = logging.getLogger("analysisstore.access")


def _log_request(handler: RequestHandler) -> None:
    status = handler.get_status()
    level = logging.INFO if status < 500 else logging.ERROR
    access_log.log(
        level,
        "%d %s %s %.1fms [%s]",
        status,
        handler.request.method,
        handler.request.uri,
        1000.0 * handler.request.request_time(),
        getattr(handler, "request_id", "-"),
    )


def make_app(store: Store, config: ServiceConfig) -> Application:
    """The service's application: every module's routes, then a JSON 404 for the rest."""
    # analyses first: its PATCH routes refine the generic document routes.
    routes = [*analyses.routes, *documents.routes, *legacy.routes, *health.routes]
    return Application(
        routes,
        store=store,
        config=config,
        default_handler_class=NotFoundHandler,
        log_function=_log_request,
        compress_response=False,
    )
