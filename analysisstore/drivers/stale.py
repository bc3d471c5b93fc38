"""``analysisstore close-stale``: finalise analyses that stopped without a tail.

An analysis whose writer died (and had no spool) stays ``running`` for ever.
This closes each one that has been quiet for a given time — no header,
stream or record written since — with an ``abort`` tail carrying the reason,
so it is finalised and its status says what happened. Quiet means by the
documents' own ``time``; an analysis still writing records is left alone.
"""
from __future__ import annotations

import argparse
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Iterator

from ..client import AnalysisClient, Conflict

__all__ = ["StaleAnalysis", "CloseReport", "parse_age", "age_argument", "find_stale", "close_stale", "run_close_stale"]

log = logging.getLogger(__name__)

_UNITS = {"s": 1.0, "m": 60.0, "h": 3_600.0, "d": 86_400.0, "w": 604_800.0}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
#: Written on every tail this command adds, so such tails can be found later.
CLOSED_BY = "analysisstore close-stale"


def parse_age(text: str) -> float:
    """``"90m"``, ``"24h"``, ``"7d"`` → seconds (units s, m, h, d, w; the unit is required)."""
    match = _AGE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an age: give a number and a unit, e.g. 90m, 24h, 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def age_argument(text: str) -> float:
    """``parse_age`` for argparse: a bad age is a usage error naming the option."""
    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass
class StaleAnalysis:
    """An analysis without a tail, and when it last wrote anything."""

    uid: str
    started: float
    last_activity: float


@dataclass
class CloseReport:
    """What close-stale found and did."""

    closed: list[StaleAnalysis] = field(default_factory=list)
    #: Finished by someone else between finding and closing (a tail appeared meanwhile).
    finished_meanwhile: list[str] = field(default_factory=list)


def _last_activity(client: AnalysisClient, uid: str, started: float) -> float:
    """The newest ``time`` of the analysis's header, streams and records."""
    latest = started
    for stream in client.find_data_reference_header(analysis_header=uid):
        latest = max(latest, float(stream["time"]))
        newest = client.find_data_reference(data_reference_header=stream["uid"], order_by="-time", limit=1)
        if newest:
            latest = max(latest, float(newest[0]["time"]))
    return latest


def find_stale(client: AnalysisClient, older_than: float, now: float | None = None) -> Iterator[StaleAnalysis]:
    """Analyses without a tail that wrote nothing in the last ``older_than`` seconds."""
    cutoff = (time.time() if now is None else now) - older_than
    for status in ("running", "stale"):  # both mean "no tail"; which one depends on the service's stale age
        lookups = {"status": status, "time__lte": repr(cutoff)}
        for header in client.iter_lookup("analysis_header", lookups, fields=["uid", "time"]):
            last = _last_activity(client, header["uid"], float(header["time"]))
            if last <= cutoff:
                yield StaleAnalysis(header["uid"], float(header["time"]), last)


def close_stale(client: AnalysisClient, older_than: float, reason: str, dry_run: bool = False) -> CloseReport:
    """Give every stale analysis an ``abort`` tail with ``reason`` (with ``dry_run``, only find them)."""
    report = CloseReport()
    for stale in list(find_stale(client, older_than)):
        if not dry_run:
            try:
                client.insert_analysis_tail(stale.uid, exit_status="abort", reason=reason, closed_by=CLOSED_BY)
            except Conflict:  # a tail arrived since the search: the analysis finished after all
                report.finished_meanwhile.append(stale.uid)
                continue
            log.info("closed stale analysis %s (last activity %s)", stale.uid, _when(stale.last_activity))
        report.closed.append(stale)
    return report


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def run_close_stale(args: argparse.Namespace) -> int:
    """The command: print what was (or, with --dry-run, would be) closed."""
    client = AnalysisClient({"url": args.url, "token": args.token})
    report = close_stale(client, args.older_than, args.reason, dry_run=args.dry_run)
    verb = "would close" if args.dry_run else "closed"
    for stale in report.closed:
        print(f"  {verb} {stale.uid} (started {_when(stale.started)}, last activity {_when(stale.last_activity)})")
    for uid in report.finished_meanwhile:
        print(f"  left {uid}: it got its tail meanwhile")
    print(f"{verb} {len(report.closed)} analyses without a tail and quiet for {args.older_than / 3600:g} hours"
          + (" (dry run: nothing written)" if args.dry_run else ""))
    return 0
