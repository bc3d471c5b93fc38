"""The derived status of an analysis: running, success, fail, abort or stale."""
from __future__ import annotations

import time
from typing import Any

__all__ = ["EXIT_STATUSES", "STATUSES", "derive_status"]

EXIT_STATUSES = ("success", "fail", "abort")
STATUSES = ("running", *EXIT_STATUSES, "stale")


def derive_status(header: dict[str, Any], tail: dict[str, Any] | None, stale_after: float) -> str:
    """running / success / fail / abort / stale (no tail and older than ``stale_after`` seconds)."""
    if tail is not None:
        return tail["exit_status"]
    return "stale" if header["time"] <= time.time() - stale_after else "running"
