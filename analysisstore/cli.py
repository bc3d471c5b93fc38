"""The ``analysisstore`` command line."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ._version import __version__
from .config import ServiceConfig, default_data_dir

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analysisstore",
        description="A provenance store for scientific data analysis.",
    )
    parser.add_argument("--version", action="version", version=f"analysisstore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    serve = sub.add_parser(
        "serve",
        help="run the service",
        description=(
            "Run the analysisstore HTTP service. Without --mongo-uri it starts the embedded "
            "database (SecantusDB, installed with the 'embedded' extra) in --data-dir and stops it "
            "on exit; with --mongo-uri it uses that MongoDB instead."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8999, help="port to listen on (default: %(default)s)")
    serve.add_argument("--mongo-uri", default=None,
                       help="MongoDB URI, e.g. mongodb://db.example:27017 (default: the embedded database)")
    serve.add_argument("--database", default="analysisstore", help="database name (default: %(default)s)")
    serve.add_argument("--data-dir", type=Path, default=None,
                       help=f"embedded database directory (default: {default_data_dir()})")
    serve.add_argument("--stale-after", type=float, default=24.0, metavar="HOURS",
                       help="report an analysis without a tail as 'stale' after this many hours (default: 24)")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                       help="log verbosity (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "serve":
        from .server import serve  # server dependencies only for the commands that need them

        serve(ServiceConfig(
            host=args.host,
            port=args.port,
            mongo_uri=args.mongo_uri,
            database=args.database,
            data_dir=args.data_dir,
            stale_after_seconds=args.stale_after * 3600.0,
        ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
