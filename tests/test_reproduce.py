"""Reproduce a stored analysis: same code and inputs give 'reproduced'; changed parameters or code are caught."""
from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from analysisstore.analyses import UvvisAbsorbance
from analysisstore.client import AnalysisClient
from analysisstore.demo import acquire_uvvis
from analysisstore.drivers.driver import AnalysisDriver, AnalysisTask, load_input, write_analysis
from analysisstore.drivers.reproduce import DIFFERENT, IDENTICAL, WITHIN, compare, reproduce


class UvvisChangedCode(UvvisAbsorbance):
    """The same analysis name, from another module source: its code hash differs."""


@pytest.fixture
def stored(service: Any) -> dict[str, Any]:
    """An acquisition and its uvvis_absorbance analysis (smooth=3), stored through the client."""
    client = AnalysisClient(service.client_config)
    acquisition = acquire_uvvis(client, "film-1", 520.0, np.random.default_rng(3))
    analysis = UvvisAbsorbance([load_input(client, acquisition)], {"smooth": 3})
    analysis.run()
    write_analysis(client, analysis.export_analysis())
    return {"client": client, "service": service, "acquisition": acquisition, "uid": analysis.analysis_uuid}


def _cli(service: Any, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysisstore.cli", "reproduce", *args, "--url", service.url],
                          capture_output=True, text=True, timeout=120)


def test_same_code_and_inputs_reproduce_identically(stored: dict) -> None:
    """Re-running a stored analysis gives identical outputs, the same code hash, and exit status 0."""
    result, _ = reproduce(stored["client"], stored["uid"])
    assert result.code_same and result.reproduced and not result.problems
    assert {k.key for k in result.keys} >= {"absorbance_smooth", "edge_energy_ev"}
    assert {k.verdict for k in result.keys} == {IDENTICAL}
    run = _cli(stored["service"], stored["uid"])
    assert run.returncode == 0, run.stdout + run.stderr
    assert "code hash same" in run.stdout and run.stdout.strip().endswith("reproduced")


def test_a_changed_parameter_is_detected(stored: dict) -> None:
    """An analysis whose outputs came from smooth=7 but whose header says smooth=3: the smoothed keys differ."""
    client = stored["client"]
    actual = UvvisAbsorbance([load_input(client, stored["acquisition"])], {"smooth": 7})
    actual.run()
    docs = actual.export_analysis()
    claimed = UvvisAbsorbance([load_input(client, stored["acquisition"])], {"smooth": 3})
    docs[0][1]["provenance"]["analysis_params"] = claimed.analysis_params
    write_analysis(client, docs)
    result, _ = reproduce(client, actual.analysis_uuid)
    verdicts = {k.key: k.verdict for k in result.keys}
    assert verdicts["absorbance_smooth"] == DIFFERENT and verdicts["absorbance"] == IDENTICAL
    assert not result.reproduced
    run = _cli(stored["service"], actual.analysis_uuid)
    assert run.returncode == 1 and "absorbance_smooth: different" in run.stdout and "NOT reproduced" in run.stdout


def test_changed_code_is_detected_even_when_outputs_match(stored: dict) -> None:
    """The installed class's source differs from the one recorded: not reproduced, though every key is identical."""
    result, _ = reproduce(stored["client"], stored["uid"], classes={"uvvis_absorbance": UvvisChangedCode})
    assert not result.code_same and not result.reproduced
    assert {k.verdict for k in result.keys} == {IDENTICAL}


def test_record_stores_a_linked_reproduction(stored: dict) -> None:
    """--record stores a new analysis naming the original in provenance.reproduces; recording twice is one analysis."""
    for _ in range(2):
        run = _cli(stored["service"], stored["uid"], "--record")
        assert run.returncode == 0, run.stderr
    client = stored["client"]
    copies = client.find_analysis_header(**{"provenance.reproduces": stored["uid"]})
    assert len(copies) == 1 and copies[0]["uid"] != stored["uid"]
    assert client.get_analysis(copies[0]["uid"])["status"] == "success"


