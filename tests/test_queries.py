"""The query parser, without HTTP: input → expected MongoDB filter, or a 400."""
from __future__ import annotations

import pytest

from analysisstore.errors import BadRequest
from analysisstore.queries import (
    check_filter,
    combine,
    decode_cursor,
    encode_cursor,
    keyset_clauses,
    keyset_filter,
    parse_limit,
    parse_lookups,
    parse_order_by,
)


@pytest.mark.parametrize("args, expected", [
    ({"project": ["alpha"]}, {"project": "alpha"}),
    ({"provenance.analysis_name": ["uvvis"]}, {"provenance.analysis_name": "uvvis"}),
    ({"seq_num": ["3"]}, {"seq_num": {"$in": ["3", 3]}}),
    ({"invalid": ["true"]}, {"invalid": {"$in": ["true", True]}}),
    ({"time": ["1.5"]}, {"time": {"$in": ["1.5", 1.5]}}),
    ({"uid": ["[1]"]}, {"uid": "[1]"}),
    ({"limit": ["5"], "order_by": ["-time"], "cursor": ["x"]}, {}),
])
def test_parse_lookups(args, expected):
    """Query-string arguments become exact-match filters; paging parameters are not filters."""
    assert parse_lookups(args) == expected


@pytest.mark.parametrize("args", [
    {"$where": ["1"]}, {"a$b": ["1"]}, {"time__regex": ["1"]}, {"1abc": ["x"]}, {"a..b": ["x"]},
    {"project": ["a", "b"]}, {"x": ["y" * 5000]},
])
def test_parse_lookups_refuses(args):
    """Operators, odd names, repeated parameters and huge values are 400s."""
    with pytest.raises(BadRequest):
        parse_lookups(args)


@pytest.mark.parametrize("filt", [
    {},
    {"uid": "a"},
    {"time": {"$gte": 1, "$lt": 2}},
    {"$and": [{"a": 1}, {"$or": [{"b": {"$in": [1, 2]}}, {"c": {"$exists": False}}]}]},
    {"tags": {"$all": ["x"], "$size": 1}},
    {"items": {"$elemMatch": {"v": {"$gt": 3}}}},
    {"time": {"$not": {"$gt": 5}}},
    {"provenance": {"params": {"n": 3}}},
])
def test_check_filter_accepts_the_allowlist(filt):
    """Every documented operator passes unchanged."""
    assert check_filter(filt) is filt


@pytest.mark.parametrize("filt, needle", [
    ({"$where": "1"}, "$where"),
    ({"a": {"$regex": "x"}}, "$regex"),
    ({"$expr": {}}, "$expr"),
    ({"a": {"$function": {}}}, "$function"),
    ({"a": {"$accumulator": {}}}, "$accumulator"),
    ({"$and": [{"a": {"$where": "1"}}]}, "$where"),
    ({"a": {"b": {"$where": "1"}}}, "$where"),
    ({"a": {"$in": "x"}}, "$in"),
    ({"a": {"$in": list(range(1001))}}, "1000"),
    ({"a": {"$exists": "yes"}}, "$exists"),
    ({"a": {"$size": -1}}, "$size"),
    ({"$gt": 1}, "$gt"),
    ({"a.$b": 1}, "a.$b"),
    ([], "object"),
    ({"a": "x" * 5000}, "longer"),
])
def test_check_filter_refuses(filt, needle):
    """Anything outside the allowlist is a 400 naming the culprit."""
    with pytest.raises(BadRequest, match=__import__("re").escape(needle)):
        check_filter(filt)


def test_check_filter_refuses_deep_nesting():
    """Pathologically deep filters are refused."""
    filt: dict = {"a": 1}
    for _ in range(20):
        filt = {"$and": [filt]}
    with pytest.raises(BadRequest, match="deeper"):
        check_filter(filt)


@pytest.mark.parametrize("value, expected", [(None, 100), ("5", 5), (10_000, 10_000)])
def test_parse_limit(value, expected):
    """Default 100, anything from 1 to 10 000."""
    assert parse_limit(value) == expected


@pytest.mark.parametrize("value", ["0", "10001", "x", True, -3])
def test_parse_limit_refuses(value):
    """Out of range or non-numeric limits are 400s."""
    with pytest.raises(BadRequest):
        parse_limit(value)


@pytest.mark.parametrize("spec, expected", [
    (None, [("time", 1), ("uid", 1)]),
    ("-time", [("time", -1), ("uid", -1)]),
    (["uid"], [("uid", 1)]),
    ("time,-uid", [("time", 1), ("uid", -1)]),
])
def test_parse_order_by(spec, expected):
    """uid is appended as the tie-breaker in the first key's direction."""
    assert parse_order_by(spec) == expected


@pytest.mark.parametrize("spec", ["$where", "time,time", 5, "a,b,c,d,e"])
def test_parse_order_by_refuses(spec):
    """Unsortable fields, repeats and wrong types are 400s."""
    with pytest.raises(BadRequest):
        parse_order_by(spec)


