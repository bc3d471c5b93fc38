"""A small cache of facts that never become false, saving a database round trip per write."""
from __future__ import annotations

import time
from typing import Any

__all__ = ["ImmutableCache"]


class ImmutableCache:
    """A small TTL cache for facts that never become false: a stream's declaration, a header's existence,
    an analysis being finalized. It saves a database round trip per write; the TTL bounds how long a
    document deleted behind the service's back (there is no delete API) could still be believed in."""

    def __init__(self, ttl: float = 60.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._entries) >= self.size:
            self._entries.pop(next(iter(self._entries)))  # the oldest
        self._entries[key] = (time.monotonic() + self.ttl, value)
