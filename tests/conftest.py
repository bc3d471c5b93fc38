"""Test harness: one real database and one service event loop for the whole run.

The database is the embedded SecantusDB started once (in-memory storage), or
the MongoDB named by ANALYSISSTORE_TEST_MONGO_URI. Every test gets its own
database and its own service instance listening on a real 127.0.0.1 port, so
the client and raw HTTP calls go over real sockets.
"""
from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

import pytest
from pymongo import MongoClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from analysisstore.app import make_app
from analysisstore.config import ServiceConfig
from analysisstore.embedded import MEMORY, EmbeddedMongo
from analysisstore.handlers.base import HEADER_READ_BYTES
from analysisstore.store import Store

from helpers import header_doc, post, stream_doc


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    """URI of the test run's database server."""
    uri = os.environ.get("ANALYSISSTORE_TEST_MONGO_URI")
    if uri:
        yield uri
        return
    if not EmbeddedMongo.available():
        pytest.exit("the embedded database is missing: pip install -e '.[embedded,test]' "
                    "or set ANALYSISSTORE_TEST_MONGO_URI", returncode=4)
    with EmbeddedMongo(MEMORY) as embedded:
        yield embedded.uri


@pytest.fixture(scope="session")
def mongo(mongo_uri: str) -> Iterator[MongoClient]:
    """A synchronous PyMongo client for checking what is (not) stored."""
    with MongoClient(mongo_uri) as client:
        yield client


class ServiceLoop:
    """A thread running one asyncio loop that hosts every service of the test run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="service-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="session")
def service_loop() -> Iterator[ServiceLoop]:
    runner = ServiceLoop()
    yield runner
    runner.close()


@dataclass
class RunningService:
    """One service instance on its own database."""

    url: str
    port: int
    database: Any  # pymongo Database, for asserting what was stored
    config: ServiceConfig
    stop: Callable[[], None] = lambda: None

    def count(self, doc_type: str, filt: dict | None = None) -> int:
        return self.database[doc_type].count_documents(filt or {})

    @property
    def client_config(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port}


async def _start(config: ServiceConfig, uri: str, create_indexes: bool) -> tuple[HTTPServer, Store, int]:
    store = Store.for_service(config, uri)
    if create_indexes:
        await store.ensure_indexes()
    server = HTTPServer(make_app(store, config), max_body_size=config.max_body_bytes + 1,
                        max_header_size=HEADER_READ_BYTES)
    sockets = bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    return server, store, sockets[0].getsockname()[1]


async def _stop(server: HTTPServer, store: Store) -> None:
    server.stop()
    await server.close_all_connections()
    await store.close()


@pytest.fixture
def start_service(service_loop: ServiceLoop, mongo_uri: str, mongo: MongoClient) -> Iterator[Callable[..., RunningService]]:
    """Factory: start a service on a fresh database, with config overrides."""
    running: list[tuple[HTTPServer, Store, str]] = []

    def start(mongo_uri_override: str | None = None, **overrides: Any) -> RunningService:
        config = replace(ServiceConfig(database=f"asst_test_{uuid.uuid4().hex[:12]}", db_timeout_ms=3_000),
                         **overrides)
        uri = mongo_uri_override or mongo_uri
        server, store, port = service_loop.run(_start(config, uri, create_indexes=mongo_uri_override is None))
        entry = [server, store, config.database, False]
        running.append(entry)

        def stop() -> None:
            if not entry[3]:
                entry[3] = True
                service_loop.run(_stop(server, store))

        return RunningService(f"http://127.0.0.1:{port}", port, mongo[config.database], config, stop)

    yield start
    for server, store, name, stopped in running:
        if not stopped:
            service_loop.run(_stop(server, store))
        mongo.drop_database(name)


@pytest.fixture
def service(start_service: Callable[..., RunningService]) -> RunningService:
    """A service with the default configuration on a fresh database."""
    return start_service()


@pytest.fixture
def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def analysis(service: RunningService) -> dict[str, Any]:
    """A stored header with one stream (no tail yet)."""
    header = header_doc()
    stream = stream_doc(header["uid"])
    assert post(service, "analysis_header", header).status_code == 201
    assert post(service, "data_reference_header", stream).status_code == 201
    return {"header": header, "stream": stream}
