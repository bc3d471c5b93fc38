"""The analysis driver against the real service: identity, failures, batches, priorities, the demo."""
from __future__ import annotations

import subprocess
import sys
import threading
import uuid
import weakref
from typing import Any

import pytest

from analysisstore.analyses import UvvisAbsorbance
from analysisstore.client import AnalysisClient
from analysisstore.analyses.base import AnalysisInput, BaseAnalysis
from analysisstore.demo import acquire_uvvis
from analysisstore.drivers.driver import AnalysisDriver, AnalysisTask, load_input, run_batch


class Doubling(BaseAnalysis):
    """A cheap analysis: doubles every x of its input stream."""

    analysis_name = "doubling"
    default_params = {"factor": 2}
    output_keys = {"doubled": {"x": {"dtype": "number"}}}
    ran: list[str] = []

    def calc_output(self) -> dict[str, list[dict[str, Any]]]:
        Doubling.ran.append(self.inputs[0].uid)
        return {"doubled": [{"x": row["x"] * self.analysis_params["factor"]} for row in self.inputs[0].data("raw")]}


class Exploding(Doubling):
    """Raises in calc_output."""

    analysis_name = "exploding"

    def calc_output(self) -> dict[str, list[dict[str, Any]]]:
        raise ValueError("detector file truncated")


class Incomparable(Doubling):
    """Comparing two of these is an error: the queue must never try."""

    analysis_name = "incomparable"

    def __lt__(self, other: object) -> bool:
        raise TypeError("analyses must not be compared")

    __gt__ = __le__ = __ge__ = __lt__


class Held(Doubling):
    """Counts its instances alive (each holds its loaded inputs) at once, and the threads that built them."""

    analysis_name = "held"
    lock = threading.Lock()
    alive = peak = 0
    built_in: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        with Held.lock:
            Held.alive += 1
            Held.peak = max(Held.peak, Held.alive)
            Held.built_in.append(threading.current_thread().name)
        weakref.finalize(self, Held._gone)

    @staticmethod
    def _gone() -> None:
        with Held.lock:
            Held.alive -= 1


@pytest.fixture
def client(service):
    return AnalysisClient(service.client_config)


def _raw(client, n=3, sample="S"):
    h = client.insert_analysis_header(provenance={"analysis_name": "acquisition"}, technique_name="RAW",
                                      sample=sample)
    s = client.insert_data_reference_header(h, data_keys={"x": {"dtype": "number"}}, name="raw")
    client.insert_bulk_data_reference(s, [{"data": {"x": float(i)}, "timestamps": {}, "seq_num": i} for i in range(n)])
    client.insert_analysis_tail(h, exit_status="success")
    return h


def _driver(service, **kw):
    return AnalysisDriver(lambda: AnalysisClient(service.client_config), progress_bar=False, **kw)


def test_uuid_is_deterministic_whatever_the_input_type():
    """Same name, params, inputs (UUID or str) and code → same uuid; other params → another."""
    u = uuid.uuid4()
    assert Doubling.uuid_for([u]) == Doubling.uuid_for([str(u)]) == Doubling.uuid_for([str(u)], {"factor": 2})
    assert Doubling.uuid_for([u], {"factor": 3}) != Doubling.uuid_for([u])
    assert Doubling.uuid_for([u]) != Exploding.uuid_for([u])
    a = Doubling([AnalysisInput({"uid": str(u)})])
    assert a.analysis_uuid == Doubling.uuid_for([u]) and len(a.analysis_codehash) == 64


def test_driver_writes_header_streams_records_tail_with_provenance(service, client):
    """A run leaves the whole analysis, linked to its input, with code hash and parameters."""
    raw = _raw(client)
    driver = _driver(service)
    analysis = Doubling([load_input(client, raw)], {"factor": 3})
    driver.submit(analysis)
    report = driver.run()
    assert report.done == [analysis.analysis_uuid]
    view = client.get_analysis(analysis.analysis_uuid)
    prov = view["header"].provenance
    assert prov["inputs"] == [raw] and prov["analysis_params"] == {"factor": 3}
    assert prov["analysis_codehash"] == analysis.analysis_codehash and view["header"].process_uuid == raw
    assert view["status"] == "success" and [s.record_count for s in view["streams"]] == [3]
    records = client.find_data_reference(data_reference_header=view["streams"][0].uid, order_by="seq_num")
    assert [r.data["x"] for r in records] == [0.0, 3.0, 6.0]


def test_failing_analysis_is_recorded_with_reason(service, client):
    """calc_output raising → header plus a 'fail' tail carrying the reason; nothing lost, nothing raised."""
    raw = _raw(client)
    driver = _driver(service)
    analysis = Exploding([load_input(client, raw)])
    driver.submit(analysis)
    report = driver.run()
    assert report.failed == [analysis.analysis_uuid]
    view = client.get_analysis(analysis.analysis_uuid)
    assert view["status"] == "fail" and view["streams"] == []
    assert "ValueError: detector file truncated" in view["tail"].reason


def test_batch_twice_analyses_nothing_the_second_time(service, client):
    """run_batch skips inputs already analysed with the same uuid (and never its own outputs)."""
    raws = [_raw(client, sample=f"B{i}") for i in range(3)]
    factory = lambda: AnalysisClient(service.client_config)  # noqa: E731
    first = run_batch(factory, Doubling, {"technique_name": "RAW"}, {"factor": 2}, progress_bar=False)
    assert len(first.done) == 3 and not first.skipped
    second = run_batch(factory, Doubling, {"technique_name": "RAW"}, {"factor": 2}, progress_bar=False)
    assert second.done == [] and len(second.skipped) == 3
    third = run_batch(factory, Doubling, {"technique_name": "RAW"}, {"factor": 5}, progress_bar=False)
    assert len(third.done) == 3  # new parameters: a new analysis
    assert len(client.find_analysis_header(**{"provenance.analysis_name": "doubling"})) == 6
    assert set(raws) == {h["provenance"]["inputs"][0] for h in client.find_analysis_header(
        **{"provenance.analysis_name": "doubling", "provenance.analysis_params.factor": 2})}


