"""Plain GETs sent straight to the session's own connection pool.

``requests.Session.request`` spends about 0.4 ms of CPU per call
before and after the bytes move: it merges session and call settings (each
merge an ``isinstance`` against a runtime-checked Protocol, slow on Python
3.11), parses and re-quotes the URL, consults the cookie jar twice and runs
the hooks. A lookup by uid takes about 3 ms end to end, so that was over a tenth
of it. A GET for which none of those settings can matter is handed to the
same urllib3 pool the session's adapter uses: the same keep-alive
connections, retry policy (``adapter.max_retries``), timeouts, headers,
TLS settings and response object (``adapter.build_response``). Anything
else (a proxy, cookies, hooks, auth, session params, a body, streaming, a
URL of another origin) takes the ordinary ``Session.request``.
"""
from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from requests.utils import requote_uri, select_proxy
from urllib3 import HTTPConnectionPool, Timeout
from urllib3.exceptions import ConnectTimeoutError, HTTPError, MaxRetryError, NewConnectionError, ReadTimeoutError

__all__ = ["PooledGet"]


class PooledGet:
    """GETs of one session to its base URL's origin, through the adapter's pool."""

    def __init__(self, session: requests.Session, base_url: str) -> None:
        parts = urlsplit(base_url)
        self._origin = f"{parts.scheme}://{parts.netloc}/"
        self._session = session
        self._adapter: HTTPAdapter | None = None
        self._pool: HTTPConnectionPool | None = None
        try:
            adapter = session.get_adapter(base_url)
            # Names the origin for the adapter's pool and TLS context (the path does not matter there).
            self._origin_request = requests.Request("GET", base_url).prepare()
        except (requests.RequestException, ValueError):  # not a URL requests can send to: the ordinary path says so
            return
        # A subclass may change how it sends; requests before 2.32 picks pools differently.
        if (isinstance(adapter, HTTPAdapter) and type(adapter) is HTTPAdapter
                and hasattr(adapter, "get_connection_with_tls_context")
                and select_proxy(base_url, session.proxies) is None):
            self._adapter = adapter

    def _connection_pool(self) -> HTTPConnectionPool:
        """The adapter's pool for the origin, as ``adapter.send`` would pick it; fetched again once closed."""
        if self._pool is None or self._pool.pool is None:  # a closed pool has no queue left
            assert self._adapter is not None
            session = self._session
            pool = cast(HTTPConnectionPool, self._adapter.get_connection_with_tls_context(
                self._origin_request, session.verify, None, session.cert))
            self._adapter.cert_verify(pool, self._origin_request.url or "", session.verify, session.cert)
            self._pool = pool
        return self._pool

    def applies(self, url: str) -> bool:
        """May this GET skip ``Session.request``: same origin, and nothing of the session's to merge in?"""
        session = self._session
        return (self._adapter is not None and url.startswith(self._origin) and not session.cookies
                and not session.params and session.auth is None and not session.hooks.get("response"))

    def get(self, url: str, headers: dict[str, str], timeout: tuple[float, float]) -> requests.Response:
        """The response to ``GET url`` (body not yet read); requests' own exceptions for transport failures."""
        adapter, session = self._adapter, self._session
        assert adapter is not None
        merged: CaseInsensitiveDict[Any] = CaseInsensitiveDict(session.headers)
        merged.update(headers)
        request = requests.PreparedRequest()
        request.method, request.url, request.headers, request.body = "GET", url, merged, None
        target = requote_uri(url[len(self._origin) - 1:])
        try:
            raw = self._connection_pool().urlopen(
                "GET", target, headers=merged, redirect=False, assert_same_host=False, preload_content=False,
                decode_content=False, retries=adapter.max_retries, timeout=Timeout(connect=timeout[0], read=timeout[1]))
        except ReadTimeoutError as exc:
            raise requests.ReadTimeout(exc, request=request) from exc
        except MaxRetryError as exc:
            if isinstance(exc.reason, ConnectTimeoutError) and not isinstance(exc.reason, NewConnectionError):
                raise requests.ConnectTimeout(exc, request=request) from exc
            raise requests.ConnectionError(exc, request=request) from exc
        except (HTTPError, OSError) as exc:
            raise requests.ConnectionError(exc, request=request) from exc
        response = adapter.build_response(request, raw)
        if "Set-Cookie" in raw.headers:  # kept as Session.send keeps it; later requests then send it
            extract_cookies_to_jar(session.cookies, request, raw)
        return response
