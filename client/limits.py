"""The bulk limit the client and the service agree on (stated once, in the contract)."""
from __future__ import annotations

from ..contract.limits import MAX_BULK_ITEMS

__all__ = ["MAX_BULK_ITEMS"]
