"""The OpenAPI 3 description of the v1 API, served at ``/api/v1/openapi.json``.

Written by hand next to the handlers; ``tests/test_openapi.py`` keeps it true
to the routes in both directions.
"""
from __future__ import annotations

import json
from typing import Any

from ._version import __version__
from .contract.vocabulary import UPDATABLE_TYPES
from .queries import LOOKUPS, MAX_LIMIT
from .schemas import DOC_TYPES, load_schema
from .store import MAX_LINEAGE_DEPTH

__all__ = ["openapi_spec"]

_ERROR_STATUSES = {
    "400": "Malformed JSON, or a query or parameter the service refuses",
    "401": "No bearer token, or an unknown one (when auth is on)",
    "403": "The token lacks the scope (read, write or restore) this call needs",
    "404": "Unknown uid, parent or route",
    "405": "Method not allowed here",
    "415": "The body is compressed (any Content-Encoding but identity) or not UTF-8 (UTF-16/32); "
           "send it uncompressed in UTF-8 (a UTF-8 byte order mark is accepted)",
    "416": "The byte range asked for is outside the file",
    "421": "The Host names a host this service does not answer to (without tokens: only loopback names, "
           "IP addresses, its --host and allowed_hosts; a guard against DNS rebinding)",
    "501": "The database cannot do this (change streams on a standalone mongod)",
    "409": "Conflict: a different document with this uid, a second tail, or a finalized analysis",
    "413": "Body, bulk or document too large",
    "422": "The document fails its JSON Schema or its stream's data_keys",
    "503": "The database does not answer; retry after Retry-After seconds",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: str) -> dict[str, Any]:
    """The error responses of one operation; every operation may answer 421 (a host it does not answer to)."""
    return {s: {"$ref": f"#/components/responses/E{s}"} for s in sorted({*statuses, "421"})}


_DOC_TYPE = {"name": "doc_type", "in": "path", "required": True, "schema": {"type": "string", "enum": list(DOC_TYPES)}}
_UPDATABLE = {"name": "doc_type", "in": "path", "required": True,
              "schema": {"type": "string", "enum": list(UPDATABLE_TYPES)}}
_UID = {"name": "uid", "in": "path", "required": True, "schema": {"type": "string"}}

_DIRECTION = {"name": "direction", "in": "query",
              "schema": {"type": "string", "enum": ["ancestors", "descendants"], "default": "ancestors"}}
_DEPTH = {"name": "depth", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LINEAGE_DEPTH, "default": 10},
          "description": "How many links to follow through provenance.inputs."}

_PAGING_PARAMETERS = [
    {"name": "order_by", "in": "query", "schema": {"type": "string"},
     "description": "Comma-separated fields, '-' for descending (uid is appended as tie-breaker). Default: time."},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"},
     "description": "meta.next_cursor of the previous page; bound to the same filter and order_by."},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
    {"name": "include_count", "in": "query", "schema": {"type": "boolean"}},
    {"name": "latest", "in": "query", "schema": {"type": "string"},
     "description": "Newest document per distinct value of this field."},
    {"name": "fields", "in": "query", "schema": {"type": "string"},
     "description": "Comma-separated fields to return (uid and order_by fields are always included)."},
    {"name": "status", "in": "query",
     "schema": {"type": "string", "enum": ["running", "success", "fail", "abort", "stale"]},
     "description": "analysis_header only: derived status."},
]

_LOOKUP_DESCRIPTION = (
    "Any other query parameter is a lookup `field=value` or `field__op=value` (dotted paths allowed); "
    f"operators: {', '.join(LOOKUPS)}. Numbers and booleans are typed, ISO-8601 times become epoch seconds."
)


_RESTORE_TIME = {"name": "X-Restore-Time", "in": "header", "schema": {"type": "number", "minimum": 0},
                 "description": "The original time of what an import recreates: the revision's replaced_at (PATCH) "
                                "or the file's time (upload). Needs a token with the restore scope (403 without)."}
_EXPECT_REVISION = {"name": "X-Expect-Revision", "in": "header", "schema": {"type": "integer", "minimum": 0},
                    "description": "Apply the PATCH only if the document is at this revision (409 otherwise)."}
