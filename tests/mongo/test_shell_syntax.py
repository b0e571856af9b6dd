"""Tests for the shell-syntax query parser (intervalprocessing_dagster.mongo.shell_syntax).

Pure unit tests first; the tests named ``test_integration_*`` at the end run the parsed seeded queries against
a real SecantusDB server through pymongo, to prove the parsed values are BSON the server understands.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from bson import ObjectId
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.regex import Regex

from intervalprocessing_dagster.mongo.shell_syntax import (
    FORBIDDEN_OPERATORS,
    ForbiddenQueryError,
    MongoQuery,
    QuerySyntaxError,
    parse_document,
    parse_query,
)

SOURCE = "dataupdateconfigs 'Close stale audits' field 'query'"
UTC = dt.UTC
OID = "65d9a7c1e4b0f1a2b3c4d5e6"

# The four stored queries exactly as the old system seeded them (spec §2.2).
DAILY_AUDIT = "{ 'status' : { $in : [ 'Pending Review', 'Approved' ] } }"
WEEKLY_AUDIT = "{ 'status' : { $ne : 'Closed' } }"
DAILY_ACTIVE_MRR = (
    "aggregate([{$match:{'status':{$ne:'Closed'}}},{$lookup:{from:'providers',localField:'provider_id',"
    "foreignField:'_id',as:'provider'}},{$unwind:'$provider'}])"
)
WEEKLY_MRR = (
    "aggregate([{$lookup:{from:'providers',localField:'provider_id',foreignField:'_id',as:'provider'}},"
    "{$unwind:'$provider'}])"
)
LOOKUP_PROVIDER = {
    "$lookup": {"from": "providers", "localField": "provider_id", "foreignField": "_id", "as": "provider"}
}


def filter_of(text: str) -> dict[str, Any]:
    query = parse_query(text, source=SOURCE)
    assert not query.is_aggregate and query.filter is not None
    return query.filter


def value_of(text: str) -> Any:
    """The value of key ``v`` in a one-key filter, for testing value syntax."""
    return filter_of("{v: " + text + "}")["v"]


def syntax_error(query: Any) -> QuerySyntaxError:
    with pytest.raises(QuerySyntaxError) as info:
        parse_query(query, source=SOURCE)
    assert SOURCE in str(info.value)
    return info.value


def assert_at(error: QuerySyntaxError, line: int, column: int) -> None:
    assert (error.line, error.column) == (line, column), str(error)
    assert f"line {line}, column {column}" in str(error)


# ---------------------------------------------------------------------------------------------------------
# The seeded queries


def test_seeded_daily_audit_inventory_is_an_in_filter() -> None:
    query = parse_query(DAILY_AUDIT, source="storedqueries 'dailyAuditInventory'")
    assert query == MongoQuery(filter={"status": {"$in": ["Pending Review", "Approved"]}})
    assert not query.is_aggregate


def test_seeded_weekly_audit_inventory_is_a_ne_filter() -> None:
    assert parse_query(WEEKLY_AUDIT, source="s") == MongoQuery(filter={"status": {"$ne": "Closed"}})


def test_seeded_daily_active_mrr_inventory_is_a_three_stage_pipeline() -> None:
    query = parse_query(DAILY_ACTIVE_MRR, source="s")
    assert query.is_aggregate
    assert query == MongoQuery(
        pipeline=[{"$match": {"status": {"$ne": "Closed"}}}, LOOKUP_PROVIDER, {"$unwind": "$provider"}]
    )


def test_seeded_weekly_mrr_inventory_is_a_two_stage_pipeline() -> None:
    assert parse_query(WEEKLY_MRR, source="s") == MongoQuery(pipeline=[LOOKUP_PROVIDER, {"$unwind": "$provider"}])


# ---------------------------------------------------------------------------------------------------------
# Constructors


@pytest.mark.parametrize("text", [f"ObjectId('{OID}')", f'ObjectId("{OID}")', f"new ObjectId('{OID}')"])
def test_object_id(text: str) -> None:
    assert value_of(text) == ObjectId(OID)
    assert type(value_of(text)) is ObjectId


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ISODate('2024-02-24T00:00:00Z')", dt.datetime(2024, 2, 24, tzinfo=UTC)),
        ('ISODate("2024-02-24T00:00:00Z")', dt.datetime(2024, 2, 24, tzinfo=UTC)),
        ("ISODate('2024-02-24')", dt.datetime(2024, 2, 24, tzinfo=UTC)),  # no offset: UTC, as ISODate does
        ("ISODate('2024-02-24T10:30:00')", dt.datetime(2024, 2, 24, 10, 30, tzinfo=UTC)),
        ("ISODate('2024-02-24T01:00:00+01:00')", dt.datetime(2024, 2, 24, 0, 0, tzinfo=UTC)),
        ("ISODate('2024-02-24T00:00:00.123456Z')", dt.datetime(2024, 2, 24, 0, 0, 0, 123000, tzinfo=UTC)),
        ("new ISODate('2024-02-24T00:00:00Z')", dt.datetime(2024, 2, 24, tzinfo=UTC)),
        ("new Date('2024-02-24T00:00:00Z')", dt.datetime(2024, 2, 24, tzinfo=UTC)),
        ('new Date("2024-02-24")', dt.datetime(2024, 2, 24, tzinfo=UTC)),
        ("new Date(1708732800000)", dt.datetime(2024, 2, 24, tzinfo=UTC)),
        ("new   /* c */ Date(0)", dt.datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_dates_are_aware_utc_datetimes(text: str, expected: dt.datetime) -> None:
    value = value_of(text)
    assert value == expected
    assert value.utcoffset() == dt.timedelta(0)
    assert value.tzinfo is UTC


@pytest.mark.parametrize("text", ["NumberInt(5)", "NumberInt('5')", "NumberInt( 5 )"])
def test_number_int_is_a_plain_int(text: str) -> None:
    value = value_of(text)
    assert value == 5 and type(value) is int


@pytest.mark.parametrize(
    ("text", "expected"),
    [("NumberLong(5)", 5), ('NumberLong("5")', 5), ("NumberLong('-9223372036854775808')", -(2**63))],
)
def test_number_long_is_int64(text: str, expected: int) -> None:
    value = value_of(text)
    assert value == expected and type(value) is Int64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('NumberDecimal("1.5")', "1.5"),
        ("NumberDecimal('-0.10')", "-0.10"),
        ("NumberDecimal(0.10)", "0.10"),
        ("NumberDecimal(12345678901234567890.123)", "12345678901234567890.123"),  # beyond a float's digits
    ],
)
def test_number_decimal_is_decimal128_from_the_digits_as_written(text: str, expected: str) -> None:
    value = value_of(text)
    assert type(value) is Decimal128 and value == Decimal128(expected)


def test_literals_keep_their_types() -> None:
    doc = filter_of("{i: 5, n: -7, big: 3000000000, f: 1.5, e: 1e3, t: true, F: false, z: null, s: 'x'}")
    assert doc == {
        "i": 5,
        "n": -7,
        "big": 3000000000,
        "f": 1.5,
        "e": 1000.0,
        "t": True,
        "F": False,
        "z": None,
        "s": "x",
    }
    assert [type(doc[k]) for k in ("i", "n", "big", "f", "e", "t", "z")] == [
        int,
        int,
        int,
        float,
        float,
        bool,
        type(None),
    ]


# ---------------------------------------------------------------------------------------------------------
# Strings, structure, comments


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'single'", "single"),
        ('"double"', "double"),
        (r"'it\'s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        ('"it\'s"', "it's"),
        ("'say \"hi\"'", 'say "hi"'),
        (r"'tab\tnew\nline \u00e9'", "tab\tnew\nline \u00e9"),
        ("'back\\\\slash'", "back\\slash"),
        ("'// not a comment /* nor this */'", "// not a comment /* nor this */"),
        ("''", ""),
    ],
)
def test_string_quoting_and_escapes(text: str, expected: str) -> None:
    assert value_of(text) == expected


def test_parentheses_and_aggregate_inside_a_string_do_not_make_a_pipeline() -> None:
    # The old substring hack would have run this filter as aggregate( ... ).
    assert parse_query("{ note: 'run aggregate([ x ]) (later)' }", source=SOURCE) == MongoQuery(
        filter={"note": "run aggregate([ x ]) (later)"}
    )


def test_parentheses_inside_a_pipeline_string_do_not_cut_the_pipeline() -> None:
    # The old hack took the text up to the last ')': here that is inside the final string.
    query = parse_query("aggregate([{$match: {note: 'a ) b ('}}, {$match: {x: ')'}}])", source=SOURCE)
    assert query.pipeline == [{"$match": {"note": "a ) b ("}}, {"$match": {"x": ")"}}]


def test_quoted_and_unquoted_keys() -> None:
    assert filter_of("{'a.b': 1, \"$or\": [], _id: 2, $and: [], \u00e9t\u00e9: 3, a1: 4}") == {
        "a.b": 1,
        "$or": [],
        "_id": 2,
        "$and": [],
        "\u00e9t\u00e9": 3,
        "a1": 4,
    }


def test_nested_documents_and_arrays() -> None:
    text = """{
      $or: [ { status: { $in: ['Open', "Pending"] } },
             { 'provider.address': { city: 'X', tags: [[1, 2], [], [{deep: {deeper: [NumberInt(1)]}}]] } } ],
      empty: {}, none: []
    }"""
    assert filter_of(text) == {
        "$or": [
            {"status": {"$in": ["Open", "Pending"]}},
            {"provider.address": {"city": "X", "tags": [[1, 2], [], [{"deep": {"deeper": [1]}}]]}},
        ],
        "empty": {},
        "none": [],
    }


def test_comments_anywhere_between_tokens() -> None:
    text = """// leading comment
    /* block */ aggregate /* a */ ( // after paren
      [ { $match /* key */ : { 'status' : 'Open' } } // stage 1
      , /* between */ { $limit : 5 } ]
    ) /* trailing */ ; // done"""
    assert parse_query(text, source=SOURCE) == MongoQuery(pipeline=[{"$match": {"status": "Open"}}, {"$limit": 5}])


