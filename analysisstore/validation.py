"""Validation at the edge of the service: every incoming document is checked here once, then trusted.

``prepare`` fills the server-side ``time``, rejects field names MongoDB would
misread, applies the document type's JSON Schema (the shared check of
``analysisstore.contract.validation``), and makes sure MongoDB can store the
result. ``check_record_keys`` holds a record to its stream's declared
``data_keys`` (the shared check, raised as a 422).
"""
from __future__ import annotations

import math
import re
from typing import Any

import bson
from jsonschema.exceptions import best_match

from .contract import validation as contract
from .contract.validation import json_kind
from .errors import PayloadTooLarge, ValidationFailed
from .queries import TIME_BOUND_MAGNITUDES
from .schemas import DOC_TYPES
from .service_fields import HIDDEN_FIELDS

__all__ = ["prepare", "check_record_keys", "reported_uid", "json_kind", "DOC_TYPES"]

_MAX_DETAILS = 10
#: Deeper documents are refused: nothing scientific nests this far, and MongoDB stops at 100.
MAX_DEPTH = 64
#: MongoDB's own limit for one document.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


#: Never in a field name: control characters and line separators (look-alike names such as
#: "notes\n"), lone surrogates (not Unicode; the database cannot store them).
_UNSAFE_NAME_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _bad_key(key: str) -> bool:
    return key.startswith("$") or "." in key or _UNSAFE_NAME_CHAR.search(key) is not None


def _shown(text: str) -> str:
    """``text`` safe to echo in a JSON response (a lone surrogate cannot be encoded)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def reported_uid(raw: Any) -> Any:
    """The uid of an incoming document as it may be echoed in a response (even when invalid)."""
    uid = raw.get("uid") if isinstance(raw, dict) else None
    return _shown(uid) if isinstance(uid, str) else uid


def _check_field_names(doc: dict[str, Any]) -> None:
    """Reject names MongoDB treats as operators or paths (``$x``, ``a.b``) at any depth."""
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        path, value = stack.pop()
        if path.count("/") > MAX_DEPTH:
            raise ValidationFailed(f"document nested deeper than {MAX_DEPTH} levels (at {path[:120]}...)")
        if isinstance(value, dict):
            for key, child in value.items():
                if not isinstance(key, str) or _bad_key(key):
                    raise ValidationFailed(
                        f"field name {key!r} at {path or '/'} is not allowed: names may not start with '$' "
                        "or contain '.', control characters or lone surrogates",
                        [{"path": f"{path}/{_shown(str(key))}", "message": "forbidden field name"}],
                    )
                if isinstance(child, (dict, list)):
                    stack.append((f"{path}/{key}", child))
        else:
            for i, child in enumerate(value):
                if isinstance(child, (dict, list)):
                    stack.append((f"{path}/{i}", child))


def prepare(doc_type: str, raw: Any, now: float) -> tuple[dict[str, Any], bool]:
    """Validate one incoming document; return it (with ``time`` filled) and whether time was filled.

    Raises :class:`ValidationFailed` naming the offending field.
    """
    if not isinstance(raw, dict):
        article = "an" if doc_type[0] in "aeiou" else "a"
        raise ValidationFailed(f"{article} {doc_type} must be a JSON object {{...}}, not {json_kind(raw)}")
    for reserved in ("_id", "_revision", *HIDDEN_FIELDS):
        if reserved in raw:
            raise ValidationFailed(
                f"field {reserved!r} is kept by the service; identify documents by 'uid'",
                [{"path": f"/{reserved}", "message": "not allowed"}],
            )
    time_filled = raw.get("time") is None
    if time_filled:
        raw["time"] = now
    _check_field_names(raw)
    problem = contract.schema_problem(doc_type, raw)
    if problem is not None:
        errors = contract.schema_errors(doc_type, raw)
        if not errors:  # the two validators disagree: report what the compiled one saw
            raise ValidationFailed(f"invalid {doc_type}: {problem}")
        first = best_match(errors)
        details = [{"path": contract.json_path(e), "message": contract.plain_message(e)}
                   for e in errors[:_MAX_DETAILS]]
        raise ValidationFailed(f"invalid {doc_type}: {contract.plain_message(first)} (at {contract.json_path(first)})",
                               details)
    _check_finite(doc_type, raw)
    _check_storable(doc_type, raw)
    return raw, time_filled


def _check_finite(doc_type: str, doc: dict[str, Any]) -> None:
    """time and seq_num order documents and page cursors: NaN or ±Infinity there would corrupt both.

    JSON Schema cannot say "finite" (NaN passes every bound), hence this check. Elsewhere non-finite
    values are data and are kept (docs/json-numbers.md).
    """
    for name in ("time", "seq_num"):
        value = doc.get(name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationFailed(
                f"invalid {doc_type}: {name} must be a finite number, got {value!r} (at /{name})",
                [{"path": f"/{name}", "message": "must be a finite number (not NaN or Infinity)"}],
            )
    when = doc.get("time")
    low, high = TIME_BOUND_MAGNITUDES
    if isinstance(when, (int, float)) and not isinstance(when, bool) and when != 0 and not low <= abs(when) <= high:
        # The embedded database's index misplaces such numbers: listings in time order left them out.
        raise ValidationFailed(
            f"invalid {doc_type}: time must be 0 or between {low:g} and {high:g} in magnitude, "
            f"got {str(when)[:40]} (at /time)",
            [{"path": "/time", "message": f"must be 0 or between {low:g} and {high:g} in magnitude"}],
        )


def _check_storable(doc_type: str, doc: dict[str, Any]) -> None:
    """Encode once now, so a value MongoDB cannot hold fails here and not half-way through a bulk."""
    try:
        size = len(bson.encode(doc))
    except (OverflowError, bson.errors.InvalidDocument) as exc:
        raise ValidationFailed(f"invalid {doc_type}: a value cannot be stored: {exc}") from None
    except UnicodeEncodeError:
        raise ValidationFailed(f"invalid {doc_type}: a text value holds a lone surrogate (\\ud800-\\udfff), "
                               "which is not valid Unicode and cannot be stored") from None
    if size > MAX_DOCUMENT_BYTES:
        raise PayloadTooLarge(
            f"{doc_type} {doc.get('uid')!r} is {size} bytes, over the {MAX_DOCUMENT_BYTES}-byte document limit; "
            "split large arrays into several records"
        )


def check_record_keys(record: dict[str, Any], stream: dict[str, Any]) -> None:
    """Hold a data_reference to its stream: only declared keys, values of the declared dtype (else 422)."""
    try:
        contract.check_record_keys(record, stream)
    except contract.DocumentProblem as problem:
        raise ValidationFailed(problem.message, problem.details) from None
