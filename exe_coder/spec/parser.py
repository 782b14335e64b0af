"""Text -> declarations: ``grammar/spec.lark`` parsed by Lark, one transformer method a rule.

The transformer only builds; it does not judge. Every declaration keeps its ``Where`` so that
``exe_coder.spec.load`` can name the line of a semantic error. A syntax error becomes one
``UserError`` with file:line:column and the terminals that were expected there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.lexer import PatternStr

from exe_coder import files
from exe_coder.errors import UserError, excerpt
from exe_coder.paths import GRAMMAR_DIR
from exe_coder.spec.model import CASE_STYLES, NUMERAL_STYLES, SPLITS, SUBTRAHEND_SIGNS, Frame, IntRange, PromptTemplate, Slot, Where

GRAMMAR_PATH = GRAMMAR_DIR / "spec.lark"
MAX_SPEC_BYTES = 64 << 20  # a spec is a few KB; this bounds what a mistaken path can cost

# How a few named terminals read in "expected ..." messages.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "INTEGER": "an integer",
    "STRING": "a quoted string",
    "SIGN_PATTERN": "a sign pattern (++ +- -+ --)",
    "MAGNITUDE_PAIR": "a magnitude pair (core/core core/heldout heldout/core heldout/heldout)",
    "$END": "end of file",
}


@dataclass(frozen=True)
class Decl:
    """One declaration: ``seed 1337`` is ``Decl("seed", 1337, where)``."""

    keyword: str
    value: Any
    where: Where


@lru_cache(maxsize=1)
def spec_parser() -> Lark:
    return Lark(
        GRAMMAR_PATH.read_text(encoding="utf-8"),
        start=["spec", "prompt_file"],
        parser="lalr",
        lexer="basic",
        propagate_positions=True,
        maybe_placeholders=False,
    )


@v_args(meta=True)
class SpecTransformer(Transformer):
    """Mirrors grammar/spec.lark: each rule becomes a ``Decl`` (or a part of one)."""

    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file

    def _where(self, meta: Any) -> Where:
        return Where(file=self.file, line=getattr(meta, "line", 1), column=getattr(meta, "column", 1))

    def _decl(self, keyword: str, value: Any, meta: Any) -> Decl:
        return Decl(keyword, value, self._where(meta))

    # start rules: the declarations in file order
    def spec(self, meta, items):
        return list(items)

    def prompt_file(self, meta, items):
        return list(items)

    def stage(self, meta, c):
        return self._decl("stage", str(c[0]), meta)

    def target(self, meta, c):
        return self._decl("target", str(c[0]), meta)

    def program(self, meta, c):
        return self._decl("program", str(c[0]), meta)

    def seed(self, meta, c):
        return self._decl("seed", int(c[0]), meta)

    def operands(self, meta, c):
        return self._decl("operands", c[0], meta)

    def magnitudes(self, meta, buckets):
        return self._decl("magnitudes", list(buckets), meta)

    def bucket(self, meta, c):
        return self._decl(_one_of(c[0], ("core", "heldout"), "magnitude bucket"), list(c[1:]), meta)

    def signs(self, meta, c):
        return self._decl("signs", [str(t) for t in c], meta)

    def numerals(self, meta, weights):
        return self._decl("numerals", list(weights), meta)

    def numeral_weight(self, meta, c):
        return self._decl(_one_of(c[0], NUMERAL_STYLES, "numeral style"), int(c[1]), meta)

    def include(self, meta, c):
        return self._decl("include", _string(c[0]), meta)

    def prompt_set(self, meta, c):
        return self._decl("prompts", (str(c[0]), list(c[1:])), meta)

    def template(self, meta, c):
        return PromptTemplate(id=str(c[0]), text=_string(c[1]), where=self._where(meta))

    def phrasebook(self, meta, c):
        return self._decl("phrasebook", (str(c[0]), list(c[1:])), meta)

    def slot(self, meta, c):
        words, numbers = (c[1], None) if isinstance(c[1], list) else ([], c[1])
        return Slot(name=str(c[0]), words=words, numbers=numbers, where=self._where(meta))

    def slot_words(self, meta, c):
        return [_string(t) for t in c]

    def case(self, meta, weights):
        return self._decl("case", list(weights), meta)

    def case_weight(self, meta, c):
        return self._decl(_one_of(c[0], CASE_STYLES, "letter case"), int(c[1]), meta)

    def subtrahend(self, meta, weights):
        return self._decl("subtrahend", list(weights), meta)

    def subtrahend_weight(self, meta, c):
        return self._decl(_one_of(c[0], SUBTRAHEND_SIGNS, "subtrahend sign"), int(c[1]), meta)

    def frame(self, meta, c):
        op = _one_of(c[1], ("add", "sub"), "operation") if len(c) == 3 else "add"
        return Frame(id=str(c[0]), op=op, text=_string(c[-1]), where=self._where(meta))

    def split(self, meta, c):
        return self._decl("split", (_one_of(c[0], SPLITS, "split"), int(c[1]), list(c[2:])), meta)

    def split_prompts(self, meta, c):
        return self._decl("prompts", list(c), meta)

    def prompt_share(self, meta, c):
        return self._decl(str(c[0]), int(c[1]) if len(c) == 2 else None, meta)

    def split_pairs(self, meta, c):
        return self._decl("pairs", [str(t) for t in c], meta)

    def range(self, meta, c):
        return IntRange(lo=int(c[0]), hi=int(c[1]), where=self._where(meta))


def _one_of(token: Token, allowed: tuple[str, ...], what: str) -> str:
    if str(token) not in allowed:
        names = ", ".join(f'"{a}"' for a in allowed)
        raise UserError(f"unknown {what} {excerpt(str(token))}; expected one of {names}", None, token.line, token.column)
    return str(token)


def _string(token: Token) -> str:
    """A quoted string with JSON escapes (``\\"``, ``\\\\``, ``\\n``, ``\\u00e9``)."""
    try:
        return json.loads(str(token))
    except json.JSONDecodeError as err:
        raise UserError(f"bad escape in string {excerpt(str(token))}: {err.msg}", None, token.line, token.column) from None


def _describe(parser: Lark, names: set[str] | frozenset[str]) -> str:
    words: set[str] = set()
    for name in names:
        if name in _TERMINAL_WORDS:
            words.add(_TERMINAL_WORDS[name])
            continue
        try:
            pattern = parser.get_terminal(name).pattern
        except KeyError:
            words.add(name.lower())
            continue
        words.add(f'"{pattern.value}"' if isinstance(pattern, PatternStr) else name.lower())
    return ", ".join(sorted(words))


def parse_text(text: str, file: str, *, start: str = "spec") -> list[Decl]:
    """Parse spec (or prompt file) text; ``file`` only labels positions in messages."""
    parser = spec_parser()
    try:
        tree = parser.parse(text, start=start)
    except UnexpectedInput as err:
        raise _syntax_error(parser, err, text, file) from None
    try:
        return SpecTransformer(file).transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, UserError):
            e = err.orig_exc
            raise UserError(e.message, file, e.line, e.column) from None
        raise