def test_leading_byte_order_mark_is_whitespace() -> None:
    assert filter_of("\ufeff{a: 1}") == {"a": 1}


def test_trailing_commas() -> None:
    assert filter_of("{a: [1, 2,], b: {c: 1,},}") == {"a": [1, 2], "b": {"c": 1}}
    assert parse_query("aggregate([{$limit: 1},])", source=SOURCE).pipeline == [{"$limit": 1}]


@pytest.mark.parametrize("text", ["aggregate([])", "  aggregate ( [ ] )  ", "aggregate([]);", "aggregate([]) ;\n"])
def test_aggregate_whitespace_and_optional_semicolon(text: str) -> None:
    assert parse_query(text, source=SOURCE) == MongoQuery(pipeline=[])


def test_empty_filter_and_empty_pipeline_are_valid() -> None:
    assert parse_query("{}", source=SOURCE) == MongoQuery(filter={})
    assert parse_query("aggregate([])", source=SOURCE).is_aggregate


# ---------------------------------------------------------------------------------------------------------
# Regex literals


@pytest.mark.parametrize(
    ("text", "pattern", "flags"),
    [
        ("/^abc/", "^abc", 0),
        ("/^abc/i", "^abc", re.IGNORECASE),
        ("/^a.c$/ms", "^a.c$", re.MULTILINE | re.DOTALL),
        ("/a b # comment/x", "a b # comment", re.VERBOSE),
        ("/a/imsx", "a", re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE),
        (r"/a\/b/", r"a\/b", 0),  # kept as written, as JavaScript's .source does
        ("/[/]x/", "[/]x", 0),  # a '/' inside a character class does not end the literal
        (r"/\d+'\"/", r"\d+'\"", 0),
    ],
)
def test_regex_literals(text: str, pattern: str, flags: int) -> None:
    value = value_of(text)
    assert isinstance(value, Regex)
    assert (value.pattern, value.flags) == (pattern, flags)


