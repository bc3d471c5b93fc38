"""The README's example script runs against a running service."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


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
