"""The checks every document passes, the same on both sides: its JSON Schema, and a record against its stream.

The service applies them to what it receives (``analysisstore.validation``);
the client applies them to a bundle before sending any of it, so what a local
check accepts the service does not quarantine. Each schema is compiled once
into Python code by fastjsonschema (about 30x faster than interpreting it,
which matters for bulk ingest); only a document that fails is re-checked with
jsonschema, whose errors name every offending field.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

import fastjsonschema
from jsonschema import Draft7Validator

from ..schemas import load_schema

__all__ = [
    "DocumentProblem",
    "schema_problem",
    "schema_errors",
    "json_path",
    "plain_message",
    "json_kind",
    "DTYPE_CHECKS",
    "check_record_keys",
]


class DocumentProblem(ValueError):
    """A document breaks the contract: ``message`` says how, ``details`` lists ``{"path", "message"}`` entries."""

    def __init__(self, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


@lru_cache(maxsize=None)
def _explaining_validator(doc_type: str) -> Draft7Validator:
    schema = load_schema(doc_type)
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


@lru_cache(maxsize=None)
def _compiled(doc_type: str) -> Callable[[Any], Any]:
    return fastjsonschema.compile(load_schema(doc_type))


def schema_problem(doc_type: str, doc: Any) -> str | None:
    """None if ``doc`` satisfies the schema of ``doc_type`` (the fast check), else the compiled validator's complaint."""
    try:
        _compiled(doc_type)(doc)
    except fastjsonschema.JsonSchemaException as exc:
        return str(exc)
    return None


def schema_errors(doc_type: str, doc: Any) -> list[Any]:
    """Every schema error of a document that failed :func:`schema_problem`, by path (jsonschema's errors)."""
    return sorted(_explaining_validator(doc_type).iter_errors(doc), key=lambda e: list(e.absolute_path))


def json_path(error: Any) -> str:
    """Where a schema error is, as a JSON pointer (``/data/x``)."""
    return "/" + "/".join(str(p) for p in error.absolute_path)


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
        # A lone surrogate is written as a visible escape, so the message itself stays encodable.
        quoted = value[:40].encode("utf-8", "backslashreplace").decode("utf-8")
        return f'the string "{quoted}"' + ("..." if len(value) > 40 else "")
    return "an array" if isinstance(value, list) else "an object"


def plain_message(error: Any) -> str:
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
    return str(error.message)


#: What each ``dtype`` of a stream's ``data_keys`` admits as a record's value (null is always allowed).
DTYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def check_record_keys(record: dict[str, Any], stream: dict[str, Any]) -> None:
    """Hold a (schema-valid) data_reference to its stream: only declared keys, values of the declared dtype.

    Raises :class:`DocumentProblem`.
    """
    data_keys = stream["data_keys"]
    data, timestamps = record["data"], record["timestamps"]
    declared = data_keys.keys()
    if not (data.keys() <= declared and timestamps.keys() <= declared):  # the usual case costs two set tests
        for field, values in (("data", data), ("timestamps", timestamps)):
            undeclared = sorted(k for k in values if k not in data_keys)
            if undeclared:
                raise DocumentProblem(
                    f"{field} keys {undeclared} are not declared in the data_keys of stream "
                    f"{stream['uid']!r} (declared: {sorted(data_keys)})",
                    [{"path": f"/{field}/{k}", "message": "undeclared data key"} for k in undeclared],
                )
    for key, value in data.items():
        dtype = data_keys[key]["dtype"]
        if value is not None and not DTYPE_CHECKS[dtype](value):
            raise DocumentProblem(
                f"data[{key!r}] is {json_kind(value)}, but stream {stream['uid']!r} declares dtype {dtype!r}",
                [{"path": f"/data/{key}", "message": f"expected {dtype}"}],
            )
