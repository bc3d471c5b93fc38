"""Bearer tokens with read/write scopes. Only sha256 digests are stored; comparison is constant-time."""
from __future__ import annotations

import hashlib
import hmac
import secrets

from .config import TokenEntry

__all__ = ["new_token", "digest", "scopes_for"]


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return "asst_" + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def scopes_for(token: str, entries: tuple[TokenEntry, ...]) -> frozenset[str] | None:
    """The scopes of ``token``, or None if it is not known. Every entry is compared, in constant time."""
    presented = digest(token)
    found: frozenset[str] | None = None
    for entry in entries:
        if hmac.compare_digest(presented, entry.sha256):
            found = entry.scopes
    return found
