"""Checking a whole bundle before anything of it is sent: manifest, checksums, schemas, parent links.

The documents are held to the same checks the service applies
(:mod:`analysisstore.contract.validation`), so a bundle that passes here is not
quarantined by the service for its content.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..validation import DocumentProblem, check_record_keys, json_path, schema_errors, schema_problem
from .manifest import (
    FILES_DIR, FORMAT, HEADER, MANIFEST, READABLE_VERSIONS, TAIL, BundleError, file_member, revisions_member,
    stream_member,
)

if TYPE_CHECKING:
    from .reader import Bundle

__all__ = ["validate_bundle"]


def _check_schema(member: str, doc_type: str, doc: dict[str, Any]) -> None:
    problem = schema_problem(doc_type, doc)  # fast acceptance; the explaining validator only for a failure
    if problem is None:
        return
    errors = schema_errors(doc_type, doc)
    if not errors:
        raise BundleError(member, f"invalid {doc_type}: {problem}")
    raise BundleError(member, f"invalid {doc_type}: {errors[0].message} (at {json_path(errors[0])})")


def validate_bundle(bundle: "Bundle") -> dict[str, Any]:
    """The manifest, after every member has been checked; BundleError naming the first bad member.

    Attached files are checked here by name and size only; their content is
    held to its sha256 while it is sent (see ``Bundle.open_file``), so a
    large file is read once.
    """
    manifest = bundle.manifest
    if manifest is None:
        raise BundleError(MANIFEST, "is missing (the bundle was never finished)")
    if manifest.get("format") != FORMAT:
        raise BundleError(MANIFEST, f"is not a {FORMAT} manifest")
    if manifest.get("version") not in READABLE_VERSIONS:
        raise BundleError(MANIFEST, f"is {FORMAT} version {manifest.get('version')!r}; this analysisstore reads "
                          f"versions {', '.join(map(str, READABLE_VERSIONS))} (a newer analysisstore wrote it?)")
    members = manifest.get("members")
    if not isinstance(members, dict):
        raise BundleError(MANIFEST, "has no members table")
    attached = _check_files_table(bundle, manifest)
    present = set(bundle.member_names()) - {MANIFEST} - attached
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
    declared: dict[str, dict[str, Any]] = {}
    for stream in streams:
        member = stream_member(str(stream.get("uid")))
        _check_schema(member, "data_reference_header", stream)
        if stream["analysis_header"] != header["uid"]:
            raise BundleError(member, f"belongs to analysis {stream['analysis_header']!r}, not {header['uid']!r}")
        declared[stream["uid"]] = stream
    if set(manifest.get("streams", {})) != set(declared):
        raise BundleError(MANIFEST, "lists other streams than the bundle holds")
    for uid, stream in declared.items():
        member = bundle.records_member(uid)
        count = 0
        for count, record in enumerate(bundle.records(uid), start=1):
            _check_schema(f"{member} line {count}", "data_reference", record)
            if record["data_reference_header"] != uid:
                raise BundleError(member, f"line {count} names stream {record['data_reference_header']!r}")
            try:  # the service's own check: undeclared keys, and values of another dtype
                check_record_keys(record, stream)
            except DocumentProblem as problem:
                raise BundleError(member, f"line {count}: {problem.message}") from None
        if count != manifest["streams"][uid]:
            raise BundleError(member, f"holds {count} records, the manifest says {manifest['streams'][uid]}")
    tail = bundle.tail
    if tail is not None:
        _check_schema(TAIL, "analysis_tail", tail)
        if tail["analysis_header"] != header["uid"]:
            raise BundleError(TAIL, f"belongs to analysis {tail['analysis_header']!r}")
    _check_revisions(bundle, "analysis_header", header)
    _check_revisions(bundle, "analysis_tail", tail)
    return manifest


_FILE_FIELDS = {"uid": str, "name": str, "member": str, "size": int, "sha256": str, "content_type": str}


def _check_files_table(bundle: "Bundle", manifest: dict[str, Any]) -> set[str]:
    """The members the ``files`` table names, after checking each entry against the bundle."""
    files = manifest.get("files", [])
    if not isinstance(files, list):
        raise BundleError(MANIFEST, "has a files table that is not a list")
    names, uids, members = set(), set(), set()
    for i, entry in enumerate(files):
        where = f"files[{i}]"
        if not isinstance(entry, dict):
            raise BundleError(MANIFEST, f"{where} is not an object")
        for key, kind in _FILE_FIELDS.items():
            if not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool):
                raise BundleError(MANIFEST, f"{where} needs {key} ({kind.__name__})")
        if entry["size"] < 0 or len(entry["sha256"]) != 64 or not all(c in "0123456789abcdef" for c in entry["sha256"]):
            raise BundleError(MANIFEST, f"{where} has a bad size or sha256")
        if entry["member"] != file_member(entry["uid"], entry["name"]):
            raise BundleError(MANIFEST, f"{where} names member {entry['member']!r}, expected "
                              f"{file_member(entry['uid'], entry['name'])!r}")
        if entry["name"] in names or entry["uid"] in uids:
            raise BundleError(MANIFEST, f"{where} repeats the file name or uid of an earlier entry")
        names.add(entry["name"])
        uids.add(entry["uid"])
        members.add(entry["member"])
        if not bundle.has(entry["member"]):
            raise BundleError(entry["member"], "is listed in the manifest but missing")
        size = bundle.size(entry["member"])
        if size != entry["size"]:
            raise BundleError(entry["member"], f"holds {size} bytes, the manifest says {entry['size']}")
    for extra in sorted(n for n in bundle.member_names() if n.startswith(FILES_DIR + "/") and n not in members):
        raise BundleError(extra, "is not listed in the manifest's files table")
    return members


def _check_revisions(bundle: "Bundle", doc_type: str, current: dict[str, Any] | None) -> None:
    """Earlier versions: numbered 0, 1, ... in order, of this very document, each a valid one."""
    member = revisions_member(doc_type)
    if current is None:
        if bundle.has(member):
            raise BundleError(member, f"holds revisions of a {doc_type} the bundle does not have")
        return
    previous = None
    for number, record in enumerate(bundle.revisions(doc_type)):
        where = f"{member} line {number + 1}"
        document = record.get("document")
        if record.get("revision") != number or record.get("uid") != current["uid"] or not isinstance(document, dict):
            raise BundleError(where, f"is not revision {number} of {doc_type} {current['uid']!r}")
        if not isinstance(record.get("replaced_at"), (int, float)) or not isinstance(record.get("request_id"), str):
            raise BundleError(where, "needs replaced_at (a number) and request_id (a string)")
        version = {k: v for k, v in document.items() if k != "_revision"}
        _check_schema(where, doc_type, version)
        for key in ("uid", "time", "provenance", "analysis_header", "exit_status"):
            if version.get(key) != current.get(key):
                raise BundleError(where, f"differs from the current {doc_type} in {key!r}, which never changes")
        if version == previous:
            raise BundleError(where, "is the same as the revision before it")
        previous = version
    if previous is not None and previous == current:
        raise BundleError(member, f"ends with a revision equal to the current {doc_type}")