_PREFER = {"name": "Prefer", "in": "header", "schema": {"type": "string"},
           "description": "With Accept: application/x-ndjson, `stream-end` asks for the last line "
                          '{"$end": {"count": n}} (confirmed by Preference-Applied: stream-end). See StreamEnd.'}

_NDJSON_DESCRIPTION = (
    "Every match, one document a line (Accept: application/x-ndjson). A stream that fails after the headers "
    'were sent ends with the line {"$error": <the Error body>} and the transfer is cut (no terminating chunk), '
    'so it never looks complete. With Prefer: stream-end a complete stream ends with {"$end": {"count": n}}; '
    "a consumer that asked for it treats a stream without that line, or with a different count, as incomplete. "
    "Documents never have a key starting with '$', so neither line can be mistaken for one."
)


def _page_response(item: dict[str, Any]) -> dict[str, Any]:
    response = _json({"type": "object", "required": ["items", "meta"], "properties": {
        "items": {"type": "array", "items": item}, "meta": _ref("PageMeta")}},
        "One page; with Accept: application/x-ndjson every match, one document a line")
    response["content"]["application/x-ndjson"] = {
        "schema": {"description": _NDJSON_DESCRIPTION,
                   "oneOf": [item, _ref("StreamEnd"), _ref("StreamError")]}}
    response["headers"] = {"Preference-Applied": {
        "description": "stream-end when the NDJSON stream will end with its $end line",
        "schema": {"type": "string"}}}
    return response


