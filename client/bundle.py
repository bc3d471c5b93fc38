"""The analysis bundle, as the client has always offered it (the format lives in ``analysisstore.contract.bundle``).

``from analysisstore.client.bundle import BundleWriter, read_bundle, zip_bundle``
keeps working; new code may import from the contract directly.
"""
from __future__ import annotations

from ..contract.bundle import (
    DEFAULT_LIMITS,
    FILES_DIR,
    FORMAT,
    HEADER,
    MANIFEST,
    READABLE_VERSIONS,
    RECORDS_DIR,
    REVISIONS_DIR,
    STREAMS_DIR,
    TAIL,
    VERSION,
    Bundle,
    BundleError,
    BundleLimits,
    BundleWriter,
    FileReader,
    creation_info,
    file_member,
    read_bundle,
    revisions_member,
    safe_name,
    write_atomic,
    zip_bundle,
)
from ..contract.vocabulary import EXPECT_REVISION_HEADER, RESTORE_TIME_HEADER

__all__ = [
    "FORMAT",
    "VERSION",
    "READABLE_VERSIONS",
    "MANIFEST",
    "HEADER",
    "TAIL",
    "STREAMS_DIR",
    "RECORDS_DIR",
    "REVISIONS_DIR",
    "FILES_DIR",
    "DEFAULT_LIMITS",
    "BundleError",
    "BundleLimits",
    "BundleWriter",
    "Bundle",
    "read_bundle",
    "write_atomic",
    "zip_bundle",
    "creation_info",
    "FileReader",
    "safe_name",
    "file_member",
    "revisions_member",
    "RESTORE_TIME_HEADER",
    "EXPECT_REVISION_HEADER",
]

#: The name this function had before it was public.
_safe_name = safe_name
