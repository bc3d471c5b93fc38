"""Lineage through provenance.inputs at any depth, and its W3C PROV export."""
from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import requests
from prov.model import ProvDocument

from analysisstore.client import AnalysisClient
from analysisstore.store import MAX_LINEAGE_DEPTH, Store
from analysisstore.store._lineage import find_lineage
from helpers import assert_error, header_doc, post, stream_doc, tail_doc


def _analysis(service: Any, uid: str, inputs: list[Any], name: str = "step", **extra: Any) -> dict[str, Any]:
    header = header_doc(uid=uid, provenance={"analysis_name": name, "inputs": inputs, "analysis_params": {"k": 1},
                                             "analysis_codehash": "abc", "user": "ada", "host": "bench1"}, **extra)
    assert post(service, "analysis_header", header).status_code == 201
    return header


@pytest.fixture
def diamond(service: Any) -> Any:
    """raw → (a, b) → merged → report, plus a cycle x ⇄ y and an input that is not stored."""
    _analysis(service, "raw", [], "acquisition")
    _analysis(service, "a", ["raw"])
    _analysis(service, "b", ["raw", {"not": "a uid"}])
    _analysis(service, "merged", ["a", "b", "elsewhere"])
    _analysis(service, "report", ["merged"], "report")
    _analysis(service, "x", ["y"])
    _analysis(service, "y", ["x"])
    stream = stream_doc("merged")
    assert post(service, "data_reference_header", stream).status_code == 201
    assert post(service, "analysis_tail", tail_doc("merged")).status_code == 201
    return service


def _lineage(service: Any, uid: str, **params: Any) -> requests.Response:
    return requests.get(f"{service.url}/api/v1/analysis/{uid}/lineage", params=params, timeout=30)


def test_ancestors_at_each_depth_with_edges_and_status(diamond: Any) -> None:
    """Ancestors come with their depth and status; depth bounds the walk; edges link input → analysis."""
    one = _lineage(diamond, "report", depth=1).json()
    assert [(n["uid"], n["depth"]) for n in one["nodes"]] == [("report", 0), ("merged", 1)]
    full = _lineage(diamond, "report", depth=5).json()
    depths = {n["uid"]: n["depth"] for n in full["nodes"]}
    assert depths == {"report": 0, "merged": 1, "a": 2, "b": 2, "raw": 3}
    assert {n["uid"]: n["status"] for n in full["nodes"]}["merged"] == "success"
    assert {(e["input"], e["analysis"]) for e in full["edges"]} == {
        ("merged", "report"), ("a", "merged"), ("b", "merged"), ("raw", "a"), ("raw", "b")}


def test_descendants_answer_who_used_it(diamond: Any) -> None:
    """Descendants follow provenance.inputs backwards, through the index, to every analysis built on raw."""
    body = AnalysisClient(diamond.client_config).lineage("raw", direction="descendants", depth=10)
    assert {n["uid"]: n["depth"] for n in body["nodes"]} == {"raw": 0, "a": 1, "b": 1, "merged": 2, "report": 3}


def test_cycles_end_and_never_repeat_the_root(diamond: Any) -> None:
    """x and y name each other as input: the walk ends, each appears once."""
    body = _lineage(diamond, "x", depth=50).json()
    assert [n["uid"] for n in body["nodes"]] == ["x", "y"]
    assert {(e["input"], e["analysis"]) for e in body["edges"]} == {("x", "y"), ("y", "x")}


@pytest.mark.parametrize("params, contains", [
    ({"depth": 0}, "depth"), ({"depth": MAX_LINEAGE_DEPTH + 1}, "depth"), ({"depth": "ten"}, "depth"),
    ({"depth": "9" * 40}, "depth"), ({"direction": "sideways"}, "direction")])
def test_bad_parameters_are_a_400(diamond: Any, params: dict, contains: str) -> None:
    """Depth outside 1..cap, a non-number or an unknown direction: a clear 400."""
    assert_error(_lineage(diamond, "report", **params), 400, contains=contains)


def test_unknown_analysis_is_a_404(service: Any) -> None:
    """Lineage of a uid that is not stored names it in a 404."""
    assert_error(_lineage(service, "nope"), 404, contains="nope")


