"""The ``analysisstore`` command line."""
from __future__ import annotations

import argparse
import errno
import logging
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ._version import __version__
from .client.commands import DEFAULT_URL
from .contract.limits import MAX_BULK_ITEMS
from .config import add_setting_flags, default_data_dir, flags_given

if TYPE_CHECKING:
    import subprocess

    from .client import AnalysisClient
    from .drivers.sync import Syncer

__all__ = ["main", "build_parser", "service_url", "CommandFailed"]

#: Held (flock) by the service using an embedded database directory.
LOCK_FILE = "analysisstore.lock"


class CommandFailed(Exception):
    """An expected failure of a command: its message is the one line the user sees."""

    exit_code = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analysisstore",
        description="A provenance store for scientific data analysis.",
    )
    parser.add_argument("--version", action="version", version=f"analysisstore {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of a failure instead of a one-line explanation")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    serve = sub.add_parser(
        "serve",
        help="run the service",
        description=(
            "Run the analysisstore HTTP service. Without --mongo-uri it starts the embedded database "
            "(SecantusDB, installed with the 'embedded' extra) in --data-dir and stops it on exit; with "
            "--mongo-uri it uses that MongoDB. Settings come from defaults < a YAML config file (--config, "
            "$ASST_CONFIG, or ~/.config/analysisstore/config.yaml / /etc/analysisstore/config.yaml) < "
            "ASST_<SETTING> environment variables < these flags; --print-config shows the result."
        ),
    )
    serve.add_argument("--config", type=Path, help="YAML config file")
    serve.add_argument("--print-config", action="store_true", help="print the effective settings and exit")
    add_setting_flags(serve)
    serve.add_argument("--stale-after", dest="stale_after_seconds", type=_hours_unless_unit, metavar="HOURS",
                       help="the 0.x spelling of --stale-after-seconds, kept for scripts: a bare number is hours")

    token = sub.add_parser("token", help="make access tokens",
                           description="Token management. Tokens are stored hashed in the config file.")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION")
    token_sub.required = True
    create = token_sub.add_parser("create", help="print a new random token and the config lines for it")
    create.add_argument("--scope", action="append", choices=["read", "write", "restore"],
                        help="read, write and/or restore (repeatable; default: read). restore lets "
                             "`import` keep the original times of revisions and files")
    create.add_argument("--name", default="token", help="a name to recognise it by in the config")

    status = sub.add_parser("status", help="is a service answering? its version, database and counts")
    _add_service_options(status)
    _add_sync(sub)
    _add_archive(sub)
    _add_pull(sub)
    _add_prov(sub)
    _add_reproduce(sub)
    _add_analyze(sub)
    _add_close_stale(sub)
    from .upgrade import add_upgrade_parser

    add_upgrade_parser(sub)
    return parser


