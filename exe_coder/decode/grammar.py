"""The decode grammar compiled to token masks: what the model may write next, in each state.

``grammar/track_a.lark`` is loaded by Lark once. Its rules are walked (literal terminals become
character chains, rule references are inlined, alternatives become branches) into a
character-level NFA in which every ``INT`` terminal is replaced by an exact sub-automaton for
the canonical integers in ``[min_int, max_int]`` (the classic digit-range construction). The NFA
is determinised, minimised and trimmed, so every state can still reach acceptance, and then
lifted to the tokenizer's vocabulary as two dense tables:

- ``allowed[state, token]``: the token keeps the output a prefix of an in-bounds sentence;
  EOS is allowed only in the accepting state.
- ``next_state[state, token]``: where the token leads (``dead_state`` when not allowed).

After EOS a row sits in ``done_state``, which allows only EOS again, so a finished row in a
batch keeps producing EOS and never a masked-out (all ``-inf``) row. ``parse`` reads a text with
Lark through the same grammar file and checks the bounds; it is what scores ``parse_success``.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

import lark
import mlx.core as mx
import numpy as np
from lark.grammar import NonTerminal, Terminal
from lark.lexer import PatternRE, PatternStr

from exe_coder.errors import UserError
from exe_coder.model.tokenizer import EOS, Tokenizer
from exe_coder.paths import GRAMMAR_DIR

TRACK_A_GRAMMAR = GRAMMAR_DIR / "track_a.lark"
INT_TERMINAL = "INT"  # the terminal replaced by the bounded-range sub-automaton
DIGITS = "0123456789"


# --- a character NFA, built from the grammar ---------------------------------------------------


class _NFA:
    """States are ints; ``edges[s]`` holds ``(char, t)``, ``eps[s]`` holds epsilon targets."""

    def __init__(self) -> None:
        self.edges: list[list[tuple[str, int]]] = []
        self.eps: list[list[int]] = []

    def state(self) -> int:
        self.edges.append([])
        self.eps.append([])
        return len(self.edges) - 1

    def literal(self, text: str) -> tuple[int, int]:
        start = end = self.state()
        for ch in text:
            nxt = self.state()
            self.edges[end].append((ch, nxt))
            end = nxt
        return start, end

    def chars(self, alphabet: str) -> tuple[int, int]:
        start, end = self.state(), self.state()
        for ch in alphabet:
            self.edges[start].append((ch, end))
        return start, end

    def seq(self, parts: list[tuple[int, int]]) -> tuple[int, int]:
        if not parts:
            s = self.state()
            return s, s
        for (_, end), (nxt, _) in zip(parts, parts[1:]):
            self.eps[end].append(nxt)
        return parts[0][0], parts[-1][1]

    def alt(self, branches: list[tuple[int, int]]) -> tuple[int, int]:
        start, end = self.state(), self.state()
        for s, e in branches:
            self.eps[start].append(s)
            self.eps[e].append(end)
        return start, end


def _same_length_range(nfa: _NFA, lo: str, hi: str) -> tuple[int, int]:
    """Digit strings of one length between ``lo`` and ``hi`` inclusive (lo <= hi, same length)."""
    if not lo:
        s = nfa.state()
        return s, s
    if lo == "0" * len(lo) and hi == "9" * len(hi):  # any digits: keeps the NFA quadratic, not exponential
        return nfa.seq([nfa.chars(DIGITS) for _ in lo])
    if lo[0] == hi[0]:
        return nfa.seq([nfa.literal(lo[0]), _same_length_range(nfa, lo[1:], hi[1:])])
    rest = len(lo) - 1
    branches = [nfa.seq([nfa.literal(lo[0]), _same_length_range(nfa, lo[1:], "9" * rest)])]
    middle = DIGITS[int(lo[0]) + 1 : int(hi[0])]
    if middle:
        branches.append(nfa.seq([nfa.chars(middle)] + [nfa.chars(DIGITS) for _ in range(rest)]))
    branches.append(nfa.seq([nfa.literal(hi[0]), _same_length_range(nfa, "0" * rest, hi[1:])]))
    return nfa.alt(branches)


def _positive_range(nfa: _NFA, lo: int, hi: int) -> list[tuple[int, int]]:
    """Canonical decimal strings of the integers in [lo, hi], 1 <= lo <= hi: one branch a length."""
    branches = []
    for width in range(len(str(lo)), len(str(hi)) + 1):
        a, b = max(lo, 10 ** (width - 1)), min(hi, 10**width - 1)
        branches.append(_same_length_range(nfa, str(a), str(b)))
    return branches


def _int_range(nfa: _NFA, lo: int, hi: int) -> tuple[int, int]:
    """Canonical integers in [lo, hi]: ``0``, ``-`` + positive magnitudes, positive magnitudes."""
    branches = []
    if lo <= 0 <= hi:
        branches.append(nfa.literal("0"))
    if hi >= 1:
        branches += _positive_range(nfa, max(lo, 1), hi)
    if lo <= -1:
        magnitudes = _positive_range(nfa, max(-hi, 1), -lo)
        branches.append(nfa.seq([nfa.literal("-"), nfa.alt(magnitudes)]))
    return nfa.alt(branches)


def _grammar_nfa(parser: lark.Lark, min_int: int, max_int: int, path: Path) -> tuple[_NFA, int, int]:
    rules: dict[str, list[list]] = {}
    for rule in parser.rules:
        rules.setdefault(rule.origin.name, []).append(rule.expansion)
    terminals = {t.name: t.pattern for t in parser.terminals}
    nfa = _NFA()

    def build_rule(name: str, active: tuple[str, ...]) -> tuple[int, int]:
        if name in active:
            raise UserError(f"decode grammar must not be recursive (rule {name!r})", path)
        return nfa.alt([build_seq(exp, active + (name,)) for exp in rules[name]])

    def build_seq(expansion: list, active: tuple[str, ...]) -> tuple[int, int]:
        parts = []
        for sym in expansion:
            if isinstance(sym, NonTerminal):
                parts.append(build_rule(sym.name, active))
            elif isinstance(sym, Terminal) and sym.name == INT_TERMINAL:
                parts.append(_int_range(nfa, min_int, max_int))
            else:
                pattern = terminals[sym.name]
                if not isinstance(pattern, PatternStr) or pattern.flags:
                    raise UserError(
                        f"decode grammar terminal {sym.name} must be a plain literal or {INT_TERMINAL}", path
                    )
                parts.append(nfa.literal(pattern.value))
        return nfa.seq(parts)

    if "start" not in rules:
        raise UserError("decode grammar has no 'start' rule", path)
    start, accept = build_rule("start", ())
    return nfa, start, accept


# --- NFA -> minimal trimmed DFA --------------------------------------------------------------


def _closure(nfa: _NFA, states: frozenset[int]) -> frozenset[int]:
    stack, seen = list(states), set(states)
    while stack:
        for t in nfa.eps[stack.pop()]:
            if t not in seen:
                seen.add(t)
                stack.append(t)
    return frozenset(seen)


def _determinise(nfa: _NFA, start: int, accept: int) -> tuple[list[dict[str, int]], list[bool]]:
    first = _closure(nfa, frozenset([start]))
    index = {first: 0}
    order = [first]
    trans: list[dict[str, int]] = []
    for subset in order:  # grows while we walk it: breadth-first, so numbering is deterministic
        moves: dict[str, set[int]] = {}
        for s in subset:
            for ch, t in nfa.edges[s]:
                moves.setdefault(ch, set()).add(t)
        row = {}
        for ch in sorted(moves):
            target = _closure(nfa, frozenset(moves[ch]))
            if target not in index:
                index[target] = len(order)
                order.append(target)
            row[ch] = index[target]
        trans.append(row)
    return trans, [accept in subset for subset in order]


def _minimise(trans: list[dict[str, int]], accepting: list[bool]) -> tuple[list[dict[str, int]], list[bool]]:
    """Moore partition refinement, then renumber breadth-first from the start state."""
    block = [int(a) for a in accepting]
    while True:
        signature = [(block[s], tuple(sorted((ch, block[t]) for ch, t in trans[s].items()))) for s in range(len(trans))]
        ids: dict[tuple, int] = {}
        new_block = [ids.setdefault(sig, len(ids)) for sig in signature]
        if len(ids) == len(set(block)):
            break
        block = new_block
    rep: dict[int, int] = {}
    for s in range(len(trans)):
        rep.setdefault(block[s], s)
    order, number = [block[0]], {block[0]: 0}
    out: list[dict[str, int]] = []
    for b in order:
        row = {}
        for ch, t in sorted(trans[rep[b]].items()):
            if block[t] not in number:
                number[block[t]] = len(order)
                order.append(block[t])
            row[ch] = number[block[t]]
        out.append(row)
    return out, [accepting[rep[b]] for b in order]


def _trim(trans: list[dict[str, int]], accepting: list[bool]) -> list[dict[str, int]]:
    """Drop edges into states that cannot reach acceptance: every prefix stays completable."""
    live = {s for s, a in enumerate(accepting) if a}
    changed = True
    while changed:
        changed = False
        for s, row in enumerate(trans):
            if s not in live and any(t in live for t in row.values()):
                live.add(s)
                changed = True
    if 0 not in live:
        raise ValueError("the decode grammar accepts nothing within the bounds")
    return [{ch: t for ch, t in row.items() if t in live} if s in live else {} for s, row in enumerate(trans)]


# --- the compiled grammar ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False, kw_only=True)
class TokenMasks:
    """A deterministic automaton over token ids as the dense tables generation masks with: what
    a track's decoding may write next in each state (``DecodeGrammar``: Track A's patch grammar;
    ``image_structure``: Track B's structural-constraint ablation)."""

    allowed: np.ndarray  # bool [states, vocab]
    next_state: np.ndarray  # int32 [states, vocab]
    accepting: np.ndarray  # bool [states]: EOS allowed here
    start_state: int
    done_state: int  # after EOS: only EOS again
    dead_state: int  # where a disallowed token leads: nothing allowed
    max_tokens: int  # the longest sentence in tokens, EOS included
    _mx: dict = field(default_factory=dict, repr=False)

    @property
    def num_states(self) -> int:
        return self.allowed.shape[0]

    @property
    def allowed_mx(self) -> mx.array:
        return self._device("allowed", lambda: mx.array(self.allowed))

    @property
    def next_state_mx(self) -> mx.array:
        return self._device("next_state", lambda: mx.array(self.next_state))

    @property
    def mask_bias_mx(self) -> mx.array:
        """float32 [states, vocab]: 0 where allowed, -inf elsewhere; masking is one gather + add."""
        return self._device("bias", lambda: mx.array(np.where(self.allowed, 0.0, -np.inf).astype(np.float32)))

    def _device(self, key: str, make) -> mx.array:
        if key not in self._mx:
            self._mx[key] = make()
        return self._mx[key]

    def walk(self, tokens: list[int], state: int | None = None) -> int:
        """The state after ``tokens`` (``dead_state`` once any token was not allowed)."""
        s = self.start_state if state is None else state
        for tok in tokens:
            s = int(self.next_state[s, tok])
        return s


