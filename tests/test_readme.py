"""The README's examples are true: its shell and Python blocks run against a service holding demo data.

A block preceded by a line ``<!-- not run: reason -->`` is skipped (installs,
production hosts and paths, commands that run until stopped); every other
```bash and ```python block must exit 0. The only edits made before running:
the service URL and port, the mirror's URL (a second service), the spool directory, and the placeholders HEADER_UID,
STREAM_UID, UID1 and UID2, which become uids of the demo data.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from serving import serve_factory  # noqa: F401 - the fixture

README = Path(__file__).resolve().parent.parent / "README.md"
NOT_RUN = re.compile(r"<!-- not run: [^>]+ -->\n$")
#: Few blocks may be exempt; a README that stops being tested must show up here.
MAX_NOT_RUN = 6


def _blocks(language: str) -> list[tuple[str, bool]]:
    """Every block of ``language`` in order, with whether it is marked not to be run."""
    text = README.read_text()
    return [(m.group(1), bool(NOT_RUN.search(text[:m.start()])))
            for m in re.finditer(rf"```{language}\n(.*?)```", text, re.S)]


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    return next(b for b in blocks if "AnalysisClient" in b)


def test_readme_example_runs(service):
    """The example records an analysis of 50 values; only the port is pointed at the test service."""
    code = _example()
    assert '"port": 8999' in code
    code = code.replace('"port": 8999', f'"port": {service.port}')
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("50 records stored for")
    assert service.count("data_reference") == 50
    assert service.database.analysis_tail.find_one()["exit_status"] == "success"


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analysisstore.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


def _get(url: str, **params: str) -> list[dict]:
    return requests.get(url, params=params, timeout=30).json()["items"]


def _placeholders(url: str, tmp_path: Path) -> dict[str, str]:
    analyses = _get(f"{url}/api/v1/analysis_header", **{"provenance.analysis_name": "uvvis_absorbance"})
    header = analyses[0]["uid"]
    stream = _get(f"{url}/api/v1/data_reference_header", analysis_header=header)[0]["uid"]
    return {"http://127.0.0.1:8999": url, '"port": 8999': f'"port": {url.rsplit(":", 1)[1]}',
            "/data/spool": str(tmp_path / "spool"), "HEADER_UID": header, "STREAM_UID": stream,
            "UID1": analyses[1]["uid"], "UID2": analyses[2]["uid"]}


def _substitute(code: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        code = code.replace(old, new)
    return code


def _acquisitions(url: str) -> int:
    body = requests.get(f"{url}/api/v1/analysis_header", timeout=30, params={
        "provenance.analysis_name": "acquisition", "include_count": "true", "limit": 1}).json()
    return body["meta"]["count"]


@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_every_readme_block_runs_on_demo_data(serve_factory, tmp_path):  # noqa: F811
    """Every unmarked bash/python block exits 0 against `serve` + `demo`; no query example comes back empty."""
    server = serve_factory("--data-dir", str(tmp_path / "db"))
    mirror = serve_factory("--data-dir", str(tmp_path / "mirror-db"))  # the local mirror of "A local mirror"
    server.wait_ready()
    mirror.wait_ready()
    env = {**os.environ, "ASST_URL": server.url, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("ASST_TOKEN", None)
    demo = _cli("demo", "--url", server.url, env=env, cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert f"{server.url}/#/analysis/" in demo.stdout and f"--url {server.url}" in demo.stdout
    acquisitions = _acquisitions(server.url)
    table = {**_placeholders(server.url, tmp_path), "http://127.0.0.1:8998": mirror.url}

    shell, python = _blocks("bash"), _blocks("python")
    skipped = [code for code, not_run in shell + python if not_run]
    assert 0 < len(skipped) <= MAX_NOT_RUN
    # The Python blocks first: they make the spool directory the shell blocks then sync (as a script would).
    program = _substitute("".join(code for code, not_run in python if not not_run), table)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300,
                            env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for code, not_run in shell:
        if not_run:
            continue
        script = _substitute(code, table).replace("curl ", "curl -fsS -w '\\n' ")  # HTTP errors fail; one reply a line
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                                timeout=300, env=env, cwd=tmp_path)
        assert result.returncode == 0, f"{code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        for line in result.stdout.splitlines():
            if line.startswith("{"):
                assert json.loads(line).get("items", [None]) != [], f"an example finds nothing:\n{code}"
    assert _acquisitions(server.url) == acquisitions  # the README's second `demo` added nothing
    assert server.terminate()[0] == 0


def test_readme_token_can_do_what_the_readme_does_next(start_service, tmp_path):
    """The README's `token create` line makes a token that may run `status` and the record example's `find`."""
    from analysisstore.client import AnalysisClient
    from analysisstore.config import TokenEntry

    line = next(line for line in README.read_text().splitlines() if line.startswith("analysisstore token create"))
    made = _cli(*line.split("#")[0].split()[1:], env=dict(os.environ), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    token = re.search(r"token: (\S+)", made.stdout).group(1)
    sha = re.search(r"sha256: (\S+)", made.stdout).group(1)
    scopes = frozenset(re.search(r"scopes: \[(.*)\]", made.stdout).group(1).split(", "))
    service = start_service(require_auth=True, tokens=(TokenEntry("beamline", sha, scopes),))
    client = AnalysisClient({"url": service.url, "token": token, "retries": 0})
    header = client.insert_analysis_header(provenance={"analysis_name": "normalise"})
    assert client.status()["counts"]["analysis_header"] >= 0
    assert [h.uid for h in client.find_analysis_header(uid=header)] == [header]
