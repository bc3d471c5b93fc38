"""Readiness by notification, both ends of systemd's sd_notify protocol.

A worker sends ``READY=1`` to ``$NOTIFY_SOCKET`` once it listens with its
indexes ensured (:func:`notify_ready`). Whoever starts ``analysisstore serve``
as a child — systemd with ``Type=notify``, the tests, the benchmarks — waits
on that datagram (:class:`ReadyListener`) instead of polling the port.
"""
from __future__ import annotations

import logging
import os
import select
import shutil
import socket
import subprocess
import tempfile
import time

__all__ = ["notify_ready", "ReadyListener", "NotReady"]

log = logging.getLogger(__name__)


def notify_ready() -> None:
    """Send ``READY=1`` to ``$NOTIFY_SOCKET`` if a supervisor set one; never fails the caller."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(f"READY=1\nMAINPID={os.getpid()}".encode())
    except OSError as exc:
        log.warning("cannot notify %s of readiness: %s", address, exc)


class NotReady(RuntimeError):
    """The child exited, or did not report readiness in time."""


class ReadyListener:
    """A notify socket for one child process: pass :meth:`env` to it, then :meth:`wait`."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="asst-n-")  # short: unix socket paths are limited to ~100 bytes
        self.address = os.path.join(self._dir, "notify")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(self.address)

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with ``NOTIFY_SOCKET`` pointing here."""
        return {**(os.environ if base is None else base), "NOTIFY_SOCKET": self.address}

    def wait(self, process: subprocess.Popen, count: int = 1, timeout: float = 90.0) -> None:
        """Block until ``count`` READY=1 messages arrived; NotReady if ``process`` exits or time runs out."""
        deadline = time.monotonic() + timeout
        ready = 0
        while ready < count:
            if process.poll() is not None:
                raise NotReady(f"the process exited with status {process.returncode} before it was ready")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotReady(f"not ready after {timeout:.0f}s ({ready} of {count} workers reported)")
            # Wakes on the message; the 1 s bound only re-checks whether the child died.
            readable, _, _ = select.select([self._socket], [], [], min(remaining, 1.0))
            if readable and b"READY=1" in self._socket.recv(4096):
                ready += 1

    def close(self) -> None:
        self._socket.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "ReadyListener":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
