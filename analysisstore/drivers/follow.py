"""Follow: run an analysis on every matching input as it is finished (an always-running analysis queue).

An input is ready when its tail says ``success``. The follower opens the
service's event stream of tails first, then analyses what already matches
(the catch-up), then each new input as its tail arrives. Analysis uids are
deterministic (name, parameters, inputs, code), and an input whose analysis
exists is skipped, so each input is analysed exactly once however often the
follower is stopped and restarted; a dropped event stream is resumed from
the last event, and a restart's catch-up covers whatever came while it was
down.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Mapping

from ..client import AnalysisClient, ServiceUnreachable
from ..analyses.base import BaseAnalysis
from .driver import DriverReport, run_batch

__all__ = ["follow"]

log = logging.getLogger(__name__)


def follow(client_factory: Callable[[], AnalysisClient], analysis: type[BaseAnalysis], lookups: Mapping[str, str],
           params: Mapping[str, Any] | None = None, *, on_report: Callable[[DriverReport], None] = lambda r: None,
           on_ready: Callable[[], None] = lambda: None, stop: threading.Event | None = None) -> None:
    """Run until ``stop`` is set (or forever), reporting each batch of work through ``on_report``."""
    client = client_factory()
    stop = stop or threading.Event()
    last_event: str | None = None
    caught_up = False

    def catch_up() -> None:
        nonlocal caught_up
        if not caught_up:  # once: a resumed stream already covers the gap
            on_report(run_batch(client_factory, analysis, lookups, params, progress_bar=False))
            caught_up = True
            on_ready()

    while not stop.is_set():
        events = client.events({"exit_status": "success"}, doc_type="analysis_tail", last_event_id=last_event,
                               on_open=catch_up)
        try:
            for event in events:
                last_event = event["id"]
                header_uid = event["document"]["analysis_header"]
                report = run_batch(client_factory, analysis, {**lookups, "uid": header_uid}, params, progress_bar=False)
                if report.done or report.failed:
                    on_report(report)
                if stop.is_set():
                    break
        except ServiceUnreachable as exc:
            if stop.wait(1.0):  # the client already retried; pause before resuming from the last event
                break
            log.warning("event stream interrupted (%s); resuming after event %s", exc, last_event)
        finally:
            events.close()
