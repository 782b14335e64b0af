"""Track B's structural-constraint ablation: token masks that hold the image's structure fixed.

Unconstrained Track B is the strict test: the model writes every token. This ablation asks how
much of what remains wrong is structure: every byte that a program's image does not give to an
operand (header, load commands, padding, every instruction bit outside the ``movz``/``movk``
fields, ``__LINKEDIT``) is forced to the golden image's byte, while the operand sites
(``ProgramTemplate.operand_bits``: a bit site's field, every byte of a text field) stay free,
any value of those bits. The model still chooses every operand bit and every zero-run length;
the masks only keep each choice consistent with the layout, so every sentence expands to an
image of the right length whose structure is the program's.

The automaton runs over ``image_text``'s token language (a token a non-zero byte; a zero run as
``0x00`` and its length minus one in LEB128). A state is either a byte position (the next token
starts the byte there; after a zero run only a non-zero byte may follow, so runs are maximal and
each image has one spelling) or a place inside a run's length (a trie of the LEB128 spellings of
the run lengths that end where the layout allows). Only states reachable from position 0 exist:
a few hundred, not one a byte of the 16 KiB image.
"""

from __future__ import annotations

import bisect
from functools import lru_cache

from exe_coder.codegen.finalize import unsigned_image
from exe_coder.codegen.program import ProgramTemplate
from exe_coder.decode.grammar import TokenMasks, token_tables
from exe_coder.decode.image_text import ZERO, leb128


def _run_ends(start: int, n: int, can_zero: list[bool], nonzero_at: list[int], zero_end: list[int]) -> list[int]:
    """Where a maximal zero run from ``start`` may end: positions up to the first byte that
    cannot be zero, at which a non-zero byte may stand (or the image's end)."""
    last = zero_end[start]  # the first position at or after start that cannot hold a zero (n: none)
    ends = nonzero_at[bisect.bisect_right(nonzero_at, start) : bisect.bisect_right(nonzero_at, last)]
    return ends + [n] if last == n else ends


@lru_cache(maxsize=None)
def structure_masks(program: str) -> TokenMasks:
    """The token masks of ``program``'s images with every non-operand byte held fixed."""
    template = ProgramTemplate.load(program)
    gold = unsigned_image(template.patch(**dict.fromkeys(template.operands, 0)))
    free = template.operand_bits()
    n = len(gold)
    fixed = [gold[i] & ~free.get(i, 0) for i in range(n)]  # the bits no operand decides
    can_zero = [f == 0 for f in fixed]
    nonzero_at = [i for i in range(n) if fixed[i] or free.get(i, 0)]  # sorted
    zero_end = [n] * (n + 1)
    for i in range(n - 1, -1, -1):
        zero_end[i] = zero_end[i + 1] if can_zero[i] else i

    # States: ("at", i, nonzero_only) a byte position; ("run", start, spelled) inside a run's length.
    index: dict[tuple, int] = {}
    edges: list[dict[int, tuple]] = []
    order: list[tuple] = []

    def state(key: tuple) -> int:
        if key not in index:
            index[key] = len(order)
            order.append(key)
            edges.append({})
        return index[key]

    state(("at", 0, False))
    for key in order:  # grows while walked: breadth-first
        out: dict[int, tuple] = {}
        if key[0] == "at":
            _, i, nonzero_only = key
            if i < n:
                f, m = fixed[i], free.get(i, 0)
                for byte in range(1, 256):
                    if byte & ~m == f:
                        out[byte] = ("at", i + 1, False)
                if can_zero[i] and not nonzero_only:
                    out[ZERO] = ("run", i, b"")
        else:
            _, start, spelled = key
            for end in _run_ends(start, n, can_zero, nonzero_at, zero_end):
                spelling = leb128(end - start - 1)
                if spelling.startswith(spelled) and len(spelling) > len(spelled):
                    tok, longer = spelling[len(spelled)], spelling[: len(spelled) + 1]
                    out[tok] = ("at", end, True) if longer == spelling else ("run", start, longer)
        for tok, target in out.items():
            state(target)
        edges[index[key]] = {tok: index[target] for tok, target in out.items()}

    count = len(order)
    accepting = [key[0] == "at" and key[1] == n for key in order]

    # Longest sentence: every edge moves forward in (position, place in the run), so that order
    # read backwards is a topological order of the (acyclic) automaton.
    def rank(key: tuple) -> tuple[int, int]:
        return (key[1], 0) if key[0] == "at" else (key[1], 1 + len(key[2]))

    longest = [0] * count
    for s in sorted(range(count), key=lambda s: rank(order[s]), reverse=True):
        longest[s] = max((1 + longest[t] for t in edges[s].values()), default=0)
    return TokenMasks(**token_tables(edges, accepting), max_tokens=longest[0] + 1)