def test_regex_inside_an_array_and_followed_by_more_keys() -> None:
    assert filter_of("{name: {$in: [/^a/i, /b$/]}, x: 1}") == {"name": {"$in": [Regex("^a", "i"), Regex("b$")]}, "x": 1}


# ---------------------------------------------------------------------------------------------------------
# The typed forms


def test_typed_document_is_a_filter_and_is_copied() -> None:
    config = {"status": {"$in": ["Open"]}, "_id": ObjectId(OID)}
    query = parse_query(config, source=SOURCE)
    assert query == MongoQuery(filter=config)
    config["status"]["$in"].append("Closed")
    assert query.filter == {"status": {"$in": ["Open"]}, "_id": ObjectId(OID)}


@pytest.mark.parametrize("pipeline", [[{"$match": {}}, {"$limit": Int64(2)}], ({"$match": {}}, {"$limit": Int64(2)})])
def test_typed_array_is_a_pipeline(pipeline: Any) -> None:
    query = parse_query(pipeline, source=SOURCE)
    assert query.is_aggregate and query.pipeline == [{"$match": {}}, {"$limit": 2}]
    assert type(query.pipeline[1]["$limit"]) is Int64


@pytest.mark.parametrize(
    ("pipeline", "fragment"),
    [
        ([{"$match": {}}, "$limit"], "pipeline stage 2 must be a document"),
        ([{"$match": {}, "$limit": 1}], "pipeline stage 1 must have exactly one key"),
        ([{}], "pipeline stage 1 must have exactly one key"),
        ([{"match": {}}], "pipeline stage 1 must be named by a $ stage"),
    ],
)
def test_typed_array_stages_are_validated(pipeline: list[Any], fragment: str) -> None:
    error = syntax_error(pipeline)
    assert fragment in str(error)
    assert error.line is None