def test_cursor_round_trip_and_binding():
    """A cursor decodes to the sort values it was made from, and only for its own query."""
    sort = parse_order_by("-time")
    secret = "s" * 32
    token = encode_cursor({"time": 5.0, "uid": "u"}, {"a": 1}, sort, secret=secret)
    assert decode_cursor(token, {"a": 1}, sort, secret=secret) == [5.0, "u"]
    with pytest.raises(BadRequest, match="different"):
        decode_cursor(token, {"a": 2}, sort, secret=secret)
    with pytest.raises(BadRequest, match="different"):
        decode_cursor(token, {"a": 1}, parse_order_by("time"), secret=secret)
    with pytest.raises(BadRequest, match="not issued by this service"):
        decode_cursor(token, {"a": 1}, sort, secret="t" * 32)


def test_keyset_filter():
    """The page after (t, u) in descending time order."""
    assert keyset_clauses([5.0, "u"], [("time", -1), ("uid", -1)]) == [
        {"time": 5.0, "uid": {"$lt": "u"}}, {"time": {"$lt": 5.0}}]
    assert keyset_filter([5.0, "u"], [("time", -1), ("uid", -1)]) == {
        "$or": [{"time": 5.0, "uid": {"$lt": "u"}}, {"time": {"$lt": 5.0}}]}


def test_keyset_filter_with_nulls():
    """Null/missing values sort lowest: ascending after null means any non-null; descending adds nulls."""
    assert keyset_clauses([None, "u"], [("sample", 1), ("uid", 1)]) == [
        {"sample": None, "uid": {"$gt": "u"}}, {"sample": {"$ne": None}}]
    assert keyset_clauses(["b", "u"], [("sample", -1), ("uid", -1)]) == [
        {"sample": "b", "uid": {"$lt": "u"}}, {"sample": {"$lt": "b"}}, {"sample": None}]
    assert keyset_clauses([None, "u"], [("sample", -1), ("uid", -1)]) == [{"sample": None, "uid": {"$lt": "u"}}]


def test_combine_keeps_filters_flat_when_it_can():
    """Non-overlapping filters merge into one conjunction; overlapping ones use $and."""
    assert combine({"a": 1}, {"time": {"$gt": 2}}) == {"a": 1, "time": {"$gt": 2}}
    assert combine({"time": {"$lt": 9}}, {"time": {"$gt": 2}}) == {"$and": [{"time": {"$lt": 9}}, {"time": {"$gt": 2}}]}
    assert combine({}, {"b": 2}) == {"b": 2}


@pytest.mark.parametrize("args, expected", [
    ({"time__gte": ["2023-11-14T22:13:20Z"]}, {"time": {"$gte": 1_700_000_000.0}}),
    ({"time__lt": ["2023-11-14T22:13:20"]}, {"time": {"$lt": 1_700_000_000.0}}),
    ({"time__range": ["1,2"]}, {"time": {"$gte": 1, "$lte": 2}}),
    ({"time__gt": ["1"], "time__lte": ["9"]}, {"time": {"$gt": 1, "$lte": 9}}),
    ({"seq_num__ne": ["3"]}, {"seq_num": {"$nin": ["3", 3]}}),
    ({"sample__in": ["a,b"]}, {"sample": {"$in": ["a", "b"]}}),
    ({"seq_num__nin": ["1,2"]}, {"seq_num": {"$nin": ["1", 1, "2", 2]}}),
    ({"tags__contains": ["x,y"]}, {"tags": {"$all": ["x", "y"]}}),
    ({"tags__overlap": ["x,y"]}, {"tags": {"$in": ["x", "y"]}}),
    ({"reason__isnull": ["true"]}, {"reason": {"$eq": None}}),
    ({"reason__isnull": ["false"]}, {"reason": {"$ne": None}}),
    ({"notes__exists": ["false"]}, {"notes": {"$exists": False}}),
    ({"sample__startswith": ["Si.("]}, {"sample": {"$regex": "^Si\\.\\("}}),
    ({"owner__icontains": ["a*b"]}, {"owner": {"$regex": "a\\*b", "$options": "i"}}),
    ({"provenance.analysis_name__exact": ["uvvis"]}, {"provenance.analysis_name": "uvvis"}),
    ({"sample__startswith": ["a"], "sample__icontains": ["b"]},
     {"$and": [{"sample": {"$regex": "^a"}}, {"sample": {"$regex": "b", "$options": "i"}}]}),
])
def test_lookup_operators(args, expected):
    """Each lookup operator maps to its MongoDB condition, values typed and patterns escaped."""
    assert parse_lookups(args) == expected


@pytest.mark.parametrize("args, needle", [
    ({"time__range": ["1"]}, "range"),
    ({"x__isnull": ["maybe"]}, "isnull"),
    ({"x__in": [","]}, "at least one"),
    ({"x__in": [",".join(["1"] * 1001)]}, "1000"),
    ({"x__icontains": ["a" * 300]}, "icontains"),
    ({"x__startswith": [""]}, "startswith"),
    ({"x__where": ["1"]}, "where"),
])
def test_lookup_operator_refusals(args, needle):
    """Malformed lookup values and unknown operators are 400s naming the problem."""
    with pytest.raises(BadRequest, match=needle):
        parse_lookups(args)
