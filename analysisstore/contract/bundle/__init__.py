"""The analysis bundle: one analysis as a directory (or a ``.zip`` of it), the format client and service share.

One format, three uses: the client's offline spool, the sync driver's input,
and the archive for export/import (also what ``GET
/api/v1/analysis/{uid}/bundle`` streams). Standard library, ujson and
jsonschema only, so the thin client can write and read bundles. Version 1
bundles (no files, revisions or creation info) are still read.

- :mod:`.manifest` — member names, the manifest, limits, :class:`BundleError`, :func:`safe_name`
- :mod:`.reader` — :class:`Bundle`, :func:`read_bundle`
- :mod:`.writer` — :class:`BundleWriter` (a directory, durably), :func:`zip_bundle`
- :mod:`.zipstream` — :class:`ZipStream` (a ``.zip`` built in memory a piece at a time)
- :mod:`.checks` — :func:`validate_bundle`
"""
from __future__ import annotations

from .checks import validate_bundle
from .manifest import (
    DEFAULT_LIMITS, FILES_DIR, FORMAT, HEADER, MANIFEST, READABLE_VERSIONS, RECORDS_DIR, REVISIONS_DIR,
    STREAMS_DIR, TAIL, VERSION, BundleError, BundleLimits, build_manifest, creation_info, file_member,
    manifest_bytes, member_line, records_member, revisions_member, safe_name, stream_member,
)
from .reader import Bundle, FileReader, read_bundle
from .writer import BundleWriter, write_atomic, zip_bundle
from .zipstream import ZipStream

__all__ = [
    "FORMAT", "VERSION", "READABLE_VERSIONS", "MANIFEST", "HEADER", "TAIL", "STREAMS_DIR", "RECORDS_DIR",
    "REVISIONS_DIR", "FILES_DIR", "DEFAULT_LIMITS", "BundleError", "BundleLimits", "Bundle", "FileReader",
    "BundleWriter", "ZipStream", "read_bundle", "write_atomic", "zip_bundle", "validate_bundle", "safe_name",
    "stream_member", "records_member", "revisions_member", "file_member", "creation_info", "build_manifest",
    "manifest_bytes", "member_line",
]
