"""Run the service: connect, ensure indexes, listen; on SIGTERM/SIGINT drain and stop.

With ``processes > 1`` the main process binds the port, starts the embedded
database if needed, forks the workers and supervises them: SIGTERM/SIGINT
is passed on to every worker, each drains its in-flight requests, and the
main process stops the database and removes the pid file last.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from .config import ServiceConfig, default_data_dir
from .embedded import EmbeddedMongo
from .errors import DatabaseUnavailable
from .readiness import notify_ready

__all__ = ["serve", "run_service"]

log = logging.getLogger(__name__)


#: How often a single-process service checks that its embedded database is still running.
DATABASE_WATCH_SECONDS = 1.0


async def _watch_database(embedded: EmbeddedMongo) -> None:
    """Restart the embedded database whenever it has died (``/healthz`` is 503 until it is back)."""
    while True:
        await asyncio.sleep(DATABASE_WATCH_SECONDS)  # a periodic check, not a wait for readiness
        if not embedded.alive:
            await asyncio.to_thread(embedded.restart)


def _without_credentials(uri: str) -> str:
    scheme, sep, rest = uri.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}" if sep and "@" in rest else uri


async def run_service(config: ServiceConfig, mongo_uri: str, sockets: list[socket.socket] | None = None,
                      embedded: EmbeddedMongo | None = None, metrics_dir: Path | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop listening, drain in-flight requests, close the DB client.

    With ``embedded`` (the database child of this process) the service also
    restarts it when it dies, and ``/healthz`` reports it while it is down.
    ``metrics_dir``: the directory the workers of one service share their
    metrics through (None: this process's own).
    """
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    from .app import make_app
    from .handlers.base import HEADER_READ_BYTES
    from .metrics import Metrics
    from .store import Store
    from .upgrade import LayoutError, check_layout, refusal_line

    store = Store.for_service(config, mongo_uri)
    try:
        await check_layout(store.db)
        await store.ensure_indexes()
        await store.heal_status()
        if not config.cursor_secret:  # made or read now, so a database that cannot keep it fails at start
            await store.cursor_secret()
    except DatabaseUnavailable:
        await store.close()
        raise SystemExit(f"cannot reach the database at {_without_credentials(mongo_uri)}; is it running?") from None
    except LayoutError as exc:
        await store.close()
        raise SystemExit(refusal_line(exc, config)) from None
    except RuntimeError as exc:
        await store.close()
        raise SystemExit(str(exc)) from None
    app = make_app(store, config, Metrics(metrics_dir))
    app.settings["embedded"] = embedded
    watch = asyncio.create_task(_watch_database(embedded)) if embedded is not None else None
    # Body limits are enforced per route by the handlers while the body streams in (JSON 413).
    # The idle timeout also bounds how long the headers may take to arrive.
    # A head larger than the handlers' limits is still read, so that it is answered with a JSON 414/431.
    server = HTTPServer(app, max_body_size=config.max_body_bytes + 1, body_timeout=config.body_timeout_seconds,
                        idle_connection_timeout=config.idle_timeout_seconds, max_header_size=HEADER_READ_BYTES)
    server.add_sockets(sockets or bind_sockets(config.port, config.host))
    log.info("analysisstore listening on http://%s:%d (database %r, auth %s)", config.host, config.port,
             config.database, "on" if config.auth_enabled else "off")
    notify_ready()

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()

    log.info("stopping: no new connections, draining in-flight requests (up to %.0fs)", config.drain_seconds)
    server.stop()
    if watch is not None:
        watch.cancel()
    try:
        await asyncio.wait_for(server.close_all_connections(), config.drain_seconds)
    except asyncio.TimeoutError:
        log.warning("connections still open after %.0fs; closing anyway", config.drain_seconds)
    await store.close()
    log.info("stopped")


def _write_pid_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, path)


def _die_with_parent() -> None:
    """Linux: have the kernel send SIGTERM when the supervisor dies, however it dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        log.debug("cannot ask to die with the parent process")


def _supervise(config: ServiceConfig, mongo_uri: str, metrics_dir: Path,
               embedded: EmbeddedMongo | None = None) -> None:
    """Fork ``config.processes`` workers on one bound port; pass signals on; wait for all of them.

    The embedded database is the supervisor's child too: when it dies it is
    started again on the same address (the workers reconnect), and if it
    cannot be, every worker is stopped so the service exits non-zero.
    """
    from tornado.netutil import bind_sockets

    sockets = bind_sockets(config.port, config.host)
    children: dict[int, int] = {}
    for worker in range(config.processes):
        pid = os.fork()
        if pid == 0:  # worker
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _die_with_parent()  # a worker whose supervisor is killed outright drains and exits too
            code = 0
            try:
                asyncio.run(run_service(config, mongo_uri, sockets, metrics_dir=metrics_dir))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
                if not isinstance(exc.code, int):
                    log.error("%s", exc.code)
            except BaseException:  # noqa: BLE001 - a worker must never return into the supervisor's code
                log.exception("worker %d failed", worker)
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = worker
    for sock in sockets:
        sock.close()
    log.info("started %d worker processes: %s", config.processes, sorted(children))

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        forward(signum, frame)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    database_pid = embedded.pid if embedded is not None else None
    failures = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if embedded is not None and pid == database_pid:
            # Reaped here, so the database's own handle sees it as gone and restart() starts a new one.
            if stopping:
                continue
            log.error("the embedded database exited (%d)", os.waitstatus_to_exitcode(status))
            if embedded.restart():
                database_pid = embedded.pid
                continue
            failures += 1
            stop(signal.SIGTERM, None)
            continue
        children.pop(pid, None)
        if os.waitstatus_to_exitcode(status) != 0:
            failures += 1
            log.error("worker %d exited with %d; stopping the others", pid, os.waitstatus_to_exitcode(status))
            forward(signal.SIGTERM, None)
    if failures:
        raise SystemExit(1)


def _metrics_dir(config: ServiceConfig, stack: ExitStack) -> Path | None:
    """Where the workers share their metrics: the operator's ``PROMETHEUS_MULTIPROC_DIR`` if set, else a
    directory of this run (removed at exit) when there are several workers, else none."""
    from .metrics import MULTIPROCESS_ENV

    if os.environ.get(MULTIPROCESS_ENV):
        return Path(os.environ[MULTIPROCESS_ENV])
    if config.processes > 1:
        return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="asst-metrics-")))
    return None


def serve(config: ServiceConfig) -> None:
    """Start the embedded database unless a URI is configured, run the service, stop both."""
    with ExitStack() as stack:
        if config.pid_file:
            _write_pid_file(config.pid_file)
            stack.callback(lambda: config.pid_file.unlink(missing_ok=True))  # type: ignore[union-attr]
        metrics_dir = _metrics_dir(config, stack)
        mongo_uri = config.mongo_uri
        embedded = None
        if not mongo_uri:
            data_dir = config.data_dir or default_data_dir()
            log.info("no mongo_uri given: starting the embedded database in %s", data_dir)
            embedded = stack.enter_context(EmbeddedMongo(data_dir))
            mongo_uri = embedded.uri
        if config.processes > 1:
            if sys.platform == "win32":
                raise SystemExit("--processes > 1 needs fork (Linux, macOS)")
            assert metrics_dir is not None  # made for every service of several processes
            _supervise(config, mongo_uri, metrics_dir, embedded)
        else:
            asyncio.run(run_service(config, mongo_uri, embedded=embedded, metrics_dir=metrics_dir))
