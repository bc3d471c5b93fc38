"""`analysisstore analyze NAME --follow`: each new matching input analysed as it arrives, once, across restarts."""
from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import numpy as np

from analysisstore.analyses import UvvisAbsorbance
from analysisstore.client import AnalysisClient
from analysisstore.demo import acquire_uvvis

WHERE = ["--where", "technique_name=UVVIS", "--where", "provenance.analysis_name=acquisition"]


class Follower:
    """The real command as a child process; ready once it prints that it is following."""

    def __init__(self, service: Any) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "analysisstore.cli", "analyze", "uvvis_absorbance", "--follow", *WHERE,
             "--url", service.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.analysed: list[str] = []
        for line in self.process.stdout:  # catch-up results come before the ready line
            if line.startswith("analysed "):
                self.analysed.append(line.split()[1])
            if line.startswith("following new inputs"):
                return
        raise AssertionError(f"the follower stopped: {self.process.stderr.read()}")

    def next_analysed(self) -> str:
        for line in self.process.stdout:
            if line.startswith("analysed "):
                return line.split()[1]
        raise AssertionError(f"the follower stopped: {self.process.stderr.read()}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


def test_follow_analyses_each_new_input_once_across_restarts(service: Any) -> None:
    """Inputs already there, arriving while following, and arriving while stopped: each analysed exactly once."""
    client = AnalysisClient(service.client_config)
    rng = np.random.default_rng(5)
    before = acquire_uvvis(client, "film-a", 500.0, rng)
    follower = Follower(service)
    assert follower.analysed == [UvvisAbsorbance.uuid_for([before])]
    during = acquire_uvvis(client, "film-b", 560.0, rng)
    assert follower.next_analysed() == UvvisAbsorbance.uuid_for([during])
    assert follower.stop() == 0
    while_down = acquire_uvvis(client, "film-c", 610.0, rng)
    again = Follower(service)
    try:
        assert again.analysed == [UvvisAbsorbance.uuid_for([while_down])]
    finally:
        assert again.stop() == 0
    analyses = client.find_analysis_header(**{"provenance.analysis_name": "uvvis_absorbance"})
    assert sorted(a["provenance"]["inputs"][0] for a in analyses) == sorted([before, during, while_down])
    assert all(client.get_analysis(a["uid"])["status"] == "success" for a in analyses)
