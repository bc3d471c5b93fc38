"""Concrete URLs for the templated paths of an OpenAPI document (shared by the OpenAPI tests)."""
from __future__ import annotations

from typing import Any, Iterator

EXAMPLES = {"doc_type": ["analysis_header", "data_reference"], "uid": ["some-uid"]}
_UPDATABLE = ["analysis_header", "analysis_tail"]


def documented_operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(path template, method, concrete url) for every documented operation."""
    for path, item in spec["paths"].items():
        for method in ("get", "post", "patch", "put", "delete"):
            if method not in item:
                continue
            enum = next((p["schema"].get("enum") for p in item.get("parameters", [])
                         if p["name"] == "doc_type"), None)
            for doc_type in (enum or EXAMPLES["doc_type"]):
                url = path.replace("{doc_type}", doc_type).replace("{uid}", EXAMPLES["uid"][0])
                yield path, method, url
                if "{doc_type}" not in path:
                    break