def token_tables(edges: list[dict[int, int]], accepting: list[bool]) -> dict:
    """``TokenMasks``' tables (all but ``max_tokens``) of an automaton whose states are numbered
    from 0 (the start): ``edges[s]`` maps each allowed token id to the next state. Two states are
    added after them: done (after EOS, which accepting states allow: only EOS again) and dead."""
    vocab = Tokenizer().vocab_size
    n = len(edges)
    done, dead = n, n + 1
    allowed = np.zeros((n + 2, vocab), dtype=bool)
    next_state = np.full((n + 2, vocab), dead, dtype=np.int32)
    for s, row in enumerate(edges):
        for tid, t in row.items():
            allowed[s, tid] = True
            next_state[s, tid] = t
        if accepting[s]:
            allowed[s, EOS] = True
            next_state[s, EOS] = done
    allowed[done, EOS] = True
    next_state[done, EOS] = done
    return dict(
        allowed=allowed, next_state=next_state, accepting=np.array(list(accepting) + [False, False]),
        start_state=0, done_state=done, dead_state=dead,
    )


@dataclass(frozen=True, eq=False, kw_only=True)
class DecodeGrammar(TokenMasks):
    """Token masks for one grammar file and one pair of operand bounds (build with ``compile_grammar``)."""

    path: Path
    grammar_sha256: str
    min_int: int
    max_int: int
    _parser: lark.Lark = field(repr=False)

    def accepts_text(self, text: str) -> bool:
        """The automaton's verdict on a whole output (the text, then EOS)."""
        return self.walk(Tokenizer().encode_target(text)) == self.done_state

    def parse(self, text: str) -> tuple[int, int] | None:
        """``(a, b)`` when ``text`` is a sentence of the grammar with both operands in bounds."""
        try:
            tree = self._parser.parse(text)
        except lark.exceptions.LarkError:
            return None
        values = {sub.data: int(sub.children[0]) for sub in tree.iter_subtrees() if sub.data in ("a", "b")}
        a, b = values.get("a"), values.get("b")
        if a is None or b is None or not all(self.min_int <= v <= self.max_int for v in (a, b)):
            return None
        return a, b


