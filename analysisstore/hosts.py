"""Which ``Host`` a request may name: the guard against DNS rebinding.

Without tokens, a loopback service trusts whoever reaches its port. A web page at
``attacker.example`` whose name is re-pointed to 127.0.0.1 reaches it too, and its
reads are same-origin to the browser, so neither CORS nor the foreign-``Origin`` check
stops them. The page cannot, however, make the browser send another ``Host`` than its
own name: answering only requests addressed to a name that cannot be rebound closes it.
"""
from __future__ import annotations

import ipaddress

from .config import ServiceConfig

__all__ = ["host_name", "host_allowed"]

#: Names every resolver maps to loopback without asking DNS.
_LOOPBACK_NAMES = frozenset({"localhost"})


def host_name(host_header: str) -> str:
    """The name of a ``Host`` value, without port, brackets or a final dot, in lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):  # an IPv6 literal, maybe with a port after the bracket
        return host[1:].partition("]")[0]
    name, colon, port = host.rpartition(":")
    if colon and (port.isdigit() or not port):
        host = name
    return host.rstrip(".") if host != "." else host


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _listed(name: str, allowed: tuple[str, ...]) -> bool:
    for entry in allowed:
        if entry == "*" or entry == name:
            return True
        if entry.startswith(".") and (name == entry[1:] or name.endswith(entry)):
            return True
    return False


def host_allowed(host_header: str, config: ServiceConfig) -> bool:
    """May a request naming ``host_header`` be answered under ``config``?

    Checked when auth is off (a rebinding page has nothing else to pass), and
    with tokens only when ``allowed_hosts`` is set (a reverse proxy may forward
    any name, and a page cannot send a token it does not have). An IP literal
    is always fine: DNS cannot re-point it.
    """
    if config.auth_enabled and not config.allowed_hosts:
        return True
    name = host_name(host_header)
    return (name in _LOOPBACK_NAMES or _is_ip_literal(name) or name == host_name(config.host)
            or _listed(name, config.allowed_hosts))
