"""Interrupted analyses: a re-run completes an analysis left without its tail; close-stale aborts forgotten ones."""
from __future__ import annotations

import time
from typing import Any

from analysisstore import cli
from analysisstore.client import AnalysisClient
from analysisstore.drivers.analysis import BaseAnalysis
from analysisstore.drivers.driver import AnalysisDriver, load_input, run_batch
from faults import fault_db, faulty_service  # noqa: F401 - fixtures


class Tripling(BaseAnalysis):
    """Triples every x of its input stream."""

    analysis_name = "tripling"
    output_keys = {"tripled": {"x": {"dtype": "number"}}}

    def calc_output(self) -> dict[str, list[dict[str, Any]]]:
        return {"tripled": [{"x": 3 * row["x"]} for row in self.inputs[0].data("raw")]}


def _raw(client: AnalysisClient, n: int = 5) -> str:
    header = client.insert_analysis_header(provenance={"analysis_name": "acquisition"}, technique_name="RAW3")
    stream = client.insert_data_reference_header(header, data_keys={"x": {"dtype": "number"}}, name="raw")
    client.insert_bulk_data_reference(stream, [{"data": {"x": float(i)}, "timestamps": {}, "seq_num": i}
                                               for i in range(n)])
    client.insert_analysis_tail(header, exit_status="success")
    return header


def _interrupt_after(faulty_service, stored_inserts: int, raw: str) -> str:
    """Run Tripling on ``raw`` while the database refuses every insert after the first ``stored_inserts``
    (the service lost mid-analysis, no spool); the analysis's uid."""
    config = {**faulty_service.service.client_config, "retries": 0}
    driver = AnalysisDriver(lambda: AnalysisClient(config), retries=0, progress_bar=False)
    analysis = Tripling([load_input(AnalysisClient(config), raw)])
    faulty_service.db.failpoint({"skip": stored_inserts, "times": 1_000}, "insert")
    driver.submit(analysis)
    report = driver.run()
    faulty_service.db.failpoint("off")
    assert report.failed == [analysis.analysis_uuid]
    assert "could not be stored" in report.errors[analysis.analysis_uuid]
    return analysis.analysis_uuid


def test_rerun_completes_an_analysis_interrupted_after_its_header(faulty_service):
    """Header stored, then the service lost: a re-run (run_batch) completes it instead of skipping it."""
    client = AnalysisClient(faulty_service.service.client_config)
    raw = _raw(client)
    uid = _interrupt_after(faulty_service, 1, raw)
    assert client.get_analysis(uid)["status"] == "running"
    report = run_batch(lambda: AnalysisClient(faulty_service.service.client_config), Tripling,
                       {"technique_name": "RAW3"}, progress_bar=False)
    assert report.done == [uid] and report.skipped == []
    view = client.get_analysis(uid)
    assert view["status"] == "success" and [s["record_count"] for s in view["streams"]] == [5]
    again = run_batch(lambda: AnalysisClient(faulty_service.service.client_config), Tripling,
                      {"technique_name": "RAW3"}, progress_bar=False)
    assert again.skipped == [uid] and again.done == []  # finalized now: skipped for good


def test_rerun_resends_what_the_interrupted_run_stored_without_conflicts(faulty_service):
    """Header and stream stored before the loss: the driver's re-run re-sends them identically and finishes."""
    client = AnalysisClient(faulty_service.service.client_config)
    raw = _raw(client)
    uid = _interrupt_after(faulty_service, 2, raw)
    view = client.get_analysis(uid)
    assert view["status"] == "running" and [s["record_count"] for s in view["streams"]] == [0]
    driver = AnalysisDriver(lambda: AnalysisClient(faulty_service.service.client_config), progress_bar=False)
    driver.submit(Tripling([load_input(client, raw)]))
    report = driver.run()
    assert report.done == [uid], report.errors
    view = client.get_analysis(uid)
    assert view["status"] == "success"
    records = client.find_data_reference(data_reference_header=view["streams"][0]["uid"], order_by="seq_num")
    assert [r["data"]["x"] for r in records] == [0.0, 3.0, 6.0, 9.0, 12.0]


def test_rerun_reports_a_conflict_with_an_earlier_partial_run_instead_of_crashing(faulty_service):
    """An interrupted run left a different stream under the analysis's stream uid: the re-run reports the
    analysis failed with the conflict, writes no tail, and the batch goes on."""
    client = AnalysisClient(faulty_service.service.client_config)
    raw = _raw(client)
    uid = _interrupt_after(faulty_service, 1, raw)
    analysis = Tripling([load_input(client, raw)])
    client.insert_data_reference_header(uid, uid=analysis._uid("stream", "tripled"), time=1.0, name="tripled",
                                        data_keys={"x": {"dtype": "number"}})  # as an older version wrote it
    report = run_batch(lambda: AnalysisClient(faulty_service.service.client_config), Tripling,
                       {"technique_name": "RAW3"}, progress_bar=False)
    assert report.failed == [uid] and "conflicts with documents already stored" in report.errors[uid]
    assert client.get_analysis(uid)["tail"] is None


def _analysis(service, started: float, tail: bool = False, record_at: float | None = None) -> str:
    client = AnalysisClient(service.client_config)
    header = client.insert_analysis_header(time=started, provenance={"analysis_name": "forgotten"})
    if record_at is not None:
        stream = client.insert_data_reference_header(header, time=started, data_keys={"x": {"dtype": "number"}})
        client.insert_data_reference(stream, time=record_at, data={"x": 1.0}, timestamps={"x": record_at})
    if tail:
        client.insert_analysis_tail(header, exit_status="success")
    return header


def test_close_stale_aborts_only_quiet_analyses_without_a_tail(service, capsys):
    """close-stale: --dry-run changes nothing; then only analyses quiet for --older-than get an abort tail."""
    now = time.time()
    quiet = _analysis(service, now - 3 * 86_400)
    busy = _analysis(service, now - 3 * 86_400, record_at=now - 60)  # old, but wrote a record a minute ago
    young = _analysis(service, now - 3_600)
    finished = _analysis(service, now - 3 * 86_400, tail=True)
    args = ["close-stale", "--older-than", "24h", "--reason", "worker lost in the Nov 23 outage",
            "--url", service.url]
    assert cli.main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert quiet in out and busy not in out and young not in out and finished not in out
    assert service.count("analysis_tail") == 1
    assert cli.main(args) == 0
    assert quiet in capsys.readouterr().out
    client = AnalysisClient(service.client_config)
    view = client.get_analysis(quiet)
    assert view["status"] == "abort" and view["tail"]["reason"] == "worker lost in the Nov 23 outage"
    assert [client.get_analysis(u)["status"] for u in (busy, young, finished)] == ["stale", "running", "success"]
    assert cli.main(args) == 0  # nothing left to close
    assert "closed 0" in capsys.readouterr().out


def test_close_stale_rejects_a_bad_age(capsys):
    """--older-than takes a number with a unit (s, m, h, d, w); anything else is a usage error."""
    try:
        cli.main(["close-stale", "--older-than", "soon", "--reason", "x"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("a bad --older-than was accepted")
    assert "older-than" in capsys.readouterr().err
