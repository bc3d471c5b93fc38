"""Non-finite floats in JSON: the one encoding shared by the service, the client and bundles.

RFC 8259 JSON has no NaN or Infinity, but measured data does. On the wire and
in bundle files such a value is written as MongoDB Extended JSON writes it::

    {"$numberDouble": "NaN"}   {"$numberDouble": "Infinity"}   {"$numberDouble": "-Infinity"}

No stored document can hold a ``$``-prefixed field name, so the tag is never
ambiguous. Readers also accept Python's bare ``NaN``/``Infinity`` tokens (what
``json.dumps`` and older bundles emit). Both walks here run only when needed:
callers try the fast encoder first and look for :data:`MARKER` before decoding.
See docs/json-numbers.md. Standard library only (the thin client imports it).
"""
from __future__ import annotations

import math
from typing import Any, Callable

__all__ = ["TAG", "MARKER", "mentions_tag", "tag_nonfinite", "untag_nonfinite", "is_tagged"]

TAG = "$numberDouble"
#: The tag as it appears in encoded JSON text; absent means there is nothing to decode.
MARKER = b'"$numberDouble"'
_MARKER_TEXT = MARKER.decode()
_VALUES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_JSON_SCALARS = (str, int, float, bool, type(None))


def _spelling(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def mentions_tag(data: bytes | str) -> bool:
    """Could this JSON text hold a tagged value? (A substring search: cheap next to parsing.)"""
    if isinstance(data, (bytes, bytearray)):
        return MARKER in data
    return _MARKER_TEXT in data


def is_tagged(value: Any) -> bool:
    """Is ``value`` the tagged form of a non-finite float?"""
    return (isinstance(value, dict) and len(value) == 1 and isinstance(value.get(TAG), str)
            and value[TAG] in _VALUES)


def _encoded(value: Any, default: Callable[[Any], Any] | None) -> Any:
    """One value with a non-finite float tagged; containers shallow-copied (their children follow)."""
    if default is not None and not isinstance(value, (dict, list, tuple, *_JSON_SCALARS)):
        value = default(value)  # e.g. a NumPy array or scalar → plain Python values
    if isinstance(value, float):
        return value if math.isfinite(value) else {TAG: _spelling(value)}
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    return value


def tag_nonfinite(value: Any, default: Callable[[Any], Any] | None = None) -> Any:
    """A copy of ``value`` with every NaN/±Infinity replaced by its tag (``value`` itself is untouched).

    ``default`` converts objects JSON cannot hold (as the encoder's own ``default`` would).
    """
    root = _encoded(value, default)
    stack = [root] if isinstance(root, (dict, list)) and not is_tagged(root) else []
    while stack:  # iterative: a deeply nested document cannot exhaust the recursion limit
        container = stack.pop()
        keys = container.keys() if isinstance(container, dict) else range(len(container))
        for key in keys:
            child = container[key]
            is_number = isinstance(child, float)
            new = _encoded(child, default)
            container[key] = new
            if isinstance(new, (dict, list)) and not is_number:
                stack.append(new)
    return root


def untag_nonfinite(value: Any) -> Any:
    """``value`` with every tag replaced by its float, changed in place (containers fresh from a parser)."""
    if is_tagged(value):
        return _VALUES[value[TAG]]
    stack = [value] if isinstance(value, (dict, list)) else []
    while stack:
        container = stack.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, child in items:
            if isinstance(child, dict):
                if is_tagged(child):
                    container[key] = _VALUES[child[TAG]]  # replaces a value, never adds a key: safe mid-loop
                else:
                    stack.append(child)
            elif isinstance(child, list):
                stack.append(child)
    return value