def test_priority_queue_never_compares_payloads_and_keeps_order(service, client):
    """Equal priorities run in submission order without comparing analyses; higher priority first."""
    raws = [_raw(client, n=1, sample=f"P{i}") for i in range(5)]
    inputs = [load_input(client, r) for r in raws]
    driver = _driver(service, concurrency=1)
    Doubling.ran = []
    for i, item in enumerate(inputs):
        driver.submit(Incomparable([item]), priority=1 if i == 3 else 0)
    report = driver.run()
    assert len(report.done) == 5
    assert Doubling.ran == [raws[3], raws[0], raws[1], raws[2], raws[4]]


def test_concurrency_runs_many(service, client):
    """Concurrency 4 completes every queued analysis exactly once."""
    raw = load_input(client, _raw(client, n=2))
    driver = _driver(service, concurrency=4)
    for factor in range(12):
        driver.submit(Doubling([raw], {"factor": factor}))
    report = driver.run()
    assert len(report.done) == 12 and len(set(report.done)) == 12


def test_uvvis_on_synthetic_acquisition_finds_the_edge(service, client):
    """The UV-Vis analysis on the demo's synthetic film recovers an edge near the simulated one."""
    import numpy as np

    raw = acquire_uvvis(client, "film", 500.0, np.random.default_rng(1))
    driver = _driver(service)
    analysis = UvvisAbsorbance([load_input(client, raw)], {"smooth": 5})
    driver.submit(analysis)
    assert driver.run().done == [analysis.analysis_uuid]
    stream = [s for s in client.get_analysis(analysis.analysis_uuid)["streams"] if s.name == "figures_of_merit"][0]
    (merit,) = client.find_data_reference(data_reference_header=stream.uid)
    assert 1239.84 / 560 < merit.data["edge_energy_ev"] < 1239.84 / 470


@pytest.mark.subprocess
def test_demo_command(service, client):
    """`analysisstore demo` exits 0 and leaves headers, streams, records and tails the client finds."""
    result = subprocess.run([sys.executable, "-m", "analysisstore.cli", "demo", "--url", service.url],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Where to look:" in result.stdout and f"{service.url}/api/v1/analysis/" in result.stdout
    acquisitions = client.find_analysis_header(project="demo", **{"provenance.analysis_name": "acquisition"})
    assert len(acquisitions) == 5
    for name in ("uvvis_absorbance", "echem_stability", "icpms_calibration"):
        (analysis, *more) = client.find_analysis_header(**{"provenance.analysis_name": name})
        view = client.get_analysis(analysis.uid)
        assert view["status"] == "success" and all(s.record_count > 0 for s in view["streams"])
    assert len(client.find_analysis_tail(exit_status="success")) == 10
    cli = [sys.executable, "-m", "analysisstore.cli", "analyze", "uvvis_absorbance", "--url", service.url,
           "--where", "technique_name=UVVIS", "--where", "provenance.analysis_name=acquisition",
           "--params", '{"smooth": 5}', "--no-progress"]
    again = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "done 0, skipped 3, failed 0" in again.stdout


def test_batch_holds_at_most_concurrency_inputs_in_memory(service, client):
    """run_batch queues descriptions: workers load inputs, never more analyses alive at once than concurrency."""
    for i in range(8):
        _raw(client, n=50, sample=f"M{i}")
    Held.alive = Held.peak = 0
    Held.built_in = []
    factory = lambda: AnalysisClient(service.client_config)  # noqa: E731
    report = run_batch(factory, Held, {"technique_name": "RAW"}, concurrency=2, progress_bar=False)
    assert len(report.done) == 8 and not report.failed
    assert 1 <= Held.peak <= 2, f"{Held.peak} analyses held their inputs at once"
    assert len(Held.built_in) == 8 and all(name.startswith("analysis") for name in Held.built_in)
    assert Held.alive == 0


def test_task_refuses_unknown_parameters_when_queued():
    """An AnalysisTask with a parameter its analysis does not take fails at once, before anything is loaded."""
    with pytest.raises(ValueError, match="has no parameters \\['factr'\\]"):
        AnalysisTask(Doubling, [str(uuid.uuid4())], {"factr": 3})
    assert AnalysisTask(Doubling, [uuid.UUID(int=1)], {"factor": 3}).uid == Doubling.uuid_for([uuid.UUID(int=1)],
                                                                                              {"factor": 3})


@pytest.mark.parametrize("concurrency", [0, -1])
def test_driver_and_syncer_refuse_a_concurrency_below_one(tmp_path, concurrency):
    """concurrency=0 was silently taken as 1: the driver and the syncer now refuse it, naming the value."""
    from analysisstore.drivers.sync import Syncer

    with pytest.raises(ValueError, match=f"concurrency must be at least 1, not {concurrency}"):
        AnalysisDriver(lambda: AnalysisClient({"url": "http://127.0.0.1:9"}), concurrency=concurrency)
    with pytest.raises(ValueError, match=f"concurrency must be at least 1, not {concurrency}"):
        Syncer(tmp_path / "spool", lambda: AnalysisClient({"url": "http://127.0.0.1:9"}), concurrency=concurrency,
               create=True)