def _syntax_error(parser: Lark, err: UnexpectedInput, text: str, file: str) -> UserError:
    if isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken) and err.token.type == "$END"):
        expected = err.expected if isinstance(err, UnexpectedEOF) else (err.accepts or err.expected)
        line = text.count("\n") + 1  # where the file ends, not where its last token began
        column = len(text) - (text.rfind("\n") + 1) + 1
        return UserError(f"unexpected end of file; expected {_describe(parser, set(expected))}", file, line, column)
    if isinstance(err, UnexpectedToken):
        return UserError(
            f"unexpected {excerpt(str(err.token))}; expected {_describe(parser, err.accepts or err.expected)}",
            file,
            err.line if err.line != -1 else None,
            err.column if err.column != -1 else None,
        )
    assert isinstance(err, UnexpectedCharacters)
    return UserError(
        f"unexpected character {err.char!r}; expected {_describe(parser, err.allowed)}",
        file,
        err.line,
        err.column,
    )


def parse_file(path: Path, *, start: str = "spec", label: str | None = None) -> list[Decl]:
    shown = label or path
    data = files.read_regular(path, limit=MAX_SPEC_BYTES, what="a .spec or .prompts file", shown=shown)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"not UTF-8 text (byte {err.start + 1})", shown, data[: err.start].count(b"\n") + 1) from None
    return parse_text(text, label or str(path), start=start)
