"""JSON text of documents as it travels: request bodies, responses and bundle members.

Strict JSON: NaN and ±Infinity are written tagged (``{"$numberDouble": "NaN"}``,
docs/json-numbers.md) and read back as floats, as are bare NaN tokens.
"""
from __future__ import annotations

from typing import Any

import ujson

from ..schemas.json_numbers import mentions_tag, tag_nonfinite, untag_nonfinite

__all__ = ["dumps", "dumps_text", "loads"]


def _to_json_native(obj: Any) -> Any:
    """NumPy arrays and scalars (anything with ``tolist``) become plain JSON values."""
    tolist = getattr(obj, "tolist", None)
    if tolist is None:
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
    return tolist()


def dumps_text(obj: Any, escape_forward_slashes: bool = True) -> str:
    """Strict JSON text of ``obj``; NaN/±Infinity tagged as ``{"$numberDouble": "NaN"}`` (docs/json-numbers.md).

    The fast encoder runs first; only when it meets a non-finite float is the value copied with tags.
    """
    try:
        return _ujson_text(obj, escape_forward_slashes)
    except OverflowError:
        return _ujson_text(tag_nonfinite(obj, _to_json_native), escape_forward_slashes)


def _ujson_text(obj: Any, escape_forward_slashes: bool) -> str:
    return ujson.dumps(obj, ensure_ascii=False, reject_bytes=True, allow_nan=False, default=_to_json_native,
                       escape_forward_slashes=escape_forward_slashes)


def dumps(obj: Any) -> bytes:
    """Encode a request body; analysis scripts may hand in NumPy values (and NaN) directly."""
    return dumps_text(obj).encode()


def loads(data: bytes | str) -> Any:
    """Decode JSON from the service or a bundle: tagged values and bare NaN/Infinity become floats."""
    parsed = ujson.loads(data)
    return untag_nonfinite(parsed) if mentions_tag(data) else parsed
