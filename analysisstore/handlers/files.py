"""Files attached to analyses: upload streamed into the database, download streamed out (with ranges)."""
from __future__ import annotations

import asyncio
import logging
import re
from contextlib import aclosing
from typing import Any
from urllib.parse import quote

from ..errors import AnalysisStoreError, BadRequest, PayloadTooLarge
from ..request_body import check_content_encoding
from ..store import Upload
from .analyses import attachment
from .base import BaseHandler

__all__ = ["routes"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"[^\x00-\x1f\x7f/\\]{1,255}")
_UID = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
_SHA256 = re.compile(r"[0-9A-Fa-f]{64}")
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
_BEYOND_ANY_FILE = 10**18
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]{1,127}"
#: A plain media type (RFC 9110), parameters separated by "; "; anything else is served as octet-stream.
_MEDIA_TYPE = re.compile(rf'{_TOKEN}/{_TOKEN}( ?; ?{_TOKEN}=({_TOKEN}|"[ !#-\[\]-~]*"))*')
#: A file is the uploader's content, not the service's: if a browser ever renders one (an SVG or HTML opened
#: directly), it runs sandboxed (an opaque origin, no script), so it cannot act as the service's own pages.
_FILE_POLICY = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
#: After the size limit, this much more of a body is read and dropped so the 413 reaches the client.
_DRAIN_LIMIT = 16 << 20


class FileUploadHandler(BaseHandler):
    """``POST /api/v1/analysis/{uid}/files?name=…[&sha256=…][&uid=…]`` with the file as the body.

    ``uid`` keeps a uid the client chose (a spooled or archived file); ``X-Restore-Time`` an
    import's original time (restore scope).
    """

    upload: Upload | None = None
    #: Why the body is being read and dropped (too large, or the database failed mid-upload).
    _refusal: AnalysisStoreError | None = None
    _discarded = 0

    async def prepare(self) -> None:
        if self.request.method != "POST":
            pending = super().prepare()
            if pending is not None:
                await pending
            return
        self._refuse_foreign_hosts()
        self._authorize()
        self._refuse_other_sites_writes()
        check_content_encoding(self.request.headers.get("Content-Encoding"))  # stored as sent: never decoded
        name = self.get_query_argument("name", "")
        if not _NAME.fullmatch(name) or name in (".", ".."):
            raise BadRequest("name= is required: 1 to 255 characters, no control characters or slashes")
        sha256 = self.get_query_argument("sha256", None) or self.request.headers.get("X-Content-SHA256")
        if sha256 is not None and not _SHA256.fullmatch(sha256):
            raise BadRequest("sha256 must be 64 hexadecimal digits")
        self.expected_sha256 = sha256
        file_uid = self.get_query_argument("uid", None)
        if file_uid is not None and not _UID.fullmatch(file_uid):
            raise BadRequest("uid, when given, is 1 to 255 characters without control characters")
        restore_time = self.restore_time()
        limit = self.config.max_file_bytes
        if self.http1 is not None:
            self.http1.set_max_body_size(limit + _DRAIN_LIMIT)
        declared = self.request.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            self._refusal = PayloadTooLarge(f"file larger than {limit} bytes (the max_file_bytes setting)")
            if int(declared) > limit + _DRAIN_LIMIT:
                raise self._refusal  # too much to read and drop: the connection closes
            return  # the body is read and dropped so the 413 reaches the client
        content_type = self.request.headers.get("Content-Type", "application/octet-stream")[:200]
        uid = self.path_args[0] if self.path_args else ""
        self.upload = await self.store.files.begin(uid, name, content_type, limit, file_uid, restore_time)

    async def data_received(self, chunk: bytes) -> None:
        if self._refusal is not None:
            # Read and drop a little more so the client gets the 413 (or 503) rather than a reset
            # connection; far past that, closing the connection is the only bound.
            self._discarded += len(chunk)
            if self._discarded > _DRAIN_LIMIT:
                raise self._refusal
            return
        if self.upload is None:
            return
        try:
            await self.upload.write(chunk)
        except AnalysisStoreError as exc:  # too large, or the database failed: answer it, keep nothing
            self._refusal = exc
            self._discarded = len(chunk)
            self._discard()

    async def post(self, uid: str) -> None:
        if self._refusal is not None:
            raise self._refusal
        assert self.upload is not None
        # Handed over to finish(), which cleans up its own failures: a hang-up from here on must not
        # remove chunks whose document is being stored.
        upload, self.upload = self.upload, None
        doc, result = await self.store.files.finish(upload, self.expected_sha256)
        self.set_header("Location", f"/api/v1/files/{quote(doc['uid'], safe='')}")
        self.write_json({**doc, "result": result}, status=201 if result == "inserted" else 200)

    def on_finish(self) -> None:
        self._discard()
        super().on_finish()

    def on_connection_close(self) -> None:
        self._discard()

    def _discard(self) -> None:
        """A refused or broken upload leaves nothing behind."""
        if self.upload is not None:
            upload, self.upload = self.upload, None
            asyncio.ensure_future(_abort(upload))


