"""Run the service: connect, ensure indexes, listen; on SIGTERM/SIGINT drain and stop."""
from __future__ import annotations

import asyncio
import logging
import signal

from tornado.httpserver import HTTPServer

from .app import make_app
from .config import ServiceConfig, default_data_dir
from .embedded import EmbeddedMongo
from .errors import DatabaseUnavailable
from .store import Store

__all__ = ["serve", "run_service"]

log = logging.getLogger(__name__)

DRAIN_SECONDS = 10.0


async def run_service(config: ServiceConfig, mongo_uri: str) -> None:
    """Serve until SIGTERM or SIGINT, then stop listening, drain in-flight requests, close the DB client."""
    store = Store.connect(mongo_uri, config.database, config.query_max_time_ms, config.db_timeout_ms)
    try:
        await store.ensure_indexes()
    except DatabaseUnavailable:
        await store.close()
        raise SystemExit(f"cannot reach the database at {mongo_uri}; is it running?") from None
    app = make_app(store, config)
    # The body limit is enforced per request by the handlers (JSON 413);
    # the transport limit only has to be above it.
    server = HTTPServer(app, max_body_size=config.max_body_bytes + 1, idle_connection_timeout=120)
    server.listen(config.port, config.host)
    log.info("analysisstore listening on http://%s:%d (database %r)", config.host, config.port, config.database)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()

    log.info("stopping: no new connections, draining in-flight requests (up to %.0fs)", DRAIN_SECONDS)
    server.stop()
    try:
        await asyncio.wait_for(server.close_all_connections(), DRAIN_SECONDS)
    except asyncio.TimeoutError:
        log.warning("some connections were still open after %.0fs; closing anyway", DRAIN_SECONDS)
    await store.close()
    log.info("stopped")


def serve(config: ServiceConfig) -> None:
    """Start the embedded database unless a URI is configured, run the service, stop both."""
    if config.mongo_uri:
        asyncio.run(run_service(config, config.mongo_uri))
        return
    data_dir = config.data_dir or default_data_dir()
    log.info("no --mongo-uri given: starting the embedded database in %s", data_dir)
    with EmbeddedMongo(data_dir) as embedded:
        asyncio.run(run_service(config, embedded.uri))
