"""The offline spool: analyses the service could not take, kept as bundles until ``sync`` delivers them.

``spool_dir/RUNS_ACTIVE/<analysis>/`` while the analysis runs,
``spool_dir/RUNS_FINISHED/<analysis>/`` once its tail is written (ready for
``analysisstore sync``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .bundle import BundleWriter, _safe_name

__all__ = ["Spool", "ACTIVE", "FINISHED", "SYNCED", "QUARANTINED"]

log = logging.getLogger(__name__)

ACTIVE = "RUNS_ACTIVE"
FINISHED = "RUNS_FINISHED"
SYNCED = "RUNS_SYNCED"
QUARANTINED = "RUNS_QUARANTINED"


class Spool:
    """Bundles under one spool directory, one per analysis."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        for name in (ACTIVE, FINISHED):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    def _active(self, header_uid: str) -> Path:
        return self.root / ACTIVE / _safe_name(header_uid)

    def holds(self, header_uid: str) -> bool:
        """Is this analysis being spooled (so all its later writes must follow it)?"""
        return self._active(header_uid).is_dir()

    def begin(self, header: dict[str, Any], streams: list[dict[str, Any]]) -> None:
        """Start spooling an analysis with what is known of it so far (re-sent later, harmlessly)."""
        writer = BundleWriter(self._active(header["uid"]))
        writer.write_header(header)
        for stream in streams:
            writer.write_stream(stream)
        log.warning("service unreachable: spooling analysis %s to %s", header["uid"], self._active(header["uid"]))

    def add(self, header_uid: str, doc_type: str, docs: list[dict[str, Any]]) -> None:
        writer = BundleWriter(self._active(header_uid))
        if doc_type == "data_reference_header":
            for doc in docs:
                writer.write_stream(doc)
        elif doc_type == "data_reference":
            by_stream: dict[str, list[dict[str, Any]]] = {}
            for doc in docs:
                by_stream.setdefault(doc["data_reference_header"], []).append(doc)
            for stream_uid, records in by_stream.items():
                writer.append_records(stream_uid, records)
        elif doc_type == "analysis_tail":
            (tail,) = docs
            writer.write_tail(tail)
            writer.finish()
            target = self.root / FINISHED / self._active(header_uid).name
            os.replace(self._active(header_uid), target)
            log.warning("analysis %s finished offline; run `analysisstore sync %s` to deliver it",
                        header_uid, self.root)
        elif doc_type == "analysis_header":
            (header,) = docs
            writer.write_header(header)
