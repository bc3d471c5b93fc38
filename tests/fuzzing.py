"""Hypothesis strategies for hostile input, and the checks every answer to it must pass (shared by the fuzz tests).

The example count comes from ``ANALYSISSTORE_FUZZ_EXAMPLES``: unset (the CI run) it is a
small fixed number with derandomized generation, so the run takes the same examples and
time every time; set (a longer run by hand) generation is random and failing examples are
kept in ``.hypothesis/`` and replayed first on the next run.
"""
from __future__ import annotations

import json
import os
import string
import uuid
from typing import Any
from urllib.parse import quote

import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from analysisstore.client.lookups import OPERATORS
from analysisstore.store._changes import FEED_COLLECTION
from helpers import assert_error

__all__ = [
    "CI_EXAMPLES", "DOC_TYPES", "EXAMPLES", "LONG_RUN", "Snapshot", "assert_sound", "encode_json", "filters",
    "fuzz_settings", "garbage_bodies", "header_values", "hostile_documents", "hostile_text", "json_values",
    "legacy_messages", "lookups", "patch_bodies", "query_string", "search_bodies", "uids",
]

CI_EXAMPLES = 30
_EXPLICIT = os.environ.get("ANALYSISSTORE_FUZZ_EXAMPLES")
EXAMPLES = int(_EXPLICIT) if _EXPLICIT else CI_EXAMPLES
#: A run by hand with its own example count: random generation, an example database, every schemathesis phase.
LONG_RUN = _EXPLICIT is not None
DOC_TYPES = ("analysis_header", "data_reference_header", "data_reference", "analysis_tail")