async def _abort(upload: Upload) -> None:
    try:
        await upload.abort()
    except AnalysisStoreError as exc:  # the database is away: its chunks stay unlisted (no document)
        log.warning("could not remove the chunks of a refused upload of %r: %s", upload.name, exc)


class FileHandler(BaseHandler):
    """``GET /api/v1/files/{file_uid}``: the content, streamed, with ETag (sha256) and byte ranges."""

    async def get(self, file_uid: str) -> None:
        doc = await self.store.files.get(file_uid)
        start, end = self._range(doc["size"], f'"{doc["sha256"]}"')
        content_type = doc.get("content_type") or ""
        self.set_header("Content-Type", content_type if _MEDIA_TYPE.fullmatch(content_type) else "application/octet-stream")
        self.set_header("Content-Security-Policy", _FILE_POLICY)
        self.set_header("ETag", f'"{doc["sha256"]}"')
        self.set_header("Accept-Ranges", "bytes")
        self.set_header("Content-Disposition", attachment(doc["name"]))  # saved, never shown in the page's origin
        if self.request.headers.get("If-None-Match") == f'"{doc["sha256"]}"':
            self.set_status(304)
            return
        if (start, end) != (0, doc["size"]):
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {start}-{end - 1}/{doc['size']}")
        self.set_header("Content-Length", str(end - start))
        async with aclosing(self.store.files.read(doc, start, end)) as chunks:
            async for chunk in chunks:
                self.write(chunk)
                await self.flush()

    def _range(self, size: int, etag: str) -> tuple[int, int]:
        """The one byte range asked for (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``), or the whole file.

        As RFC 9110 says: a Range that is not one valid range-spec (``bytes=3-1``, several ranges, another
        unit) is ignored, and so is any Range when ``If-Range`` names another version; only a valid
        range that starts past the end (or ``bytes=-0``) is unsatisfiable (416).
        """
        header = self.request.headers.get("Range")
        match = _RANGE.fullmatch(header.strip()) if header else None
        if header is None or match is None or match.groups() == ("", ""):
            return 0, size
        if_range = self.request.headers.get("If-Range")
        if if_range is not None and if_range.strip() != etag:  # a date, or another version's ETag
            return 0, size
        first, last = (_byte_position(text) for text in match.groups())
        if first is None:  # the last n bytes; the whole file when it is shorter
            if last == 0:
                raise _RangeNotSatisfiable(f"range {header!r} asks for no bytes at all", size)
            return max(0, size - (last or 0)), size
        if last is not None and last < first:
            return 0, size  # not a valid range-spec: ignored
        if first >= size:
            raise _RangeNotSatisfiable(f"range {header!r} starts beyond the file's {size} bytes", size)
        return first, min(size, last + 1 if last is not None else size)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, _RangeNotSatisfiable):  # headers set before the error are cleared: set it here
            self.set_header("Content-Range", f"bytes */{exc.size}")
        super().write_error(status_code, **kwargs)


def _byte_position(digits: str) -> int | None:
    """A Range bound; one past any file size when it has more digits than a 64-bit size (int() refuses thousands)."""
    if not digits:
        return None
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else _BEYOND_ANY_FILE


class _RangeNotSatisfiable(AnalysisStoreError):
    status = 416
    type_name = "RangeNotSatisfiable"

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


routes = [
    (r"/api/v1/analysis/([^/]+)/files", FileUploadHandler),
    (r"/api/v1/files/([^/]+)", FileHandler),
]
