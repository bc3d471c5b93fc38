"""Prometheus metrics (prometheus_client: the reference implementation, kept by the Prometheus project).

One registry per application, so several apps in one process (tests) count
separately. With several worker processes the values live in the directory
named by ``PROMETHEUS_MULTIPROC_DIR`` (set by the server before forking) and
every worker serves the sum.
"""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["Metrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The service's counters and histograms."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry()
        owner = None if self.multiprocess else self.registry
        self.requests = Counter("analysisstore_requests_total", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=owner)
        self.latency = Histogram("analysisstore_request_duration_seconds", "HTTP request latency by route",
                                 ["route", "method"], registry=owner,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.inserted = Counter("analysisstore_documents_inserted_total", "Documents inserted, by type",
                                ["doc_type"], registry=owner)
        self.database_errors = Counter("analysisstore_database_errors_total",
                                       "Requests that failed because the database did not answer", registry=owner)
        if self.multiprocess:
            MultiProcessCollector(self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
