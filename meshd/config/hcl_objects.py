"""HCL1's blocks inside object literals, rewritten into HCL2 attributes.

Consul decodes config entries (and agent configurations) with HCL1, where a
block may stand inside an object literal and the items of an object need no
separator on one line. Consul's own service-router example is::

    Routes = [
      {
        Match {
          HTTP { PathPrefix = "/admin" }
        }
        Destination { Service = "admin" }
      },
    ]

python-hcl2 (HCL2) allows blocks only in a body (the top level or a block's
body) and wants a newline or a comma between object items. ``hcl1_objects``
rewrites the text so that, inside an object literal only, ``Key {`` becomes
``Key = {`` and two items on one line get a comma between them. Bodies are
left alone (a block there keeps its block semantics: repeated ``service``
blocks, ``LIST_KEYS``), as are strings, heredocs and comments. Lines are
never added or removed, so syntax errors keep their line numbers.
"""

from __future__ import annotations

import re

__all__ = ["hcl1_objects"]

# One lexical token: comments, heredocs, strings, punctuation, other runs.
_TOKEN = re.compile(
    r"""
      (?P<space>[ \t\r]+)
    | (?P<newline>\n)
    | (?P<comment>\#[^\n]*|//[^\n]*|/\*.*?\*/)
    | (?P<heredoc><<-?(?P<tag>[A-Za-z_][A-Za-z0-9_]*)[^\n]*\n(?:.*?\n)??[ \t]*(?P=tag)(?=\s|$))
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<punct>[{}\[\]()=:,])
    | (?P<word>[^\s{}\[\]()=:,"#/]+|/)
    """,
    re.VERBOSE | re.DOTALL,
)
_BODY, _OBJECT, _OTHER = "body", "object", "other"


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # unterminated string or comment: leave the rest to the parser
            out.append(("word", text[pos:]))
            break
        kind = m.lastgroup if m.lastgroup != "tag" else "heredoc"
        out.append((kind or "word", m.group(0)))
        pos = m.end()
    return out


def _significant(tokens: list[tuple[str, str]], start: int) -> str:
    """The next token at or after ``start`` that is not blank or a comment."""
    for kind, value in tokens[start:]:
        if kind not in ("space", "comment", "newline"):
            return value
    return ""


def hcl1_objects(text: str) -> str:
    """``text`` with HCL1 blocks and unseparated items inside object literals
    rewritten as HCL2 (see the module docstring); anything else unchanged."""
    tokens = _tokens(text)
    out: list[str] = []
    stack = [_BODY]
    prev = ""  # the last significant token emitted in the current context
    newline_since = False
    for i, (kind, value) in enumerate(tokens):
        if kind in ("space", "comment", "newline"):
            newline_since = newline_since or kind == "newline" or "\n" in value
            out.append(value)
            continue
        context = stack[-1]
        if context == _OBJECT and kind in ("word", "string"):
            nxt = _significant(tokens, i + 1)
            if nxt in ("=", ":", "{") and prev not in ("{", ",", "") and not newline_since:
                out.append(",")  # two items on one line: HCL2 wants a separator
            out.append(value)
            if nxt == "{":
                out.append(" =")
                prev = "="
            else:
                prev = value
            newline_since = False
            continue
        if value == "{":
            opens_object = context in (_OBJECT, _OTHER) or prev in ("=", ":")
            stack.append(_OBJECT if opens_object else _BODY)
            prev = ""
        elif value in ("[", "("):
            stack.append(_OTHER)
            prev = ""
        elif value in ("}", "]", ")"):
            if len(stack) > 1:
                stack.pop()
            prev = "}"
        else:
            prev = value
        out.append(value)
        newline_since = False
    return "".join(out)
