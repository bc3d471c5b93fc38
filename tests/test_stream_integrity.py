"""A streamed read that fails after its first batch is an error for every consumer, never a short answer.

The fault is real: the database drops the service's connection on the
stream's first getMore (a SecantusDB failpoint), i.e. after the first batch
of 1 000 documents has gone out with a 200.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Iterator

import pytest
import requests

from analysisstore.client import AnalysisClient, IncompleteStream, ServiceUnavailable
from analysisstore.drivers.analysis import BaseAnalysis
from analysisstore.drivers.driver import run_batch
from faults import FaultyDatabase, FaultyService, fault_db, new_database  # noqa: F401 - fault_db: a fixture
from helpers import ERROR_KEYS, as_stored, header_doc, stream_doc

RECORDS = 2_000  # two database batches: the failure comes after the first one was sent


@pytest.fixture(scope="module")
def stored(fault_db: FaultyDatabase) -> dict[str, Any]:
    """A finished analysis with one stream of RECORDS records, written once per module straight to the database."""
    name = new_database(fault_db)
    return {"database": name, "stream": _store_analysis(fault_db.admin[name])}


def _store_analysis(database: Any) -> str:
    """Write a finished analysis with one stream of RECORDS records into ``database``; the stream's uid."""
    head = header_doc(technique_name="RAW")
    stream = stream_doc(head["uid"], name="raw", data_keys={"x": {"dtype": "number"}})
    database.analysis_header.insert_one(as_stored(head))
    database.data_reference_header.insert_one(as_stored(stream))
    database.data_reference.insert_many([as_stored(
        {"uid": f"{stream['uid']}-{i:05d}", "time": 1_700_000_002.0 + i, "seq_num": i,
         "data_reference_header": stream["uid"], "data": {"x": float(i)}, "timestamps": {"x": 1.0}})
        for i in range(RECORDS)])
    database.analysis_tail.insert_one(as_stored({"uid": f"t-{head['uid']}", "time": 1_800_000_000.0,
                                                 "analysis_header": head["uid"], "exit_status": "success"}))
    return stream["uid"]


@pytest.fixture
def fs(fault_db: FaultyDatabase, start_service: Callable[..., Any], stored: dict[str, Any]) -> Iterator[FaultyService]:
    """A service on the module's stored analysis; failpoints are switched off afterwards."""
    try:
        yield FaultyService(start_service(mongo_uri_override=fault_db.uri, database=stored["database"]), fault_db)
    finally:
        fault_db.failpoint("off")


def _ndjson(fs: FaultyService, stream_uid: str, **headers: str) -> requests.Response:
    return requests.post(f"{fs.service.url}/api/v1/data_reference/search",
                         json={"filter": {"data_reference_header": stream_uid}},
                         headers={"Accept": "application/x-ndjson", **headers}, stream=True, timeout=60)


def _read_lines(response: requests.Response) -> tuple[list[dict[str, Any]], BaseException | None]:
    """Every line that arrived, and the error that ended the transfer (None if it ended cleanly)."""
    lines: list[dict[str, Any]] = []
    try:
        for line in response.iter_lines():
            if line:
                lines.append(json.loads(line))
    except requests.RequestException as exc:
        return lines, exc
    return lines, None


def test_complete_stream_ends_with_the_end_line_only_when_asked(fs, stored):
    """Prefer: stream-end adds a last line {"$end": {"count": n}}; without it the body is the documents alone."""
    stream = stored["stream"]
    with _ndjson(fs, stream, Prefer="stream-end") as response:
        assert response.headers["Preference-Applied"] == "stream-end"
        lines, broken = _read_lines(response)
    assert broken is None
    assert lines[-1] == {"$end": {"count": RECORDS}}
    assert [d["seq_num"] for d in lines[:-1]] == list(range(RECORDS))
    with _ndjson(fs, stream) as response:
        assert "Preference-Applied" not in response.headers
        lines, broken = _read_lines(response)
    assert broken is None and len(lines) == RECORDS and all("uid" in d for d in lines)


@pytest.mark.parametrize("prefer", [{}, {"Prefer": "stream-end"}])
def test_ndjson_failing_mid_stream_ends_with_the_error_and_a_broken_transfer(fs, stored, prefer):
    """Database lost after the first batch: last line {"$error": <error body>} with 503, and the transfer is cut."""
    stream = stored["stream"]
    fs.db.failpoint({"times": 1}, "getMore")
    with _ndjson(fs, stream, **prefer) as response:
        assert response.status_code == 200  # the headers were out before the database failed
        lines, broken = _read_lines(response)
    assert isinstance(broken, requests.exceptions.ChunkedEncodingError), "a cut-short stream ended cleanly"
    documents, last = lines[:-1], lines[-1]
    assert 0 < len(documents) < RECORDS
    assert set(last) == {"$error"} and set(last["$error"]) == ERROR_KEYS
    assert last["$error"]["status"] == 503 and last["$error"]["type"] == "DatabaseUnavailable"
    assert last["$error"]["request_id"] == response.headers["X-Request-ID"]
    assert not any("$end" in line for line in lines)


