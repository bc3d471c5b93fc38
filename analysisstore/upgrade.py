"""``analysisstore upgrade``: report (and with ``--apply`` fix) a database written by the 0.x service or an
older analysisstore (layout 1), bringing it to today's layout.

The database work lives in :mod:`analysisstore.store._upgrade`; this module
finds the database the way ``serve`` does (a URI, or the embedded database in
a data directory), prints the report, and words the one line ``serve`` exits
with when a database needs upgrading.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .config import ConfigError, ServiceConfig, default_data_dir, load_config
from .store._layout import ASIDE_COLLECTION, LAYOUT_VERSION, LayoutError, UpgradeRequired, check_layout

__all__ = ["add_upgrade_parser", "run_upgrade", "UpgradeFailed", "refusal_line", "check_layout", "LayoutError"]

log = logging.getLogger(__name__)


def _redacted(uri: str) -> str:
    """The URI without its password (the line goes to logs)."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", uri)


def upgrade_command(config: ServiceConfig) -> str:
    """The command that upgrades the database ``config`` points at."""
    if config.mongo_uri:
        target = f"--mongo-uri {_redacted(config.mongo_uri)}"
    else:
        target = f"--data-dir {config.data_dir or default_data_dir()}"
    return f"analysisstore upgrade {target} --database {config.database}"


def refusal_line(exc: LayoutError, config: ServiceConfig) -> str:
    """The one line ``serve`` exits with when the database's layout is not today's."""
    if isinstance(exc, UpgradeRequired):
        return (f"analysisstore: database {config.database!r} {exc}; run `{upgrade_command(config)}` to see what "
                "it needs, then again with --apply")
    return f"analysisstore: {exc}"


def add_upgrade_parser(sub: argparse._SubParsersAction) -> None:
    upgrade = sub.add_parser(
        "upgrade",
        help="bring a database written by analysisstore 0.x or an older analysisstore to today's layout",
        description=(
            "Check a database written by the NSLS-II analysisstore 0.x service (or an older analysisstore) "
            "and report what it needs: duplicate uids, values outside today's schemas, missing indexes, "
            f"documents to move to layout {LAYOUT_VERSION} (stored under their uid as _id). "
            "Nothing is changed unless --apply is given; with --apply every document taken out of the way "
            f"and the original of every changed document is kept in the '{ASIDE_COLLECTION}' collection. "
            "Running it again changes nothing; a run that stopped half-way is finished by running it again. "
            "Stop the service first. Without --mongo-uri it opens the "
            "embedded database in --data-dir, like `serve`. See docs/upgrade.md."
        ),
    )
    upgrade.add_argument("--mongo-uri", help="MongoDB URI (default: the embedded database in --data-dir)")
    upgrade.add_argument("--database", help="database name (default: analysisstore)")
    upgrade.add_argument("--data-dir", help=f"embedded database directory (default: {default_data_dir()})")
    upgrade.add_argument("--config", type=Path, help="YAML config file, as for `serve`")
    upgrade.add_argument("--apply", action="store_true", help="make the changes (default: only report)")
    upgrade.add_argument("--exit-status", action="append", default=[], metavar="OLD=NEW",
                         help="also map the 0.x exit_status OLD to NEW (success, fail or abort); repeatable")
    upgrade.add_argument("--json", action="store_true", help="print the report as JSON")


def _exit_status_map(items: list[str]) -> dict[str, str]:
    mapping = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or new not in ("success", "fail", "abort"):
            raise SystemExit(f"--exit-status takes OLD=NEW with NEW one of success, fail, abort; got {item!r}")
        mapping[old] = new
    return mapping


class UpgradeFailed(Exception):
    """The upgrade could not run or the database failed: one line for the user, and the exit code."""

    def __init__(self, line: str, code: int) -> None:
        super().__init__(line)
        self.code = code


