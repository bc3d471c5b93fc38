"""Bundles on disk: written, read back (directory and zip), validated member by member."""
from __future__ import annotations

import json
import zipfile

import pytest

from analysisstore.client.bundle import Bundle, BundleError, BundleWriter, read_bundle, zip_bundle
from helpers import header_doc, make_bundle, record_doc, stream_doc, tail_doc


def test_round_trip_directory_and_zip(tmp_path):
    """What is written reads back identically, from the directory and from its zip."""
    header, stream, manifest = make_bundle(tmp_path / "b", records=7)
    assert manifest["counts"] == {"data_reference_header": 1, "data_reference": 7, "files": 0, "revisions": 0}
    assert set(manifest["members"]) == {"analysis_header.json", f"data_reference_header/{stream['uid']}.json",
                                        f"data_reference/{stream['uid']}.jsonl", "analysis_tail.json"}
    zip_bundle(tmp_path / "b", tmp_path / "b.zip")
    for source in (tmp_path / "b", tmp_path / "b.zip"):
        (bundle,) = read_bundle(source)
        with bundle:
            assert bundle.validate() == manifest
            assert bundle.header == header and bundle.streams == [stream]
            assert [r["seq_num"] for r in bundle.records(stream["uid"], start=3)] == [3, 4, 5, 6]


def test_zip_of_several_bundles(tmp_path):
    """A zip holding several bundle directories yields each of them."""
    uids = {make_bundle(tmp_path / "many" / name)[0]["uid"] for name in ("one", "two")}
    zip_bundle(tmp_path / "many", tmp_path / "many.zip")
    bundles = read_bundle(tmp_path / "many.zip")
    assert {b.header["uid"] for b in bundles} == uids
    assert all(b.validate() for b in bundles)


@pytest.mark.parametrize("damage, member", [
    (lambda p, s: (p / "data_reference" / f"{s}.jsonl").write_text("garbage\n"), "data_reference/"),
    (lambda p, s: (p / "analysis_header.json").unlink(), "analysis_header.json"),
    (lambda p, s: (p / "extra.txt").write_text("x"), "extra.txt"),
    (lambda p, s: (p / "manifest.json").write_text("{}"), "manifest.json"),
])
def test_damage_is_named(tmp_path, damage, member):
    """Corrupt, missing, unlisted members and a bad manifest are errors naming the member."""
    _, stream, _ = make_bundle(tmp_path / "b")
    damage(tmp_path / "b", stream["uid"])
    with pytest.raises(BundleError) as info:
        Bundle(tmp_path / "b").validate()
    assert info.value.member.startswith(member)


def test_inconsistent_content_with_valid_checksums_is_refused(tmp_path):
    """Checksums are not enough: schemas, parent links and data keys are checked too."""
    header, stream, _ = make_bundle(tmp_path / "b")
    bad = record_doc("another-stream")
    BundleWriter(tmp_path / "b").append_records(stream["uid"], [bad])
    BundleWriter(tmp_path / "b").finish()
    with pytest.raises(BundleError, match="another-stream"):
        Bundle(tmp_path / "b").validate()


def test_unfinished_bundle_is_refused(tmp_path):
    """No manifest: the bundle was never finished."""
    BundleWriter(tmp_path / "b").write_header(header_doc())
    with pytest.raises(BundleError, match="manifest.json"):
        Bundle(tmp_path / "b").validate()


def test_not_a_bundle(tmp_path):
    """A random file is refused clearly."""
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    with pytest.raises(BundleError, match="neither"):
        read_bundle(tmp_path / "x.zip")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as archive:
        archive.writestr("readme.txt", json.dumps({}))
    with pytest.raises(BundleError, match="manifest"):
        read_bundle(tmp_path / "empty.zip")
