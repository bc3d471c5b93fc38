"""The command line fails honestly: one line on stderr saying what is wrong and what to do, a non-zero exit."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from analysisstore.auth import digest
from analysisstore.cli import build_parser
from analysisstore.client.bundle import BundleWriter, zip_bundle
from analysisstore.config import TokenEntry

from helpers import header_doc, record_doc, stream_doc, tail_doc
from serving import serve_factory  # noqa: F401 - the fixture

#: Every command must give up on a dead service within this many seconds (all run at once).
DEAD_SERVICE_SECONDS = 90  # about 2 s each on an idle machine; endless retries would exceed it


def _command(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ASST_URL", "ASST_TOKEN")}
    return subprocess.Popen([sys.executable, "-m", "analysisstore.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def _assert_one_line_failure(name: str, code: int, err: str, *expected: str) -> None:
    assert code != 0, f"{name} exited 0: {err}"
    assert "Traceback" not in err, f"{name}:\n{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"{name} wrote {len(lines)} lines to stderr:\n{err}"
    for text in expected:
        assert text in lines[0], f"{name}: {text!r} not in {lines[0]!r}"


def _bundle_zip(tmp_path: Path) -> Path:
    header = header_doc()
    stream = stream_doc(header["uid"])
    writer = BundleWriter(tmp_path / "bundle")
    writer.write_header(header)
    writer.write_stream(stream)
    writer.append_records(stream["uid"], [record_doc(stream["uid"], i) for i in range(3)])
    writer.write_tail(tail_doc(header["uid"]))
    writer.finish()
    zip_bundle(tmp_path / "bundle", tmp_path / "bundle.zip")
    return tmp_path / "bundle.zip"


def _spool_with_bundle(tmp_path: Path) -> Path:
    spool = tmp_path / "spool"
    writer = BundleWriter(spool / "RUNS_FINISHED" / "one")
    writer.write_header(header_doc())
    writer.finish()
    return spool


def _service_commands(tmp_path: Path) -> dict[str, list[str]]:
    """One real invocation of each command that talks to a service (without --url)."""
    return {
        "status": ["status"],
        "sync": ["sync", str(_spool_with_bundle(tmp_path))],
        "analyze": ["analyze", "uvvis_absorbance", "--where", "project=demo", "--no-progress"],
        "export": ["export", "some-uid", "-o", str(tmp_path / "out")],
        "import": ["import", str(_bundle_zip(tmp_path))],
        "demo": ["demo", "--stop-service"],
        "prov": ["prov", "some-uid"],
        "reproduce": ["reproduce", "some-uid"],
        "close-stale": ["close-stale", "--older-than", "24h", "--reason", "forgotten"],
        # the local service (--url) is asked first, so its failures are the ones reported
        "pull": ["pull", "--from", "http://192.0.2.1:9"],
    }


def test_every_service_command_is_covered(tmp_path):
    """The dead-service tests cover every subcommand that takes --url (a new one must be added here)."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    with_url = {name for name, parser in sub.choices.items()
                if any("--url" in action.option_strings for action in parser._actions)}
    assert with_url == set(_service_commands(tmp_path))


def test_dead_service_gives_one_line_and_exit_code(tmp_path, closed_port):
    """Against a closed port every service command says no service answers, exits non-zero, in bounded time."""
    url = f"http://127.0.0.1:{closed_port}"
    commands = _service_commands(tmp_path)
    # demo starts a service of its own on this machine when none answers; elsewhere it must say so.
    commands["demo"] += ["--url", "http://192.0.2.1:9"]  # TEST-NET-1: never routed
    started = time.monotonic()
    running = {name: _command(*args, *([] if name == "demo" else ["--url", url]), cwd=tmp_path)
               for name, args in commands.items()}
    results = {name: _finish(process) for name, process in running.items()}
    assert time.monotonic() - started < DEAD_SERVICE_SECONDS
    sync_code, sync_out, sync_err = results.pop("sync")
    # sync defers (it is made to outlast outages) and says so, once per bundle, in its own log line.
    assert sync_code != 0 and "deferred 1" in sync_out and "Traceback" not in sync_err
    assert "not reachable" in sync_err and len(sync_err.strip().splitlines()) == 1
    for name, (code, _, err) in results.items():
        _assert_one_line_failure(name, code, err, "no analysisstore service answers")
    assert results["status"][0] == 3  # the documented exit code for "no service"