def test_node_cap_is_a_400_not_a_huge_answer(diamond: Any, service_loop: Any, mongo_uri: str) -> None:
    """More analyses within the depth than the cap allows: refused with a message saying to narrow the depth."""
    from analysisstore.errors import BadRequest

    store = Store.connect(mongo_uri, diamond.config.database)
    try:
        with pytest.raises(BadRequest, match="smaller depth"):
            service_loop.run(find_lineage(store.db, "raw", "descendants", 10, stale_after=3600.0,
                                          max_time_ms=10_000, max_nodes=3))
        within = service_loop.run(find_lineage(store.db, "raw", "descendants", 1, stale_after=3600.0,
                                               max_time_ms=10_000, max_nodes=3))
        assert len(within["nodes"]) == 3
    finally:
        service_loop.run(store.close())


def test_a_10000_analysis_chain_is_walked_within_its_caps(service: Any) -> None:
    """A chain of 10 000 analyses: the deepest allowed walk either way returns exactly depth analyses."""
    uids = [f"chain-{i:05d}" for i in range(10_000)]
    docs = [{"uid": uid, "time": 1_700_000_000.0 + i,
             "provenance": {"analysis_name": "chain", "inputs": [uids[i - 1]] if i else []}}
            for i, uid in enumerate(uids)]
    for start in range(0, len(docs), 2_000):
        assert post(service, "analysis_header", docs[start:start + 2_000]).status_code in (200, 201)
    up = _lineage(service, uids[-1], depth=MAX_LINEAGE_DEPTH).json()
    assert [n["uid"] for n in up["nodes"]] == uids[-1:-MAX_LINEAGE_DEPTH - 2:-1]
    assert len(up["edges"]) == MAX_LINEAGE_DEPTH
    down = _lineage(service, uids[0], direction="descendants", depth=MAX_LINEAGE_DEPTH).json()
    assert [n["uid"] for n in down["nodes"]] == uids[:MAX_LINEAGE_DEPTH + 1]


def _prov(service: Any, uid: str, fmt: str, depth: int = 10) -> requests.Response:
    return requests.get(f"{service.url}/api/v1/analysis/{uid}/prov", params={"format": fmt, "depth": depth},
                        timeout=30)


def test_prov_json_holds_activities_entities_agents_and_derivations(diamond: Any) -> None:
    """PROV-JSON parses with the prov library: one activity per analysis, used/generated/derived links, the person."""
    response = _prov(diamond, "report", "json")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    doc = ProvDocument.deserialize(content=response.text, format="json")
    records = {type(r).__name__: [] for r in doc.get_records()}
    for record in doc.get_records():
        records[type(record).__name__].append(record)
    activities = {str(a.identifier).rsplit("/", 1)[-1] for a in records["ProvActivity"]}
    assert activities == {"report", "merged", "a", "b", "raw"}
    used = {(str(u.formal_attributes[0][1]).rsplit("/", 1)[-1], str(u.formal_attributes[1][1]).rsplit("/", 1)[-1])
            for u in records["ProvUsage"]}
    assert ("merged", "a") in used and ("merged", "elsewhere") in used and ("report", "merged") in used
    assert len(records["ProvDerivation"]) == len(used)
    assert [str(a.identifier).rsplit("/", 1)[-1] for a in records["ProvAgent"]] == ["ada%40bench1"]
    generated = {str(g.formal_attributes[0][1]) for g in records["ProvGeneration"]}
    assert any(":stream/" in g for g in generated)
    assert ProvDocument.deserialize(content=doc.serialize(format="json"), format="json") == doc


@pytest.mark.parametrize("fmt, media", [("provn", "text/provenance-notation"), ("xml", "application/xml")])
def test_prov_other_formats(diamond: Any, fmt: str, media: str) -> None:
    """PROV-N and PROV-XML are served with their media types; PROV-XML parses back to the same document."""
    response = _prov(diamond, "merged", fmt)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith(media)
    assert "merged" in response.text
    if fmt == "xml":
        as_json = ProvDocument.deserialize(content=_prov(diamond, "merged", "json").text, format="json")
        assert ProvDocument.deserialize(content=response.text, format="xml") == as_json
    else:
        assert response.text.startswith("document") and "used(" in response.text


def test_prov_command_writes_a_file(diamond: Any, tmp_path: Any) -> None:
    """`analysisstore prov UID -o FILE --format provn` writes the document the service serves."""
    out = tmp_path / "report.provn"
    result = subprocess.run([sys.executable, "-m", "analysisstore.cli", "prov", "report", "--depth", "3",
                             "--format", "provn", "-o", str(out), "--url", diamond.url],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == _prov(diamond, "report", "provn", depth=3).text
