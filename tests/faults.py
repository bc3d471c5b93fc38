"""Real faults for tests: a database process of the test's own, with MongoDB failpoints switched on.

The shared test database cannot take failpoints (they are server-wide and
would strike every other test), so a fault test starts its own SecantusDB
with ``--enable-test-commands``, arms ``configureFailPoint`` on it, or kills it.
Failpoints are scoped to the service's connections by the ``appName`` the
store connects with, so the test's own PyMongo client keeps working.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from analysisstore.store import Store

#: The application name the service's database client announces (see Store.connect).
SERVICE_APP_NAME = "analysisstore"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FaultyDatabase:
    """A SecantusDB process (in-memory storage) that accepts ``configureFailPoint``."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}/?directConnection=true"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(self.port),
             "--storage-path", ":memory:", "--log-level", "ERROR", "--enable-test-commands"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.admin = MongoClient(self.uri, serverSelectionTimeoutMS=250, connectTimeoutMS=250)
        for _ in range(240):  # each attempt waits up to 250 ms for the server: about a minute in all
            assert self.process.poll() is None, "the test database exited during startup"
            try:
                self.admin.admin.command("ping")
                return
            except PyMongoError:
                continue
        raise RuntimeError("the test database did not answer ping")

    def failpoint(self, mode: Any, *commands: str, close_connection: bool = True, **data: Any) -> None:
        """Arm ``failCommand`` on ``commands`` of the service's connections (``mode``: "alwaysOn",
        {"times": n}, {"skip": n, "times": m}, or "off")."""
        data = {"failCommands": list(commands), "appName": SERVICE_APP_NAME, **data}
        if close_connection:
            data["closeConnection"] = True
        self.admin.admin.command("configureFailPoint", "failCommand", mode=mode, data=data)

    def kill(self) -> None:
        """SIGKILL: the database vanishes mid-operation, as in a crash."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def close(self) -> None:
        self.admin.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def new_database(db: FaultyDatabase) -> str:
    """A fresh database on ``db`` with every index the service creates at startup; its name."""
    name = f"asst_fault_{uuid.uuid4().hex[:12]}"
    store = Store.connect(db.uri, name)

    async def ensure_indexes() -> None:
        await store.ensure_indexes()
        await store.close()

    asyncio.run(ensure_indexes())
    return name


@dataclass
class FaultyService:
    """A service (``service``) on a database of its own (``db``) that the test may break."""

    service: Any
    db: FaultyDatabase

    @property
    def database(self) -> Any:
        """The service's database through the test's own client (failpoints do not touch it)."""
        return self.db.admin[self.service.config.database]


@pytest.fixture(scope="module")
def fault_db() -> Iterator[FaultyDatabase]:
    """One database server with failpoints per test module (each test disarms what it armed)."""
    db = FaultyDatabase()
    yield db
    db.close()


@pytest.fixture
def faulty_service(fault_db: FaultyDatabase, start_service: Callable[..., Any]) -> Iterator[FaultyService]:
    """A service on a fresh database of the fault server; failpoints are switched off afterwards."""
    try:
        yield FaultyService(start_service(mongo_uri_override=fault_db.uri, database=new_database(fault_db)),
                            fault_db)
    finally:
        fault_db.failpoint("off")
