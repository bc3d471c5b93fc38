"""A zip bomb handed to `analysisstore import` is refused with a clear error, in bounded memory."""
from __future__ import annotations

import hashlib
import json
import tracemalloc
import zipfile

import pytest

from analysisstore.client import AnalysisClient
from analysisstore.client.bundle import BundleLimits
from analysisstore.drivers.archive import import_archives
from test_bundles import make_bundle

MIB = 1024 * 1024
EXPANDED = 96 * MIB  # each bomb below is well under 1 MiB on disk


def _bomb(tmp_path, member: str, prefix: bytes = b"", line_break: bool = False):
    """A finished bundle zipped with ``member`` replaced by ~96 MiB of one repeated byte (manifest kept valid)."""
    _, stream, manifest = make_bundle(tmp_path / "b", records=2)
    member = member.format(stream=stream["uid"])
    target = tmp_path / "bomb.zip"
    digest = hashlib.sha256(prefix)
    block = b" " * MIB
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted((tmp_path / "b").rglob("*")):
            name = file.relative_to(tmp_path / "b").as_posix()
            if file.is_file() and name not in (member, "manifest.json"):
                archive.write(file, name)
        with archive.open(member, "w", force_zip64=True) as out:
            out.write(prefix)
            for _ in range(EXPANDED // MIB):
                out.write(block)
                digest.update(block)
            if line_break:
                out.write(b"\n")
                digest.update(b"\n")
        manifest["members"][member] = digest.hexdigest()
        archive.writestr("manifest.json", json.dumps(manifest))
    assert target.stat().st_size < MIB
    return target


def _import_measured(service, path, **kwargs):
    """Import ``path``; return the report and the peak Python memory it took."""
    client = AnalysisClient(service.client_config)
    tracemalloc.start()
    try:
        report = import_archives(client, [path], **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return report, peak


@pytest.mark.parametrize("member, prefix, message", [
    ("analysis_header.json", b'{"uid": "x", "pad": "', "larger than"),
    ("data_reference/{stream}.jsonl", b'{"uid": "r", "pad": "', "longer than"),
])
def test_a_zip_bomb_is_refused_in_bounded_memory(service, tmp_path, member, prefix, message):
    """A member expanding ~100× past the caps is an invalid bundle naming it; memory stays far below its size."""
    bomb = _bomb(tmp_path, member, prefix)
    report, peak = _import_measured(service, bomb)
    assert not report.ok and not report.imported
    (problem,) = report.invalid
    assert problem["member"].startswith(member.split("{")[0]) and message in problem["error"]
    assert peak < 40 * MIB, f"import held {peak / MIB:.0f} MiB for a {EXPANDED / MIB:.0f} MiB member"
    assert service.count("analysis_header") == 0


def test_total_expansion_is_capped_before_unpacking(service, tmp_path):
    """An archive expanding past max_expanded_bytes is refused before a byte of it is read or sent."""
    bomb = _bomb(tmp_path, "data_reference/{stream}.jsonl", line_break=True)
    report, peak = _import_measured(service, bomb, limits=BundleLimits(max_expanded_bytes=8 * MIB))
    (problem,) = report.invalid
    assert "expands to" in problem["error"] and str(8 * MIB) in problem["error"]
    assert peak < 8 * MIB
    assert service.count("analysis_header") == 0