@pytest.mark.parametrize("query", [None, 5, b"{}"])
def test_other_types_are_refused(query: Any) -> None:
    assert "a query must be a string, a document or an array" in str(syntax_error(query))


def test_mongo_query_holds_exactly_one_kind() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        MongoQuery()
    with pytest.raises(ValueError, match="exactly one"):
        MongoQuery(filter={}, pipeline=[])


# ---------------------------------------------------------------------------------------------------------
# Malformed input: the message names the source, the position and what was expected


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "// only a comment", "/* nothing */"])
def test_empty_query(text: str) -> None:
    error = syntax_error(text)
    assert str(error) == f"{SOURCE}: query is empty"


def test_unbalanced_brace_points_at_the_end_and_names_the_opening() -> None:
    error = syntax_error("{ 'status' : { $ne : 'Closed' }")
    assert_at(error, 1, 32)
    assert "expected ',' or '}' to close the document opened at line 1, column 1" in str(error)


def test_unbalanced_brace_in_a_multiline_query() -> None:
    error = syntax_error("{\n  a: {\n    b: 1\n  ,\n  c: [1, 2}\n}")
    assert_at(error, 5, 11)
    assert "expected ',' or ']' to close the array opened at line 5, column 6, found '}'" in str(error)


def test_extra_closing_brace() -> None:
    error = syntax_error("{a: 1}}")
    assert_at(error, 1, 7)
    assert "expected nothing more after the filter document" in str(error)


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("{_id: ObjectId('xyz')}", 16, "bad argument to ObjectId: 'xyz' is not 24 hexadecimal digits"),
        ("{_id: ObjectId(12)}", 16, "bad argument to ObjectId"),
        ("{_id: ObjectId()}", 16, "ObjectId() needs an argument"),
        ("{d: ISODate('yesterday')}", 13, "bad argument to ISODate: 'yesterday' is not an ISO 8601 date"),
        ("{d: ISODate(5)}", 13, "bad argument to ISODate"),
        ("{d: new Date()}", 14, "Date() needs an argument"),
        ("{n: NumberInt(3000000000)}", 15, "3000000000 does not fit in 32 bits"),
        ("{n: NumberInt(1.5)}", 15, "1.5 is not an integer"),
        ("{n: NumberLong('5x')}", 16, "'5x' is not an integer"),
        ("{n: NumberLong(9223372036854775808)}", 16, "does not fit in 64 bits"),
        ("{n: NumberDecimal('abc')}", 19, "'abc' is not a decimal number"),
        ("{n: NumberInt(5, 6)}", 16, "expected ')' after the argument of NumberInt"),
        ("{n: NumberInt({})}", 15, "expected a quoted string or a number as the argument of NumberInt"),
        ("{n: NumberInt 5}", 15, "expected '(' after NumberInt"),
    ],
)
def test_bad_constructor_arguments(text: str, column: int, fragment: str) -> None:
    error = syntax_error(text)
    assert_at(error, 1, column)
    assert fragment in str(error)


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("aggregate([{$match: {}}]) x", 27, "expected nothing more after aggregate(...), found 'x'"),
        ("aggregate([{$match: {}}]);;", 27, "expected nothing more after aggregate(...), found ';'"),
        ("aggregate([{$match: {}}]).toArray()", 26, "found '.'"),
        ("aggregate([{$match: {}}], {allowDiskUse: true})", 25, "aggregate takes only the pipeline"),
        ("aggregate({$match: {}})", 11, "expected '[' to start the pipeline array"),
        ("aggregate([{$match: {}}]", 25, "expected ')' after the pipeline array"),
        ("{a: 1};", 7, "expected nothing more after the filter document, found ';'"),
    ],
)
def test_text_after_the_query(text: str, column: int, fragment: str) -> None:
    error = syntax_error(text)
    assert_at(error, 1, column)
    assert fragment in str(error)


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("{status: Closed}", 10, "unknown name 'Closed'"),
        ("{status: undefined}", 10, "unknown name 'undefined'"),
        ("{_id: objectId('x')}", 7, "did you mean ObjectId?"),
        ("{d: Date('2024-02-24')}", 5, "write new Date(...)"),
        ("{d: new Thing(1)}", 9, "expected a constructor after 'new'"),
        ("db.audits.find({})", 1, "leave out 'db.<collection>.'"),
        ("find({})", 1, "expected a filter document '{...}' or aggregate([...]), found 'find'"),
        ("[{$match: {}}]", 1, "expected a filter document '{...}' or aggregate([...])"),
        ("Aggregate([])", 1, "found 'Aggregate'"),
    ],
)
def test_unknown_bare_identifiers(text: str, column: int, fragment: str) -> None:
    error = syntax_error(text)
    assert_at(error, 1, column)
    assert fragment in str(error)


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("aggregate(['$match'])", 12, "expected pipeline stage 1 as a document { $stage: ... }, found a quoted string"),
        ("aggregate([{$match: {}}, [ ]])", 26, "expected pipeline stage 2 as a document"),
        (
            "aggregate([{$match: {}}, {$limit: 1, $skip: 2}])",
            26,
            "pipeline stage 2 must have exactly one key (the $stage name), found 2: $limit, $skip",
        ),
        ("aggregate([{}])", 12, "pipeline stage 1 must have exactly one key"),
        ("aggregate([{match: {}}])", 12, "pipeline stage 1 must be named by a $ stage such as $match"),
        ("aggregate([,])", 12, "expected pipeline stage 1"),
    ],
)
def test_pipeline_stages_must_be_single_key_stage_documents(text: str, column: int, fragment: str) -> None:
    error = syntax_error(text)
    assert_at(error, 1, column)
    assert fragment in str(error)


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("{a:1,,}", 1, 6, "expected a key (a name or a quoted string) or '}', found ','"),
        ("{a 1}", 1, 4, "expected ':' after key 'a'"),
        ("{a.b: 1}", 1, 3, "expected ':' after key 'a', found '.'"),
        ("{a: 1 b: 2}", 1, 7, "expected ',' or '}'"),
        ("{a: }", 1, 5, "expected a value"),
        ("{a: 1, a: 2}", 1, 8, "duplicate key 'a' (first at line 1, column 2)"),
        ("{a: 'abc}", 1, 5, "unterminated string: expected a closing '"),
        ('{a: "abc\n"}', 1, 5, 'unterminated string: expected a closing "'),
        ("{a: '\\x4g'}", 1, 9, "invalid string"),
        ("{a: 01}", 1, 6, "invalid number"),
        ("{a: 99999999999999999999}", 1, 5, "does not fit in 64 bits"),
        ("{a: /abc}", 1, 5, "unterminated regular expression"),
        ("{a: /abc/g}", 1, 10, "unsupported regular expression flag 'g'"),
        ("{a: /a/ig}", 1, 9, "unsupported regular expression flag 'g'"),
        ("{a: 1 /* never closed }", 1, 7, "unterminated comment"),
        ("{\n  a: 1,\n  b: [1, 2,, 3]\n}", 3, 12, "expected a value"),
    ],
)
def test_malformed_values(text: str, line: int, column: int, fragment: str) -> None:
    error = syntax_error(text)
    assert_at(error, line, column)
    assert fragment in str(error)


