"""NDJSON streaming of 100 000 records keeps the service's memory flat."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import requests

from analysisstore.store._layout import layout_record
from serving import Serve

pytestmark = pytest.mark.subprocess

RECORDS = 100_000  # fully held, they would take the service well past the 64 MiB allowed
MIB = 1024 * 1024


def _memory(pid: int) -> dict[str, int]:
    """Resident and peak-resident memory of a process, in bytes (Linux /proc)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


@pytest.mark.timeout(900)
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to read memory")
def test_ndjson_of_100k_records_streams_in_constant_memory(mongo_uri, mongo):
    """Server peak memory grows by less than 64 MiB while streaming every one of 100 000 records."""
    name = f"asst_stream_{uuid.uuid4().hex[:10]}"
    db = mongo[name]
    stream = "stream-1"
    # Written straight to the database as the service stores it (layout 2: _id = uid), and marked so.
    db.meta.insert_one({"_id": "layout", **layout_record()})
    db.analysis_header.insert_one({"_id": "h", "uid": "h", "time": 1.0, "provenance": {}})
    db.data_reference_header.insert_one({"_id": stream, "uid": stream, "time": 1.0, "analysis_header": "h",
                                         "data_keys": {"v": {"dtype": "number"}}})
    batch = []
    for i in range(RECORDS):
        batch.append({"_id": f"r{i:07d}", "uid": f"r{i:07d}", "time": 2.0 + i, "seq_num": i, "data_reference_header": stream,
                      "data": {"v": i * 0.5}, "timestamps": {"v": 2.0 + i}})
        if len(batch) == 20_000:
            db.data_reference.insert_many(batch, ordered=False)
            batch = []
    server = Serve("--mongo-uri", mongo_uri, "--database", name, "--log-level", "WARNING")
    try:
        server.wait_ready(timeout=300)  # start-up builds the service's indexes over the records
        # warm up on a small listing (a page of all 100 000 records would be sorted whole on some databases)
        requests.get(f"{server.url}/api/v1/data_reference_header", params={"limit": 10}).raise_for_status()
        before = _memory(server.process.pid)["VmRSS"]
        response = requests.get(f"{server.url}/api/v1/data_reference",
                                params={"data_reference_header": stream, "order_by": "seq_num"},
                                headers={"Accept": "application/x-ndjson"}, stream=True, timeout=600)
        count, last = 0, None
        for line in response.iter_lines(chunk_size=64 * 1024):
            last = line
            count += 1
        peak = _memory(server.process.pid)["VmHWM"]
        assert count == RECORDS
        assert json.loads(last)["seq_num"] == RECORDS - 1
        assert peak - before < 64 * MIB, f"server grew by {(peak - before) / MIB:.1f} MiB"
    finally:
        server.terminate()
        mongo.drop_database(name)
