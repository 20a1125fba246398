"""Consul's ``?filter=`` expression language (hashicorp/go-bexpr), sans-I/O.

Parse once, compile to a closure, run it over Consul-shaped JSON dicts::

    keep = compile_filter('NodeMeta.os == linux and ServiceTags contains canary')
    nodes = [n for n in nodes if keep(n)]

There is no ``eval``: a hand-written tokenizer and recursive-descent parser build
a small AST of frozen dataclasses, which is compiled into nested closures.

Syntax follows Consul's "API Filtering" page
(https://developer.hashicorp.com/consul/api-docs/features/filtering) and the
go-bexpr PEG grammar (github.com/hashicorp/go-bexpr, grammar/grammar.peg)::

    or       := and ("or" and)*                      -- not > and > or
    and      := not ("and" not)*
    not      := "not"* primary                       -- "not not X" is X, as in bexpr
    primary  := "(" or ")" | match
    match    := selector ("==" | "!=") value
              | selector ["not"] ("contains" | "matches") value
              | selector "is" ["not"] "empty"
              | value ["not"] "in" selector
    selector := ident ("." ident | "[" string "]")*  -- no spaces around "." or before "["
    ident    := [A-Za-z][A-Za-z0-9_]*
    value    := string | number | bare word shaped like a selector (its dotted text)
    string   := "..." (Go escapes) | `...` (raw, no escapes)
    number   := -?(0|[1-9][0-9]*)(.[0-9]+)?

Keywords are lower-case. ``ServiceMeta["rack-1"]`` reaches map keys that are
not identifiers. Bare values make the docs' ``Checks.Status != passing`` work.

Semantics (the page is terse; where it is silent we follow go-bexpr as vendored
by Consul, and Consul's own use of it):

* Values are text until compared. As in bexpr they are coerced to the type of
  the field they meet: ``ServicePort == 8080`` and ``ServicePort == "8080"`` are
  the same test; bool fields take Go's ``strconv.ParseBool`` spellings (true,
  True, TRUE, t, T, 1 and their false twins); int fields take Go integer syntax
  (``0x1F90``). Numbers compare numerically, so an int field equals ``8080.0``
  (JSON loses Go's int/float distinction). Text that does not coerce is simply
  "not equal" -- never an error at run time (with a schema it is a compile error).
* ``contains`` / ``in``: substring on strings, key presence on maps, and on lists
  "some element equals the value" (elements coerced one by one).
* ``is empty``: length zero for strings, lists and maps. Other scalars are never
  empty.
* ``matches``: an unanchored regex search, like Go's ``Regexp.MatchString``, on
  string fields only. Go uses RE2; we use Python's ``re``. Most patterns mean
  the same, but ``re`` accepts look-around and back-references, rejects ``\\pL``
  and ``\\z``, and -- unlike RE2 -- can backtrack exponentially on patterns such
  as ``(a+)+$``. The 4 KiB expression limit does not bound that.
* Lists on the path: when a selector passes *through* a list (``Checks.Status``
  on a list of checks), the whole match, operator and negation included, is
  tried on every element and the result is true if any element matches. This
  is bexpr's behaviour for ``Checks.Status`` in /v1/health/service, and Consul
  relies on it: ``agent/xds`` builds "only passing" as
  ``not Checks.Status != passing`` (no check is not passing). Hence
  ``Checks.Status != passing`` means "some check is not passing", and every
  operator is false on an empty list. A selector that *ends* on a list applies
  the operator to the list itself (``ServiceTags contains "a"``).
* Missing fields (absent key, JSON null, or a path through a scalar): the
  positive operators (``==``, ``contains``/``in``, ``matches``, ``is not empty``)
  are false and their negations (``!=``, ``not contains``/``not in``,
  ``not matches``, ``is empty``) are true. bexpr does this for missing map keys
  ("whatever you were looking for cannot be equal because it doesn't exist");
  the Boundary filtering page (https://developer.hashicorp.com/boundary/docs/filtering)
  documents the same list for the current go-bexpr.
* With a schema, selectors are checked before anything runs, as Consul checks
  them against the endpoint's field list: unknown ones raise
  ``Selector "Foo" is not valid``.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias, TypeVar

import re2

__all__ = [
    "MAX_EXPRESSION_BYTES", "MAX_NESTING", "And", "Expr", "FilterError", "Match", "MatchOp",
    "Not", "Or", "Schema", "Selector", "Value", "apply_filter", "compile_filter", "parse",
]  # fmt: skip

MAX_EXPRESSION_BYTES: Final = 4096
# Each level of parentheses costs a few Python stack frames when parsing and
# compiling; 64 is far beyond what people write and far below the recursion limit.
MAX_NESTING: Final = 64

T = TypeVar("T")
Schema: TypeAlias = Mapping[str, type[object]]
Predicate: TypeAlias = Callable[[Any], bool]


class FilterError(Exception):
    """A filter expression that cannot be parsed, or does not fit the schema.

    ``position`` is the 0-based character offset of the offending token;
    ``line`` and ``column`` are 1-based; ``reason`` is the bare explanation.
    ``str()`` reads like Consul's reply to a bad ``?filter=``:
    ``Failed to create boolean expression evaluator: 1:10 (9): <reason>``.
    """

    def __init__(self, expression: str, position: int, reason: str) -> None:
        self.expression = expression
        self.position = position
        self.line = expression.count("\n", 0, position) + 1
        self.column = position - (expression.rfind("\n", 0, position) + 1) + 1
        self.reason = reason
        super().__init__(
            "Failed to create boolean expression evaluator: "
            f"{self.line}:{self.column} ({position}): {reason}"
        )


# --- AST ---------------------------------------------------------------------
# Positions and spelling do not take part in equality, so ``X == "a"`` and
# ``X == a`` parse to equal trees, and ``parse(str(tree)) == tree``.

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # errors are reported to the caller, not printed
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_DOTTED = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*")
_KEYWORDS: Final = frozenset({"and", "or", "not", "in", "contains", "matches", "is"})


class MatchOp(enum.Enum):
    EQUAL = "=="
    NOT_EQUAL = "!="
    CONTAINS = "contains"  # also written `value in selector`
    NOT_CONTAINS = "not contains"  # also written `value not in selector`
    IS_NOT_EMPTY = "is not empty"
    IS_EMPTY = "is empty"
    MATCHES = "matches"
    NOT_MATCHES = "not matches"

    @property
    def negated(self) -> bool:
        """True for !=, not contains / not in, is empty and not matches."""
        return self.value.startswith(("!", "not ", "is empty"))


def _quote(text: str) -> str:
    # JSON escapes are a subset of Go's, so this re-parses to the same text.
    return json.dumps(text, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Selector:
    path: tuple[str, ...]
    position: int = field(default=0, compare=False)

    def __str__(self) -> str:
        out = self.path[0]
        for key in self.path[1:]:
            out += f".{key}" if _IDENT.fullmatch(key) else f"[{_quote(key)}]"
        return out


@dataclass(frozen=True, slots=True)
class Value:
    raw: str
    quoted: bool = field(default=True, compare=False)
    position: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return _quote(self.raw) if self.quoted else self.raw


@dataclass(frozen=True, slots=True)
class Match:
    op: MatchOp
    selector: Selector
    value: Value | None = None

    def __str__(self) -> str:
        tail = "" if self.value is None else f" {self.value}"
        return f"{self.selector} {self.op.value}{tail}"


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr

    def __str__(self) -> str:
        inner = self.operand
        return f"not ({inner})" if isinstance(inner, And | Or) else f"not {inner}"


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Expr, ...]

    def __str__(self) -> str:
        return " and ".join(f"({o})" if isinstance(o, Or) else str(o) for o in self.operands)


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Expr, ...]

    def __str__(self) -> str:
        return " or ".join(str(o) for o in self.operands)


Expr: TypeAlias = Match | Not | And | Or


# --- tokenizer -----------------------------------------------------------------


class _Kind(enum.Enum):
    WORD = "word"
    STRING = "string"
    NUMBER = "number"
    LPAREN = "("
    RPAREN = ")"
    LBRACKET = "["
    RBRACKET = "]"
    DOT = "."
    EQ = "=="
    NE = "!="
    END = "end of input"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str  # as written
    value: str  # decoded contents for strings, else the text
    pos: int
    spaced: bool  # whitespace right before it

    def describe(self) -> str:
        if self.kind is _Kind.END:
            return "end of input"
        text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        if self.kind in (_Kind.STRING, _Kind.NUMBER):
            return f"{self.kind.value} {text}"
        return f"'{text}'"


_WHITESPACE: Final = " \t\r\n"
_PUNCT: Final = {
    "(": _Kind.LPAREN, ")": _Kind.RPAREN, "[": _Kind.LBRACKET, "]": _Kind.RBRACKET, ".": _Kind.DOT,
}  # fmt: skip
_NUMBER_SPAN = re.compile(r"-?[0-9][0-9A-Za-z_.]*")
_NUMBER_OK = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_HINTS: Final = {
    "=": " (equality is '==')",
    "!": " (use '!=' or 'not')",
    "'": ' (quote strings with " or `)',
}
_ESCAPES: Final = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", '"': '"',
}  # fmt: skip
_HEX_ESCAPES: Final = {"x": 2, "u": 4, "U": 8}


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while True:
        start = i
        while i < n and text[i] in _WHITESPACE:
            i += 1
        spaced = i > start
        if i >= n:
            tokens.append(_Token(_Kind.END, "", "", n, spaced))
            return tokens
        tok = _read_token(text, i, spaced)
        tokens.append(tok)
        i = tok.pos + len(tok.text)


def _read_token(text: str, i: int, spaced: bool) -> _Token:
    c = text[i]
    if c in _PUNCT:
        return _Token(_PUNCT[c], c, c, i, spaced)
    two = text[i : i + 2]
    if two in ("==", "!="):
        return _Token(_Kind.EQ if two == "==" else _Kind.NE, two, two, i, spaced)
    if c == '"':
        end, value = _read_double_quoted(text, i)
        return _Token(_Kind.STRING, text[i:end], value, i, spaced)
    if c == "`":
        end = text.find("`", i + 1)
        if end < 0:
            raise FilterError(text, i, "unterminated string literal")
        # Go drops carriage returns from raw strings.
        return _Token(
            _Kind.STRING, text[i : end + 1], text[i + 1 : end].replace("\r", ""), i, spaced
        )
    word = _IDENT.match(text, i)
    if word:
        return _Token(_Kind.WORD, word.group(), word.group(), i, spaced)
    number = _NUMBER_SPAN.match(text, i)
    if number:
        if not _NUMBER_OK.fullmatch(number.group()):
            raise FilterError(text, i, f"invalid number literal {number.group()!r}")
        return _Token(_Kind.NUMBER, number.group(), number.group(), i, spaced)
    raise FilterError(text, i, f"unexpected character {c!r}{_HINTS.get(c, '')}")


def _read_double_quoted(text: str, start: int) -> tuple[int, str]:
    """Decode a Go interpreted string literal; return (end offset, contents)."""
    out: list[str] = []
    i, n = start + 1, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            return i + 1, "".join(out)
        if c == "\n":
            raise FilterError(text, i, "newline in string literal (write \\n, or use `raw`)")
        if c == "\\":
            decoded, width = _decode_escape(text, i)
            out.append(decoded)
            i += width
        else:
            out.append(c)
            i += 1
    raise FilterError(text, start, "unterminated string literal")


def _decode_escape(text: str, i: int) -> tuple[str, int]:
    """Decode the escape sequence at text[i] == "\\"; return (character, length)."""
    esc = text[i + 1 : i + 2]
    if esc in _ESCAPES:
        return _ESCAPES[esc], 2
    if esc in _HEX_ESCAPES:  # \xHH, \uHHHH, \UHHHHHHHH
        width, start, digit_set = _HEX_ESCAPES[esc], i + 2, "0123456789abcdefABCDEF"
    else:  # \ooo: exactly three octal digits
        width, start, digit_set = 3, i + 1, "01234567"
    digits = text[start : start + width]
    if esc and len(digits) == width and all(d in digit_set for d in digits):
        code = int(digits, 16 if esc in _HEX_ESCAPES else 8)
        if code <= (0x10FFFF if esc in "uU" else 0xFF) and not 0xD800 <= code <= 0xDFFF:
            return chr(code), start + width - i
    raise FilterError(text, i, f"invalid escape sequence {text[i : i + 2]!r} in string literal")


# --- parser --------------------------------------------------------------------

_OPERATORS_HINT: Final = (
    "==, !=, contains, not contains, matches, not matches, is empty, is not empty"
)


class _Parser:
    def __init__(self, text: str) -> None:
        self._text = text
        self._tokens = _tokenize(text)
        self._i = 0
        self._depth = 0

    def _peek(self, ahead: int = 0) -> _Token:
        return self._tokens[min(self._i + ahead, len(self._tokens) - 1)]

    def _next(self) -> _Token:
        tok = self._tokens[self._i]
        if tok.kind is not _Kind.END:
            self._i += 1
        return tok

    def _at_word(self, *words: str, ahead: int = 0) -> bool:
        tok = self._peek(ahead)
        return tok.kind is _Kind.WORD and tok.text in words

    def _fail(self, tok: _Token, reason: str) -> FilterError:
        return FilterError(self._text, tok.pos, reason)

    def _expected(self, tok: _Token, what: str) -> FilterError:
        return self._fail(tok, f"expected {what}, found {tok.describe()}")

    def parse(self) -> Expr:
        expr = self._or()
        tok = self._peek()
        if tok.kind is _Kind.RPAREN:
            raise self._fail(tok, "unmatched ')'")
        if tok.kind is not _Kind.END:
            raise self._expected(tok, "'and', 'or' or end of input")
        return expr

    def _or(self) -> Expr:
        operands = [self._and()]
        while self._at_word("or"):
            self._next()
            operands.append(self._and())
        return _join(Or, operands)

    def _and(self) -> Expr:
        operands = [self._not()]
        while self._at_word("and"):
            self._next()
            operands.append(self._not())
        return _join(And, operands)

    def _not(self) -> Expr:
        negations = 0
        while self._at_word("not"):
            self._next()
            negations += 1
        expr = self._primary()
        if negations % 2 == 0:
            return expr
        return expr.operand if isinstance(expr, Not) else Not(expr)

    def _primary(self) -> Expr:
        opening = self._peek()
        if opening.kind is not _Kind.LPAREN:
            return self._match()
        if self._depth >= MAX_NESTING:
            raise self._fail(opening, f"parentheses nest deeper than {MAX_NESTING} levels")
        self._next()
        self._depth += 1
        expr = self._or()
        tok = self._peek()
        if tok.kind is not _Kind.RPAREN:
            raise self._expected(tok, f"'and', 'or' or ')' (unmatched '(' at offset {opening.pos})")
        self._next()
        self._depth -= 1
        return expr

    def _match(self) -> Match:
        tok = self._peek()
        if tok.kind in (_Kind.STRING, _Kind.NUMBER):
            return self._in_tail(self._value())
        if tok.kind is not _Kind.WORD or tok.text in _KEYWORDS:
            raise self._expected(tok, "a selector, a value or '('")
        selector = self._selector()
        op = self._peek()
        if op.kind in (_Kind.EQ, _Kind.NE):
            self._next()
            kind = MatchOp.EQUAL if op.kind is _Kind.EQ else MatchOp.NOT_EQUAL
            return Match(kind, selector, self._value())
        if self._at_word("is"):
            return self._is_tail(selector)
        if self._at_word("in") or (self._at_word("not") and self._at_word("in", ahead=1)):
            return self._in_tail(_bare_value(selector))
        negated = self._at_word("not") and self._at_word("contains", "matches", ahead=1)
        if negated:
            self._next()
        if self._at_word("contains", "matches"):
            word = self._next().text
            value = self._value()
            if word == "matches":
                self._check_regex(value)
                return Match(MatchOp.NOT_MATCHES if negated else MatchOp.MATCHES, selector, value)
            return Match(MatchOp.NOT_CONTAINS if negated else MatchOp.CONTAINS, selector, value)
        raise self._expected(op, f"an operator after selector {selector} ({_OPERATORS_HINT})")

    def _is_tail(self, selector: Selector) -> Match:
        self._next()  # "is"
        negated = self._at_word("not")
        if negated:
            self._next()
        tok = self._peek()
        if not self._at_word("empty"):
            raise self._expected(tok, "'empty' or 'not empty' after 'is'")
        self._next()
        return Match(MatchOp.IS_NOT_EMPTY if negated else MatchOp.IS_EMPTY, selector)

    def _in_tail(self, value: Value) -> Match:
        negated = self._at_word("not") and self._at_word("in", ahead=1)
        if negated:
            self._next()
        tok = self._peek()
        if not self._at_word("in"):
            raise self._expected(tok, f"'in' or 'not in' after value {value}")
        self._next()
        tok = self._peek()
        if tok.kind is not _Kind.WORD or tok.text in _KEYWORDS:
            raise self._expected(tok, "a selector after 'in'")
        op = MatchOp.NOT_CONTAINS if negated else MatchOp.CONTAINS
        return Match(op, self._selector(), value)

    def _selector(self) -> Selector:
        head = self._next()
        path = [head.text]
        while True:
            tok = self._peek()
            if tok.spaced or tok.kind not in (_Kind.DOT, _Kind.LBRACKET):
                return Selector(tuple(path), head.pos)
            self._next()
            key = self._next()
            if tok.kind is _Kind.DOT:
                if key.kind is not _Kind.WORD or key.spaced:
                    raise self._expected(key, "a field name after '.'")
                path.append(key.text)
                continue
            if key.kind is not _Kind.STRING:
                raise self._expected(key, "a quoted map key after '['")
            close = self._next()
            if close.kind is not _Kind.RBRACKET:
                raise self._expected(close, "']' after map key")
            path.append(key.value)

    def _value(self) -> Value:
        tok = self._peek()
        if tok.kind is _Kind.STRING:
            self._next()
            return Value(tok.value, True, tok.pos)
        if tok.kind is _Kind.NUMBER:
            self._next()
            return Value(tok.text, False, tok.pos)
        if tok.kind is _Kind.WORD and tok.text not in _KEYWORDS:
            return _bare_value(self._selector())
        raise self._expected(tok, "a value (quoted string, number or bare word)")

    def _check_regex(self, value: Value) -> None:
        try:
            _compile_regex(value.raw)
        except re2.error as exc:
            reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
            raise FilterError(
                self._text, value.position, f"invalid regular expression {value.raw!r}: {reason}"
            ) from None


def _join(kind: type[And] | type[Or], operands: list[Expr]) -> Expr:
    if len(operands) == 1:
        return operands[0]
    flat: list[Expr] = []
    for operand in operands:  # `a or (b or c)` is `a or b or c`
        flat.extend(operand.operands if isinstance(operand, kind) else (operand,))
    return kind(tuple(flat))


def _bare_value(selector: Selector) -> Value:
    # bexpr reads an unquoted word as a selector and uses its dotted text.
    raw = ".".join(selector.path)
    return Value(raw, not _DOTTED.fullmatch(raw), selector.position)


# --- coercion (Go strconv rules) -----------------------------------------------

_GO_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_GO_INT = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|0[0-7_]*|[1-9][0-9_]*)")


def _go_bool(raw: str) -> bool | None:
    return True if raw in _GO_TRUE else False if raw in _GO_FALSE else None


def _go_int(raw: str) -> int | None:
    """strconv.ParseInt(raw, 0, 64) syntax, without the range check."""
    if not _GO_INT.fullmatch(raw):
        return None
    body = raw.lstrip("+-")
    try:
        if body[0] == "0" and body[1:2] in tuple("01234567_"):  # legacy octal: 0755
            value = int(body.replace("_", ""), 8)
        else:
            value = int(body, 0)
    except ValueError:
        return None
    return -value if raw.startswith("-") else value


def _go_float(raw: str) -> float | None:
    if not raw.isascii() or raw.strip() != raw:  # Python's float() is laxer than Go's
        return None
    try:
        return float(raw)
    except ValueError:
        return None


# --- evaluation ----------------------------------------------------------------

_LISTS: Final = (list, tuple)
_SIZED: Final = (str, list, tuple, set, frozenset, Mapping)


def _equality_test(raw: str) -> Predicate:
    as_bool, as_int, as_float = _go_bool(raw), _go_int(raw), _go_float(raw)

    def equals(v: Any) -> bool:
        if isinstance(v, str):
            return v == raw
        if isinstance(v, bool):
            return as_bool is not None and v is as_bool
        if isinstance(v, int):
            return v == as_int if as_int is not None else v == as_float
        if isinstance(v, float):
            return as_float is not None and v == as_float
        return False

    return equals


def _contains_test(raw: str) -> Predicate:
    equals = _equality_test(raw)

    def contains(v: Any) -> bool:
        if isinstance(v, str | Mapping):
            return raw in v  # substring, or map key
        if isinstance(v, list | tuple | set | frozenset):
            return raw in v or any(equals(e) for e in v if not isinstance(e, str))
        return False

    return contains


def _non_empty(v: Any) -> bool:
    return len(v) > 0 if isinstance(v, _SIZED) else True


def _compile_regex(raw: str) -> Any:
    """RE2, as Go's regexp: linear time whatever the pattern, so a filter from
    the network cannot make the server backtrack for minutes (Python's re can)."""
    return re2.compile(raw, _RE2_OPTIONS)


def _regex_test(raw: str) -> Predicate:
    search = _compile_regex(raw).search  # the parser has already rejected invalid patterns
    return lambda v: isinstance(v, str) and search(v) is not None


def _compile_match(m: Match) -> Predicate:
    raw = "" if m.value is None else m.value.raw
    test: Predicate
    if m.op in (MatchOp.EQUAL, MatchOp.NOT_EQUAL):
        test = _equality_test(raw)
    elif m.op in (MatchOp.CONTAINS, MatchOp.NOT_CONTAINS):
        test = _contains_test(raw)
    elif m.op in (MatchOp.MATCHES, MatchOp.NOT_MATCHES):
        test = _regex_test(raw)
    else:
        test = _non_empty
    # A missing value (None) fails the positive operators and passes the negated ones.
    leaf: Predicate
    if m.op.negated:
        leaf = lambda v: v is None or not test(v)  # noqa: E731
    else:
        leaf = lambda v: v is not None and test(v)  # noqa: E731
    return _path_predicate(m.selector.path, leaf)


def _path_predicate(path: tuple[str, ...], leaf: Predicate) -> Predicate:
    if len(path) == 1:
        key = path[0]

        def top_level(doc: Any) -> bool:
            if type(doc) is dict:
                return leaf(doc.get(key))
            return _walk(doc, path, 0, leaf)

        return top_level
    return lambda doc: _walk(doc, path, 0, leaf)


def _walk(node: Any, path: tuple[str, ...], i: int, leaf: Predicate) -> bool:
    while i < len(path):
        if type(node) is dict or isinstance(node, Mapping):
            node = node.get(path[i])
            i += 1
        elif isinstance(node, _LISTS):
            # Passing through a list: the match holds if it holds for any element.
            return any(_walk(element, path, i, leaf) for element in node)
        else:
            return leaf(None)
    return leaf(node)


def _compile(expr: Expr) -> Predicate:
    if isinstance(expr, Match):
        return _compile_match(expr)
    if isinstance(expr, Not):
        inner = _compile(expr.operand)
        return lambda doc: not inner(doc)
    parts = tuple(_compile(o) for o in expr.operands)
    if len(parts) == 2:
        a, b = parts
        if isinstance(expr, And):
            return lambda doc: a(doc) and b(doc)
        return lambda doc: a(doc) or b(doc)
    if isinstance(expr, And):
        return lambda doc: all(p(doc) for p in parts)
    return lambda doc: any(p(doc) for p in parts)


# --- schema --------------------------------------------------------------------

_SCALAR_OPS: Final = frozenset({MatchOp.EQUAL, MatchOp.NOT_EQUAL})
_COLLECTION_OPS: Final = frozenset(
    {MatchOp.CONTAINS, MatchOp.NOT_CONTAINS, MatchOp.IS_EMPTY, MatchOp.IS_NOT_EMPTY}
)


def _iter_matches(expr: Expr) -> Iterator[Match]:
    if isinstance(expr, Match):
        yield expr
    elif isinstance(expr, Not):
        yield from _iter_matches(expr.operand)
    else:
        for operand in expr.operands:
            yield from _iter_matches(operand)


def _schema_type(path: tuple[str, ...], schema: Schema) -> type[object] | None:
    patterns = [(tuple(key.split(".")), typ) for key, typ in schema.items()]
    for parts, typ in patterns:
        if parts == path:
            return typ
    for parts, typ in patterns:  # "*" stands for any one map key
        if len(parts) == len(path) and all(p in ("*", s) for p, s in zip(parts, path, strict=True)):
            return typ
    return None


def _coerces(raw: str, typ: type[object]) -> bool:
    if issubclass(typ, bool):
        return _go_bool(raw) is not None
    if issubclass(typ, int):
        return _go_int(raw) is not None
    return _go_float(raw) is not None


def _check_schema(text: str, expr: Expr, schema: Schema) -> None:
    for m in _iter_matches(expr):
        sel = m.selector
        typ = _schema_type(sel.path, schema)
        if typ is None:
            raise FilterError(text, sel.position, f'Selector "{sel}" is not valid')
        scalar = issubclass(typ, bool | int | float)
        if scalar or issubclass(typ, list | tuple | Mapping):
            allowed = _SCALAR_OPS if scalar else _COLLECTION_OPS
            if m.op not in allowed:
                raise FilterError(
                    text,
                    sel.position,
                    f'Invalid match operator "{m.op.value}" for selector "{sel}" of type '
                    f"{typ.__name__} (allowed: {', '.join(sorted(o.value for o in allowed))})",
                )
        if scalar and m.value is not None and not _coerces(m.value.raw, typ):
            raise FilterError(
                text,
                m.value.position,
                f'Value {_quote(m.value.raw)} is not a valid {typ.__name__} for selector "{sel}"',
            )


# --- public API ----------------------------------------------------------------


def parse(expression: str) -> Expr:
    """Parse a filter expression into its AST.

    Pure and synchronous. Raises FilterError (with the offending offset) for
    syntax errors, invalid regular expressions, parentheses nested more than
    MAX_NESTING deep, and expressions over MAX_EXPRESSION_BYTES of UTF-8.
    """
    encoded = expression.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_EXPRESSION_BYTES:
        cut = len(encoded[:MAX_EXPRESSION_BYTES].decode("utf-8", "ignore"))
        raise FilterError(
            expression,
            cut,
            f"filter expression is {len(encoded)} bytes, over the "
            f"{MAX_EXPRESSION_BYTES}-byte limit",
        )
    return _Parser(expression).parse()


def compile_filter(expression: str, schema: Schema | None = None) -> Callable[[Any], bool]:
    """Compile an expression into a predicate over one Consul-shaped JSON item.

    ``schema`` maps every allowed selector, as a dotted path, to its type
    (``{"ServicePort": int, "ServiceTags": list, "ServiceMeta.*": str}``); ``*``
    stands for any one map key. A selector through a list names the element's
    fields directly (``"Checks.Status": str``). With a schema, unknown selectors,
    operators the type does not support, and values that do not coerce to it
    raise FilterError. The predicate never raises on odd data: see the module
    docstring for lists, missing fields and coercion.
    """
    expr = parse(expression)
    if schema is not None:
        _check_schema(expression, expr, schema)
    return _compile(expr)


def _identity(item: Any) -> Any:
    return item


def apply_filter(
    items: Iterable[T],
    expression: str | None,
    schema: Schema | None = None,
    *,
    getter: Callable[[T], Any] = _identity,
) -> list[T]:
    """Return the items whose ``getter(item)`` matches ``expression``, in order.

    An absent or empty expression keeps every item, as an empty ``?filter=``
    does in Consul. Raises FilterError (before looking at any item) if the
    expression is invalid.
    """
    if not expression:
        return list(items)
    keep = compile_filter(expression, schema)
    return [item for item in items if keep(getter(item))]