def test_nesting_is_limited_to_mongodbs_100_levels() -> None:
    assert filter_of("{a:" * 99 + "[1]" + "}" * 99)  # 100 containers: fine
    error = syntax_error("{a:" * 100 + "[1]" + "}" * 100)
    assert_at(error, 1, 301)
    assert "nested more than 100 levels deep" in str(error)
    # Far deeper input is still a QuerySyntaxError, not a RecursionError.
    assert "nested more than 100 levels deep" in str(syntax_error("{a:" + "[" * 5000))


def test_error_message_shows_the_line_and_a_caret_under_the_problem() -> None:
    error = syntax_error("{\n  status: { $ne: 'Closed' },\n  owner: nobody\n}")
    assert str(error) == (
        f"{SOURCE}: line 3, column 10: unknown name 'nobody': expected a value (a quoted string, number, "
        "document, array, true, false, null, /regex/, ObjectId(...), ISODate(...), new Date(...), NumberInt(...), "
        "NumberLong(...) or NumberDecimal(...)) (if it is meant as a string, put it in quotes)\n"
        "      owner: nobody\n"
        "             ^"
    )


def test_excerpt_of_a_long_line_is_cut_around_the_problem() -> None:
    text = "aggregate([" + "{$match: {a: 1}}, " * 10 + "{$bad: 1} oops " + ", {$match: {a: 1}}" * 10 + "])"
    error = syntax_error(text)
    excerpt_line, caret_line = str(error).splitlines()[1:]
    assert excerpt_line.startswith("    ...") and excerpt_line.endswith("...")
    assert excerpt_line[caret_line.index("^") :].startswith("oops")