def fuzz_settings(examples: int = EXAMPLES) -> settings:
    """Settings of every fuzz test: the example count above, no deadline (real HTTP), stable in CI."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=not LONG_RUN,
        database=DirectoryBasedExampleDatabase(".hypothesis/examples") if LONG_RUN else None,
        # One service per test serves every example: its database grows, which is the point.
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# ---- what every answer must be ---------------------------------------------------------------


def assert_sound(response: requests.Response, context: Any = None) -> None:
    """No 5xx; every 4xx in the one error shape."""
    assert response.status_code < 500, (context, response.status_code, response.text[:2000])
    if response.status_code >= 400:
        assert_error(response, response.status_code)


class Snapshot:
    """How many documents each collection of a service's database holds, and where its change feed ends.

    The change feed is left out of the counts: a write refused after its checks in the database
    (missing parent, finalized analysis) leaves its feed entry behind marked ``void``, which holds no
    document (docs/mirror.md); ``feed_since`` tells what a later snapshot's new entries are.
    """

    def __init__(self, database: Any) -> None:
        self.database = database
        counts = {name: database[name].count_documents({}) for name in database.list_collection_names()
                  if name != FEED_COLLECTION}
        self.counts = {name: count for name, count in counts.items() if count}
        last = database[FEED_COLLECTION].find_one({}, {"_id": 1}, sort=[("_id", -1)])
        self.feed_end = last["_id"] if last else 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and self.counts == other.counts

    def __repr__(self) -> str:
        return f"Snapshot({self.counts})"

    def grown(self, later: Snapshot) -> dict[str, int]:
        return {name: count - self.counts.get(name, 0) for name, count in later.counts.items()
                if count != self.counts.get(name, 0)}

    def feed_since(self) -> set[str]:
        """The states of the change-feed entries written after this snapshot."""
        return {entry["state"] for entry in self.database[FEED_COLLECTION].find({"_id": {"$gt": self.feed_end}})}


def encode_json(value: Any) -> bytes:
    """JSON as a hostile client writes it: NaN/Infinity bare, integers of any size, lone surrogates escaped."""
    return json.dumps(value, allow_nan=True, ensure_ascii=True).encode()


def query_string(pairs: list[tuple[str, str]]) -> str:
    """``name=value&...`` percent-encoded by hand: a lone surrogate goes out as the invalid UTF-8 it would be."""
    def part(text: str) -> str:
        return quote(text.encode("utf-8", "surrogatepass"), safe="")
    return "&".join(f"{part(name)}={part(value)}" for name, value in pairs)


# ---- text, names and values ------------------------------------------------------------------

_NASTY = ["\ud800", "\udfff", "\ud83d", "\r\n", "\n", "\r", '"', "'", "\\", "\x00", "\x7f", "\u2028", "\u202e",
          "\U0001f600", "\ufeff", "..", "../", "/", "%00", "%", "&", "=", "#", "?", "$where", "{", "}", "\t", " "]

#: Text a client may send: ordinary, plus control characters, quotes, emoji, lone surrogates, URL syntax.
hostile_text = st.one_of(
    st.text(max_size=20),
    st.lists(st.one_of(st.sampled_from(_NASTY), st.text(max_size=4)), min_size=1, max_size=6).map("".join),
    st.sampled_from(["", " ", "a" * 300, "a" * 5000, "null", "true", "1e400", "NaN", "-Infinity"]),
)

_FIELDS = ["uid", "time", "provenance", "analysis_header", "data_reference_header", "data_keys", "data",
           "timestamps", "seq_num", "exit_status", "reason", "tags", "notes", "invalid", "project", "sample",
           "status", "provenance.analysis_name", "provenance.params.smooth", "data.absorbance", "_id",
           "_revision", "_closing"]

#: Field names: real ones, dotted paths, '$' names, and anything else.
field_names = st.one_of(
    st.sampled_from(_FIELDS),
    st.sampled_from(["$where", "$set", "$gt", "a.b", ".a", "a.", "a..b", "$", "", "\ud800", "a\x00b", "a\nb",
                     "__proto__", "a" * 300]),
    hostile_text,
)

huge_ints = st.one_of(st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
                      st.integers(max_value=-(2**63) + 1, min_value=-(2**63) - 2),
                      st.sampled_from([10**30, -(10**30), 10**400]))
numbers = st.one_of(st.integers(), huge_ints, st.floats(), st.sampled_from([float("nan"), float("inf"),
                                                                             float("-inf"), -0.0, 1e308]))
scalars = st.one_of(st.none(), st.booleans(), numbers, hostile_text)


def _deeply_nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


#: Any JSON value, with hostile keys and scalars, and now and then one nested far too deep.
json_values = st.one_of(
    st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(field_names, inner, max_size=4)), max_leaves=10),
    st.sampled_from([40, 200, 1500]).map(_deeply_nested),
)


def uids(known: list[str] | None = None) -> st.SearchStrategy[Any]:
    """Uids: fresh ones, known ones (to reach deeper checks), hostile text and non-strings."""
    choices = [st.builds(lambda: str(uuid.uuid4())), hostile_text, scalars,
               st.sampled_from(["a" * 256, "a\r\nSet-Cookie: x=1", 'a"b', "\U0001f600", "\ud800"])]
    if known:
        choices.append(st.sampled_from(known))
    return st.one_of(*choices)


times = st.one_of(st.floats(), st.integers(), huge_ints, hostile_text, st.none(), st.booleans(),
                  st.just([1.0]), st.sampled_from([float("nan"), float("inf"), float("-inf"), -1.0, 1e300]))


# ---- documents -------------------------------------------------------------------------------


def _valid_document(doc_type: str, parents: dict[str, str]) -> dict[str, Any]:
    """A document that would be stored, under the given parents (a start for the mutations)."""
    doc: dict[str, Any] = {"uid": str(uuid.uuid4()), "time": 1_700_000_000.0}
    if doc_type == "analysis_header":
        doc["provenance"] = {"analysis_name": "fuzz", "params": {"n": 1}}
    elif doc_type == "data_reference_header":
        doc.update(analysis_header=parents["analysis_header"],
                   data_keys={"x": {"dtype": "number"}, "label": {"dtype": "string"}})
    elif doc_type == "data_reference":
        doc.update(data_reference_header=parents["data_reference_header"], seq_num=0,
                   data={"x": 1.0, "label": "a"}, timestamps={"x": 1.0, "label": 1.0})
    else:
        doc.update(analysis_header=parents["analysis_header"], exit_status="success")
    return doc


@st.composite
def hostile_documents(draw: st.DrawFn, doc_type: str, parents: dict[str, str]) -> Any:
    """A document of ``doc_type`` with one to three fields replaced, added or removed, or no object at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    doc = _valid_document(doc_type, parents)
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.one_of(st.sampled_from(sorted(doc)), field_names))
        action = draw(st.sampled_from(["replace", "drop", "nest"]))
        if action == "drop":
            doc.pop(field, None)
        elif field == "uid":
            doc["uid"] = draw(uids(list(parents.values())))
        elif field == "time":
            doc["time"] = draw(times)
        elif action == "nest" and isinstance(doc.get(field), dict):
            doc[field][draw(field_names)] = draw(json_values)
        else:
            doc[field] = draw(json_values)
    return doc