def test_client_find_raises_instead_of_returning_a_short_list(fs, stored):
    """find_* and iter_* raise IncompleteStream (carrying the 503) when the database fails mid-stream."""
    stream = stored["stream"]
    client = AnalysisClient(fs.service.client_config)
    assert len(client.find_data_reference(data_reference_header=stream)) == RECORDS
    fs.db.failpoint({"times": 1}, "getMore")
    with pytest.raises(IncompleteStream) as raised:
        client.find_data_reference(data_reference_header=stream)
    assert 0 < raised.value.received < RECORDS
    assert isinstance(raised.value.error, ServiceUnavailable) and raised.value.error.status == 503
    fs.db.failpoint({"times": 1}, "getMore")
    seen = 0
    with pytest.raises(IncompleteStream, match="after 1000 documents"):
        for _ in client.iter_data_reference(data_reference_header=stream):
            seen += 1
    assert seen == 1_000


def test_client_raises_when_the_service_vanishes_mid_stream(fs, stored):
    """The service going away mid-stream (no end line, no terminating chunk) raises IncompleteStream."""
    stream = stored["stream"]
    client = AnalysisClient(fs.service.client_config)
    # Hold the stream after its first batch, then stop the service while the client is still reading.
    fs.db.failpoint({"times": 1}, "getMore", close_connection=False, blockConnection=True,
                                blockTimeMS=1_500)
    records = client.iter_data_reference(data_reference_header=stream)
    assert next(records)["seq_num"] == 0
    fs.service.stop()
    with pytest.raises(IncompleteStream, match="broke after"):
        for _ in records:
            pass


def test_database_killed_mid_stream_is_an_error_for_the_client(start_service):
    """The database process SIGKILLed while a stream is half sent: find_* raises, it never returns a short list."""
    db = FaultyDatabase()  # its own: this test kills it
    try:
        service = start_service(mongo_uri_override=db.uri, database=new_database(db))
        stream = _store_analysis(db.admin[service.config.database])
        client = AnalysisClient({**service.client_config, "retries": 0})
        # Hold the stream after its first batch so the kill lands mid-stream, not before or after it.
        db.failpoint({"times": 1}, "getMore", close_connection=False, blockConnection=True, blockTimeMS=2_000)
        records = client.iter_data_reference(data_reference_header=stream)
        assert next(records)["seq_num"] == 0
        db.kill()
        with pytest.raises(IncompleteStream) as raised:
            for _ in records:
                pass
        assert raised.value.received == 1_000
        assert raised.value.error is not None and raised.value.error.status == 503
    finally:
        db.close()


def test_legacy_array_is_never_a_valid_short_array(fs, stored):
    """The 0.x face streams a JSON array: a mid-stream failure cuts the transfer with the array still open."""
    stream = stored["stream"]
    query = json.dumps({"signature": "find_data_reference", "payload": {"data_reference_header": stream}})
    whole = requests.get(f"{fs.service.url}/data_reference?{query}", timeout=60)
    assert len(whole.json()) == RECORDS
    fs.db.failpoint({"times": 1}, "getMore")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{fs.service.url}/data_reference?{query}", timeout=60)


class SumOfInputs(BaseAnalysis):
    """Sums every x of its input: a lost record changes the answer."""

    analysis_name = "sum_of_inputs"
    output_keys = {"total": {"total": {"dtype": "number"}, "n": {"dtype": "integer"}}}

    def calc_output(self) -> dict[str, list[dict[str, Any]]]:
        xs = [row["x"] for row in self.inputs[0].data("raw")]
        return {"total": [{"total": sum(xs), "n": len(xs)}]}


def test_driver_never_records_success_on_truncated_inputs(fs, stored):
    """Inputs cut short by a database failure: no success is recorded; once the database is back, a
    re-run computes on every record."""
    factory = lambda: AnalysisClient({**fs.service.client_config, "retries": 0})  # noqa: E731
    fs.db.failpoint("alwaysOn", "getMore")
    report = run_batch(factory, SumOfInputs, {"technique_name": "RAW"}, progress_bar=False, retries=1, backoff=0.01)
    assert report.done == [] and len(report.failed) == 1
    assert "incomplete" in report.errors[report.failed[0]]
    assert fs.database.analysis_tail.count_documents({"analysis_header": report.failed[0]}) == 0
    fs.db.failpoint("off")
    again = run_batch(factory, SumOfInputs, {"technique_name": "RAW"}, progress_bar=False, retries=1, backoff=0.01)
    assert again.done == report.failed
    client = AnalysisClient(fs.service.client_config)
    view = client.get_analysis(again.done[0])
    assert view["status"] == "success"
    (row,) = client.find_data_reference(data_reference_header=view["streams"][0]["uid"])
    assert row["data"] == {"total": float(sum(range(RECORDS))), "n": RECORDS}
