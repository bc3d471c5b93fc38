"""Drivers: programs that move analyses into the store. They talk to the service only through the client."""
from __future__ import annotations

import threading
from typing import Callable

from ..client import AnalysisClient

__all__ = ["ThreadClients"]


class ThreadClients:
    """One AnalysisClient per worker thread (a requests.Session is not meant to be shared across threads)."""

    def __init__(self, factory: Callable[[], AnalysisClient]) -> None:
        self.factory = factory
        self._local = threading.local()

    def get(self) -> AnalysisClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.factory()
        return client
