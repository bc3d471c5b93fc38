"""The analysis view and the revisions of headers and tails (PATCH lives with the documents)."""
from __future__ import annotations

from .base import BaseHandler

__all__ = ["routes"]

_UPDATABLE = "(analysis_header|analysis_tail)"


class AnalysisHandler(BaseHandler):
    """``GET /api/v1/analysis/{uid}``: header, streams with record counts, tail, derived status."""

    async def get(self, uid: str) -> None:
        self.write_json(await self.store.analysis(uid, self.config.stale_after_seconds))


class RevisionsHandler(BaseHandler):
    """``GET /api/v1/{doc_type}/{uid}/revisions``: every earlier version, oldest first."""

    async def get(self, doc_type: str, uid: str) -> None:
        self.write_json({"items": await self.store.revisions(doc_type, uid)})


routes = [
    (r"/api/v1/analysis/([^/]+)", AnalysisHandler),
    (rf"/api/v1/{_UPDATABLE}/([^/]+)/revisions", RevisionsHandler),
]