def run_upgrade(args: argparse.Namespace) -> tuple[int, str]:
    """The ``upgrade`` command: its exit code (0 done or nothing to do, 1 not finished) and its report.

    Raises :class:`UpgradeFailed` (code 1 when the database failed, 2 on bad setup) with one line to show.
    """
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    from .embedded import EmbeddedDatabaseError, EmbeddedMongo
    from .store._upgrade import apply_plan, plan_upgrade

    flags = {k: getattr(args, k) for k in ("mongo_uri", "database", "data_dir") if getattr(args, k) is not None}
    try:
        config = load_config(flags, args.config)
    except ConfigError as exc:
        raise UpgradeFailed(f"configuration error: {exc}", 2) from None
    statuses = _exit_status_map(args.exit_status)
    with ExitStack() as stack:
        uri = config.mongo_uri
        if not uri:
            data_dir = Path(config.data_dir or default_data_dir())
            if not data_dir.is_dir():
                raise UpgradeFailed(f"no embedded database in {data_dir}; give --data-dir or --mongo-uri", 2)
            try:
                uri = stack.enter_context(EmbeddedMongo(data_dir)).uri
            except EmbeddedDatabaseError as exc:
                raise UpgradeFailed(str(exc).splitlines()[0], 2) from None
        client = stack.enter_context(MongoClient(uri, serverSelectionTimeoutMS=config.db_timeout_ms,
                                                 appname="analysisstore-upgrade", document_class=dict))
        db = client[config.database]
        try:
            client.admin.command("ping")
            plan = plan_upgrade(db, statuses)
            after = None
            if args.apply and plan.change_count:
                apply_plan(db, plan)
                after = plan_upgrade(db, statuses)
        except LayoutError as exc:
            raise UpgradeFailed(str(exc), 2) from None
        except PyMongoError as exc:
            raise UpgradeFailed(f"the database at {_redacted(uri)} failed: {str(exc).splitlines()[0][:300]}",
                                1) from None
    report = _report(plan, after, applied=args.apply)
    text = json.dumps(report, indent=2, default=str) if args.json else _text(report)
    return (1 if after is not None and after.change_count else 0), text


def _report(plan: Any, after: Any, applied: bool) -> dict[str, Any]:
    changed = applied and plan.change_count > 0
    left = after if after is not None else plan
    return {
        "database": plan.database,
        "applied": changed,
        "dry_run": not applied,
        "layout_before": plan.layout_before,
        "layout_after": LAYOUT_VERSION if changed or plan.layout_before == LAYOUT_VERSION else plan.layout_before,
        "change_count": plan.change_count,
        "changes": [f.as_json() for f in plan.changes],
        "notices": [f.as_json() for f in left.notices],
        "still_needed": [f.as_json() for f in after.changes] if after is not None else [],
    }


def _line(finding: dict[str, Any]) -> str:
    uids = finding["uids"]
    shown = f"  [{', '.join(map(str, uids[:20]))}{', ...' if len(uids) > 20 else ''}]" if uids else ""
    return (f"  {finding['collection']:<22} {finding['action']:<10} {finding['count']:>7}  "
            f"{finding['check']}: {finding['detail']}{shown}")


def _text(report: dict[str, Any]) -> str:
    before = report["layout_before"]
    head = [f"database {report['database']!r}: layout version "
            f"{before if before is not None else 'none (0.x or older)'}; today's is {LAYOUT_VERSION}"]
    if not report["change_count"]:
        head.append("nothing to change: the database is in today's layout")
    elif report["dry_run"]:
        head.append(f"dry run, nothing changed. --apply would make {report['change_count']} changes:")
    else:
        head.append(f"applied {report['change_count']} changes (originals kept in '{ASIDE_COLLECTION}'):")
    head += [_line(f) for f in report["changes"]]
    if report["notices"]:
        head.append(f"left as they are ({sum(f['count'] for f in report['notices'])}; see docs/upgrade.md):")
        head += [_line(f) for f in report["notices"]]
    if report["still_needed"]:
        head.append("STILL NEEDED after applying (was the service stopped?):")
        head += [_line(f) for f in report["still_needed"]]
    return "\n".join(head)