_CACHE: dict[tuple[str, int, int], DecodeGrammar] = {}
_CACHE_LOCK = threading.Lock()


def compile_grammar(min_int: int, max_int: int, path: str | Path = TRACK_A_GRAMMAR) -> DecodeGrammar:
    """The grammar at ``path`` compiled for operands in [min_int, max_int] (cached by file hash and bounds)."""
    path = Path(path)
    if min_int > max_int:
        raise UserError(f"decode bounds are empty: decode_min_int {min_int} > decode_max_int {max_int}")
    try:
        text = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read decode grammar: {err.strerror}", path) from None
    digest = hashlib.sha256(text).hexdigest()
    key = (digest, int(min_int), int(max_int))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _compile(text.decode("utf-8"), digest, int(min_int), int(max_int), path)
        return _CACHE[key]


def _compile(text: str, digest: str, min_int: int, max_int: int, path: Path) -> DecodeGrammar:
    try:
        parser = lark.Lark(text, parser="lalr")
    except lark.exceptions.GrammarError as err:
        raise UserError(f"bad decode grammar: {err}", path) from None
    except lark.exceptions.UnexpectedInput as err:
        raise UserError(f"bad decode grammar: {type(err).__name__}", path, err.line, err.column) from None
    nfa, start, accept = _grammar_nfa(parser, min_int, max_int, path)
    trans, accepting = _minimise(*_determinise(nfa, start, accept))
    trans = _trim(trans, accepting)

    tok = Tokenizer()
    edges = []
    for s in range(len(trans)):
        row = {}
        for tid in range(tok.vocab_size):
            text_of = tok.token_text(tid)
            t = s
            for ch in text_of:  # one char per byte token; the loop keeps multi-char vocabularies honest
                t = trans[t].get(ch, -1) if t >= 0 else -1
            if text_of and t >= 0:
                row[tid] = t
        edges.append(row)

    return DecodeGrammar(
        path=path,
        grammar_sha256=digest,
        min_int=min_int,
        max_int=max_int,
        **token_tables(edges, accepting),
        max_tokens=_longest_path(trans) + 1,
        _parser=parser,
    )


def _longest_path(trans: list[dict[str, int]]) -> int:
    """Characters in the longest sentence (the trimmed DFA is acyclic: the language is finite)."""
    memo: dict[int, int] = {}

    def longest(s: int, depth: int = 0) -> int:
        if depth > len(trans):
            raise ValueError("the decode grammar is not finite")
        if s not in memo:
            memo[s] = max((1 + longest(t, depth + 1) for t in trans[s].values()), default=0)
        return memo[s]

    return longest(0)
