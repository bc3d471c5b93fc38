"""The embedded default database: SecantusDB launched as a child process.

SecantusDB speaks the MongoDB wire protocol over WiredTiger storage. It is
GPL-2.0 and optional (``pip install "analysisstore[embedded]"``); a real
MongoDB is used instead whenever a URI is given.

Only the service may use it: the data directory is private (0700), the
server runs with ``--auth``, and its one SCRAM user's password lives in a
0600 file inside the data directory. A directory without that file (new, or
made before authentication was added) gets its user on the first start: the
server is run once without ``--auth`` on a fresh loopback port, the user is
created, and the server is restarted with ``--auth``.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote_plus

from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

__all__ = ["EmbeddedMongo", "EmbeddedDatabaseError", "MEMORY"]

log = logging.getLogger(__name__)

#: Storage path that keeps everything in a temporary directory removed on stop (tests).
MEMORY = ":memory:"
#: The database user the service connects as, and the file (in the data directory) holding its password.
USER = "analysisstore"
CREDENTIAL_FILE = ".analysisstore-credential"
LOG_FILE = "secantus.log"


class EmbeddedDatabaseError(RuntimeError):
    """The embedded database could not be started."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: have the kernel stop the database if the service is killed outright."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _read_credential(path: Path) -> str | None:
    try:
        password = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not password:
        raise EmbeddedDatabaseError(f"the credential file {path} is empty; remove it to create a new user")
    return password


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new 0600 file, atomically (temp name, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


class EmbeddedMongo:
    """A SecantusDB server on 127.0.0.1 for the lifetime of this object, reachable only with its credential.

    ``start()`` waits until the server answers ``ping`` and the credential is
    accepted; ``stop()`` shuts it down cleanly (WiredTiger checkpoints on exit,
    so data survives); ``restart()`` brings a dead server back on the same port.
    """

    def __init__(self, data_dir: Path | str, startup_timeout: float = 60.0, port: int | None = None,
                 test_commands: bool = False) -> None:
        self.data_dir = str(data_dir)
        self.startup_timeout = startup_timeout
        self.fixed_port = port
        self.port: int | None = port
        self.test_commands = test_commands
        self._process: subprocess.Popen[bytes] | None = None
        self._storage: Path | None = None
        self._password: str | None = None

    @property
    def uri(self) -> str:
        """Where the service connects, credential included (keep it out of logs)."""
        if self.port is None or self._password is None:
            raise EmbeddedDatabaseError("the embedded database is not running")
        return (f"mongodb://{USER}:{quote_plus(self._password)}@127.0.0.1:{self.port}/"
                # journal=true: a write is acknowledged once it is in the database's journal. Without it
                # SecantusDB acknowledges from memory, and a killed database process lost every write of
                # the last moments (all 100 of 100 in a test), though the service had answered 201.
                "?directConnection=true&authSource=admin&journal=true")

    @property
    def address(self) -> str:
        """host:port, for logs and messages (no credential)."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The database server's process id (for benchmarks that read its CPU time)."""
        if self._process is None:
            raise EmbeddedDatabaseError("the embedded database is not running")
        return self._process.pid

    @property
    def alive(self) -> bool:
        """Is the database process still running?"""
        return self._process is not None and self._process.poll() is None

    @property
    def _log_path(self) -> Path:
        assert self._storage is not None
        return self._storage / LOG_FILE

    @staticmethod
    def available() -> bool:
        """Is SecantusDB installed?"""
        return importlib.util.find_spec("secantus") is not None

    def start(self) -> "EmbeddedMongo":
        if not self.available():
            raise EmbeddedDatabaseError(
                "the embedded database is not installed: run `pip install \"analysisstore[embedded]\"` "
                "or give a MongoDB URI with --mongo-uri"
            )
        if self.data_dir == MEMORY:
            self._storage = Path(tempfile.mkdtemp(prefix="analysisstore-db-"))  # 0700, removed on stop
        else:
            self._storage = Path(self.data_dir)
            self._storage.mkdir(parents=True, exist_ok=True)
        os.chmod(self._storage, 0o700)  # existing directories too: they were created world-readable before
        credential = self._storage / CREDENTIAL_FILE
        self._password = _read_credential(credential)
        if self._password is None:
            self._password = self._provision(credential)
        self._start_with_auth()
        log.info("embedded database ready at %s (data in %s)", self.address, self._storage)
        return self

    def _provision(self, credential: Path) -> str:
        """Create the service's user in a data directory that has none; return its password."""
        password = secrets.token_urlsafe(32)
        log.info("creating the embedded database's user in %s", self._storage)
        self.port = _free_port()  # a fresh port nobody expects a database on, for the shortest time
        self._spawn(auth=False)
        try:
            if not self._wait_until_ready():
                raise EmbeddedDatabaseError(self._failure_message())
            with MongoClient(f"mongodb://{self.address}/?directConnection=true", document_class=dict) as admin:
                users = admin.admin.command("usersInfo").get("users", [])
                if any(u.get("user") == USER for u in users):
                    admin.admin.command("updateUser", USER, pwd=password)
                else:
                    admin.admin.command("createUser", USER, pwd=password, roles=["root"])
                strangers = sorted(u.get("user") for u in users if u.get("user") != USER)
                if strangers:
                    log.warning("the embedded database in %s also has users %s", self._storage, strangers)
            _write_private(credential, password)
        finally:
            self._terminate()
        return password

    def _start_with_auth(self) -> None:
        for attempt in range(3):  # a port taken between choosing and binding: try another
            self.port = self.fixed_port or _free_port()
            if self._spawn_and_wait():
                return
            if attempt == 2 or self.fixed_port or "lock" in self._output().lower():
                break
        message = self._failure_message()
        self.stop()
        raise EmbeddedDatabaseError(message)

    def _spawn_and_wait(self) -> bool:
        self._spawn(auth=True)
        if not self._wait_until_ready():
            return False
        with MongoClient(self.uri, serverSelectionTimeoutMS=5_000, document_class=dict) as client:
            try:
                client.admin.command("connectionStatus")  # needs a successful login
            except OperationFailure as exc:
                raise EmbeddedDatabaseError(
                    f"the embedded database in {self._storage} refused the credential in {CREDENTIAL_FILE}: "
                    f"{exc}. If the directory was copied without it, restore the file."
                ) from None
        return True

    def restart(self) -> bool:
        """Start the server again after it died, on the same port (the service's URI stays valid)."""
        if self.alive:
            return True
        if self._storage is None or self._password is None:
            raise EmbeddedDatabaseError("the embedded database was never started")
        log.warning("the embedded database (%s) is not running; restarting it", self.address)
        try:
            if self._spawn_and_wait():
                log.info("embedded database restarted at %s", self.address)
                return True
        except EmbeddedDatabaseError as exc:
            log.error("%s", exc)
        self._terminate()
        log.error("the embedded database could not be restarted: %s", self._output()[-500:])
        return False

    def _failure_message(self) -> str:
        return (f"the embedded database did not start (data directory {self.data_dir}). "
                f"Is another `analysisstore serve` using it? Its output:\n{self._output()[-2000:]}")

    def _spawn(self, auth: bool) -> None:
        assert self._storage is not None
        cmd = [
            sys.executable, "-m", "secantus",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--storage-path", str(self._storage),
            "--log-level", "WARNING",
            *(["--auth"] if auth else []),
            *(["--enable-test-commands"] if self.test_commands else []),
        ]
        fd = os.open(self._log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        out = os.fdopen(fd, "ab")
        try:
            self._process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            out.close()

    def _wait_until_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        with MongoClient(f"mongodb://{self.address}/?directConnection=true",
                         serverSelectionTimeoutMS=250, connectTimeoutMS=250, document_class=dict) as probe:
            while time.monotonic() < deadline:
                if self._process is None or self._process.poll() is not None:
                    return False
                try:
                    probe.admin.command("ping")  # answered before authentication
                    return True
                except PyMongoError:
                    continue  # server selection itself waits up to 250 ms
        return False

    def _output(self) -> str:
        if self._storage is not None and self._log_path.exists():
            return self._log_path.read_text(errors="replace")
        return ""

    def _terminate(self, timeout: float = 30.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("embedded database did not stop within %.0fs; killing it", timeout)
            process.kill()
            process.wait()

    def stop(self, timeout: float = 30.0) -> None:
        was_running = self._process is not None
        self._terminate(timeout)
        if self.data_dir == MEMORY and self._storage is not None:
            shutil.rmtree(self._storage, ignore_errors=True)
            self._storage = None
        if was_running:
            log.info("embedded database stopped")

    def __enter__(self) -> "EmbeddedMongo":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
