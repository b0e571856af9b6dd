"""Parse queries written in MongoDB *shell* syntax, as the old C# app stored them, into real BSON values.

Stored queries are strings such as ``{ 'status' : { $in : [ 'Pending Review' ] } }`` or ``aggregate([{$match: ...}])``
(spec §2.2, §3.1), which ``json`` rejects; the old app cut them apart by substring (spec §5.13). Accepted: a document
(a find filter) or ``aggregate([...])`` (a pipeline), with JSON5 values, regex literals and the shell constructors
(``ObjectId``, ``ISODate``, ``new Date``, ``NumberInt``, ``NumberLong``, ``NumberDecimal``); anything else is a
:class:`QuerySyntaxError` with its position, and a writing or JavaScript operator (:data:`FORBIDDEN_OPERATORS`) a
:class:`ForbiddenQueryError`. The full grammar, and why a hand-written parser over ``json5``:
docs/decisions/query-shell-syntax-parser.md.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import json5
from bson import ObjectId
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.regex import Regex

__all__ = [
    "FORBIDDEN_OPERATORS",
    "ForbiddenQueryError",
    "MongoQuery",
    "QuerySyntaxError",
    "parse_document",
    "parse_query",
]

# Why each operator is refused; the keys are the refused set.
_WHY_FORBIDDEN: dict[str, str] = {
    "$out": "writes the result to a collection",
    "$merge": "writes the result to a collection",
    "$function": "runs server-side JavaScript",
    "$accumulator": "runs server-side JavaScript",
    "$where": "runs server-side JavaScript",
}
FORBIDDEN_OPERATORS = frozenset(_WHY_FORBIDDEN)

_Path = tuple[str | int, ...]


@dataclass(frozen=True)
class MongoQuery:
    """A parsed query: exactly one of filter / pipeline is set.

    A filter runs with ``find`` (and takes the configured projection); a pipeline runs with ``aggregate``.
    Having the kind explicit is what replaces the old ``"aggregate(" in query`` substring test.
    """

    filter: dict[str, Any] | None = None
    pipeline: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if (self.filter is None) == (self.pipeline is None):
            raise ValueError("a MongoQuery has exactly one of filter or pipeline")

    @property
    def is_aggregate(self) -> bool:
        """True when the query is a pipeline to run with ``aggregate``, False for a ``find`` filter."""
        return self.pipeline is not None


class QuerySyntaxError(ValueError):
    """A query or document that cannot be parsed or has the wrong shape.

    The message names the source (which config document and field) so an operator can find it, the
    line:column of the problem when the query was text, an excerpt with a caret, and what was expected.
    """

    def __init__(
        self,
        source: str,
        problem: str,
        *,
        line: int | None = None,
        column: int | None = None,
        excerpt: str = "",
    ) -> None:
        self.source = source
        self.problem = problem
        self.line = line
        self.column = column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(f"{source}: {where}{problem}{excerpt}")


class ForbiddenQueryError(ValueError):
    """A query that uses an operator which writes data or runs server-side JavaScript.

    Refused because configured queries are meant to read; the message names the source, the operator and
    where it is (e.g. "pipeline stage 3, at $lookup.pipeline[0].$out"), with line:column for text queries.
    """

    def __init__(
        self,
        source: str,
        operator: str,
        location: str,
        *,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.source = source
        self.operator = operator
        self.location = location
        self.line = line
        self.column = column
        position = f", line {line}, column {column}" if line is not None else ""
        super().__init__(
            f"{source}: operator {operator} is not allowed ({location}{position}): "
            f"it {_WHY_FORBIDDEN[operator]}; queries from configuration may only read data"
        )


def parse_query(query: str | Mapping[str, Any] | Sequence[Any], *, source: str) -> MongoQuery:
    """Parse a stored query: shell-syntax text, or the typed form (document = filter, array = pipeline).

    ``source`` labels the query in every error, e.g. ``"storedqueries 'dailyAuditInventory'"``.
    Raises :class:`QuerySyntaxError` or :class:`ForbiddenQueryError` (both ``ValueError``).
    """
    if isinstance(query, str):
        parser = _Parser(query, source, empty_message="query is empty")
        result = parser.parse_query()
        value: Any = result.filter if result.pipeline is None else result.pipeline
        _refuse_forbidden(value, "filter" if result.pipeline is None else "pipeline", source, parser)
        return result
    if isinstance(query, Mapping):
        document = _plain(query, source)
        _refuse_forbidden(document, "filter", source)
        return MongoQuery(filter=document)
    if isinstance(query, Sequence) and not isinstance(query, (bytes, bytearray)):
        pipeline = _plain(query, source)
        for number, stage in enumerate(pipeline, start=1):
            problem = _stage_problem(stage, number)
            if problem is not None:
                raise QuerySyntaxError(source, problem)
        _refuse_forbidden(pipeline, "pipeline", source)
        return MongoQuery(pipeline=pipeline)
    raise QuerySyntaxError(source, f"a query must be a string, a document or an array, got {type(query).__name__}")


def parse_document(text: str | Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """Parse one shell-syntax document (e.g. a ``projection`` config string such as ``"{}"``), or copy a typed one.

    Same value syntax and operator refusal as :func:`parse_query` (projections may hold aggregation
    expressions, so ``$function`` is refused here too).
    """
    if isinstance(text, str):
        parser = _Parser(text, source, empty_message="document is empty")
        document = parser.parse_single_document()
        _refuse_forbidden(document, "document", source, parser)
        return document
    if isinstance(text, Mapping):
        document = _plain(text, source)
        _refuse_forbidden(document, "document", source)
        return document
    raise QuerySyntaxError(source, f"a document must be a string or a document, got {type(text).__name__}")


# --------------------------------------------------------------------------------------------------
# Shell constructors


class _BadArgument(ValueError):
    """Raised by a constructor converter; the parser turns it into a positioned QuerySyntaxError."""


@dataclass(frozen=True)
class _Arg:
    """A constructor's single literal argument and its source text (NumberDecimal needs the digits as written)."""

    value: str | int | float
    raw: str