def test_missing_token_and_too_small_scope_are_explained(start_service, tmp_path):
    """401 and 403 become one line telling how to get a token with the needed scopes; exit code 4."""
    service = start_service(require_auth=True, tokens=(
        TokenEntry("writer", digest("write-only"), frozenset({"write"})),))
    commands = {name: args for name, args in _service_commands(tmp_path).items() if name != "sync"}
    for token, expected in ((None, "needs a token"), ("write-only", "token may not do this")):
        running = {name: _command(*args, "--url", service.url, *(["--token", token] if token else []), cwd=tmp_path)
                   for name, args in commands.items()}
        for name, process in running.items():
            code, _, err = _finish(process)
            if name == "import" and token:
                continue  # a write-only token may import: nothing to refuse
            _assert_one_line_failure(f"{name} (token {token})", code, err, expected, "--scope read --scope write")
            assert code == 4


@pytest.mark.parametrize("args, expected", [
    (["sync", "{tmp}", "--reset", "no-such-bundle"], "no synced or quarantined bundle named 'no-such-bundle'"),
    (["import", "{tmp}/missing.zip"], "missing.zip: no such file or directory"),
    (["status", "--url", "ftp://somewhere"], "not an http(s) URL"),
    (["analyze", "uvvis_absorbance", "--params", '{{"smooth": 1e400}}'], "--params must hold finite numbers"),
    (["analyze", "uvvis_absorbance", "--params", '{{"smooth": NaN}}'], "--params must hold finite numbers"),
    (["analyze", "uvvis_absorbance", "--params", "[5]"], "--params must be a JSON object"),
])
def test_local_mistakes_are_one_line(tmp_path, args, expected):
    """An unknown bundle name, a missing file or a bad URL: one line naming it, non-zero exit."""
    (tmp_path / "RUNS_FINISHED").mkdir()  # an (empty) spool, so sync gets as far as looking for the bundle
    code, _, err = _finish(_command(*[a.format(tmp=tmp_path) for a in args]))
    assert code != 0 and "Traceback" not in err
    assert expected in err.strip().splitlines()[-1]


@pytest.mark.parametrize("args", [
    ["analyze", "uvvis_absorbance", "--concurrency", "0"],
    ["analyze", "uvvis_absorbance", "--concurrency", "-3"],
    ["sync", "{tmp}", "--concurrency", "0"],
    ["reproduce", "some-uid", "--rtol", "-1"],
    ["reproduce", "some-uid", "--atol", "nan"],
])
def test_counts_and_tolerances_out_of_range_are_usage_errors(tmp_path, closed_port, args):
    """--concurrency 0 (once silently 1) and a negative or NaN tolerance are refused before any work: exit 2."""
    (tmp_path / "RUNS_FINISHED").mkdir()
    code, out, err = _finish(_command(*[a.format(tmp=tmp_path) for a in args], "--url",
                                      f"http://127.0.0.1:{closed_port}"))
    assert code == 2, err
    assert "Traceback" not in err and out == ""
    assert err.startswith("usage:") and f"argument {args[2]}" in err.strip().splitlines()[-1]


def test_url_without_scheme_means_http(service):
    """`status --url 127.0.0.1:PORT` reaches the service (http:// is implied)."""
    code, out, err = _finish(_command("status", "--url", f"127.0.0.1:{service.port}"))
    assert code == 0, err
    assert f"at http://127.0.0.1:{service.port}" in out


def test_debug_shows_the_traceback(closed_port):
    """--debug trades the one-line message for the full traceback."""
    code, _, err = _finish(_command("--debug", "status", "--url", f"http://127.0.0.1:{closed_port}"))
    assert code != 0
    assert "Traceback" in err and "ServiceUnreachable" in err


@pytest.mark.subprocess
def test_serve_on_a_port_in_use_fails_before_the_database_starts(tmp_path):
    """A taken port is reported in one line at once, and the embedded database is never started."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        code, _, err = _finish(_command("serve", "--port", str(port), "--data-dir", str(tmp_path / "db")))
    _assert_one_line_failure("serve", code, err, f"port {port}", "already in use")
    assert time.monotonic() - started < 15
    assert not (tmp_path / "db").exists()  # nothing was started in it, so nothing can be left running


@pytest.mark.subprocess
def test_serve_on_a_data_dir_in_use_fails_and_leaves_the_first_alone(serve_factory, tmp_path):  # noqa: F811
    """A second service on the same data directory stops at the lock, in one line; the first keeps serving."""
    data_dir = tmp_path / "db"
    first = serve_factory("--data-dir", str(data_dir))
    first.wait_ready()
    second = _command("serve", "--port", "0", "--data-dir", str(data_dir))
    code, _, err = _finish(second)
    _assert_one_line_failure("serve", code, err, str(data_dir), "in use by another analysisstore service",
                             f"pid {first.process.pid}")
    assert requests.get(f"{first.url}/readyz", timeout=10).status_code == 200
    code, output = first.terminate()
    assert code == 0, output