# ---------------------------------------------------------------------------------------------------------
# Forbidden operators


def test_forbidden_operators_are_exactly_the_writing_and_javascript_ones() -> None:
    assert FORBIDDEN_OPERATORS == frozenset({"$out", "$merge", "$function", "$accumulator", "$where"})


@pytest.mark.parametrize("operator", sorted(FORBIDDEN_OPERATORS))
def test_forbidden_operator_as_a_pipeline_stage(operator: str) -> None:
    text = f"aggregate([{{$match: {{}}}}, {{$limit: 1}}, {{{operator}: 'x'}}])"
    with pytest.raises(ForbiddenQueryError) as info:
        parse_query(text, source=SOURCE)
    error = info.value
    assert (error.operator, error.location, error.line, error.column) == (
        operator,
        f"pipeline stage 3, at {operator}",
        1,
        40,
    )
    assert SOURCE in str(error) and operator in str(error) and "pipeline stage 3" in str(error)


@pytest.mark.parametrize("operator", sorted(FORBIDDEN_OPERATORS))
def test_forbidden_operator_at_the_top_of_a_filter(operator: str) -> None:
    with pytest.raises(ForbiddenQueryError) as info:
        parse_query(f"{{status: 'Open', {operator}: 'x'}}", source=SOURCE)
    assert (info.value.operator, info.value.location, info.value.line, info.value.column) == (
        operator,
        f"filter, at {operator}",
        1,
        18,
    )