def _add_close_stale(sub: argparse._SubParsersAction) -> None:
    from .drivers.stale import age_argument

    close = sub.add_parser(
        "close-stale",
        help="give analyses left without a tail an 'abort' tail",
        description=("Find analyses that have no tail and wrote nothing (header, stream or record) for "
                     "--older-than, e.g. because their writer died, and finalise each with an 'abort' tail "
                     "carrying --reason. Try --dry-run first: it lists them and writes nothing."),
    )
    close.add_argument("--older-than", required=True, type=age_argument, metavar="AGE",
                       help="how long an analysis must have been quiet: a number and a unit, e.g. 90m, 24h, 7d")
    close.add_argument("--reason", required=True, help="why they are closed; stored in each tail")
    close.add_argument("--dry-run", action="store_true", help="only list what would be closed")
    _add_service_options(close)


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    analyze = sub.add_parser(
        "analyze",
        help="run an analysis on every input matching a query",
        description=("Run the analysis NAME (uvvis_absorbance, echem_stability, icpms_calibration) on every "
                     "analysis matching the --where lookups, e.g. --where technique_name=UVVIS --where "
                     "provenance.analysis_name=acquisition. Inputs already analysed with the same code and "
                     "parameters are skipped; failures are recorded as 'fail' tails with the reason."),
    )
    analyze.add_argument("name", metavar="NAME", help="the analysis to run")
    _add_where(analyze, "the input analyses")
    analyze.add_argument("--params", default="{}", help='parameters as JSON, e.g. \'{"smooth": 5}\'')
    analyze.add_argument("--follow", action="store_true",
                         help="keep running: analyse each new matching input as its tail arrives (exactly once "
                              "per input, across restarts); stop with Ctrl-C or SIGTERM")
    analyze.add_argument("--concurrency", type=_at_least_one, default=2,
                         help="analyses run at once, at least 1 (default: %(default)s)")
    analyze.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_service_options(analyze)

    demo = sub.add_parser(
        "demo",
        help="see the whole pipeline on synthetic data",
        description=("Ingest synthetic UV-Vis, electrochemistry and ICP-MS measurements as acquisition "
                     "analyses, run the shipped analyses on them, and print where to look. Uses the service "
                     "at --url; if none answers there, starts one (embedded database) and keeps it running "
                     "until Ctrl-C unless --stop-service."),
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed of the synthetic data")
    demo.add_argument("--stop-service", action="store_true", help="stop a service the demo started when done")
    _add_service_options(demo)


def service_url(text: str) -> str:
    """``--url`` as given → an http(s) URL; a bare ``HOST:PORT`` means http://HOST:PORT."""
    from urllib.parse import urlsplit

    url = text.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} has a port that is not a number; e.g. http://127.0.0.1:8999")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http(s) URL; e.g. http://127.0.0.1:8999")
    return url


def _add_service_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("ASST_URL", DEFAULT_URL), type=service_url,
                        help="the analysisstore service, e.g. http://host:8999 or host:8999 "
                             "(default: $ASST_URL, else %(default)s)")
    parser.add_argument("--token", default=os.environ.get("ASST_TOKEN"),
                        help="bearer token for the service (default: $ASST_TOKEN)")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log verbosity (default: %(default)s)")


def _add_where(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--where", action="append", default=[], metavar="FIELD[__OP]=VALUE",
                        help=f"select {what} by a lookup, e.g. project=demo or time__gte=2026-01-01 (repeatable)")


def _add_sync(sub: argparse._SubParsersAction) -> None:
    sync = sub.add_parser(
        "sync",
        help="deliver spooled or finished analysis bundles to the service",
        description=(
            "Push every bundle in DIR/RUNS_FINISHED to the service (header, streams, records in chunks, "
            "tail), saving progress after each step, and move it to DIR/RUNS_SYNCED. Safe to kill and "
            "re-run: it resumes, and nothing is stored twice. Bundles that are corrupt or refused go to "
            "DIR/RUNS_QUARANTINED with an .error.json explaining why. A bundle the service cannot take "
            "now is deferred to the next run. DIR is a client's spool_dir; a DIR that is not a spool is "
            "an error unless --create. Analyses whose script died offline stay in DIR/RUNS_ACTIVE: they "
            "are reported, and --finish-abandoned closes them with an 'abort' tail and sends them."
        ),
    )
    sync.add_argument("directory", type=Path, metavar="DIR", help="the spool directory (holding RUNS_FINISHED/)")
    sync.add_argument("--create", action="store_true", help="make DIR an empty spool if it is not one yet")
    sync.add_argument("--list", action="store_true",
                      help="list the bundles of DIR by state (running, abandoned, finished, quarantined, "
                           "synced) and exit")
    sync.add_argument("--finish-abandoned", action="store_true",
                      help="close the analyses abandoned in RUNS_ACTIVE with an 'abort' tail, then send them")
    sync.add_argument("--abandoned-after", type=float, default=24.0, metavar="HOURS",
                      help="a bundle in RUNS_ACTIVE unwritten for this long is abandoned (default: %(default)s)")
    sync.add_argument("--watch", action="store_true", help="keep running, one pass every --interval seconds")
    sync.add_argument("--interval", type=float, default=30.0, help="seconds between passes with --watch")
    sync.add_argument("--concurrency", type=_at_least_one, default=2,
                      help="bundles pushed at once, at least 1 (default: %(default)s)")
    sync.add_argument("--chunk-size", type=int, default=2_000,
                      help=f"records per request (default: %(default)s; at most {MAX_BULK_ITEMS})")
    sync.add_argument("--max-attempts", type=int, default=3,
                      help="passes a refused bundle gets before quarantine (default: %(default)s)")
    sync.add_argument("--zip", action="store_true", help="keep synced bundles as .zip archives")
    sync.add_argument("--reset", "--unsync", dest="reset", metavar="NAME",
                      help="move the synced or quarantined bundle NAME back to RUNS_FINISHED, then exit")
    sync.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_service_options(sync)


