"""The JSON Schemas of the four document types: the contract shared by server and client.

Only the standard library is imported here, so the thin client can load the
schemas without pulling in any server dependency.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["DOC_TYPES", "PARENT_FIELD", "load_schema"]

#: The document types, in the order an analysis writes them.
DOC_TYPES: tuple[str, ...] = (
    "analysis_header",
    "data_reference_header",
    "data_reference",
    "analysis_tail",
)

#: The foreign key of each document type, and the collection it points into.
PARENT_FIELD: dict[str, str] = {
    "data_reference_header": "analysis_header",
    "data_reference": "data_reference_header",
    "analysis_tail": "analysis_header",
}


@lru_cache(maxsize=None)
def load_schema(doc_type: str) -> dict[str, Any]:
    """Return the JSON Schema of ``doc_type`` as a dict (read once, then cached)."""
    if doc_type not in DOC_TYPES:
        raise KeyError(f"unknown document type {doc_type!r}; expected one of {', '.join(DOC_TYPES)}")
    text = resources.files(__name__).joinpath(f"{doc_type}.json").read_text(encoding="utf-8")
    return json.loads(text)
