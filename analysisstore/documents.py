"""Validation at the edge: every document is checked here once, then trusted.

``prepare`` fills the server-side ``time``, rejects field names MongoDB would
misread, and applies the document type's JSON Schema. Each schema is compiled
once into Python code by fastjsonschema (about 30x faster than interpreting
it, which matters for bulk ingest); only a document that fails is re-checked
with jsonschema, whose error reports name every offending field.
``check_record_keys`` holds a record to its stream's declared ``data_keys``.
"""
from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any, Callable

import bson
import fastjsonschema
from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match

from .errors import PayloadTooLarge, ValidationFailed, encodable
from .schemas import DOC_TYPES, load_schema
from .service_fields import HIDDEN_FIELDS

__all__ = ["prepare", "check_record_keys", "reported_uid", "DOC_TYPES"]

_MAX_DETAILS = 10
#: Deeper documents are refused: nothing scientific nests this far, and MongoDB stops at 100.
MAX_DEPTH = 64
#: MongoDB's own limit for one document.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024

_DTYPE_CHECKS = {
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


@lru_cache(maxsize=None)
def _validator(doc_type: str) -> Draft7Validator:
    schema = load_schema(doc_type)
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


@lru_cache(maxsize=None)
def _compiled(doc_type: str) -> Callable[[Any], Any]:
    return fastjsonschema.compile(load_schema(doc_type))


def _schema_problem(doc_type: str, doc: dict[str, Any]) -> str | None:
    """None if ``doc`` satisfies its schema, else the compiled validator's complaint."""
    try:
        _compiled(doc_type)(doc)
    except fastjsonschema.JsonSchemaException as exc:
        return str(exc)
    return None


def _json_path(error: Any) -> str:
    return "/" + "/".join(str(p) for p in error.absolute_path)


#: Never in a field name: control characters and line separators (look-alike names such as
#: "notes\n"), lone surrogates (not Unicode; the database cannot store them).
_UNSAFE_NAME_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

_JSON_KINDS = {"object": "an object", "array": "an array", "string": "a string", "number": "a number",
               "integer": "an integer", "boolean": "true or false", "null": "null"}


def json_kind(value: Any) -> str:
    """What a value is, in JSON's words: 'null', 'true', 'a string', 'an object'... (never a Python type name)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f'the string "{encodable(value[:40])}"' + ("..." if len(value) > 40 else "")
    return "an array" if isinstance(value, list) else "an object"


def _plain_message(error: Any) -> str:
    """A schema error in plain words: jsonschema's own messages quote Python values (True, None, 'x')."""
    where = "/".join(str(p) for p in error.absolute_path) or "the document"
    if error.validator == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return f"{where} must be {' or '.join(_JSON_KINDS.get(t, str(t)) for t in wanted)}, not {json_kind(error.instance)}"
    if error.validator == "required":
        missing = next((name for name in error.validator_value if name not in error.instance), "?")
        return f"the required field {missing!r} is missing"
    if error.validator == "enum":
        return f"{where} must be one of {', '.join(map(str, error.validator_value))}, not {json_kind(error.instance)}"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"field(s) {', '.join(extra)} are not allowed here"
    return error.message


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
    problem = _schema_problem(doc_type, raw)
    if problem is not None:
        errors = sorted(_validator(doc_type).iter_errors(raw), key=lambda e: list(e.absolute_path))
        if not errors:  # the two validators disagree: report what the compiled one saw
            raise ValidationFailed(f"invalid {doc_type}: {problem}")
        first = best_match(errors)
        details = [{"path": _json_path(e), "message": _plain_message(e)} for e in errors[:_MAX_DETAILS]]
        raise ValidationFailed(f"invalid {doc_type}: {_plain_message(first)} (at {_json_path(first)})", details)
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
    """Hold a data_reference to its stream: only declared keys, values of the declared dtype."""
    data_keys = stream["data_keys"]
    for field in ("data", "timestamps"):
        undeclared = sorted(k for k in record[field] if k not in data_keys)
        if undeclared:
            raise ValidationFailed(
                f"{field} keys {undeclared} are not declared in the data_keys of stream "
                f"{stream['uid']!r} (declared: {sorted(data_keys)})",
                [{"path": f"/{field}/{k}", "message": "undeclared data key"} for k in undeclared],
            )
    for key, value in record["data"].items():
        dtype = data_keys[key]["dtype"]
        if value is not None and not _DTYPE_CHECKS[dtype](value):
            raise ValidationFailed(
                f"data[{key!r}] is {json_kind(value)}, but stream {stream['uid']!r} "
                f"declares dtype {dtype!r}",
                [{"path": f"/data/{key}", "message": f"expected {dtype}"}],
            )
