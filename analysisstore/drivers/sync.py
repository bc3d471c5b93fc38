"""The sync driver: deliver finished bundles from a spool directory exactly once.

``RUNS_FINISHED/<bundle>`` → pushed in order through the client, progress
saved atomically after every step → ``RUNS_SYNCED/<bundle>`` (or a ``.zip``).
A bundle that cannot be delivered because it is broken or refused is moved
to ``RUNS_QUARANTINED/`` with its error; an outage of the service only
delays things. Killed at any instant and restarted, the driver resumes from
the saved progress; the service's idempotency by uid makes the step that was
in flight harmless to repeat.

The driver does not retry on top of the client: a bundle the service cannot
take now is deferred at once (the client's retry policy has run), the rest
of the pass is deferred without trying, and the next pass is the retry.
"""
from __future__ import annotations

import logging
import shutil
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import ujson
from tqdm import tqdm

from ..client import TRANSIENT_ERRORS, AnalysisClient, ServiceError
from ..client.bundle import Bundle, BundleError, write_atomic, zip_bundle
from ..client.spool import ACTIVE, FINISHED, QUARANTINED, SYNCED, AbandonedBundle, Spool, is_spool
from . import ThreadClients
from .push import Progress, load_progress, push_bundle, save_progress

__all__ = ["Syncer", "SyncReport", "BundleOutcome", "NotASpool"]

log = logging.getLogger(__name__)

STATE = ".sync"


class NotASpool(FileNotFoundError):
    """The directory given to the syncer is not a spool (a mistyped path must not become a new, empty one)."""


@dataclass
class BundleOutcome:
    """What happened to one bundle in a pass: ``synced``, ``deferred`` or ``quarantined``, and why."""

    name: str
    outcome: str
    detail: str = ""
    unreachable: bool = False  # deferred because the service could not take anything now


@dataclass
class SyncReport:
    """What one pass did, by bundle name."""

    synced: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # the service was unreachable: try again later
    quarantined: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.deferred and not self.quarantined


