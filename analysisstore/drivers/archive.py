"""Export analyses to bundle archives and import them back, through the client.

Export writes each bundle (documents, attached files, the revisions of
header and tail, creation info) in a temporary directory and zips it to a
temporary name before renaming, so an interrupted export leaves no
half-written archive. Import is idempotent: identical documents are
"already stored"; a uid stored with different content is reported, never
overwritten, and the rest of that analysis is skipped if its header is the
one in conflict. An analysis whose documents were not all stored is left
without its tail (still running, reported incomplete), so importing the
fixed bundle later completes it.
"""
from __future__ import annotations

import functools
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..client import AnalysisClient, Conflict
from ..client.bundle import (
    DEFAULT_LIMITS,
    Bundle,
    BundleError,
    BundleLimits,
    BundleWriter,
    safe_name,
    read_bundle,
    zip_bundle,
)
from .push import NewlyStored, Progress, push_bundle, send_tail

__all__ = ["export_analyses", "import_archives", "ImportReport"]

log = logging.getLogger(__name__)

_SERVICE_FIELDS = ("_name", "_revision")


def _plain(doc: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(doc).items() if k not in _SERVICE_FIELDS}


def _write_bundle(client: AnalysisClient, uid: str, target: Path) -> int:
    header = client.find_analysis_header(uid=uid)
    if not header:
        raise LookupError(f"no analysis_header with uid {uid!r}")
    writer = BundleWriter(target)
    writer.write_header(_plain(header[0]))
    records = 0
    for stream in client.find_data_reference_header(analysis_header=uid):
        writer.write_stream(_plain(stream))
        chunk: list[dict[str, Any]] = []
        for record in client.iter_data_reference(data_reference_header=stream["uid"]):
            chunk.append(_plain(record))
            if len(chunk) == 5_000:
                writer.append_records(stream["uid"], chunk)
                records += len(chunk)
                chunk = []
        writer.append_records(stream["uid"], chunk)
        records += len(chunk)
    tail = client.find_analysis_tail(analysis_header=uid)
    if tail:
        writer.write_tail(_plain(tail[0]))
    writer.write_revisions("analysis_header", client.revisions("analysis_header", uid))
    if tail:
        writer.write_revisions("analysis_tail", client.revisions("analysis_tail", tail[0]["uid"]))
    for doc in client.files(uid):
        entry = writer.add_file(doc["uid"], doc["name"], doc["content_type"], doc["time"],
                                functools.partial(client.get_file, doc["uid"]))
        if entry["sha256"] != doc["sha256"]:
            raise ValueError(f"file {doc['uid']} changed while it was exported; export again")
    writer.finish(source=client._host_url)
    return records


def export_analyses(client: AnalysisClient, uids: Iterable[str], out: Path, one_file: bool = False) -> list[Path]:
    """Write each analysis as ``out/<uid>.zip`` (``out`` a directory), or all into the one zip ``out``."""
    uids = list(uids)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="asst-export-") as scratch:
        if one_file:
            for uid in uids:
                _write_bundle(client, uid, Path(scratch) / safe_name(uid))
            out.parent.mkdir(parents=True, exist_ok=True)
            zip_bundle(Path(scratch), out)
            return [out]
        out.mkdir(parents=True, exist_ok=True)
        for uid in uids:
            staging = Path(scratch) / safe_name(uid)
            _write_bundle(client, uid, staging)
            target = out / f"{safe_name(uid)}.zip"
            zip_bundle(staging, target)
            written.append(target)
    return written


@dataclass
class ImportReport:
    """Per bundle: imported (something new stored), already stored (nothing new), or what was wrong."""

    imported: list[str] = field(default_factory=list)
    #: Analyses the service held whole already: importing them stored nothing.
    already_stored: list[str] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[dict[str, Any]] = field(default_factory=list)
    #: Analyses stored in part and left without their tail (still running): fix the bundle and import again.
    incomplete: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.conflicts and not self.invalid and not self.incomplete


def import_archives(client: AnalysisClient, paths: Iterable[Path], chunk_size: int = 2_000,
                    limits: BundleLimits = DEFAULT_LIMITS, restore_times: bool = True) -> ImportReport:
    """Push every bundle found in ``paths`` (zips or directories); report conflicts instead of overwriting.

    ``limits`` caps how far an archive may expand; a bundle beyond them is
    reported invalid before any of it is unpacked or sent. Files and
    revisions keep their original times (``restore_times``; with tokens,
    that needs the restore scope); an attached file that does not match its
    manifest entry makes the bundle invalid, and its analysis is left
    without its tail.
    """
    report = ImportReport()
    for path in paths:
        try:
            bundles = read_bundle(path, limits)
        except BundleError as exc:
            report.invalid.append({"file": str(path), "member": exc.member, "error": str(exc)})
            continue
        for bundle in bundles:
            with bundle:
                _import_one(client, bundle, path, chunk_size, report, restore_times)
    return report


def _import_one(client: AnalysisClient, bundle: Bundle, path: Path, chunk_size: int, report: ImportReport,
                restore_times: bool) -> None:
    try:
        manifest = bundle.validate()
    except BundleError as exc:
        report.invalid.append({"file": str(path), "bundle": bundle.name, "member": exc.member, "error": str(exc)})
        return
    analysis = manifest["analysis_header"]
    refused: list[Conflict] = []

    def conflict(exc: Conflict) -> None:
        refused.append(exc)
        report.conflicts.append({"file": str(path), "analysis": analysis, "error": exc.message,
                                 "details": exc.details})

    # The tail finalises the analysis, so it is held back (progress says "sent") and sent below only
    # once every other document of the bundle is stored.
    stored = NewlyStored()
    try:
        push_bundle(client, bundle, Progress(tail=True), lambda p: None, chunk_size, on_conflict=conflict,
                    restore_times=restore_times, stored=stored)
    except Conflict as exc:  # the header itself: a different analysis already has this uid
        conflict(exc)
        return
    except BundleError as exc:  # an attached file did not match the manifest: no tail, nothing finalised
        log.warning("analysis %s not finalised: %s", analysis, exc)
        report.invalid.append({"file": str(path), "bundle": bundle.name, "member": exc.member, "error": str(exc)})
        return
    if refused:
        log.warning("analysis %s imported in part (%d conflicts); its tail is not written", analysis, len(refused))
        report.incomplete.append({"file": str(path), "analysis": analysis,
                                  "error": "not every document was stored, so the analysis is left without "
                                           "its tail; fix the conflicts and import the bundle again"})
        return
    if bundle.tail is not None:
        try:
            send_tail(client, bundle, stored)
        except Conflict as exc:  # a different tail was stored meanwhile
            conflict(exc)
            return
    (report.imported if stored.new else report.already_stored).append(analysis)