def test_unknown_analysis_class_is_a_clear_error(service: Any) -> None:
    """An analysis whose class is not installed: one line naming it, non-zero exit, no traceback."""
    client = AnalysisClient(service.client_config)
    header = client.insert_analysis_header(provenance={"analysis_name": "not_installed_here"})
    run = _cli(service, header)
    assert run.returncode != 0 and "not_installed_here" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("dtype, stored_value, fresh, verdict", [
    ("number", 1.0, 1.0, IDENTICAL), ("number", float("nan"), float("nan"), IDENTICAL),
    ("number", 1.0, 1.0 + 1e-12, WITHIN), ("number", 1.0, 1.001, DIFFERENT),
    ("array", [1.0, 2.0], [1.0, 2.0 + 1e-12], WITHIN), ("array", [1.0, 2.0], [1.0], DIFFERENT),
    ("integer", 3, 3, IDENTICAL), ("integer", 3, 4, DIFFERENT), ("string", "a", "b", DIFFERENT),
    ("array", ["a", "b"], ["a", "b"], IDENTICAL), ("number", True, 1.0, DIFFERENT)])
def test_tolerance_per_dtype(dtype: str, stored_value: Any, fresh: Any, verdict: str) -> None:
    """Numbers and numeric arrays compare within tolerance; everything else exactly."""
    assert compare(dtype, stored_value, fresh)[0] == verdict


def _failed_analysis(client: AnalysisClient, acquisition: str) -> str:
    """A uvvis_absorbance run with an even smoothing window: the driver records it with a 'fail' tail."""
    driver = AnalysisDriver(lambda: client, progress_bar=False)
    driver.submit(AnalysisTask(UvvisAbsorbance, [acquisition], {"smooth": 4}))
    report = driver.run()
    assert len(report.failed) == 1
    return report.failed[0]


def test_a_failed_analysis_that_fails_again_alike_is_reproduced(stored: dict) -> None:
    """The stored analysis failed: the re-run fails with the same reason, which is said in plain words (exit 0)."""
    uid = _failed_analysis(stored["client"], stored["acquisition"])
    result, _ = reproduce(stored["client"], uid)
    assert result.stored_status == "fail" and result.fresh_failure and "smoothing window" in result.fresh_failure
    assert result.reproduced and not result.keys and not result.problems
    run = _cli(stored["service"], uid)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "unexpected" not in run.stdout + run.stderr and "Traceback" not in run.stderr
    assert "the stored analysis failed" in run.stdout and "smoothing window" in run.stdout
    assert run.stdout.strip().endswith("reproduced (the same failure)")
    recorded = _cli(stored["service"], uid, "--record")
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    copies = stored["client"].find_analysis_header(**{"provenance.reproduces": uid})
    assert len(copies) == 1 and stored["client"].get_analysis(copies[0]["uid"])["status"] == "fail"


def test_a_failed_analysis_that_now_succeeds_is_not_reproduced(stored: dict) -> None:
    """The stored analysis failed, but the installed code now succeeds on its inputs: NOT reproduced (exit 1)."""
    uid = _failed_analysis(stored["client"], stored["acquisition"])

    class ForgivingUvvis(UvvisAbsorbance):
        """Takes an even window by rounding it up, where the recorded code refused it."""

        def calc_output(self) -> dict[str, list[dict[str, Any]]]:
            self.analysis_params = {**self.analysis_params, "smooth": self.analysis_params["smooth"] | 1}
            return super().calc_output()

    result, _ = reproduce(stored["client"], uid, classes={"uvvis_absorbance": ForgivingUvvis})
    assert result.fresh_failure is None and not result.reproduced
    assert any("the stored analysis failed" in p and "succeeds" in p for p in result.problems)


def test_a_running_analysis_has_nothing_to_compare(stored: dict) -> None:
    """An analysis without its tail (or aborted) has no final outputs: one line saying so, exit 1, no traceback."""
    client = stored["client"]
    header = client.insert_analysis_header(provenance={"analysis_name": "uvvis_absorbance",
                                                       "inputs": [stored["acquisition"]]})
    run = _cli(stored["service"], header)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr.count("\n") == 1 and "no tail" in run.stderr and "nothing to compare" in run.stderr
    client.insert_analysis_tail(header, exit_status="abort", reason="writer died")
    run = _cli(stored["service"], header)
    assert run.returncode == 1 and "aborted" in run.stderr and "writer died" in run.stderr
    assert "Traceback" not in run.stderr and "unexpected" not in run.stderr


@pytest.mark.parametrize("flag, value", [("--rtol", "-1"), ("--atol", "-0.5"), ("--rtol", "nan"),
                                         ("--atol", "inf"), ("--rtol", "abc")])
def test_a_bad_tolerance_is_a_usage_error(stored: dict, flag: str, value: str) -> None:
    """A negative, infinite or NaN tolerance is refused before anything runs: usage error, exit 2."""
    run = _cli(stored["service"], stored["uid"], flag, value)
    assert run.returncode == 2, run.stdout + run.stderr
    assert flag in run.stderr and "usage:" in run.stderr and run.stdout == ""