# ---- lookups in a query string ---------------------------------------------------------------

_DATES = ["2024-02-30", "2024-13-45", "2024-01-01T25:00", "0000-01-01", "9999-12-31T23:59:59+99:99",
          "2024-01-01T00:00:00Z", "2024-01-01 00:00", "1e400", "NaN", "-0"]
lookup_values = st.one_of(
    hostile_text, st.sampled_from(_DATES), huge_ints.map(str), numbers.map(repr),
    st.lists(st.one_of(hostile_text, huge_ints.map(str)), max_size=5).map(",".join),
)
_RESERVED_VALUES = {
    "limit": ["0", "-1", "1e400", "inf", "NaN", "12.7", "10001", "9" * 5000, "", "true", "\ud800"],
    "offset": ["-1", "1e400", "inf", "3.5", "9" * 30, "", "\ud800"],
    "order_by": [",", " , ,", "-", "+", "-time,time", "a,b,c,d,e", "$where", "time.", "\ud800", ""],
    "cursor": ["", "abc", "A" * 5000, "\ud800", "eyJ9"],
    "include_count": ["maybe", "", "1", "\ud800"],
    "latest": ["", "$where", "a..b", "\ud800"],
    "fields": ["", ",", "a,,b", "$where", ",".join(["a"] * 200)],
    "status": ["", "running", "nope", "\ud800"],
}


@st.composite
def lookups(draw: st.DrawFn) -> list[tuple[str, str]]:
    """``field__op=value`` pairs with every operator (and unknown ones), plus hostile paging parameters."""
    pairs = []
    for _ in range(draw(st.integers(0, 4))):
        field = draw(field_names)
        operator = draw(st.one_of(st.sampled_from(OPERATORS), st.sampled_from(["", "bogus", "where", "regex"]),
                                  hostile_text))
        name = field if operator == "" else f"{field}__{operator}"
        pairs.append((name, draw(lookup_values)))
    for name in draw(st.lists(st.sampled_from(sorted(_RESERVED_VALUES)), max_size=3)):
        pairs.append((name, draw(st.one_of(st.sampled_from(_RESERVED_VALUES[name]), hostile_text))))
    return pairs


# ---- JSON filters of a search body -----------------------------------------------------------

_ALLOWED_OPERATORS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$all", "$not",
                      "$elemMatch", "$size"]
_FORBIDDEN_OPERATORS = ["$where", "$regex", "$function", "$accumulator", "$expr", "$text", "$lookup", "$jsonSchema",
                        "$options", "$mod", "$type", "$near", "$comment", "$rand"]


