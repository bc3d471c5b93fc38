"""Settings of one service process (flags, environment and config files arrive later)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import platformdirs

__all__ = ["ServiceConfig", "default_data_dir"]


def default_data_dir() -> Path:
    """Where the embedded database keeps its files unless told otherwise."""
    return Path(platformdirs.user_data_dir("analysisstore")) / "db"


@dataclass(frozen=True)
class ServiceConfig:
    """Everything the service reads at start-up; created once and shared through app settings."""

    host: str = "127.0.0.1"
    port: int = 8999
    mongo_uri: str | None = None
    database: str = "analysisstore"
    data_dir: Path | None = None
    max_body_bytes: int = 64 * 1024 * 1024
    max_bulk_items: int = 50_000
    query_max_time_ms: int = 10_000
    db_timeout_ms: int = 5_000
    retry_after_seconds: int = 5
    #: An analysis without a tail older than this is reported as "stale" rather than "running".
    stale_after_seconds: float = 24 * 3600.0