def _add_archive(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser(
        "export",
        help="write analyses to bundle .zip archives",
        description=("Export analyses (by uid, or every analysis matching --where lookups) as bundle "
                     "archives: one OUT/<uid>.zip each, or all in the single file OUT with --one-file."),
    )
    export.add_argument("uids", nargs="*", metavar="UID", help="analysis_header uids to export")
    _add_where(export, "analyses")
    export.add_argument("-o", "--out", type=Path, required=True, help="output directory (or .zip with --one-file)")
    export.add_argument("--one-file", action="store_true", help="one .zip holding every exported analysis")
    _add_service_options(export)

    imp = sub.add_parser(
        "import",
        help="load bundle archives into the service",
        description=("Import bundle archives or directories. Importing twice changes nothing: each analysis is "
                     "counted as imported (something new was stored) or already stored (nothing new); a uid that "
                     "is already stored with different content is reported and left as it is. Revisions and files "
                     "keep their original times, which needs a token with the restore scope when the service "
                     "uses tokens."),
    )
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE", help="bundle .zip files or directories")
    imp.add_argument("--new-file-times", action="store_true",
                     help="let the service stamp attached files with the time it stores them (for a token "
                          "without the restore scope; revisions always keep their times)")
    _add_service_options(imp)


def _add_pull(sub: argparse._SubParsersAction) -> None:
    pull = sub.add_parser(
        "pull",
        help="copy analyses from a remote service into a local one (a mirror), incrementally",
        description=("Copy every analysis (header, streams, records, tail) and every update of the service at "
                     "--from into the service at --url, through their HTTP APIs, in the order the remote "
                     "recorded them. The local service remembers how far it got per remote and filter, so the "
                     "next pull brings only what is new; killed and re-run, nothing is stored twice. A uid "
                     "stored locally with different content is a conflict: reported, never overwritten, and "
                     "the exit status is 1 after everything else was pulled."),
    )
    pull.add_argument("--from", dest="remote", required=True, type=service_url, metavar="REMOTE_URL",
                      help="the service to copy from")
    pull.add_argument("--from-token", default=os.environ.get("ASST_REMOTE_TOKEN"),
                      help="bearer token for the remote service (default: $ASST_REMOTE_TOKEN)")
    _add_where(pull, "the analyses to copy (with their streams, records and tails)")
    pull.add_argument("--dry-run", action="store_true",
                      help="only list what a pull would bring (counts per type) and the conflicts; write nothing")
    pull.add_argument("--watch", action="store_true", help="keep pulling, every --interval seconds")
    pull.add_argument("--interval", type=float, default=5.0, help="seconds between polls with --watch")
    pull.add_argument("--page-size", type=int, default=5_000,
                      help="feed positions per request, 1 to 5000 (default: %(default)s)")
    pull.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_service_options(pull)


def _run_pull(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .client import AnalysisClient, RetryPolicy
    from .drivers.mirror import Puller, RemoteUnreachable

    if not 1 <= args.page_size <= 5_000:
        raise CommandFailed("--page-size takes 1 to 5000")
    _require_service(args)
    remote = AnalysisClient({"url": args.remote, "token": args.from_token, "retries": RetryPolicy.interactive()})
    puller = Puller(remote, _client(args), args.remote, _lookups(args.where), page_size=args.page_size,
                    dry_run=args.dry_run)
    puller.load()  # the local service first: its failures name --url
    if not remote.connection_status():
        raise RemoteUnreachable(f"no analysisstore service answers at {args.remote} (--from); check the URL, "
                                "or pull later")
    bar = tqdm(unit="change", disable=args.no_progress, file=sys.stderr)

    def progress(position: int, last: int) -> None:
        bar.total = last
        bar.n = position
        bar.refresh()

    try:
        report = puller.pull(watch=args.watch, interval=args.interval, progress=progress)
    finally:
        bar.close()
    for line in report.lines():
        print(line)
    return 1 if report.conflicts else 0


def _add_prov(sub: argparse._SubParsersAction) -> None:
    prov = sub.add_parser(
        "prov",
        help="an analysis and everything it was derived from, as W3C PROV",
        description=("Write the W3C PROV document of one analysis and its ancestors (through provenance.inputs, "
                     "up to --depth links): analyses as activities, their results and streams as entities, "
                     "who ran them as agents. PROV-JSON by default; PROV-N or PROV-XML with --format."),
    )
    prov.add_argument("uid", metavar="UID", help="analysis_header uid")
    prov.add_argument("--depth", type=int, default=10, help="how many links to follow (default: 10, at most 100)")
    prov.add_argument("--format", choices=["json", "provn", "xml"], default="json", help="serialisation (default: json)")
    prov.add_argument("-o", "--out", type=Path, help="write to this file instead of standard output")
    _add_service_options(prov)


def _run_prov(args: argparse.Namespace) -> int:
    text = _client(args).prov(args.uid, depth=args.depth, format=args.format)
    if args.out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"PROV ({args.format}) of {args.uid} written to {args.out}")
    return 0


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    reproduce = sub.add_parser(
        "reproduce",
        help="re-run a stored analysis and say whether it gives the same answer",
        description=("Re-run the analysis UID with its class (a shipped one or one registered under the "
                     "'analysisstore.analyses' entry points) on its exact stored inputs and parameters, and "
                     "compare: code hash same or different, each output key identical, within tolerance "
                     "(numbers and numeric arrays: |new - stored| <= atol + rtol*|stored|) or different. "
                     "An analysis that failed is reproduced when the re-run fails with the same reason. "
                     "Nothing is written unless --record. Exit status: 0 reproduced; 1 not reproduced, or "
                     "nothing to compare (the analysis has no tail yet or was aborted) or its class is not "
                     "installed here; 2 bad flags; 3 no service; 4 the token is missing or too weak."),
    )
    reproduce.add_argument("uid", metavar="UID", help="analysis_header uid of the analysis to re-run")
    reproduce.add_argument("--rtol", type=_tolerance, default=1e-9,
                           help="relative tolerance, a finite number >= 0 (default: %(default)s)")
    reproduce.add_argument("--atol", type=_tolerance, default=0.0,
                           help="absolute tolerance, a finite number >= 0 (default: %(default)s)")
    reproduce.add_argument("--record", action="store_true",
                           help="store the reproduction as a new analysis with provenance.reproduces = UID")
    _add_service_options(reproduce)


def _run_reproduce(args: argparse.Namespace) -> int:
    from .drivers.reproduce import NothingToCompare, record_reproduction, reproduce

    client = _client(args)
    try:
        result, analysis = reproduce(client, args.uid, rtol=args.rtol, atol=args.atol)
    except NothingToCompare as exc:  # no tail yet, or aborted
        raise CommandFailed(str(exc)) from None
    except LookupError as exc:  # the analysis's class is not installed here
        raise SystemExit(f"analysisstore reproduce: {exc}") from None
    code = "same" if result.code_same else f"DIFFERENT (stored {result.stored_codehash}, now {result.current_codehash})"
    print(f"{result.analysis_name} {result.uid}: code hash {code}")
    if result.stored_status == "fail":
        print(f"  the stored analysis failed: {result.stored_reason or 'no reason recorded'}")
    if result.fresh_failure is not None:
        print(f"  the re-run fails: {result.fresh_failure}")
    for key in result.keys:
        print(f"  {key.stream}.{key.key}: {key.verdict}{' (' + key.detail + ')' if key.detail else ''}")
    for problem in result.problems:
        print(f"  {problem}")
    if result.reproduced:
        print("reproduced (the same failure)" if result.fresh_failure is not None else "reproduced")
    else:
        print("NOT reproduced")
    if args.record:
        if analysis is None:
            print("nothing recorded: the analysis could not be built from its stored parameters")
        else:
            uid, stored_now = record_reproduction(client, args.uid, analysis, result.fresh_failure)
            print(f"reproduction {'stored' if stored_now else 'already stored'} as analysis {uid}")
    return 0 if result.reproduced else 1


def _client(args: argparse.Namespace) -> "AnalysisClient":
    from .client import AnalysisClient, RetryPolicy

    # A person is waiting: "connection refused" fails at once instead of after the retries a script gets.
    return AnalysisClient({"url": args.url, "token": args.token, "retries": RetryPolicy.interactive()})


def _require_service(args: argparse.Namespace) -> None:
    """Fail at once when nothing answers at --url (the client's retries are for outages during the work)."""
    from .client import ServiceUnreachable

    if not _client(args).connection_status():
        raise ServiceUnreachable(f"no analysisstore service answered at {args.url}")


def _run_sync(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .drivers.sync import BundleOutcome, NotASpool, Syncer

    def show(outcome: BundleOutcome) -> None:
        if outcome.outcome == "synced":
            line = f"synced {outcome.name} -> {outcome.detail}"
        elif outcome.outcome == "quarantined":
            line = (f"quarantined {outcome.name}: {outcome.detail} "
                    f"(see {args.directory}/RUNS_QUARANTINED/{outcome.name}.error.json)")
        else:
            line = f"deferred {outcome.name}: {outcome.detail}"
        tqdm.write(line, file=sys.stdout)  # above the progress bar, not through it

    try:
        syncer = Syncer(args.directory, lambda: _client(args), concurrency=args.concurrency,
                        chunk_size=args.chunk_size, max_attempts=args.max_attempts, zip_synced=args.zip,
                        progress_bar=False if args.no_progress else None, create=args.create, on_bundle=show)
    except NotASpool as exc:
        print(f"analysisstore sync: {exc} (--create makes one)", file=sys.stderr)
        return 2
    if args.reset:
        print(f"moved back to {syncer.reset(args.reset)}")
        return 0
    older_than = args.abandoned_after * 3600.0
    if args.list:
        _list_spool(syncer, older_than)
        return 0
    if args.finish_abandoned:
        closed, errors = syncer.finish_abandoned(older_than)
        for name in closed:
            print(f"closed abandoned {name} with an abort tail; queued for sync")
        for name, error in errors.items():
            print(f"cannot close abandoned {name}: {error}")
    abandoned = syncer.abandoned(older_than)
    if abandoned:
        print(f"{len(abandoned)} abandoned bundles in RUNS_ACTIVE older than {args.abandoned_after:g} h "
              f"(oldest {abandoned[0].age / 3600:.1f} h): `analysisstore sync {args.directory} --list` shows "
              "them, --finish-abandoned closes and sends them")
    if args.watch:
        import signal
        import threading

        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        syncer.watch(args.interval, stop)
        return 0
    report = syncer.run_once()
    print(f"synced {len(report.synced)}, deferred {len(report.deferred)}, quarantined {len(report.quarantined)}")
    return 0 if report.ok else 1


def _list_spool(syncer: "Syncer", older_than: float) -> None:
    import json

    from .client.spool import ACTIVE, QUARANTINED, SYNCED

    abandoned = {b.name: b for b in syncer.abandoned(older_than)}
    active = sorted(p.name for p in (syncer.root / ACTIVE).iterdir() if p.is_dir())
    print(f"{ACTIVE}: {len(active)} ({len(abandoned)} abandoned)")
    for name in active:
        state = f"abandoned, unwritten for {abandoned[name].age / 3600:.1f} h" if name in abandoned else "running"
        print(f"  {name}  {state}")
    pending = syncer.pending()
    print(f"RUNS_FINISHED: {len(pending)} waiting to sync")
    for path in pending:
        print(f"  {path.name}")
    quarantined = sorted(p.name for p in (syncer.root / QUARANTINED).iterdir() if p.is_dir())
    print(f"{QUARANTINED}: {len(quarantined)}")
    for name in quarantined:
        try:
            error = json.loads((syncer.root / QUARANTINED / f"{name}.error.json").read_text())["error"]
        except (OSError, ValueError, KeyError, TypeError):
            error = "no error record"
        print(f"  {name}  {error}")
    synced = [p for p in (syncer.root / SYNCED).iterdir() if not p.name.startswith(".")]
    print(f"{SYNCED}: {len(synced)}")


def _run_export(args: argparse.Namespace) -> int:
    from .drivers.archive import export_analyses

    _require_service(args)
    client = _client(args)
    uids = list(args.uids)
    if args.where:
        uids += [d["uid"] for d in client.iter_lookup("analysis_header", _lookups(args.where), fields=["uid"])]
    if not uids:
        raise SystemExit("nothing to export: give uids or --where lookups that match")
    for path in export_analyses(client, uids, args.out, one_file=args.one_file):
        print(path)
    return 0


def _run_import(args: argparse.Namespace) -> int:
    from .drivers.archive import import_archives

    for path in args.files:
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "no such file or directory", str(path))
    _require_service(args)
    report = import_archives(_client(args), args.files, restore_times=not args.new_file_times)
    print(f"imported {len(report.imported)} analyses, {len(report.conflicts)} conflicts, "
          f"{len(report.invalid)} invalid, {len(report.already_stored)} already stored")
    if report.already_stored and not report.imported and report.ok:
        print("  nothing new: the service already held every document and file of these analyses")
    for conflict in report.conflicts:
        print(f"  conflict in {conflict['analysis']}: {conflict['error']}")
    for incomplete in report.incomplete:
        print(f"  incomplete {incomplete['analysis']}: stored in part, no tail written; fix the bundle and "
              "import it again")
    for invalid in report.invalid:
        print(f"  invalid {invalid['file']}: {invalid['error']}")
    return 0 if report.ok else 1


def _tolerance(text: str) -> float:
    """A comparison tolerance: a finite number, at least 0 (argparse turns the error into a usage error, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"a tolerance is a finite number of at least 0, not {text!r}")
    return value


def _at_least_one(text: str) -> int:
    """A count of things done at once: a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def _hours_unless_unit(text: str) -> str:
    """``--stale-after 24`` meant hours; a value with a unit (``90m``, ``2d``) is taken as it says."""
    return f"{text.strip()}h" if text.strip().replace(".", "", 1).isdigit() else text


def _run_serve(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config
    from .logs import configure_logging

    try:
        config = load_config(flags_given(args), args.config)
    except ConfigError as exc:
        print(f"analysisstore: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        width = max(len(key) for key, _, _ in config.describe())
        for key, value, source in config.describe():
            print(f"{key:<{width}}  {value:<40}  ({source})")
        return 0
    configure_logging(config.log_level, config.log_format, config.log_file)
    from .server import serve  # server dependencies only for the commands that need them

    _check_port_free(config.host, config.port)
    with _data_dir_lock(None if config.mongo_uri else (config.data_dir or default_data_dir())):
        serve(config)
    return 0


def _check_port_free(host: str, port: int) -> None:
    """Fail before the embedded database starts if the port is taken (the service binds it the same way)."""
    from tornado.netutil import bind_sockets

    if port == 0:
        return
    try:
        sockets = bind_sockets(port, host)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CommandFailed(f"the service did not start: port {port} on {host} is already in use (another "
                                "analysisstore service?); stop that program or choose another --port") from None
        raise
    for sock in sockets:
        sock.close()


@contextmanager
def _data_dir_lock(data_dir: Path | None) -> Iterator[None]:
    """Hold ``DATA_DIR/analysisstore.lock`` while serving: two services must never share one embedded database."""
    if data_dir is None or str(data_dir) == ":memory:":  # a private temporary store: nothing to share
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; the database's own lock is the guard
        yield
        return
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_path = data_dir / LOCK_FILE
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise CommandFailed(f"the service did not start: the data directory {data_dir} is in use by another "
                                f"analysisstore service (pid {holder}); stop it, or give this one its own --data-dir"
                                ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            lock.seek(0)
            lock.truncate()


def _run_token(args: argparse.Namespace) -> int:
    from .auth import digest, new_token

    token = new_token()
    scopes = sorted(set(args.scope or ["read"]))
    print(f"token: {token}")
    print("Give the token to its user (it is not stored anywhere); add this to the service's config file:")
    print("tokens:")
    print(f"  - name: {args.name}")
    print(f"    sha256: {digest(token)}")
    print(f"    scopes: [{', '.join(scopes)}]")
    return 0


def _run_status(args: argparse.Namespace) -> int:
    from .client import AnalysisClient

    status = AnalysisClient({"url": args.url, "token": args.token, "retries": 0}).status()
    print(f"analysisstore {status['version']} at {args.url}, database {status['database']!r}")
    for doc_type, count in status["counts"].items():
        print(f"  {doc_type:<24}{count:>12}")
    return 0


def _lookups(items: list[str]) -> dict[str, str]:
    lookups = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--where takes FIELD[__OP]=VALUE, got {item!r}")
        lookups[field] = value
    return lookups


def _run_analyze(args: argparse.Namespace) -> int:
    import json

    from .analyses import ANALYSES
    from .drivers.driver import run_batch

    if args.name not in ANALYSES:
        raise SystemExit(f"unknown analysis {args.name!r}; available: {', '.join(sorted(ANALYSES))}")
    try:
        params = json.loads(args.params)
    except ValueError as exc:
        raise SystemExit(f"--params is not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise SystemExit(f"--params must be a JSON object such as '{{\"smooth\": 5}}', got {args.params!r}")
    try:  # NaN and 1e400 (infinity) parse, but no stored document may hold them as parameters
        json.dumps(params, allow_nan=False)
    except ValueError:
        raise SystemExit(f"--params must hold finite numbers, got {args.params!r}") from None
    analysis = ANALYSES[args.name]
    try:
        analysis([], params)  # check the parameters once, before any input is read
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    _require_service(args)
    if args.follow:
        return _follow(args, analysis, params)
    report = run_batch(lambda: _client(args), analysis, _lookups(args.where), params,
                       concurrency=args.concurrency, progress_bar=False if args.no_progress else None)
    print(report.summary())
    for uid, error in report.errors.items():
        print(f"  failed {uid}: {error}")
    return 0 if not report.failed else 1


def _follow(args: argparse.Namespace, analysis: Any, params: dict[str, Any]) -> int:
    import signal
    import threading

    from .drivers.follow import follow

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def report(batch: Any) -> None:
        for uid in batch.done:
            print(f"analysed {uid}", flush=True)
        for uid in batch.failed:
            print(f"failed {uid}: {batch.errors.get(uid, '')}", flush=True)

    def ready() -> None:
        print(f"following new inputs for {analysis.analysis_name} (Ctrl-C to stop)", flush=True)

    worker = threading.Thread(target=follow, args=(lambda: _client(args), analysis, _lookups(args.where), params),
                              kwargs={"on_report": report, "on_ready": ready, "stop": stop}, daemon=True)
    worker.start()
    while worker.is_alive() and not stop.wait(0.5):  # the main thread stays free to take the signal
        pass
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    import subprocess
    from urllib.parse import urlparse

    from .demo import run_demo

    started = None
    if not _client(args).connection_status():
        if urlparse(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise CommandFailed(f"no analysisstore service answers at {args.url}; the demo starts one only on "
                                "this machine (--url http://127.0.0.1:PORT)")
        port = urlparse(args.url).port or 8999
        print(f"no service answers at {args.url}; starting `analysisstore serve --port {port}` (embedded database)")
        started = subprocess.Popen([sys.executable, "-m", "analysisstore.cli", "serve", "--port", str(port),
                                    "--log-level", "warning"])
        if not _wait_until_ready(args.url, started):
            raise SystemExit("the service did not start; run `analysisstore serve` yourself and retry")
    try:
        acquired, report = run_demo(lambda: _client(args), seed=args.seed)
        url = args.url
        print(f"\nacquisitions: {sum(len(v) for v in acquired.values())} (stored once; a re-run adds nothing); "
              f"analyses {report.summary()}")
        shown = [*report.done, *report.skipped]
        print(f"\nWhere to look:\n  in a browser: {url}/")
        for uid in shown:
            print(f"  {url}/#/analysis/{uid}")
        if shown:
            print(f"  as JSON: {url}/api/v1/analysis/{shown[0]}")
        print("\nQueries to try:")
        print(f"  curl '{url}/api/v1/analysis_header?project=demo&order_by=-time'")
        print(f"  curl '{url}/api/v1/analysis_header?provenance.analysis_name=uvvis_absorbance&fields=sample,uid'")
        print(f"  curl '{url}/api/v1/analysis_header?status=success&include_count=true'")
        print(f"  analysisstore status --url {url}")
        print(f"  analysisstore analyze uvvis_absorbance --url {url} --where technique_name=UVVIS "
              "--where provenance.analysis_name=acquisition --params '{\"smooth\": 9}'")
        print(f"  analysisstore export --url {url} --where project=demo -o exports/")
        if started is not None and not args.stop_service:
            print(f"\nthe service keeps running at {args.url}; press Ctrl-C to stop it")
            try:
                started.wait()
            except KeyboardInterrupt:
                pass
        return 0 if not report.failed else 1
    finally:
        if started is not None and started.poll() is None:
            started.terminate()
            started.wait(60)


def _wait_until_ready(url: str, process: "subprocess.Popen[bytes]", timeout: float = 60.0) -> bool:
    import time

    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.1)  # polling interval while the service starts
    return False


def main(argv: list[str] | None = None) -> int:
    """Run one command; an expected failure is one line on stderr and a non-zero exit (--debug: the traceback)."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("analysisstore: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place failures become a message and an exit code
        if args.debug:
            raise
        from .cli_errors import explain_failure

        message, code = explain_failure(exc, getattr(args, "url", None))
        print(f"analysisstore {args.command}: {message}", file=sys.stderr)
        return code


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return _run_serve(args)
    if args.command == "token":
        return _run_token(args)
    if args.command == "upgrade":
        from .upgrade import UpgradeFailed, run_upgrade

        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
        try:
            code, report = run_upgrade(args)
        except UpgradeFailed as exc:
            print(f"analysisstore: {exc}", file=sys.stderr)
            return exc.code
        print(report)
        return code
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "DEBUG":  # each retry's warning is noise: the failure is reported once, at the end
        logging.getLogger("urllib3").setLevel(logging.ERROR)
    if args.command == "status":
        return _run_status(args)
    if args.command == "sync":
        return _run_sync(args)
    if args.command == "analyze":
        return _run_analyze(args)
    if args.command == "demo":
        return _run_demo(args)
    if args.command == "export":
        return _run_export(args)
    if args.command == "import":
        return _run_import(args)
    if args.command == "close-stale":
        from .drivers.stale import run_close_stale

        return run_close_stale(args)
    if args.command == "pull":
        return _run_pull(args)
    if args.command == "prov":
        return _run_prov(args)
    if args.command == "reproduce":
        return _run_reproduce(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
