"""The analysis driver: a priority queue of analyses, run with bounded concurrency, written through the client.

Ties in priority are broken by submission order — the analyses themselves
are never compared. The queue holds descriptions (:class:`AnalysisTask`:
the analysis class, its input uids and parameters); each worker loads the
inputs of the task it takes, so loading runs ``concurrency`` at a time and
at most ``concurrency`` analyses' inputs are in memory, however long the
queue. The numerical work runs in worker threads (NumPy releases the GIL),
never on an event loop. Retrying transient store errors
is the client's job (its retry policy); the driver adds no retries of its
own unless asked (``retries``); an analysis whose ``calc_output`` raises is
recorded with a ``fail`` tail and the reason, never dropped. With a
``spool_dir`` client, results are spooled when the service is away.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from tqdm import tqdm

from ..client import TRANSIENT_ERRORS, AnalysisClient, Conflict
from . import ThreadClients
from ..analyses.base import AnalysisInput, BaseAnalysis

__all__ = ["AnalysisDriver", "AnalysisTask", "DriverReport", "IncompleteInput", "load_input", "stored_state",
           "write_analysis", "run_batch"]

log = logging.getLogger(__name__)


class IncompleteInput(RuntimeError):
    """An input was read with fewer records than the service counts for it; computing on it would be wrong."""


#: An input that could not be read whole now, but may be on a later try.
_UNREAD: tuple[type[Exception], ...] = (IncompleteInput, *TRANSIENT_ERRORS)


def load_input(client: AnalysisClient, header_uid: str) -> AnalysisInput:
    """An earlier analysis as input: its header, its streams by name, and their records in order.

    Every stream must arrive whole: as many records as the analysis view
    counts (at least as many while the input is still running), else
    :class:`IncompleteInput`. A stream cut short by the service raises
    ``IncompleteStream`` on its own.
    """
    view = client.get_analysis(header_uid)
    finished = view["status"] in ("success", "fail", "abort")
    streams, records = {}, {}
    for stream in view["streams"]:
        name = stream.get("name") or stream["uid"]
        streams[name] = dict(stream)
        records[name] = [dict(r) for r in client.iter_data_reference(data_reference_header=stream["uid"],
                                                                     order_by=["seq_num", "time"])]
        expected, got = stream.get("record_count"), len(records[name])
        if expected is not None and (got < expected or finished and got != expected):
            raise IncompleteInput(f"input {header_uid}, stream {name!r}: read {got} of its {expected} records; "
                                  "the read was incomplete")
    return AnalysisInput(dict(view["header"]), streams, records)


def stored_state(client: AnalysisClient, uid: str) -> tuple[dict[str, Any] | None, bool]:
    """The stored header of analysis ``uid`` (None if there is none) and whether it has its tail."""
    headers = client.find_analysis_header(uid=uid, limit=1)
    if not headers:
        return None, False
    return dict(headers[0]), bool(client.find_analysis_tail(analysis_header=uid, limit=1))


def write_analysis(client: AnalysisClient, docs: list[tuple[str, dict[str, Any]]], chunk_size: int = 2_000) -> None:
    """Write exported documents in order through the client's typed calls (so a spool can take them)."""
    clean = [(t, {k: v for k, v in d.items() if k != "_name"}) for t, d in docs]
    for doc_type, doc in clean:
        if doc_type == "analysis_header":
            client.insert_analysis_header(**doc)
        elif doc_type == "data_reference_header":
            client.insert_data_reference_header(**doc)
            records = [r for t, r in clean if t == "data_reference" and r["data_reference_header"] == doc["uid"]]
            client.insert_bulk_data_reference(doc["uid"], records, chunk_size=chunk_size)
        elif doc_type == "analysis_tail":
            client.insert_analysis_tail(**doc)


@dataclass
class AnalysisTask:
    """An analysis to run, described without its inputs: its class, the uids of its inputs, its parameters.

    The driver's worker that takes the task loads the inputs, builds the
    analysis and runs it. Unknown parameters are refused here, when queued.
    """

    analysis: type[BaseAnalysis]
    input_uids: Sequence[str]
    params: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        self.input_uids = [str(u) for u in self.input_uids]
        self.analysis.checked_params(self.params)

    @property
    def uid(self) -> str:
        """The uuid the analysis will have (see ``BaseAnalysis.uuid_for``)."""
        return self.analysis.uuid_for(self.input_uids, self.params)


