"""The browser view: a static page and its assets, shipped in the package (no build step, nothing fetched)."""
from __future__ import annotations

from importlib import resources

from ..errors import NotFound
from .base import OPEN, BaseHandler

__all__ = ["routes"]

_ASSETS = {
    "index.html": "text/html; charset=UTF-8",
    "app.js": "text/javascript; charset=UTF-8",
    "style.css": "text/css; charset=UTF-8",
}


class WebHandler(BaseHandler):
    """``GET /`` and ``GET /ui/{asset}``. The page is open; the data it shows needs the token when auth is on."""

    scopes = OPEN

    def get(self, asset: str = "index.html") -> None:
        if asset not in _ASSETS:
            raise NotFound(f"no asset {asset!r}")
        body = resources.files("analysisstore.web").joinpath(asset).read_bytes()
        self.set_header("Content-Type", _ASSETS[asset])
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Content-Security-Policy", "default-src 'self'; img-src 'self' blob: data:; "
                        "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
        self.set_header("X-Frame-Options", "DENY")  # no framing (clickjacking), for browsers without CSP 3
        self.finish(body)


routes = [
    (r"/", WebHandler),
    (r"/ui/([A-Za-z0-9_.-]+)", WebHandler),
]