class Syncer:
    """Delivers the bundles under ``root`` through clients made by ``client_factory`` (one per worker)."""

    def __init__(self, root: Path | str, client_factory: Callable[[], AnalysisClient], *,
                 concurrency: int = 2, chunk_size: int = 2_000, max_attempts: int = 3, zip_synced: bool = False,
                 progress_bar: bool | None = None, create: bool = False,
                 on_bundle: Callable[[BundleOutcome], None] | None = None) -> None:
        """``create=True`` makes the spool tree if ``root`` is not a spool yet; otherwise that is NotASpool.

        ``on_bundle`` is called (one call at a time) with the outcome of every bundle of a pass.
        """
        self.root = Path(root)
        if not is_spool(self.root):
            if not create:
                raise NotASpool(f"{self.root} is not a spool directory (it has no {FINISHED}/ or {ACTIVE}/); "
                                "check the path, or create an empty spool there explicitly")
            log.info("creating the spool %s", self.root)
        self.client_factory = client_factory
        if concurrency < 1:  # 0 used to be taken as 1 without a word
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self.concurrency = concurrency
        self.chunk_size = chunk_size
        self.max_attempts = max_attempts
        self.zip_synced = zip_synced
        self.progress_bar = progress_bar
        self.on_bundle = on_bundle
        self._clients = ThreadClients(client_factory)
        for name in (ACTIVE, FINISHED, SYNCED, QUARANTINED, STATE):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    # ---- queue ----------------------------------------------------------------

    def pending(self) -> list[Path]:
        """Finished bundles, highest manifest priority first, then oldest analysis first."""
        def key(path: Path) -> tuple[int, float, str]:
            try:
                manifest = ujson.loads((path / "manifest.json").read_bytes())
                header = ujson.loads((path / "analysis_header.json").read_bytes())
                return (-int(manifest.get("priority", 0)), float(header.get("time", 0)), path.name)
            except (OSError, ValueError, TypeError, AttributeError):
                return (0, 0.0, path.name)  # broken bundles sort in and get quarantined with a reason
        bundles = [p for p in (self.root / FINISHED).iterdir() if p.is_dir() and not p.name.startswith(".")]
        return sorted(bundles, key=key)

    def run_once(self) -> SyncReport:
        """One pass over every finished bundle."""
        report = SyncReport()
        bundles = self.pending()
        if not bundles:
            return report
        total = sum(self._record_count(b) for b in bundles)
        disable = None if self.progress_bar is None else not self.progress_bar  # None: only on a terminal
        lock = threading.Lock()
        service_down = threading.Event()

        def deliver(path: Path, advance: Callable[[int], None]) -> BundleOutcome:
            if service_down.is_set():  # one bundle already spent the client's retries: do not hammer
                outcome = BundleOutcome(path.name, "deferred", "not tried: the service is not reachable",
                                        unreachable=True)
            else:
                outcome = self._sync(path, advance)
                if outcome.unreachable:
                    service_down.set()
            with lock:
                getattr(report, outcome.outcome).append(outcome.name)
                if self.on_bundle is not None:
                    self.on_bundle(outcome)
            return outcome

        with tqdm(total=total, unit="rec", desc="sync", disable=disable) as bar:
            def advance(n: int) -> None:
                with lock:
                    bar.update(n)

            # The first bundle goes alone: if the service is down, only it spends the client's retries.
            deliver(bundles[0], advance)
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sync") as pool:
                list(pool.map(lambda b: deliver(b, advance), bundles[1:]))
        return report

    def watch(self, interval: float = 30.0, stop: threading.Event | None = None) -> None:
        """Pass after pass until ``stop`` is set (or forever)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            report = self.run_once()
            if report.synced or report.deferred or report.quarantined:
                log.info("sync pass: %d synced, %d deferred, %d quarantined",
                         len(report.synced), len(report.deferred), len(report.quarantined))
            stop.wait(interval)

    # ---- bundles a script left behind ---------------------------------------------

    def abandoned(self, older_than: float) -> list[AbandonedBundle]:
        """Bundles in RUNS_ACTIVE nothing has written to for ``older_than`` seconds (their script died)."""
        return Spool(self.root).abandoned(older_than)

    def finish_abandoned(self, older_than: float) -> tuple[list[str], dict[str, str]]:
        """Close each abandoned bundle with an ``abort`` tail and queue it; (closed names, errors by name)."""
        spool, closed, errors = Spool(self.root), [], {}
        for bundle in spool.abandoned(older_than):
            try:
                spool.close_abandoned(bundle)
                closed.append(bundle.name)
            except (BundleError, OSError) as exc:
                log.error("cannot close abandoned bundle %s: %s", bundle.name, exc)
                errors[bundle.name] = str(exc)
        return closed, errors

    # ---- one bundle -------------------------------------------------------------

    def _progress_path(self, name: str) -> Path:
        return self.root / STATE / f"{name}.progress.json"

    @staticmethod
    def _record_count(path: Path) -> int:
        try:
            return sum(ujson.loads((path / "manifest.json").read_bytes())["streams"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return 0

    def sync_bundle(self, path: Path, on_records: Callable[[int], None] = lambda n: None) -> str:
        """Deliver one bundle: 'synced', 'deferred' (the service cannot take it now) or 'quarantined'."""
        return self._sync(path, on_records).outcome

    def _sync(self, path: Path, on_records: Callable[[int], None]) -> BundleOutcome:
        name = path.name
        if self._already_synced(name):
            self._finish(path)  # a previous run stopped between archiving and cleaning up
            return BundleOutcome(name, "synced", self._synced_place(name))
        progress_path = self._progress_path(name)
        progress = load_progress(progress_path)
        try:
            with Bundle(path) as bundle:
                bundle.validate()
                push_bundle(self._clients.get(), bundle, progress, lambda p: save_progress(progress_path, p),
                            self.chunk_size, on_records)
            self._finish(path)
            log.info("synced %s", name)
            return BundleOutcome(name, "synced", self._synced_place(name))
        except BundleError as exc:
            return self._quarantine(path, progress, f"corrupt bundle: {exc}", exc.member)
        except TRANSIENT_ERRORS as exc:
            # The client has retried under its policy already; the next pass is the retry.
            progress.last_error = str(exc)
            save_progress(progress_path, progress)
            log.warning("deferring %s: the service is not reachable (%s)", name, exc)
            return BundleOutcome(name, "deferred", str(exc), unreachable=True)
        except ServiceError as exc:
            progress.attempts += 1
            progress.last_error = str(exc)
            save_progress(progress_path, progress)
            if progress.attempts >= self.max_attempts:
                return self._quarantine(path, progress, f"refused by the service: {exc}", None)
            log.warning("%s refused (attempt %d of %d): %s", name, progress.attempts, self.max_attempts, exc)
            return BundleOutcome(name, "deferred", f"refused (attempt {progress.attempts} of "
                                 f"{self.max_attempts}): {exc}")

    def _synced_place(self, name: str) -> str:
        return str(self.root / SYNCED / (f"{name}.zip" if self.zip_synced else name))

    def _already_synced(self, name: str) -> bool:
        return (self.root / SYNCED / name).exists() or (self.root / SYNCED / f"{name}.zip").exists()

    def _finish(self, path: Path) -> None:
        """Move a delivered bundle to RUNS_SYNCED (zipped if asked), then forget its progress."""
        name = path.name
        if self.zip_synced:
            target = self.root / SYNCED / f"{name}.zip"
            if not target.exists():
                zip_bundle(path, target)
            shutil.rmtree(path, ignore_errors=True)
        elif not (self.root / SYNCED / name).exists():
            path.rename(self.root / SYNCED / name)
        else:
            shutil.rmtree(path, ignore_errors=True)
        self._forget_progress(name)

    def _forget_progress(self, name: str) -> None:
        """Remove a bundle's progress file, and any temporary copy a run killed mid-save left behind."""
        progress = self._progress_path(name)
        progress.unlink(missing_ok=True)
        for leftover in progress.parent.glob(f".{progress.name}.tmp-*"):
            leftover.unlink(missing_ok=True)

    def _quarantine(self, path: Path, progress: Progress, message: str, member: str | None) -> BundleOutcome:
        name = path.name
        log.error("quarantining %s: %s", name, message)
        target = self.root / QUARANTINED / name
        if target.exists():
            shutil.rmtree(target)
        path.rename(target)
        record = {"bundle": name, "error": message, "member": member, "attempts": progress.attempts,
                  "time": time.time()}
        write_atomic(self.root / QUARANTINED / f"{name}.error.json", ujson.dumps(record, indent=2).encode())
        self._forget_progress(name)
        return BundleOutcome(name, "quarantined", message)

    # ---- sending a bundle back ---------------------------------------------------

    def reset(self, name: str) -> Path:
        """Move a synced (or quarantined) bundle back to RUNS_FINISHED so the next pass sends it again."""
        target = self.root / FINISHED / name
        if target.exists():
            raise FileExistsError(f"{target} already exists")
        for source in (self.root / SYNCED / name, self.root / QUARANTINED / name):
            if source.is_dir():
                source.rename(target)
                (self.root / QUARANTINED / f"{name}.error.json").unlink(missing_ok=True)
                break
        else:
            archive = self.root / SYNCED / f"{name}.zip"
            if not archive.exists():
                raise FileNotFoundError(f"no synced or quarantined bundle named {name!r} under {self.root}")
            tmp = self.root / FINISHED / f".{name}.tmp"
            with zipfile.ZipFile(archive) as handle:
                handle.extractall(tmp)
            tmp.rename(target)
            archive.unlink()
        self._progress_path(name).unlink(missing_ok=True)
        return target