@pytest.mark.parametrize("operator", sorted(FORBIDDEN_OPERATORS))
def test_forbidden_operator_nested_in_lookup_pipeline(operator: str) -> None:
    text = (
        "aggregate([\n  {$match: {}},\n  {$lookup: {from: 'p', as: 'p', pipeline: [{$match: {}}, "
        f"{{{operator}: {{}}}}]}}}}\n])"
    )
    with pytest.raises(ForbiddenQueryError) as info:
        parse_query(text, source=SOURCE)
    assert info.value.location == f"pipeline stage 2, at $lookup.pipeline[1].{operator}"
    assert (info.value.line, info.value.column) == (3, 60)


@pytest.mark.parametrize("operator", sorted(FORBIDDEN_OPERATORS))
def test_forbidden_operator_nested_in_facet(operator: str) -> None:
    with pytest.raises(ForbiddenQueryError) as info:
        parse_query(f"aggregate([{{$facet: {{a: [{{$limit: 1}}], b: [{{{operator}: 1}}]}}}}])", source=SOURCE)
    assert info.value.location == f"pipeline stage 1, at $facet.b[0].{operator}"


@pytest.mark.parametrize("operator", sorted(FORBIDDEN_OPERATORS))
def test_forbidden_operator_deep_in_a_filter(operator: str) -> None:
    with pytest.raises(ForbiddenQueryError) as info:
        parse_query(f"{{$and: [{{a: 1}}, {{$expr: {{$gt: [{{{operator}: {{}}}}, 1]}}}}]}}", source=SOURCE)
    assert info.value.location == f"filter, at $and[1].$expr.$gt[0].{operator}"


def test_forbidden_operator_spelled_with_an_escape_is_still_found() -> None:
    with pytest.raises(ForbiddenQueryError, match=r"operator \$where is not allowed \(filter, at \$where"):
        parse_query("{'\\u0024where': 'this.a > 1'}", source=SOURCE)


def test_forbidden_operator_names_as_string_values_are_fine() -> None:
    assert filter_of("{note: '$out', tags: ['$where']}") == {"note": "$out", "tags": ["$where"]}


def test_forbidden_operator_message() -> None:
    with pytest.raises(ForbiddenQueryError) as info:
        parse_query("aggregate([{$match: {}}, {$out: 'copy'}])", source=SOURCE)
    assert str(info.value) == (
        f"{SOURCE}: operator $out is not allowed (pipeline stage 2, at $out, line 1, column 27): "
        "it writes the result to a collection; queries from configuration may only read data"
    )


@pytest.mark.parametrize(
    ("query", "location"),
    [
        ({"$where": "1"}, "filter, at $where"),
        ({"a": [{"b": {"$function": {}}}]}, "filter, at a[0].b.$function"),
        ([{"$match": {}}, {"$merge": "x"}], "pipeline stage 2, at $merge"),
        ([{"$group": {"_id": 1, "v": {"$accumulator": {}}}}], "pipeline stage 1, at $group.v.$accumulator"),
    ],
)
def test_forbidden_operator_in_typed_forms(query: Any, location: str) -> None:
    with pytest.raises(ForbiddenQueryError) as info:
        parse_query(query, source=SOURCE)
    assert info.value.location == location
    assert info.value.line is None
    assert SOURCE in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# parse_document (e.g. projection strings)


