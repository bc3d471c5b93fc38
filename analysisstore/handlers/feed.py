"""``GET /api/v1/changes`` (the change feed a mirror pulls) and ``/api/v1/mirror_positions/{key}``."""
from __future__ import annotations

import re
from typing import Any

from ..errors import BadRequest, NotFound
from ..queries import check_integer, check_text, parse_limit, parse_lookups
from ..store._changes import MAX_FEED_LIMIT
from .base import BaseHandler

__all__ = ["routes", "DEFAULT_FEED_LIMIT"]

DEFAULT_FEED_LIMIT = 1_000
_KEY = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_POSITION_KEYS = frozenset({"position", "remote", "where", "conflicts"})
MAX_RECORDED_CONFLICTS = 1_000


class ChangesHandler(BaseHandler):
    """Settled writes after ``after``, in position order; the lookups filter by the analysis header."""

    async def get(self) -> None:
        args = {k: [v.decode("utf-8", "replace") for v in vs] for k, vs in self.request.query_arguments.items()}
        for name in ("after", "limit"):
            if len(args.get(name, [])) > 1:
                raise BadRequest(f"query parameter {name!r} given {len(args[name])} times")
        after_text = args.get("after", ["0"])[0]
        if not re.fullmatch(r"[0-9]{1,19}", after_text):
            raise BadRequest(f"after must be a position (a non-negative integer), got {after_text!r}")
        after = check_integer(int(after_text), "after")
        limit = parse_limit(args.get("limit", [None])[0], default=DEFAULT_FEED_LIMIT, maximum=MAX_FEED_LIMIT)
        header_filter = parse_lookups(args, reserved=("after",))
        self.write_json(await self.store.feed.read(after, limit, header_filter or None))


class MirrorPositionHandler(BaseHandler):
    """Where a mirror's pulls got to: ``GET`` it, ``PUT`` ``{"position": n, ...}`` after each applied page."""

    def body_limit(self) -> int:
        return self.config.max_query_bytes

    @staticmethod
    def _key(key: str) -> str:
        if not _KEY.fullmatch(key):
            raise BadRequest("a mirror position key is 1-128 letters, digits, '.', '_' or '-'")
        return key

    async def get(self, key: str) -> None:
        found = await self.store.mirror_positions.get(self._key(key))
        if found is None:
            raise NotFound(f"no mirror position {key!r}: nothing was pulled with it yet")
        self.write_json(found)

    async def put(self, key: str) -> None:
        key = self._key(key)
        body = self.json_body()
        if not isinstance(body, dict) or set(body) - _POSITION_KEYS or "position" not in body:
            raise BadRequest('a mirror position is {"position": n, "remote": url, "where": [...], '
                             '"conflicts": [...]}')
        position = body["position"]
        if isinstance(position, bool) or not isinstance(position, int) or position < 0:
            raise BadRequest("position must be a non-negative integer")
        check_integer(position, "position")
        record: dict[str, Any] = {"position": position, "remote": check_text(str(body.get("remote", "")), "remote"),
                                  "where": _strings(body.get("where", []), "where")}
        conflicts = body.get("conflicts", [])
        if not isinstance(conflicts, list) or len(conflicts) > MAX_RECORDED_CONFLICTS \
                or not all(isinstance(c, dict) for c in conflicts):
            raise BadRequest(f"conflicts is a list of at most {MAX_RECORDED_CONFLICTS} objects")
        record["conflicts"] = [{k: str(v)[:1000] for k, v in c.items() if k in ("doc_type", "uid", "reason")}
                               for c in conflicts]
        self.write_json(await self.store.mirror_positions.put(key, record))


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or len(value) > 100 or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{name} is a list of at most 100 strings")
    return [check_text(v, name) for v in value]


routes = [(r"/api/v1/changes", ChangesHandler), (r"/api/v1/mirror_positions/([^/]+)", MirrorPositionHandler)]
