"""Prometheus metrics (prometheus_client: the reference implementation, kept by the Prometheus project).

One registry per application, so several apps in one process (tests) count
separately. With several worker processes each worker writes its values to
files in one directory, handed to :class:`Metrics` by the server, and every
worker serves the sum of all of them.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["Metrics", "CONTENT_TYPE", "MULTIPROCESS_ENV"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: The variable prometheus_client reads its multiprocess directory from.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _write_values_to(directory: Path) -> None:
    """Have this process's metric values kept in files in ``directory``, whenever prometheus_client was imported.

    prometheus_client picks in-memory or file-backed values once, when it is
    first imported, from the environment; a program that imported it before
    the directory was chosen (or forked after that) would count in memory,
    unseen by the other workers. So the choice is made here, explicitly; the
    variable stays set because the library opens its files by it.
    """
    os.environ[MULTIPROCESS_ENV] = str(directory)
    if values.ValueClass is values.MutexValue:
        log.debug("prometheus_client was imported before its multiprocess directory was set; switching it")
        values.ValueClass = values.MultiProcessValue()


class Metrics:
    """The service's counters and histograms.

    ``multiprocess_dir``: the directory every worker of one service writes
    its values to (None: a single process, values in this registry only).
    """

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        if multiprocess_dir is not None:
            _write_values_to(multiprocess_dir)
        owner = None if multiprocess_dir is not None else self.registry
        self.requests = Counter("analysisstore_requests_total", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=owner)
        self.latency = Histogram("analysisstore_request_duration_seconds", "HTTP request latency by route",
                                 ["route", "method"], registry=owner,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.inserted = Counter("analysisstore_documents_inserted_total", "Documents inserted, by type",
                                ["doc_type"], registry=owner)
        self.database_errors = Counter("analysisstore_database_errors_total",
                                       "Requests that failed because the database did not answer", registry=owner)
        if multiprocess_dir is not None:
            MultiProcessCollector(self.registry, path=str(multiprocess_dir))
        # The labelled children of each (route, method, status): looked up once, not on every request.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(route, method, str(status)), self.latency.labels(route, method))
            self._request_children[key] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