def test_parse_document() -> None:
    assert parse_document("{}", source="fileprocessingconfigs projection") == {}
    assert parse_document("{ name: 1, _id: 0, 'provider.name': true }", source="p") == {
        "name": 1,
        "_id": 0,
        "provider.name": True,
    }
    typed = {"name": 1}
    assert parse_document(typed, source="p") == typed and parse_document(typed, source="p") is not typed


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "document is empty"),
        ("aggregate([])", "line 1, column 1: expected a document '{...}', found 'aggregate'"),
        ("{} {}", "line 1, column 4: expected nothing more after the document"),
        (None, "a document must be a string or a document, got NoneType"),
    ],
)
def test_parse_document_errors(text: Any, fragment: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_document(text, source="fileprocessingconfigs 'X' field 'projection'")
    assert str(info.value).startswith("fileprocessingconfigs 'X' field 'projection': ")
    assert fragment in str(info.value)


def test_parse_document_refuses_forbidden_operators() -> None:
    with pytest.raises(ForbiddenQueryError, match=r"document, at x\.\$function, line 1, column 7"):
        parse_document("{ x: {$function: {body: 'f', args: [], lang: 'js'}} }", source="p")


# ---------------------------------------------------------------------------------------------------------
# Integration: the parsed values against a real MongoDB-compatible server


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A SecantusDB server seeded with audits, providers and MRRs in the spec's shapes."""
    import secantus

    server = secantus.SecantusDBServer(storage_path=str(tmp_path_factory.mktemp("secantus")))
    server.start()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(server.uri)
    try:
        db = client["shell_syntax_test"]
        db.audits.insert_many(
            [
                {"_id": ObjectId(OID), "status": "Pending Review", "auditDate": dt.datetime(2024, 2, 23)},
                {"_id": 2, "status": "Approved", "auditDate": dt.datetime(2024, 2, 24)},
                {"_id": 3, "status": "Closed", "auditDate": dt.datetime(2024, 3, 1), "amount": Decimal128("1.5")},
                {"_id": 4, "status": "Open", "auditDate": dt.datetime(2024, 2, 25), "claims": Int64(5)},
            ]
        )
        db.providers.insert_many([{"_id": 10, "name": "Dr A"}, {"_id": 11, "name": "Dr B"}])
        db.medicalrecordrequests.insert_many(
            [
                {"_id": 100, "status": "Open", "provider_id": 10},
                {"_id": 101, "status": "Closed", "provider_id": 11},
                {"_id": 102, "status": "Requested", "provider_id": 99},  # no provider: dropped by $unwind
                {"_id": 103, "status": "Requested", "provider_id": 11},
            ]
        )
        yield db
    finally:
        client.close()
        server.stop()


def run(db: Any, collection: str, text: str) -> list[Any]:
    query = parse_query(text, source=SOURCE)
    if query.is_aggregate:
        return sorted(
            doc["_id"] if "provider" not in doc else (doc["_id"], doc["provider"]["name"])
            for doc in db[collection].aggregate(query.pipeline)
        )
    return sorted((doc["_id"] for doc in db[collection].find(query.filter)), key=str)


def test_integration_seeded_daily_audit_inventory(database: Any) -> None:
    assert run(database, "audits", DAILY_AUDIT) == [2, ObjectId(OID)]


def test_integration_seeded_weekly_audit_inventory(database: Any) -> None:
    assert run(database, "audits", WEEKLY_AUDIT) == [2, 4, ObjectId(OID)]


def test_integration_seeded_daily_active_mrr_inventory(database: Any) -> None:
    assert run(database, "medicalrecordrequests", DAILY_ACTIVE_MRR) == [(100, "Dr A"), (103, "Dr B")]


def test_integration_seeded_weekly_mrr_inventory(database: Any) -> None:
    assert run(database, "medicalrecordrequests", WEEKLY_MRR) == [(100, "Dr A"), (101, "Dr B"), (103, "Dr B")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{{_id: ObjectId('{OID}')}}", [ObjectId(OID)]),
        ("{auditDate: {$gte: ISODate('2024-02-24T00:00:00Z')}}", [2, 3, 4]),
        ('{auditDate: {$lt: new Date("2024-02-24")}}', [ObjectId(OID)]),
        ("{auditDate: {$gt: new Date(1708732800000)}}", [3, 4]),
        ("{status: /^(pending|approved)/i}", [2, ObjectId(OID)]),
        ("{amount: NumberDecimal('1.5')}", [3]),
        ("{claims: NumberLong('5'), _id: NumberInt(4)}", [4]),
    ],
)
def test_integration_constructor_values_match_on_the_server(database: Any, text: str, expected: list[Any]) -> None:
    assert run(database, "audits", text) == sorted(expected, key=str)
