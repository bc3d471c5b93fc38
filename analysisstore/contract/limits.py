"""Limits the client and the service agree on, so that the client never builds a request the service refuses."""
from __future__ import annotations

__all__ = ["MAX_BULK_ITEMS"]

#: Most documents in one bulk request. The client's bulk calls send chunks of at most this many, and it
#: is the service's default ``max_bulk_items``. 10 000 small records are about 2.5 MB of JSON and a
#: few tenths of a second of parsing and validation (which the service does off its event loop); the
#: largest chunk any shipped tool sends is 5 000.
MAX_BULK_ITEMS = 10_000
