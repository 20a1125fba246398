"""HCL, the format of Consul's agent configurations and service definitions.

``parse_hcl(text)`` decodes HCL into the same shape a JSON file has, so the
rest of the configuration pipeline cannot tell the two apart, or raises
``HCLSyntaxError`` with the line and column of the first problem.

The parser is python-hcl2 (HCL2 syntax, a lark LALR grammar, maintained):
it keeps repeated blocks (``service {}`` twice) apart and marks blocks, and
reports positions. pyhcl (HCL1) was tried and merges the keys of repeated
top-level blocks wrongly (the second ``service { name = ... }`` loses its
``name``). It is imported on first use only, so the CLI does not pay for it.

Consul decodes with HCL1, which also takes blocks inside object literals
(``Routes = [ { Match { HTTP { ... } } } ]`` in its config entry docs);
``hcl_objects.hcl1_objects`` rewrites those into HCL2 attributes first.

Blocks become objects, as Consul's decoder makes them (its
``PatchSliceOfMaps``): a block given once is an object; the keys that hold
lists (``services``, ``checks``, ``upstreams`` ...) stay lists however often
their block is given; ``service`` and ``check`` given several times become a
list of definitions; any other block given twice is an error.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from .hcl_objects import hcl1_objects

__all__ = ["HCLSyntaxError", "parse_hcl"]

# Keys whose blocks always make a list (Consul's PatchSliceOfMaps exceptions).
LIST_KEYS = frozenset(
    {"services", "checks", "watches", "upstreams", "paths", "segments", "bootstrap"}
)
# Keys whose repeated blocks are several definitions.
REPEATABLE = frozenset({"service", "check"})
_BLOCK = "__is_block__"
# lark terminal names as a reader knows them.
_SYMBOLS = {
    "RBRACE": "}",
    "LBRACE": "{",
    "RSQB": "]",
    "LSQB": "[",
    "EQ": "=",
    "COLON": ":",
    "COMMA": ",",
    "LPAR": "(",
    "RPAR": ")",
    "DBLQUOTE": '"',
    "NAME": "a name",
    "DECIMAL": "a number",
}


class HCLSyntaxError(ValueError):
    """HCL that does not parse, or a block repeated where one is allowed.

    ``line``/``column`` are 1-based (0 when unknown); ``str()`` is e.g.
    ``invalid HCL at line 5, column 1: unexpected end of file, expected }``.
    """

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(line, column, message)
        self.line = line
        self.column = column
        self.message = message

    def __str__(self) -> str:
        where = f" at line {self.line}, column {self.column}" if self.line else ""
        return f"invalid HCL{where}: {self.message}"


def _shown(token_type: str, value: str) -> str:
    if token_type == "$END":
        return "end of file"
    if token_type in _SYMBOLS and token_type not in ("NAME", "DECIMAL"):
        return repr(_SYMBOLS[token_type])
    if not value.strip():
        return "end of line" if "\n" in value else "blank space"
    return repr(value.strip()[:20])


def _from_lark(exc: Exception) -> HCLSyntaxError:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if isinstance(exc, UnexpectedToken):
        expected = sorted({_SYMBOLS[name] for name in exc.expected if name in _SYMBOLS})
        message = f"unexpected {_shown(exc.token.type, str(exc.token.value))}"
        if expected:
            message += f", expected {' or '.join(expected[:4])}"
        if exc.token.type == "DBLQUOTE" and "NAME" in exc.expected:
            message += ' (a quoted key belongs in an object: meta = { "key" = "value" })'
        return HCLSyntaxError(exc.line, exc.column, message)
    if isinstance(exc, UnexpectedCharacters):
        return HCLSyntaxError(exc.line, exc.column, f"unexpected character {exc.char!r}")
    if isinstance(exc, UnexpectedEOF):
        return HCLSyntaxError(0, 0, "unexpected end of file")
    return HCLSyntaxError(0, 0, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _is_block(value: Any) -> bool:
    return isinstance(value, dict) and value.get(_BLOCK) is True


def _plain(value: Any, path: str) -> Any:
    if isinstance(value, list):
        if value and all(_is_block(v) for v in value):
            return _blocks(value, path)
        return [_plain(v, path) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v, f"{path}.{k}" if path else k) for k, v in value.items() if k != _BLOCK}
    return value


def _blocks(blocks: list[Any], path: str) -> Any:
    name = path.rpartition(".")[2]
    items = [_plain(b, path) for b in blocks]
    if name in LIST_KEYS or (name in REPEATABLE and len(items) > 1):
        return items
    if len(items) > 1:
        raise HCLSyntaxError(0, 0, f"{path}: block given {len(items)} times; give it once")
    return items[0]


@functools.cache
def _parser() -> Any:
    """python-hcl2's lark parser. Building its grammar takes 1-2 s; lark keeps
    the result in a cache file beside the package. Where that directory is
    read-only and holds no cache (an install under systemd's
    ProtectSystem=strict), the cache goes to the temporary directory instead
    of the grammar being rebuilt on every start."""
    from hcl2 import parser as hcl2_parser

    where = str(hcl2_parser.PARSER_FILE)
    if os.path.exists(where) or os.access(os.path.dirname(where), os.W_OK):
        return hcl2_parser.parser()
    from hcl2.postlexer import PostLexer
    from lark import Lark

    return Lark.open(
        "hcl2.lark",
        parser="lalr",
        cache=True,  # a file in tempfile.gettempdir(), named by the grammar's hash
        rel_to=hcl2_parser.__file__,
        propagate_positions=True,
        postlex=PostLexer(),
    )


def parse_hcl(text: str) -> dict[str, Any]:
    """Decode HCL ``text`` into JSON-shaped values (see the module docstring).

    Raises ``HCLSyntaxError`` for text that does not parse (with line and
    column) or a block repeated where Consul allows it once.
    """
    from hcl2.api import serialize, transform
    from hcl2.utils import SerializationOptions
    from lark.exceptions import LarkError

    options = SerializationOptions(
        with_comments=False,
        explicit_blocks=True,
        strip_string_quotes=True,
        preserve_heredocs=False,
    )
    try:
        # The newline: python-hcl2's own workaround (its grammar needs one at the end).
        tree = transform(_parser().parse(hcl1_objects(text) + "\n"))
        decoded = serialize(tree, serialization_options=options)
    except LarkError as exc:
        raise _from_lark(exc) from None
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise HCLSyntaxError(0, 0, str(exc) or type(exc).__name__) from None
    result = _plain(decoded, "")
    if not isinstance(result, dict):
        raise HCLSyntaxError(0, 0, "the top level must be an object")
    return result
