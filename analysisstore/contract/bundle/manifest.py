"""What a bundle holds: its member names, its manifest, its limits, and the error naming a bad member.

::

    manifest.json                      format, version, creation info, uids, counts, sha256 of every
                                       document member, and the table of attached files
    analysis_header.json               the current version
    data_reference_header/<uid>.json
    data_reference/<stream uid>.jsonl  one record per line
    analysis_tail.json                 absent while the analysis runs
    revisions/analysis_header.jsonl    earlier versions of the header, oldest first (version 2; only if any)
    revisions/analysis_tail.jsonl      earlier versions of the tail (version 2; only if any)
    files/<file uid>/<name>            attached files, byte for byte (version 2)

Both writers (the client's :class:`~.writer.BundleWriter` and the service's
streamed download) name members and build the manifest with these functions,
so a new member is added here once.
"""
from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import ujson

from ..codec import dumps_text

__all__ = [
    "FORMAT", "VERSION", "READABLE_VERSIONS", "MANIFEST", "HEADER", "TAIL", "STREAMS_DIR", "RECORDS_DIR",
    "REVISIONS_DIR", "FILES_DIR", "FILE_ENTRY_KEYS", "BundleError", "BundleLimits", "DEFAULT_LIMITS",
    "safe_name", "stream_member", "records_member", "revisions_member", "file_member", "creation_info",
    "build_manifest", "manifest_bytes", "member_line",
]

FORMAT = "analysisstore-bundle"
#: The version written; every version in READABLE_VERSIONS is read.
VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
HEADER = "analysis_header.json"
TAIL = "analysis_tail.json"
STREAMS_DIR = "data_reference_header"
RECORDS_DIR = "data_reference"
REVISIONS_DIR = "revisions"
FILES_DIR = "files"
#: Software named in the manifest's creation info.
SOFTWARE = "analysisstore"
#: The fields of one entry of the manifest's ``files`` table, in the order written.
FILE_ENTRY_KEYS = ("uid", "name", "member", "size", "sha256", "content_type", "time")


class BundleError(ValueError):
    """A bundle is incomplete or corrupt; ``member`` names the file at fault."""

    def __init__(self, member: str, message: str) -> None:
        super().__init__(f"{member}: {message}")
        self.member = member


@dataclass(frozen=True)
class BundleLimits:
    """How far a bundle may expand when read: a zip bomb is refused before it is unpacked.

    JSON members are read whole, so each is capped; record files are read
    line by line, so only a line is capped; the sum of every member's size
    (as the zip's directory states it, which ``zipfile`` holds each member to)
    is capped too. Attached files are streamed, never read whole: each is
    held to the size and sha256 its manifest entry states while it is sent.
    """

    max_document_bytes: int = 16 * 1024 * 1024
    max_line_bytes: int = 16 * 1024 * 1024
    max_expanded_bytes: int = 32 * 1024 ** 3


DEFAULT_LIMITS = BundleLimits()

#: Longest uid kept verbatim as a file name, in UTF-8 bytes: with ".jsonl", a temporary file's
#: affixes and an enclosing ".zip" it stays under the 255-byte name limit of common file systems.
MAX_NAME_BYTES = 160
_HASHED_NAME = re.compile(r"uid-[0-9a-f]{32}")
_UNSAFE_NAME_CHAR = re.compile("[/\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def safe_name(uid: str) -> str:
    """A uid as a file name: the uid itself when that is a safe, short name, else ``uid-<sha256>``.

    Uids are free text; the real uid always lives inside the member's JSON,
    so the name only has to be stable, unique and writable: no path
    separators, control characters, hidden (dot) names or over-long names,
    and nothing that could be mistaken for another uid's hashed name.
    """
    raw = uid.encode("utf-8", "surrogatepass")
    if (uid in ("", ".", "..") or uid.startswith(".") or _UNSAFE_NAME_CHAR.search(uid)
            or len(raw) > MAX_NAME_BYTES or _HASHED_NAME.fullmatch(uid)):
        return "uid-" + hashlib.sha256(raw).hexdigest()[:32]
    return uid


def stream_member(uid: str) -> str:
    return f"{STREAMS_DIR}/{safe_name(uid)}.json"


def records_member(stream_uid: str) -> str:
    return f"{RECORDS_DIR}/{safe_name(stream_uid)}.jsonl"


def revisions_member(doc_type: str) -> str:
    return f"{REVISIONS_DIR}/{doc_type}.jsonl"


def file_member(uid: str, name: str) -> str:
    return f"{FILES_DIR}/{safe_name(uid)}/{safe_name(name)}"


def member_line(doc: Any) -> str:
    """One document as a member's line: strict JSON, NaN/±Infinity tagged as on the wire (no newline)."""
    return dumps_text(doc, escape_forward_slashes=False)


def _software_version() -> str:
    from ... import __version__  # the package's own version module: imports nothing heavy

    return __version__


def creation_info(source: str) -> dict[str, Any]:
    """Who made a bundle, when and from what: ``source`` is the service's URL (credentials removed) or "spool"."""
    if source != "spool":
        parts = urlsplit(source)
        netloc = parts.netloc.rpartition("@")[2]  # never a user:password of the URL
        source = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return {"software": SOFTWARE, "software_version": _software_version(),
            "time": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            "source": source, "host": socket.gethostname()}


def build_manifest(*, header_uid: str, tail_uid: str | None, streams: dict[str, int], members: dict[str, str],
                   files: list[dict[str, Any]], revisions: int, source: str, priority: int = 0) -> dict[str, Any]:
    """The manifest of a finished bundle.

    ``streams`` maps each stream's uid to its record count, ``members`` each
    document member to its sha256, ``files`` holds the attached files'
    entries, ``revisions`` counts the earlier versions kept; ``source`` is
    where the documents came from (the service's URL, or "spool").
    """
    return {
        "format": FORMAT,
        "version": VERSION,
        "created": creation_info(source),
        "analysis_header": header_uid,
        "analysis_tail": tail_uid,
        "streams": streams,
        "counts": {"data_reference_header": len(streams), "data_reference": sum(streams.values()),
                   "files": len(files), "revisions": revisions},
        "priority": priority,
        "members": members,
        "files": [{key: entry[key] for key in FILE_ENTRY_KEYS} for entry in files],
    }


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The manifest member's content (indented: people read it)."""
    return (ujson.dumps(manifest, indent=2) + "\n").encode()
