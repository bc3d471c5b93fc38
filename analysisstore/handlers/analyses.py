"""The analysis view and the revisions of headers and tails (PATCH lives with the documents)."""
from __future__ import annotations

import re
from contextlib import aclosing
from urllib.parse import quote

from ..bundle_download import bundle_zip
from ..contract.bundle import safe_name
from ..contract.vocabulary import UPDATABLE_TYPES
from .base import BaseHandler

__all__ = ["routes"]

_UPDATABLE = "(" + "|".join(UPDATABLE_TYPES) + ")"


def attachment(filename: str) -> str:
    """A Content-Disposition (RFC 6266): ``filename*`` the exact name, ``filename`` a plain-ASCII fallback.

    Both are encoded, so no character of a uid (quote, semicolon, CR/LF, non-ASCII) can end the
    parameter or add another one.
    """
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


class AnalysisHandler(BaseHandler):
    """``GET /api/v1/analysis/{uid}``: header, streams with record counts, files, tail, derived status."""

    async def get(self, uid: str) -> None:
        view = await self.store.analysis(uid, self.config.stale_after_seconds)
        view["files"] = await self.store.files.of_analysis(uid)
        self.write_json(view)


class BundleHandler(BaseHandler):
    """``GET /api/v1/analysis/{uid}/bundle``: the analysis as a bundle ``.zip``, streamed as it is read."""

    async def get(self, uid: str) -> None:
        # An unknown uid raises before the first piece, while the error can still replace these headers.
        self.set_header("Content-Type", "application/zip")
        self.set_header("Content-Disposition", attachment(f"{safe_name(uid)}.zip"))
        source = f"{self.request.protocol}://{self.request.host}"
        async with aclosing(bundle_zip(self.store, uid, source)) as pieces:
            async for piece in pieces:
                if piece:  # each piece goes out as soon as it is compressed
                    self.write(piece)
                    await self.flush()
        self.finish()


class RevisionsHandler(BaseHandler):
    """``GET /api/v1/{doc_type}/{uid}/revisions``: every earlier version, oldest first."""

    async def get(self, doc_type: str, uid: str) -> None:
        self.write_json({"items": await self.store.revisions(doc_type, uid)})


routes = [
    (r"/api/v1/analysis/([^/]+)", AnalysisHandler),
    (r"/api/v1/analysis/([^/]+)/bundle", BundleHandler),
    (rf"/api/v1/{_UPDATABLE}/([^/]+)/revisions", RevisionsHandler),
]