_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
_HEX_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")


def _object_id(arg: _Arg) -> ObjectId:
    if not isinstance(arg.value, str) or not _HEX_OBJECT_ID.fullmatch(arg.value):
        raise _BadArgument(f"{arg.raw} is not 24 hexadecimal digits in quotes")
    return ObjectId(arg.value)


def _utc_datetime(text: str) -> dt.datetime:
    """ISO 8601 text as an aware UTC datetime: naive means UTC (as in ISODate), to the millisecond (as in BSON)."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _BadArgument(f"{text!r} is not an ISO 8601 date") from None
    value = value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _iso_date(arg: _Arg) -> dt.datetime:
    if not isinstance(arg.value, str):
        raise _BadArgument(f"{arg.raw} is not a quoted date")
    return _utc_datetime(arg.value)


def _new_date(arg: _Arg) -> dt.datetime:
    if isinstance(arg.value, str):
        return _utc_datetime(arg.value)
    try:
        return _EPOCH + dt.timedelta(milliseconds=arg.value)
    except (OverflowError, ValueError):
        raise _BadArgument(f"{arg.raw} milliseconds since 1970 is not a representable date") from None


def _integer(arg: _Arg, bits: int) -> int:
    value = arg.value
    if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
        value = int(value)
    if not isinstance(value, int):
        raise _BadArgument(f"{arg.raw} is not an integer")
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise _BadArgument(f"{value} does not fit in {bits} bits")
    return value


def _number_int(arg: _Arg) -> int:
    return _integer(arg, 32)


def _number_long(arg: _Arg) -> Int64:
    return Int64(_integer(arg, 64))


def _number_decimal(arg: _Arg) -> Decimal128:
    # A number argument is converted from its text, so NumberDecimal(0.1) is exactly 0.1, not the float.
    text = arg.value if isinstance(arg.value, str) else arg.raw
    try:
        return Decimal128(text)
    except decimal.DecimalException:
        raise _BadArgument(f"{arg.raw} is not a decimal number") from None


# name -> (converter, usage shown in errors)
_CONSTRUCTORS: dict[str, tuple[Callable[[_Arg], Any], str]] = {
    "ObjectId": (_object_id, "ObjectId('65d9a7c1e4b0f1a2b3c4d5e6')"),
    "ISODate": (_iso_date, "ISODate('2024-02-24T00:00:00Z')"),
    "Date": (_new_date, "new Date('2024-02-24T00:00:00Z') or new Date(<milliseconds since 1970>)"),
    "NumberInt": (_number_int, "NumberInt(5)"),
    "NumberLong": (_number_long, "NumberLong(5) or NumberLong('5')"),
    "NumberDecimal": (_number_decimal, "NumberDecimal('1.5')"),
}
_NEEDS_NEW = frozenset({"Date"})

# --------------------------------------------------------------------------------------------------
# The parser

_IDENTIFIER = re.compile(r"(?:[^\W\d]|\$)[\w$]*")  # an unquoted name: letters, digits, _ and $; no leading digit
_QUOTES = frozenset("'\"")
_NUMBER_START = frozenset("0123456789+-.")
_NUMBER_WORDS = frozenset({"Infinity", "NaN"})
_WORD_VALUES: dict[str, Any] = {"true": True, "false": False, "null": None}
_REGEX_FLAGS = re.compile(r"[A-Za-z]*")
_MONGO_REGEX_FLAGS = "imsx"
_NEWLINES = frozenset("\r\n\u2028\u2029")
_JSON5_ERROR = re.compile(r"^<string>:\d+ (?P<what>.*) at column \d+$")
_MAX_DEPTH = 100
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_VALUE_KINDS = (
    "a quoted string, number, document, array, true, false, null, /regex/, ObjectId(...), ISODate(...), "
    "new Date(...), NumberInt(...), NumberLong(...) or NumberDecimal(...)"
)


class _Parser:
    """Recursive descent over one text; positions are character offsets, reported as 1-based line:column.

    ``path`` is the key/index path of the value being parsed, so the positions of forbidden operator keys
    can be recorded for :func:`_refuse_forbidden` (which finds them by walking the parsed value).
    """

    def __init__(self, text: str, source: str, *, empty_message: str) -> None:
        self.text = text
        self.source = source
        self.empty_message = empty_message
        self.pos = 0
        self.path: list[str | int] = []
        self.forbidden_at: dict[_Path, int] = {}

    # ---- top level

    def parse_query(self) -> MongoQuery:
        self.skip_blank()
        if self.word() == "aggregate":
            self.pos += len("aggregate")
            self.expect("(", "'(' after aggregate")
            pipeline = self.parse_pipeline()
            self.expect(")", "')' after the pipeline array (aggregate takes only the pipeline)")
            self.skip()
            if self.peek() == ";":
                self.pos += 1
            self.expect_end("after aggregate(...)")
            return MongoQuery(pipeline=pipeline)
        if self.peek() == "{":
            document = self.parse_document()
            self.expect_end("after the filter document")
            return MongoQuery(filter=document)
        hint = ""
        if self.word() == "db":
            hint = " (leave out 'db.<collection>.': the collection comes from the config)"
        self.fail(f"expected a filter document '{{...}}' or aggregate([...]), found {self.found()}{hint}")

    def parse_single_document(self) -> dict[str, Any]:
        self.skip_blank()
        if self.peek() != "{":
            self.fail(f"expected a document '{{...}}', found {self.found()}")
        document = self.parse_document()
        self.expect_end("after the document")
        return document

    def parse_pipeline(self) -> list[dict[str, Any]]:
        self.skip()
        if self.peek() != "[":
            self.fail(f"expected '[' to start the pipeline array, found {self.found()}")
        open_pos = self.open_container()
        stages: list[dict[str, Any]] = []
        while True:
            self.skip()
            if self.peek() == "]":
                self.pos += 1
                return stages
            number = len(stages) + 1
            start = self.pos
            if self.peek() != "{":
                self.fail(f"expected pipeline stage {number} as a document {{ $stage: ... }}, found {self.found()}")
            self.path.append(len(stages))
            stage = self.parse_document()
            self.path.pop()
            problem = _stage_problem(stage, number)
            if problem is not None:
                self.fail(problem, start)
            stages.append(stage)
            if not self.next_item("]", open_pos, "pipeline array"):
                return stages

    # ---- containers

    def parse_document(self) -> dict[str, Any]:
        open_pos = self.open_container()
        document: dict[str, Any] = {}
        key_positions: dict[str, int] = {}
        while True:
            self.skip()
            if self.peek() == "}":
                self.pos += 1
                return document
            start = self.pos
            key = self.parse_key()
            if key in key_positions:
                line, column = _line_column(self.text, key_positions[key])
                self.fail(f"duplicate key '{key}' (first at line {line}, column {column})", start)
            key_positions[key] = start
            self.expect(":", f"':' after key '{key}'")
            self.path.append(key)
            if key in FORBIDDEN_OPERATORS:
                self.forbidden_at[tuple(self.path)] = start
            document[key] = self.parse_value()
            self.path.pop()
            if not self.next_item("}", open_pos, "document"):
                return document

    def parse_array(self) -> list[Any]:
        open_pos = self.open_container()
        items: list[Any] = []
        while True:
            self.skip()
            if self.peek() == "]":
                self.pos += 1
                return items
            self.path.append(len(items))
            items.append(self.parse_value())
            self.path.pop()
            if not self.next_item("]", open_pos, "array"):
                return items

    def open_container(self) -> int:
        """Step over the '{' or '[' the caller has seen and return its position.

        The depth limit is MongoDB's (100 levels of nesting); it also keeps absurd input from ending in a
        RecursionError, which callers catching ValueError would not expect.
        """
        if len(self.path) >= _MAX_DEPTH:
            self.fail(f"nested more than {_MAX_DEPTH} levels deep (MongoDB's limit)")
        self.pos += 1
        return self.pos - 1

    def next_item(self, close: str, open_pos: int, what: str) -> bool:
        """Consume ',' (True: another item or the close may follow) or the closing bracket (False)."""
        self.skip()
        if self.peek() == ",":
            self.pos += 1
            return True
        if self.peek() == close:
            self.pos += 1
            return False
        line, column = _line_column(self.text, open_pos)
        self.fail(
            f"expected ',' or '{close}' to close the {what} opened at line {line}, column {column}, "
            f"found {self.found()}"
        )

    def parse_key(self) -> str:
        if self.peek() in _QUOTES:
            return self.parse_string()
        word = self.word()
        if word is None:
            self.fail(f"expected a key (a name or a quoted string) or '}}', found {self.found()}")
        self.pos += len(word)
        return word

    # ---- values

    def parse_value(self) -> Any:
        self.skip()
        char = self.peek()
        if char == "{":
            return self.parse_document()
        if char == "[":
            return self.parse_array()
        if char in _QUOTES:
            return self.parse_string()
        if char == "/":
            return self.parse_regex()
        if char in _NUMBER_START:
            return self.parse_number()
        word = self.word()
        if word is None:
            self.fail(f"expected a value ({_VALUE_KINDS}), found {self.found()}")
        if word in _WORD_VALUES:
            self.pos += len(word)
            return _WORD_VALUES[word]
        if word in _NUMBER_WORDS:
            return self.parse_number()
        if word == "new":
            return self.parse_new()
        if word in _CONSTRUCTORS and word not in _NEEDS_NEW:
            self.pos += len(word)
            return self.parse_call(word)
        self.fail(f"unknown name '{word}': expected a value ({_VALUE_KINDS}){_name_hint(word)}")

    def parse_new(self) -> Any:
        self.pos += len("new")
        self.skip()
        name = self.word()
        if name is None or name not in _CONSTRUCTORS:
            self.fail(f"expected a constructor after 'new' ({', '.join(_CONSTRUCTORS)}), found {self.found()}")
        self.pos += len(name)
        return self.parse_call(name)

    def parse_call(self, name: str) -> Any:
        """Parse ``( literal )`` after a constructor name and convert the literal to its BSON value."""
        convert, usage = _CONSTRUCTORS[name]
        self.expect("(", f"'(' after {name}")
        self.skip()
        arg_pos = self.pos
        if self.peek() in _QUOTES:
            value: str | int | float = self.parse_string()
        elif self.peek() in _NUMBER_START or self.word() in _NUMBER_WORDS:
            value = self.parse_number()
        elif self.peek() == ")":
            self.fail(f"{name}() needs an argument, e.g. {usage}")
        else:
            self.fail(f"expected a quoted string or a number as the argument of {name}, found {self.found()}")
        arg = _Arg(value, self.text[arg_pos : self.pos])
        self.expect(")", f"')' after the argument of {name} (it takes one argument)")
        try:
            return convert(arg)
        except _BadArgument as error:
            self.fail(f"bad argument to {name}: {error}; expected e.g. {usage}", arg_pos)

    def parse_string(self) -> str:
        value = self.json5_literal("string")
        assert isinstance(value, str)  # json5 starting at a quote yields a string or an error
        return value

    def parse_number(self) -> int | float:
        start = self.pos
        value = self.json5_literal("number")
        assert isinstance(value, (int, float))  # json5 starting at a sign, digit, '.' or Infinity/NaN
        if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
            self.fail(f"integer {value} does not fit in 64 bits (BSON's largest integer)", start)
        return value

    def json5_literal(self, kind: str) -> Any:
        """Read one JSON5 string or number literal at the current position with the json5 package."""
        start = self.pos
        value, error, end = json5.parse(self.text, start=start, consume_trailing=False)
        if error is not None:
            if kind == "string" and (end >= len(self.text) or self.text[end] in _NEWLINES):
                self.fail(f"unterminated string: expected a closing {self.text[start]} on the same line", start)
            self.fail(f"invalid {kind}: {_json5_problem(error)}", min(end, len(self.text)))
        self.pos = end
        return value

    def parse_regex(self) -> Regex:
        """``/pattern/flags`` as in JavaScript: ``\\`` escapes, and a ``/`` inside ``[...]`` does not end it."""
        text = self.text
        start = self.pos
        index = start + 1
        in_class = False
        while True:
            if index >= len(text) or text[index] in _NEWLINES:
                self.fail("unterminated regular expression: expected a closing '/' on the same line", start)
            char = text[index]
            if char == "\\":
                index += 1
                if index >= len(text) or text[index] in _NEWLINES:
                    continue  # an escaped line end: the check above reports it as unterminated
            elif char == "[":
                in_class = True
            elif char == "]":
                in_class = False
            elif char == "/" and not in_class:
                break
            index += 1
        pattern = text[start + 1 : index]
        flags = _REGEX_FLAGS.match(text, index + 1)
        assert flags is not None  # the pattern also matches the empty string
        for offset, flag in enumerate(flags.group()):
            if flag not in _MONGO_REGEX_FLAGS:
                self.fail(
                    f"unsupported regular expression flag '{flag}': MongoDB supports i, m, s and x",
                    flags.start() + offset,
                )
        self.pos = flags.end()
        return Regex(pattern, flags.group())

    # ---- lexical helpers

    def peek(self) -> str:
        """The current character, or '' at the end (never a member of the character sets tested against)."""
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def word(self) -> str | None:
        """The identifier starting at the current position, if any (without consuming it)."""
        match = _IDENTIFIER.match(self.text, self.pos)
        return match.group() if match else None

    def skip(self) -> None:
        """Skip whitespace and comments."""
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char.isspace() or char == "\ufeff":
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end + 1
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    self.fail("unterminated comment: expected '*/'")
                self.pos = end + 2
            else:
                return

    def skip_blank(self) -> None:
        """Skip leading whitespace and comments; nothing else left means the text is empty."""
        self.skip()
        if self.pos >= len(self.text):
            raise QuerySyntaxError(self.source, self.empty_message)

    def expect(self, char: str, what: str) -> None:
        self.skip()
        if self.peek() != char:
            self.fail(f"expected {what}, found {self.found()}")
        self.pos += 1

    def expect_end(self, after: str) -> None:
        self.skip()
        if self.pos < len(self.text):
            self.fail(f"expected nothing more {after}, found {self.found()}")

    def found(self) -> str:
        """Describe the token at the current position for 'expected X, found Y' messages."""
        if self.pos >= len(self.text):
            return "the end of the text"
        if self.peek() in _QUOTES:
            return "a quoted string"
        word = self.word()
        return f"'{word}'" if word else repr(self.text[self.pos])

    def fail(self, problem: str, pos: int | None = None) -> NoReturn:
        pos = self.pos if pos is None else pos
        line, column = _line_column(self.text, pos)
        raise QuerySyntaxError(self.source, problem, line=line, column=column, excerpt=_excerpt(self.text, pos))


# --------------------------------------------------------------------------------------------------
# Helpers shared by the text and the typed forms


def _stage_problem(stage: Any, number: int) -> str | None:
    """Why ``stage`` is not a pipeline stage (a document with exactly one ``$name`` key), or None if it is."""
    if not isinstance(stage, dict):
        return f"pipeline stage {number} must be a document {{ $stage: ... }}, got {type(stage).__name__}"
    if len(stage) != 1:
        names = ", ".join(stage) or "none"
        return f"pipeline stage {number} must have exactly one key (the $stage name), found {len(stage)}: {names}"
    (name,) = stage
    if not name.startswith("$"):
        return f"pipeline stage {number} must be named by a $ stage such as $match, found '{name}'"
    return None


def _plain(value: Any, source: str) -> Any:
    """Copy a typed (already BSON) value into plain dicts and lists.

    The copy means a MongoQuery never aliases the caller's config document, and the forbidden-operator
    walk only has to know dict and list.
    """
    if isinstance(value, Mapping):
        copy: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise QuerySyntaxError(source, f"document keys must be strings, found {key!r}")
            copy[key] = _plain(item, source)
        return copy
    if isinstance(value, (list, tuple)):
        return [_plain(item, source) for item in value]
    return value


def _first_forbidden(value: Any, path: _Path = ()) -> tuple[str, _Path] | None:
    """The first forbidden operator key in document order, at any depth, with its key/index path."""
    if isinstance(value, dict):
        for key, item in value.items():
            here = (*path, key)
            if key in FORBIDDEN_OPERATORS:
                return key, here
            found = _first_forbidden(item, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_forbidden(item, (*path, index))
            if found is not None:
                return found
    return None


def _refuse_forbidden(value: Any, root: str, source: str, parser: _Parser | None = None) -> None:
    """Raise ForbiddenQueryError for the first forbidden operator; ``root`` is filter, pipeline or document."""
    found = _first_forbidden(value)
    if found is None:
        return
    operator, path = found
    if root == "pipeline":
        stage, rest = path[0], path[1:]
        assert isinstance(stage, int)  # a pipeline's root is the stage list
        location = f"pipeline stage {stage + 1}, at {_dotted(rest)}"
    else:
        location = f"{root}, at {_dotted(path)}"
    line = column = None
    if parser is not None:
        line, column = _line_column(parser.text, parser.forbidden_at[path])
    raise ForbiddenQueryError(source, operator, location, line=line, column=column)


def _dotted(path: _Path) -> str:
    """A readable path: keys joined with '.', array indexes as [i]."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _name_hint(word: str) -> str:
    """A hint for an unknown bare name: a miscased constructor, 'Date' without 'new', or a missing quote."""
    if word in _NEEDS_NEW:
        return f" (write new {word}(...))"
    for name in _CONSTRUCTORS:
        if name.lower() == word.lower():
            return f" (did you mean {name}?)"
    return " (if it is meant as a string, put it in quotes)"


def _json5_problem(error: str) -> str:
    """json5's error text without its own '<string>:line ... at column' framing (we report our own position)."""
    match = _JSON5_ERROR.match(error)
    return match.group("what") if match else error


def _line_column(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    line_start = text.rfind("\n", 0, pos) + 1
    return text.count("\n", 0, pos) + 1, pos - line_start + 1


def _excerpt(text: str, pos: int, width: int = 40) -> str:
    """The offending line (cut to ``width`` characters either side, for long one-line pipelines) and a caret."""
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line = text[line_start : len(text) if line_end < 0 else line_end].rstrip("\r").replace("\t", " ")
    column = pos - line_start
    left = max(0, column - width)
    right = min(len(line), column + width)
    prefix = "..." if left else ""
    snippet = prefix + line[left:right] + ("..." if right < len(line) else "")
    return f"\n    {snippet}\n    {' ' * (len(prefix) + column - left)}^"
