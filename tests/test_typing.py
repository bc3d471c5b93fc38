"""The package and its client type-check (they ship ``py.typed``, so users' checkers read these hints)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _installed_layout(into: Path) -> Path:
    """The package as it is installed: ``client/`` and ``schemas/`` appear as ``analysisstore.client`` and
    ``analysisstore.schemas`` (setup.py maps them), which mypy cannot follow through an editable install."""
    package = into / "analysisstore"
    package.mkdir(parents=True)
    for entry in (ROOT / "analysisstore").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "client").symlink_to(ROOT / "client")
    (package / "schemas").symlink_to(ROOT / "schemas")
    return into


def test_mypy_finds_no_errors(tmp_path):
    tree = _installed_layout(tmp_path / "tree")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "cache"), "-p", "analysisstore"],
        cwd=tree, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