@dataclass
class DriverReport:
    """Analysis uuids by outcome."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return f"done {len(self.done)}, skipped {len(self.skipped)}, failed {len(self.failed)}"


class AnalysisDriver:
    """Queue analyses with a priority; ``run()`` executes them, at most ``concurrency`` at a time."""

    def __init__(self, client_factory: Callable[[], AnalysisClient], *, concurrency: int = 1, retries: int = 0,
                 backoff: float = 0.5, skip_existing: bool = True, progress_bar: bool | None = None) -> None:
        self.client_factory = client_factory
        if concurrency < 1:  # 0 used to be taken as 1 without a word
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self.concurrency = concurrency
        self.retries = retries
        self.backoff = backoff
        self.skip_existing = skip_existing
        self.progress_bar = progress_bar
        self._queue: list[tuple[int, int]] = []  # (-priority, sequence): payloads live in _tasks
        self._tasks: dict[int, BaseAnalysis | AnalysisTask] = {}
        self._sequence = itertools.count()
        self._clients = ThreadClients(client_factory)

    def submit(self, analysis: BaseAnalysis | AnalysisTask, priority: int = 0) -> None:
        """Queue ``analysis``; higher priority runs first, equal priorities in submission order.

        Queue an :class:`AnalysisTask` rather than a built analysis when there
        are many: its inputs are loaded only when a worker starts it.
        """
        number = next(self._sequence)
        self._tasks[number] = analysis
        heapq.heappush(self._queue, (-priority, number))

    def __len__(self) -> int:
        return len(self._queue)

    def run(self) -> DriverReport:
        """Run everything queued; returns what happened to each analysis."""
        order = []
        while self._queue:
            _, number = heapq.heappop(self._queue)
            order.append(self._tasks.pop(number))
        report = DriverReport()
        lock = threading.Lock()
        disable = None if self.progress_bar is None else not self.progress_bar
        with tqdm(total=len(order), unit="analysis", desc="analyze", disable=disable) as bar, \
                ThreadPoolExecutor(self.concurrency, thread_name_prefix="analysis") as pool:
            for uid, outcome, error in pool.map(self._execute, order):
                with lock:
                    getattr(report, outcome).append(uid)
                    if error:
                        report.errors[uid] = error
                    bar.update(1)
        return report

    def _execute(self, task: BaseAnalysis | AnalysisTask) -> tuple[str, str, str | None]:
        uid = task.uid if isinstance(task, AnalysisTask) else task.analysis_uuid
        client = self._clients.get()
        header = None
        if self.skip_existing:
            header, finalized = stored_state(client, uid)
            if finalized:
                return uid, "skipped", None
        if isinstance(task, AnalysisTask):
            inputs = []
            for input_uid in task.input_uids:
                try:
                    inputs.append(_load_whole(client, input_uid, self.retries, self.backoff))
                except _UNREAD as exc:  # nothing is written: a later run tries again
                    log.warning("analysis %s of input %s not run: %s", task.analysis.analysis_name, input_uid, exc)
                    return uid, "failed", f"input {input_uid} could not be read whole: {exc}"
            analysis = task.analysis(inputs, task.params)
        else:
            analysis = task
        if header is not None:  # interrupted before its tail: finish it, re-sending is harmless
            log.info("completing interrupted analysis %s (header stored, no tail)", uid)
            analysis.adopt(header)
        try:
            analysis.run()
            docs, outcome, error = analysis.export_analysis(), "done", None
        except Exception as exc:  # noqa: BLE001 - any failure of the analysis is recorded, not raised
            reason = analysis.failure_reason(exc)
            log.warning("analysis %s (%s) failed: %s", analysis.analysis_name, uid, reason)
            docs, outcome, error = analysis.export_analysis("fail", reason), "failed", reason
        for attempt in range(self.retries + 1):
            try:
                write_analysis(client, docs)
                return uid, outcome, error
            except TRANSIENT_ERRORS as exc:
                if attempt == self.retries:
                    return uid, "failed", f"could not be stored: {exc}"
                time.sleep(self.backoff * (2 ** attempt) * random.uniform(0.5, 1.5))
            except Conflict as exc:  # e.g. an interrupted earlier run stored different documents under these uids
                log.warning("analysis %s (%s) conflicts with stored documents: %s", analysis.analysis_name, uid, exc)
                return uid, "failed", f"conflicts with documents already stored: {exc}"
        return uid, "failed", "could not be stored"


def run_batch(client_factory: Callable[[], AnalysisClient], analysis: type[BaseAnalysis],
              lookups: Mapping[str, str], params: Mapping[str, Any] | None = None, *, concurrency: int = 1,
              progress_bar: bool | None = None, retries: int = 0, backoff: float = 0.5) -> DriverReport:
    """Run ``analysis`` on every analysis matching ``lookups``, skipping inputs already analysed alike.

    "Already analysed" means finalized (it has a tail). An analysis whose
    header is stored but not its tail was interrupted: it is run again and
    completed (every document is re-sent; stored ones are "already stored").
    Inputs that cannot be read whole are reported failed and nothing is
    written for them, so a later run tries again.
    """
    client = client_factory()
    # Only descriptions are queued: each worker checks for a stored result and loads its input itself.
    driver = AnalysisDriver(client_factory, concurrency=concurrency, progress_bar=progress_bar, retries=retries,
                            backoff=backoff)
    inputs: Iterable[Any] = client.iter_lookup("analysis_header", lookups, fields=["uid", "provenance.analysis_name"])
    for header in inputs:
        if header.get("provenance", {}).get("analysis_name") == analysis.analysis_name:
            continue  # never feed an analysis its own results
        driver.submit(AnalysisTask(analysis, [header["uid"]], params))
    return driver.run()


def _load_whole(client: AnalysisClient, header_uid: str, retries: int, backoff: float) -> AnalysisInput:
    """load_input, retried with jittered backoff while the read comes back incomplete."""
    for attempt in range(retries + 1):
        try:
            return load_input(client, header_uid)
        except _UNREAD as exc:
            if attempt == retries:
                raise
            log.info("input %s incomplete (%s); retrying", header_uid, exc)
            time.sleep(backoff * (2 ** attempt) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")
