"""CEL fee expressions compiled for the Rust-backed evaluator (the `common-expression-language` package,
module `cel`), with the intent's fields handed over as flat variables.

Handing `intent` over as one nested map costs ~30 µs per intent: the package converts every Python
key and string by trying one type after another. A rule mostly reads a few leaf fields, so each
`intent.<path>` select on a known path is rewritten to a variable of its own (`intent.source.id` ->
`_pm_intent_source_id`), and only the variables an expression reads are converted. An int or a
bool converts in well under a microsecond, a string in one or two.

The rewrite works on CEL's tokens (strings, comments and quoted identifiers are skipped whole) and
gives up, leaving the expression as written and `intent` a whole map, whenever it cannot be sure of
the meaning: `intent` used bare, indexed, as a comprehension variable or under a leading dot, a path
that is not a field of the intent, a method called on the path itself, `has(...)`, or a name that
already starts with `_pm_`. Either way the expression means what it says over the same values.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import cel

# The intent's select paths, longest first within each prefix, and the variable each becomes.
PATHS: dict[tuple[str, ...], str] = {
    ("type",): "_pm_intent_type",
    ("amount",): "_pm_intent_amount",
    ("currency",): "_pm_intent_currency",
    ("source", "kind"): "_pm_intent_source_kind",
    ("source", "id"): "_pm_intent_source_id",
    ("source",): "_pm_intent_source",
    ("target", "kind"): "_pm_intent_target_kind",
    ("target", "id"): "_pm_intent_target_id",
    ("target",): "_pm_intent_target",
    ("requiresMonitoring",): "_pm_intent_requiresMonitoring",
    ("metadata",): "_pm_intent_metadata",
}
WHOLE = "intent"
"""The variable of an expression that was not rewritten: the whole intent as a map."""
NAMES = frozenset([*PATHS.values(), WHOLE])
_RESERVED = "_pm_"

# One CEL token per match; strings (raw first: a raw prefix would otherwise lex as an identifier),
# comments and backquoted identifiers are single tokens, so nothing inside them is taken for a select.
_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<string>
        (?:[rR][bB]?|[bB][rR])(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"[^"\n]*"|'[^'\n]*')
      | [bB]?(?:\"\"\"(?:\\[\s\S]|[^\\])*?\"\"\"|'''(?:\\[\s\S]|[^\\])*?'''
               |"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
    )
  | (?P<quoted>`[^`\n]*`)
  | (?P<number>0[xX][0-9a-fA-F]+[uU]?|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[uU]?)
  | (?P<ident>[_a-zA-Z][_a-zA-Z0-9]*)
  | (?P<punct>[^\s"'`])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    start: int
    end: int


def _tokens(text: str) -> list[_Token] | None:
    """The tokens of `text` without spaces and comments, or None where it does not lex."""
    found: list[_Token] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None or match.lastgroup is None:
            return None  # an unterminated string, say: leave it to the compiler
        if match.lastgroup != "space":
            found.append(_Token(match.lastgroup, match.group(), match.start(), match.end()))
        at = match.end()
    return found


def _path_at(tokens: list[_Token], i: int) -> tuple[str, int] | None:
    """The variable for the known path selected from `intent` at tokens[i], and the index of the path's
    last token; None when no known path follows or the path itself is called as a method."""
    fields: list[str] = []
    j = i
    while j + 2 < len(tokens) and tokens[j + 1].text == "." and tokens[j + 2].kind == "ident":
        fields.append(tokens[j + 2].text)
        j += 2
    for n in range(len(fields), 0, -1):
        name = PATHS.get(tuple(fields[:n]))
        if name is None:
            continue
        last = i + 2 * n
        if last + 1 < len(tokens) and tokens[last + 1].text == "(":
            return None  # `intent.source.id()`: a method of the map, not a field
        return name, last
    return None


def flatten(text: str) -> str | None:
    """`text` with every `intent.<known path>` select as its flat variable, or None when it is left as is."""
    tokens = _tokens(text)
    if tokens is None:
        return None
    parts: list[str] = []
    copied = 0
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.kind == "ident" and (token.text == "has" or token.text.startswith(_RESERVED)):
            return None
        if token.kind == "ident" and token.text == WHOLE:
            if i > 0 and tokens[i - 1].text == ".":
                return None  # `x.intent` or a leading-dot `.intent`: not worth telling apart
            found = _path_at(tokens, i)
            if found is None:
                return None
            name, last = found
            parts += [text[copied : token.start], name]
            copied = tokens[last].end
            i = last
        i += 1
    return "".join(parts) + text[copied:]


@dataclass(frozen=True)
class Expression:
    """One compiled expression and the variables (of NAMES) it reads."""

    source: str
    program: cel.Program
    names: frozenset[str]

    def evaluate(self, context: cel.Context) -> object:
        """The value of the expression; any exception the evaluator raises is the expression's failure."""
        result: object = self.program.execute(context)
        return result


@functools.lru_cache(maxsize=4096)
def compile_expression(text: str) -> Expression:
    """`text` compiled once (cached by text); ValueError with the compiler's message when it does not."""
    program = cel.compile(text)  # the expression as written must compile, whatever the rewrite does
    flat = flatten(text)
    if flat is not None:
        try:
            program = cel.compile(flat)
        except ValueError:  # not expected; the expression as written is still right
            flat = None
    names = frozenset(program.variables()) & (NAMES - {WHOLE} if flat is not None else {WHOLE})
    return Expression(text, program, names)
