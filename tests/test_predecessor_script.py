"""A script written for the 0.x client API runs unchanged against the new service."""
from __future__ import annotations

import subprocess
import sys
import textwrap

# Written the way 0.x users wrote it: positional arguments in the 0.x order,
# uids and times made by the script, parents passed as uids or documents.
PREDECESSOR_SCRIPT = textwrap.dedent('''
    import sys, time, uuid
    from analysisstore.client.commands import AnalysisClient

    conn = AnalysisClient({"host": "127.0.0.1", "port": int(sys.argv[1])})
    assert conn.connection_status()

    hdr = conn.insert_analysis_header(str(uuid.uuid4()), time.time(),
                                      {"analysis_name": "peak_fit", "version": "0.3"},
                                      sample="Si-wafer-7", owner="beamline")
    dhdr = conn.insert_data_reference_header(hdr, str(uuid.uuid4()), time.time(),
                                             {"peak_pos": {"dtype": "number", "shape": [], "source": "fit"},
                                              "fwhm": {"dtype": "number", "shape": [], "source": "fit"}})
    for i in range(3):
        conn.insert_data_reference(dhdr, str(uuid.uuid4()), time.time(),
                                   {"peak_pos": 10.0 + i, "fwhm": 0.5},
                                   {"peak_pos": time.time(), "fwhm": time.time()}, seq_num=i)
    bulk = [{"uid": str(uuid.uuid4()), "time": time.time(), "seq_num": 3 + i,
             "data": {"peak_pos": 20.0 + i, "fwhm": 0.7},
             "timestamps": {"peak_pos": time.time(), "fwhm": time.time()}} for i in range(1200)]
    conn.insert_bulk_data_reference(dhdr, bulk)
    tail = conn.insert_analysis_tail(hdr, str(uuid.uuid4()), time.time(), "success")

    headers = conn.find_analysis_header(uid=hdr)
    assert len(headers) == 1 and headers[0]["sample"] == "Si-wafer-7"
    assert headers[0].provenance["analysis_name"] == "peak_fit"
    assert [d["uid"] for d in conn.find_data_reference_header(analysis_header=hdr)] == [dhdr]
    refs = conn.find_data_reference(data_reference_header=dhdr)
    assert len(refs) == 1203
    assert conn.find_analysis_tail(analysis_header=hdr)[0]["exit_status"] == "success"
    assert len(conn.find("data_reference", {"data_reference_header": dhdr})) == 1203
    assert conn.find("analysis_tail", {"uid": tail})[0]["analysis_header"] == hdr
    print("predecessor script OK")
''')


def test_predecessor_script_runs_unchanged(service):
    """header → stream → records → bulk records → tail, then find_* and find(doc_type, query)."""
    result = subprocess.run([sys.executable, "-c", PREDECESSOR_SCRIPT, str(service.port)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "predecessor script OK" in result.stdout
    assert service.count("data_reference") == 1203
    assert service.count("analysis_tail") == 1