def openapi_spec() -> dict[str, Any]:
    """The whole document (built on request; it is small)."""
    any_document = {"oneOf": [_ref(t) for t in DOC_TYPES]}
    paths: dict[str, Any] = {
        "/api/v1/{doc_type}": {
            "parameters": [_DOC_TYPE],
            "post": {
                "summary": "Insert one document, or a JSON array of them (bulk)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "oneOf": [any_document, {"type": "array", "items": any_document}]}}}},
                "responses": {
                    "201": _json(_ref("WriteResult"), "Inserted"),
                    "200": _json({"oneOf": [_ref("WriteResult"), _ref("BulkResult")]},
                                 "Already stored (single) or per-item results (bulk)"),
                    **_errors("400", "404", "409", "413", "422", "503"),
                },
            },
            "get": {
                "summary": "List documents by lookups, with keyset paging",
                "description": _LOOKUP_DESCRIPTION,
                "parameters": [*_PAGING_PARAMETERS, _PREFER],
                "responses": {"200": _page_response(any_document), **_errors("400", "503")},
            },
        },
        "/api/v1/{doc_type}/search": {
            "parameters": [_DOC_TYPE],
            "post": {
                "summary": "Search with a JSON filter (the allowed MongoDB subset)",
                "parameters": [_PREFER],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("SearchRequest")}}},
                "responses": {"200": _page_response(any_document), **_errors("400", "503")},
            },
        },
        "/api/v1/{doc_type}/{uid}": {
            "parameters": [_DOC_TYPE, _UID],
            "get": {"summary": "One document by uid",
                    "responses": {"200": _json(any_document, "The document"), **_errors("404", "503")}},
            "patch": {
                "summary": "Update mutable fields of a header or tail (previous version kept as a revision)",
                "parameters": [_EXPECT_REVISION, _RESTORE_TIME],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Changes")}}},
                "responses": {"200": _json(any_document, "The updated document"),
                              **_errors("400", "403", "404", "405", "409", "422", "503")},
            },
        },
        "/api/v1/{doc_type}/{uid}/revisions": {
            "parameters": [_UPDATABLE, _UID],
            "get": {"summary": "Earlier versions of a header or tail, oldest first",
                    "responses": {"200": _json({"type": "object", "properties": {
                        "items": {"type": "array", "items": _ref("Revision")}}}, "Revisions"),
                        **_errors("404", "503")}},
        },
        "/api/v1/analysis/{uid}": {
            "parameters": [_UID],
            "get": {"summary": "One analysis whole: header, streams with record counts, tail, derived status",
                    "responses": {"200": _json(_ref("AnalysisView"), "The analysis"), **_errors("404", "503")}},
        },
        "/api/v1/analysis/{uid}/bundle": {
            "parameters": [_UID],
            "get": {"summary": "The analysis as a bundle .zip (format 2: manifest with creation info, header, "
                               "streams, records, tail, revisions, files)",
                    "responses": {"200": {"description": "A bundle archive",
                                          "content": {"application/zip": {"schema": {"type": "string",
                                                                                      "format": "binary"}}}},
                                  **_errors("404", "503")}},
        },
        "/api/v1/analysis/{uid}/lineage": {
            "parameters": [_UID],
            "get": {"summary": "The analyses this one was derived from (ancestors) or that used it (descendants)",
                    "parameters": [_DIRECTION, _DEPTH],
                    "responses": {"200": _json(_ref("Lineage"), "Nodes with depth and status, and input edges"),
                                  **_errors("400", "404", "503")}},
        },
        "/api/v1/analysis/{uid}/prov": {
            "parameters": [_UID],
            "get": {"summary": "The analysis and its ancestors as a W3C PROV document",
                    "parameters": [_DEPTH, {"name": "format", "in": "query", "schema": {
                        "type": "string", "enum": ["json", "provn", "xml"], "default": "json"}}],
                    "responses": {"200": {"description": "PROV-JSON, PROV-N or PROV-XML", "content": {
                        "application/json": {"schema": {"type": "object"}},
                        "text/provenance-notation": {"schema": {"type": "string"}},
                        "application/xml": {"schema": {"type": "string"}}}},
                        **_errors("400", "404", "503")}},
        },
        "/api/v1/events": {
            "get": {"summary": "Inserts and updates as Server-Sent Events (id: resume token; event: insert/update)",
                    "description": "Lookups filter the documents as on the listings. Send the last event's id as "
                                   "Last-Event-ID (or last_event_id) to resume without a gap.",
                    "parameters": [{"name": "doc_type", "in": "query", "schema": {"type": "string"},
                                    "description": "Comma-separated document types (default: all four)."},
                                   {"name": "last_event_id", "in": "query", "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "An endless text/event-stream", "content": {
                        "text/event-stream": {"schema": {"type": "string"}}}}, **_errors("400", "501", "503")}},
        },
        "/api/v1/changes": {
            "get": {"summary": "The change feed: every insert and accepted update, in one order (docs/mirror.md)",
                    "description": "Entries after position `after` whose writes have settled, oldest first, each "
                                   "with the document as that write left it. Lookups filter by the analysis "
                                   "header the document belongs to. Read on from `next`; `caught_up` is true "
                                   "when nothing settled lies beyond it.",
                    "parameters": [{"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                                   {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                                "maximum": 5000}}],
                    "responses": {"200": _json({"type": "object", "properties": {
                        "changes": {"type": "array", "items": {"type": "object"}},
                        "next": {"type": "integer"}, "last": {"type": "integer"},
                        "caught_up": {"type": "boolean"}}}, "A page of the feed"),
                        **_errors("400", "401", "403", "503")}},
        },
        "/api/v1/mirror_positions/{key}": {
            "parameters": [{"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"summary": "Where a mirror's pulls from one remote and filter got to",
                    "responses": {"200": _json({"type": "object"}, "The position"),
                                  **_errors("400", "404", "503")}},
            "put": {"summary": "Record where a mirror's pull got to (after each applied page)",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["position"], "properties": {
                            "position": {"type": "integer", "minimum": 0}, "remote": {"type": "string"},
                            "where": {"type": "array", "items": {"type": "string"}},
                            "conflicts": {"type": "array", "items": {"type": "object"}}}}}}},
                    "responses": {"200": _json({"type": "object"}, "Recorded"),
                                  **_errors("400", "401", "403", "413", "503")}},
        },
        "/api/v1/analysis/{uid}/files": {
            "parameters": [_UID],
            "post": {"summary": "Attach a file to a running analysis (the body is the file, streamed)",
                     "parameters": [{"name": "name", "in": "query", "required": True, "schema": {"type": "string"}},
                                    {"name": "sha256", "in": "query", "schema": {"type": "string"},
                                     "description": "Refuse the upload (422) unless its content has this sha256."},
                                    {"name": "uid", "in": "query", "schema": {"type": "string"},
                                     "description": "The file's uid (default: a new one); 409 if another file "
                                                    "has it."},
                                    _RESTORE_TIME],
                     "requestBody": {"required": True, "content": {"*/*": {"schema": {"type": "string",
                                                                                       "format": "binary"}}}},
                     "responses": {"201": _json(_ref("FileInfo"), "Stored"),
                                   "200": _json(_ref("FileInfo"), "Already stored under this name"),
                                   **_errors("400", "403", "404", "409", "413", "422", "503")}},
        },
        "/api/v1/files/{uid}": {
            "parameters": [_UID],
            "get": {"summary": "A file's content (ETag: sha256; single byte ranges)",
                    "description": "Always an attachment, nosniff, under a CSP sandbox without script (an uploaded "
                                   "SVG or HTML cannot act as the service's pages); a stored content type that is "
                                   "not a plain media type is served as application/octet-stream.",
                    "responses": {"200": {"description": "The content", "content": {
                        "*/*": {"schema": {"type": "string", "format": "binary"}}}},
                        "206": {"description": "The range asked for"}, **_errors("404", "416", "503")}},
        },
        "/api/v1/schemas/{doc_type}": {
            "parameters": [_DOC_TYPE],
            "get": {"summary": "The JSON Schema writes of this type are held to",
                    "responses": {"200": _json({"type": "object"}, "A JSON Schema"), **_errors("404")}},
        },
        "/api/v1/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _json({"type": "object"}, "OpenAPI 3")}},
        },
        "/api/v1/status": {"get": {"summary": "Version, database and approximate document counts",
                                   "responses": {"200": _json({"type": "object", "properties": {
                                       "version": {"type": "string"}, "database": {"type": "string"},
                                       "counts": {"type": "object"}}}, "Status"), **_errors("401", "403", "503")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (needs the read scope unless metrics_public)",
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}},
                                           **_errors("401", "403")}}},
        "/healthz": {"get": {"summary": "The process is up", "responses": {
            "200": _json({"type": "object"}, "Up")}}},
        "/readyz": {"get": {"summary": "The database answers", "responses": {
            "200": _json({"type": "object"}, "Ready"), **_errors("503")}}},
    }
    schemas: dict[str, Any] = {}
    for doc_type in DOC_TYPES:
        schemas.update(_component_schemas(doc_type))
    schemas.update({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["status", "type", "message", "details", "request_id"],
            "properties": {"status": {"type": "integer"}, "type": {"type": "string"},
                           "message": {"type": "string"}, "details": {"type": "array"},
                           "request_id": {"type": "string"}}}}},
        "StreamEnd": {"type": "object", "additionalProperties": False, "required": ["$end"],
                      "description": "Last line of a complete NDJSON stream (asked for with Prefer: stream-end)",
                      "properties": {"$end": {"type": "object", "required": ["count"], "properties": {
                          "count": {"type": "integer", "minimum": 0,
                                    "description": "documents in the stream before this line"}}}}},
        "StreamError": {"type": "object", "additionalProperties": False, "required": ["$error"],
                        "description": "Last line of an NDJSON stream that failed after its headers were sent; "
                                       "the transfer is then cut",
                        "properties": {"$error": {"type": "object", "required": [
                            "status", "type", "message", "details", "request_id"], "properties": {
                            "status": {"type": "integer"}, "type": {"type": "string"},
                            "message": {"type": "string"}, "details": {"type": "array"},
                            "request_id": {"type": "string"}}}}},
        "WriteResult": {"type": "object", "properties": {
            "uid": {"type": "string"}, "result": {"enum": ["inserted", "already stored"]}, "time": {"type": "number"}}},
        "BulkResult": {"type": "object", "properties": {
            "items": {"type": "array", "items": {"type": "object"}},
            "inserted": {"type": "integer"}, "already_stored": {"type": "integer"}}},
        "PageMeta": {"type": "object", "required": ["limit", "order_by", "next_cursor", "has_more"], "properties": {
            "limit": {"type": "integer"}, "order_by": {"type": "array", "items": {"type": "string"}},
            "next_cursor": {"type": ["string", "null"]}, "has_more": {"type": "boolean"},
            "count": {"type": "integer"}}},
        "SearchRequest": {"type": "object", "additionalProperties": False, "properties": {
            "filter": {"type": "object", "description": "Operators: $eq $ne $gt $gte $lt $lte $in $nin $exists "
                                                        "$all $and $or $not $elemMatch $size"},
            "order_by": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            "cursor": {"type": "string"}, "offset": {"type": "integer", "minimum": 0},
            "include_count": {"type": "boolean"}, "latest": {"type": "string"},
            "fields": {"type": "array", "items": {"type": "string"}},
            "status": {"enum": ["running", "success", "fail", "abort", "stale"]}}},
        "Changes": {"type": "object", "additionalProperties": False, "properties": {
            "$set": {"type": "object"}, "$unset": {"type": "array", "items": {"type": "string"}}}},
        "Revision": {"type": "object", "properties": {
            "uid": {"type": "string"}, "revision": {"type": "integer"}, "replaced_at": {"type": "number"},
            "request_id": {"type": "string"}, "document": {"type": "object"}}},
        "Lineage": {"type": "object", "required": ["uid", "direction", "depth", "nodes", "edges"], "properties": {
            "uid": {"type": "string"}, "direction": {"enum": ["ancestors", "descendants"]},
            "depth": {"type": "integer"},
            "nodes": {"type": "array", "items": {"type": "object", "properties": {
                "uid": {"type": "string"}, "depth": {"type": "integer"}, "analysis_name": {},
                "time": {"type": "number"}, "status": {}}}},
            "edges": {"type": "array", "items": {"type": "object", "properties": {
                "input": {"type": "string"}, "analysis": {"type": "string"}}}}}},
        "FileInfo": {"type": "object", "properties": {
            "uid": {"type": "string"}, "analysis_header": {"type": "string"}, "name": {"type": "string"},
            "size": {"type": "integer"}, "sha256": {"type": "string"}, "content_type": {"type": "string"},
            "time": {"type": "number"}, "result": {"enum": ["inserted", "already stored"]}}},
        "AnalysisView": {"type": "object", "properties": {
            "header": _ref("analysis_header"),
            "streams": {"type": "array", "items": _ref("data_reference_header")},
            "tail": {"oneOf": [_ref("analysis_tail"), {"type": "null"}]},
            "status": {"enum": ["running", "success", "fail", "abort", "stale"]}}},
    })
    for item in paths.values():  # every body is checked alike (request_body.py): compressed or not UTF-8 is a 415
        for operation in item.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation["responses"].update(_errors("415"))
    return {
        "openapi": "3.1.0",
        "info": {"title": "analysisstore", "version": __version__,
                 "description": "Provenance store for scientific data analysis. Every error has the Error shape. "
                                "When auth is on, reads need a token with the read scope and writes the write "
                                "scope (Authorization: Bearer <token>); /healthz, /readyz, the schemas and this "
                                "document are open. Without tokens, every route answers only requests whose Host "
                                "is a loopback name, an IP address, the service's --host or one of allowed_hosts "
                                "(421 otherwise: a guard against DNS rebinding)."},
        "paths": paths,
        "security": [{"bearer": []}, {}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
            "responses": {f"E{s}": _json(_ref("Error"), text) for s, text in _ERROR_STATUSES.items()},
        },
    }


def _component_schemas(doc_type: str) -> dict[str, Any]:
    """A document schema and its definitions as components (OpenAPI resolves $refs from its root)."""
    schema = {k: v for k, v in load_schema(doc_type).items() if k not in ("$schema", "$id")}
    definitions = schema.pop("definitions", {})
    text = json.dumps({"main": schema, "definitions": definitions})
    for key in definitions:
        text = text.replace(f'"#/definitions/{key}"', f'"#/components/schemas/{doc_type}.{key}"')
    moved = json.loads(text)
    return {doc_type: moved["main"], **{f"{doc_type}.{k}": v for k, v in moved["definitions"].items()}}
