"""HTTP for the client: one keep-alive session, timeouts, retries, error translation.

The client's :class:`RetryPolicy` is the only retry loop of the project:
drivers and the sync driver do not retry on top of it (they defer, spool or
record a failure). It runs as urllib3's ``Retry`` (already under
``requests``): exponential backoff with jitter on connection errors, read
timeouts, 429 and 503, honouring ``Retry-After``. Retrying writes is safe
because the service is idempotent by uid. Other 4xx are never retried.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any, Mapping

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from ..contract.codec import dumps, dumps_text, loads
from ._pooled_get import PooledGet
from .errors import ServiceUnreachable, error_for_status

__all__ = ["Transport", "RetryPolicy", "dumps", "dumps_text", "loads"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.05


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently the client retries what may succeed later.

    ``retries`` more attempts after the first for connection errors, read
    timeouts, 429 and 503; ``connect_retries`` (default: ``retries``) bounds
    the attempts when no connection can be made at all, e.g. "connection
    refused": 0 fails at once. Waits double from ``backoff`` seconds (plus
    jitter) up to ``backoff_max``, unless the service sends ``Retry-After``.
    """

    retries: int = 5
    connect_retries: int | None = None
    backoff: float = 0.25
    backoff_max: float = 30.0

    @classmethod
    def interactive(cls) -> "RetryPolicy":
        """For a command a person typed: a refused connection fails at once; a busy service gets two more tries."""
        return cls(retries=2, connect_retries=0, backoff_max=5.0)

    @classmethod
    def from_config(cls, value: "RetryPolicy | int | Mapping[str, Any] | None") -> "RetryPolicy":
        """The ``retries`` config key: a policy, a number of retries, or a mapping of the policy's fields."""
        if value is None:
            return cls()
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {f.name for f in fields(cls)}
            if unknown:
                raise ValueError(f"unknown retry settings {sorted(unknown)}; known: {[f.name for f in fields(cls)]}")
            return cls(**value)
        if isinstance(value, bool) or int(value) < 0:
            raise ValueError(f"retries must be a non-negative number, a mapping or a RetryPolicy, got {value!r}")
        return cls(retries=int(value))

    def as_urllib3(self) -> Retry:
        return Retry(
            total=max(self.retries, self.connect_retries or 0),
            connect=self.retries if self.connect_retries is None else self.connect_retries,
            read=self.retries,
            status=self.retries,
            other=0,
            redirect=0,
            allowed_methods=None,  # every method: writes are idempotent by uid
            status_forcelist=(429, 503),
            backoff_factor=self.backoff,
            backoff_jitter=self.backoff,
            backoff_max=self.backoff_max,
            retry_after_max=60,
            respect_retry_after_header=True,
            raise_on_status=False,
        )


def _pair(timeout: Any) -> tuple[float, float]:
    """A timeout as requests takes it (seconds, or a (connect, read) pair) → the pair."""
    if isinstance(timeout, (tuple, list)):
        return float(timeout[0]), float(timeout[1])
    return float(timeout), float(timeout)


class Transport:
    """Requests to one service base URL."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float | tuple[float, float] = 60.0,
                 retries: RetryPolicy | int | Mapping[str, Any] | None = None) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout: tuple[float, float] = ((float(timeout[0]), float(timeout[1])) if isinstance(timeout, (tuple, list))
                                             else (CONNECT_TIMEOUT, float(timeout)))
        self.retry_policy = RetryPolicy.from_config(retries)
        self.token = token
        # requests re-reads *_PROXY, NO_PROXY and REQUESTS_CA_BUNDLE on every
        # request, scanning all of os.environ twice: a third of the client's
        # CPU time per small write. They are read once, here. netrc is left
        # out on purpose: the service authenticates with the bearer token.
        self._environment = requests.Session().merge_environment_settings(self.base_url, {}, None, None, None)
        self.session = self._session(max_retries=self.retry_policy.as_urllib3())
        self._pooled = PooledGet(self.session, self.base_url)
        self._probe_session: requests.Session | None = None

    def _session(self, max_retries: Retry | int) -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(max_retries=max_retries, pool_connections=4, pool_maxsize=16)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["Accept"] = "application/json"
        session.headers["User-Agent"] = "analysisstore-client"
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        session.proxies.update(self._environment["proxies"])
        session.verify = self._environment["verify"]
        session.trust_env = False
        return session

    def probe(self, path: str, timeout: tuple[float, float]) -> bool:
        """One GET without retries (same proxies, CA bundle and token): did the service answer 200?"""
        if self._probe_session is None:
            self._probe_session = self._session(max_retries=0)
        try:
            return self._probe_session.get(self.url(path), timeout=timeout).status_code == 200
        except requests.RequestException:
            return False

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path.lstrip("/")

    def request(self, method: str, path: str, *, body: Any = None, data: str | bytes | None = None,
                params: Any = None, timeout: Any = None, stream: bool = False,
                accept: str | None = None, headers: dict[str, str] | None = None) -> requests.Response:
        """Send one request; return the response, or raise the matching client error."""
        headers = dict(headers or {})
        if accept:
            headers["Accept"] = accept
        if body is not None:
            data = dumps(body)
            headers["Content-Type"] = "application/json"
        url = self.url(path)
        try:
            if method == "GET" and data is None and params is None and not stream and self._pooled.applies(url):
                response = self._pooled.get(url, headers, _pair(timeout or self.timeout))
                response.content  # noqa: B018 - read now, inside this try, as requests reads an unstreamed body
            else:
                response = self.session.request(method, url, data=data, params=params, headers=headers,
                                                timeout=timeout or self.timeout, stream=stream)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ServiceUnreachable(f"no analysisstore service answered at {self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise error_for_status(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return loads(response.content) if response.content else None

    def close(self) -> None:
        self.session.close()
        if self._probe_session is not None:
            self._probe_session.close()
