"""A zip archive built in memory a piece at a time, handed on as bytes as soon as each piece is compressed.

``zipfile`` writes to a stream it cannot seek by putting each member's sizes
and CRC in a data descriptor after the member, so nothing needs to be kept
or revisited: memory holds one piece, and no file is written.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from typing import Any

__all__ = ["ZipStream"]


class _Pending(io.RawIOBase):
    """Write-only, unseekable sink that keeps what was written until it is taken."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


class ZipStream:
    """``add``/``append`` members, ``take()`` the bytes ready so far, ``close()`` for the central directory.

    The sha256 of every member is kept for the bundle's manifest.
    """

    def __init__(self) -> None:
        self._pending = _Pending()
        self._zip = zipfile.ZipFile(self._pending, "w", compression=zipfile.ZIP_DEFLATED)
        self._member: Any = None
        self._member_name = ""
        self._digest = hashlib.sha256()
        self.checksums: dict[str, str] = {}

    def add(self, name: str, data: bytes) -> None:
        """One whole (small) member."""
        self.start(name)
        self.append(data)
        self.end()

    def start(self, name: str) -> None:
        """Begin a member written in pieces (zip64 sizes: a stream's records may pass 4 GiB)."""
        self._member = self._zip.open(name, "w", force_zip64=True)
        self._member_name = name
        self._digest = hashlib.sha256()

    def append(self, data: bytes) -> None:
        self._member.write(data)
        self._digest.update(data)

    def end(self) -> None:
        self._member.close()
        self.checksums[self._member_name] = self._digest.hexdigest()
        self._member = None

    def take(self) -> bytes:
        """The archive's bytes written since the last call."""
        return self._pending.take()

    def close(self) -> bytes:
        """Finish the archive (central directory); the last bytes."""
        self._zip.close()
        return self._pending.take()
