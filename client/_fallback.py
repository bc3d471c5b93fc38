"""Reads that fall back to a second service (a local mirror) when the first cannot answer.

A read (GET, or a search POST) goes to the primary service once, without
retries; if no connection can be made, it times out, or the service answers
503, the same request goes to the fallback. Each switch is logged once (to the
fallback, and back). Writes only ever go to the primary, with the usual retries.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import requests

from ._transport import RetryPolicy, Transport
from .errors import ServiceUnavailable, ServiceUnreachable

__all__ = ["FallbackTransport"]

log = logging.getLogger("analysisstore.client")


def _is_read(method: str, path: str) -> bool:
    return method in ("GET", "HEAD") or (method == "POST" and path.rstrip("/").endswith("/search"))


class FallbackTransport(Transport):
    """A :class:`Transport` to the primary whose reads fall back to ``fallback_url``."""

    def __init__(self, base_url: str, fallback_url: str, token: str | None = None,
                 timeout: float | tuple[float, float] = 60.0,
                 retries: RetryPolicy | int | Mapping[str, Any] | None = None) -> None:
        super().__init__(base_url, token=token, timeout=timeout, retries=retries)
        self._once = Transport(base_url, token=token, timeout=timeout, retries=RetryPolicy(retries=0))
        self.fallback = Transport(fallback_url, token=token, timeout=timeout, retries=retries)
        #: The base URL of the service that answered the last read.
        self.answered_by: str | None = None

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        if not _is_read(method, path):
            return super().request(method, path, **kwargs)
        try:
            response = self._once.request(method, path, **kwargs)
        except (ServiceUnreachable, ServiceUnavailable) as exc:
            if self.answered_by != self.fallback.base_url:
                log.warning("%s cannot answer (%s); reads are answered by the fallback %s until it can",
                            self.base_url, exc, self.fallback.base_url)
            response = self.fallback.request(method, path, **kwargs)
            self.answered_by = self.fallback.base_url
            return response
        if self.answered_by == self.fallback.base_url:
            log.warning("%s answers again; reads go to it", self.base_url)
        self.answered_by = self.base_url
        return response

    def close(self) -> None:
        super().close()
        self._once.close()
        self.fallback.close()
