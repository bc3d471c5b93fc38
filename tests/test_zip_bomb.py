"""A zip bomb handed to `analysisstore import` is refused with a clear error, in bounded memory."""
from __future__ import annotations

import hashlib
import json
import tracemalloc
import zipfile

import pytest

from analysisstore.client import AnalysisClient
from analysisstore.client.bundle import BundleLimits, BundleWriter
from analysisstore.drivers.archive import import_archives
from helpers import make_bundle

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


def _file_bomb(tmp_path, stated_size: int | None = None):
    """A finished bundle with one attached file whose member, in the zip, expands to ~96 MiB of one byte.

    The manifest states the real size and sha256, or ``stated_size`` (a lie about the size)."""
    header, _, _ = make_bundle(tmp_path / "b", records=2)
    writer = BundleWriter(tmp_path / "b")
    entry = writer.add_file("f-1", "big.bin", "application/octet-stream", 1.7e9, lambda out: out.write(b"x"))
    manifest = writer.finish()
    digest = hashlib.sha256()
    target = tmp_path / "bomb.zip"
    block = b"\0" * MIB
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted((tmp_path / "b").rglob("*")):
            name = file.relative_to(tmp_path / "b").as_posix()
            if file.is_file() and not file.name.startswith(".") and name not in (entry["member"], "manifest.json"):
                archive.write(file, name)
        with archive.open(entry["member"], "w", force_zip64=True) as out:
            for _ in range(EXPANDED // MIB):
                out.write(block)
                digest.update(block)
        [stated] = manifest["files"]
        stated.update(size=EXPANDED if stated_size is None else stated_size, sha256=digest.hexdigest())
        archive.writestr("manifest.json", json.dumps(manifest))
    assert target.stat().st_size < MIB
    return header, entry["member"], target


def test_a_large_file_member_streams_through_in_bounded_memory(service, tmp_path):
    """A file member ~100× its zipped size is sent as it is unpacked: stored whole, sha256 checked, while the
    import (and the in-process service) never hold more than a few MiB of it."""
    header, _, bundle = _file_bomb(tmp_path)
    report, peak = _import_measured(service, bundle)
    assert report.ok, report
    [doc] = service.database.analysis_file.find({"analysis_header": header["uid"]})
    assert doc["size"] == EXPANDED and doc["uid"] == "f-1"
    assert peak < 40 * MIB, f"import held {peak / MIB:.0f} MiB for a {EXPANDED / MIB:.0f} MiB file"


def test_a_file_member_larger_than_its_manifest_says_is_refused_before_sending(service, tmp_path):
    """A member that expands past the size its manifest entry states is invalid before anything is sent."""
    _, member, bundle = _file_bomb(tmp_path, stated_size=1)
    report, peak = _import_measured(service, bundle)
    (problem,) = report.invalid
    assert problem["member"] == member and "the manifest says 1" in problem["error"]
    assert peak < 8 * MIB
    assert service.count("analysis_header") == 0 and service.count("analysis_file") == 0


def test_file_members_count_towards_the_expansion_cap(service, tmp_path):
    """Attached files are part of what an archive expands to: past max_expanded_bytes, nothing is unpacked."""
    _, _, bundle = _file_bomb(tmp_path)
    report, peak = _import_measured(service, bundle, limits=BundleLimits(max_expanded_bytes=8 * MIB))
    (problem,) = report.invalid
    assert "expands to" in problem["error"]
    assert peak < 8 * MIB
    assert service.count("analysis_header") == 0