def _condition(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    operator = st.sampled_from(_ALLOWED_OPERATORS + _FORBIDDEN_OPERATORS)
    return st.one_of(scalars, st.dictionaries(operator, st.one_of(scalars, st.lists(scalars, max_size=3), inner),
                                              min_size=1, max_size=2))


#: Filters: allowlisted and forbidden operators, hostile fields and values, logical trees and huge $or lists.
filters = st.recursive(
    st.dictionaries(field_names, _condition(st.nothing()), max_size=3),
    lambda inner: st.one_of(
        st.dictionaries(st.sampled_from(["$and", "$or", "$nor", "$not"]), st.lists(inner, max_size=3),
                        min_size=1, max_size=1),
        st.dictionaries(field_names, _condition(inner), max_size=3),
    ),
    max_leaves=8,
) | st.sampled_from([
    {"$or": [{"uid": str(i)} for i in range(5000)]},
    {"$or": [{"uid": {"$in": list(range(1000))}}] * 300},
    {"$where": "sleep(1000)"}, {"$function": {"body": "return 1", "args": [], "lang": "js"}},
    {"uid": {"$regex": "^(a+)+$"}}, {"$expr": {"$eq": ["$uid", "$uid"]}},
    _deeply_nested(100),
])


@st.composite
def search_bodies(draw: st.DrawFn) -> Any:
    """A search body: a filter with hostile paging members, or not an object at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    body: dict[str, Any] = {"filter": draw(filters)}
    odd_orders = st.sampled_from([[""], ["-"], [","], "-time", ["time", "time"], [1]])
    members = {"order_by": st.one_of(odd_orders, json_values),
               "limit": st.one_of(numbers, st.sampled_from([12.7, 5.0, 0, -1, 10**5, True])),
               "offset": st.one_of(numbers, st.sampled_from([3.5, -1, True])),
               "cursor": st.one_of(hostile_text, scalars), "fields": json_values,
               "include_count": scalars, "latest": st.one_of(field_names, scalars), "status": scalars}
    for name in draw(st.lists(st.sampled_from(sorted(members)), max_size=3, unique=True)):
        body[name] = draw(members[name])
    if draw(st.booleans()):
        body[draw(field_names)] = draw(json_values)
    return body


# ---- PATCH bodies and the legacy face --------------------------------------------------------


@st.composite
def patch_bodies(draw: st.DrawFn) -> Any:
    """``{"$set": ..., "$unset": [...]}`` with mutable, immutable and hostile fields, or anything else."""
    if draw(st.integers(0, 5)) == 0:
        return draw(json_values)
    body: dict[str, Any] = {}
    if draw(st.booleans()):
        body["$set"] = draw(st.one_of(st.dictionaries(field_names, json_values, max_size=3), json_values))
    if draw(st.booleans()):
        body["$unset"] = draw(st.one_of(st.lists(field_names, max_size=3), json_values))
    if draw(st.booleans()):
        body[draw(st.sampled_from(["$inc", "$rename", "$push", "uid", "tags"]))] = draw(json_values)
    return body


_SIGNATURE_STEMS = ["insert_", "find_"]


@st.composite
def legacy_messages(draw: st.DrawFn, doc_type: str, parents: dict[str, str]) -> Any:
    """A legacy-face message for ``doc_type``: right or wrong signature, hostile payload."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    signature = draw(st.one_of(
        st.sampled_from([f"{stem}{doc_type}" for stem in _SIGNATURE_STEMS] + ["bulk_data_reference_insert"]),
        st.sampled_from([f"insert_{other}" for other in DOC_TYPES]), hostile_text, scalars))
    if signature == "bulk_data_reference_insert":
        payload = {"data_header": draw(st.one_of(uids(list(parents.values())), json_values)),
                   "data_references": draw(st.lists(hostile_documents("data_reference", parents), max_size=3))}
    elif isinstance(signature, str) and signature.startswith("find_"):
        payload = draw(filters)
    else:
        payload = draw(hostile_documents(doc_type, parents))
    message: dict[str, Any] = {"signature": signature, "payload": payload}
    if draw(st.integers(0, 9)) == 0:
        message.pop(draw(st.sampled_from(["signature", "payload"])))
    return message


#: Header values a well-formed request may carry (visible latin-1 text; Tornado itself answers a bare 400
#: to control characters in a head, before any handler runs), with numbers that int() misreads.
header_values = st.one_of(
    st.text(alphabet=st.characters(codec="latin-1", min_codepoint=0x20, exclude_characters="\x7f"),
            max_size=30).map(lambda text: text.strip(" \t")),
    st.sampled_from(["²", "12", "-1", "1e400", "NaN", "inf", "999999999999999999999", "9" * 5000, ""]),
)

#: Raw bodies that are not JSON at all (or barely).
garbage_bodies = st.one_of(st.binary(max_size=40), st.sampled_from([
    b"", b" ", b"{", b"[1,", b'{"a":1}{', b"\xff\xfe", b"NaN", b"1e400", b'"\\ud800"', b"[" * 5000,
    b'{"a": 1, "a": 2}', b"\x00" * 10, ("9" * 5000).encode(),
]), st.text(alphabet=string.printable, max_size=30).map(str.encode))
