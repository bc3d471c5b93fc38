"""Checking a bundle before anything of it is sent: manifest, checksums, schemas, parent links."""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import fastjsonschema
from jsonschema import Draft7Validator

from ..schemas import load_schema

if TYPE_CHECKING:
    from .bundle import Bundle

__all__ = ["validate_bundle"]


@lru_cache(maxsize=None)
def _validator(doc_type: str) -> Draft7Validator:
    return Draft7Validator(load_schema(doc_type))


@lru_cache(maxsize=None)
def _compiled(doc_type: str) -> Any:
    return fastjsonschema.compile(load_schema(doc_type))


def _check_schema(member: str, doc_type: str, doc: dict[str, Any]) -> None:
    from .bundle import BundleError

    try:
        _compiled(doc_type)(doc)  # fast acceptance; jsonschema below only to explain a failure
        return
    except fastjsonschema.JsonSchemaException as exc:
        fallback = str(exc)
    error = next(iter(_validator(doc_type).iter_errors(doc)), None)
    if error is None:
        raise BundleError(member, f"invalid {doc_type}: {fallback}")
    if error is not None:
        path = "/" + "/".join(str(p) for p in error.absolute_path)
        raise BundleError(member, f"invalid {doc_type}: {error.message} (at {path})")


def validate_bundle(bundle: "Bundle") -> dict[str, Any]:
    """The manifest, after every member has been checked; BundleError naming the first bad member."""
    from .bundle import FORMAT, HEADER, MANIFEST, STREAMS_DIR, TAIL, VERSION, BundleError

    manifest = bundle.manifest
    if manifest is None:
        raise BundleError(MANIFEST, "is missing (the bundle was never finished)")
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise BundleError(MANIFEST, f"is not a {FORMAT} version {VERSION} manifest")
    members = manifest.get("members")
    if not isinstance(members, dict):
        raise BundleError(MANIFEST, "has no members table")
    present = set(bundle.member_names()) - {MANIFEST}
    for missing in sorted(set(members) - present):
        raise BundleError(missing, "is listed in the manifest but missing")
    for extra in sorted(present - set(members)):
        raise BundleError(extra, "is not listed in the manifest")
    for member, expected in sorted(members.items()):
        if bundle.checksum(member) != expected:
            raise BundleError(member, "does not match its sha256 in the manifest (corrupted?)")

    header = bundle.header
    _check_schema(HEADER, "analysis_header", header)
    if manifest.get("analysis_header") != header["uid"]:
        raise BundleError(MANIFEST, "names a different analysis_header than analysis_header.json")
    streams = bundle.streams
    stream_keys = {}
    for stream in streams:
        member = f"{STREAMS_DIR}/{stream.get('uid')}.json"
        _check_schema(member, "data_reference_header", stream)
        if stream["analysis_header"] != header["uid"]:
            raise BundleError(member, f"belongs to analysis {stream['analysis_header']!r}, not {header['uid']!r}")
        stream_keys[stream["uid"]] = set(stream["data_keys"])
    if set(manifest.get("streams", {})) != set(stream_keys):
        raise BundleError(MANIFEST, "lists other streams than the bundle holds")
    for uid, keys in stream_keys.items():
        member = bundle.records_member(uid)
        count = 0
        for count, record in enumerate(bundle.records(uid), start=1):
            _check_schema(f"{member} line {count}", "data_reference", record)
            if record["data_reference_header"] != uid:
                raise BundleError(member, f"line {count} names stream {record['data_reference_header']!r}")
            undeclared = (set(record["data"]) | set(record["timestamps"])) - keys
            if undeclared:
                raise BundleError(member, f"line {count} has undeclared data keys {sorted(undeclared)}")
        if count != manifest["streams"][uid]:
            raise BundleError(member, f"holds {count} records, the manifest says {manifest['streams'][uid]}")
    tail = bundle.tail
    if tail is not None:
        _check_schema(TAIL, "analysis_tail", tail)
        if tail["analysis_header"] != header["uid"]:
            raise BundleError(TAIL, f"belongs to analysis {tail['analysis_header']!r}")
    return manifest
