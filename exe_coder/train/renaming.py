"""Digit renaming for operands written in any numeral form (words, "1,250", "4 thousand ..."):
the string-level twin of ``data.permute_digits``, for rows whose target digits are not copies of
digit runs in the prompt.

``dataset.operand_spans.plan`` finds, once per row, the span of each operand's magnitude in the
prompt and its form, style and letter case; ``rename`` maps both magnitudes digitwise through a permutation of 1-9 (0 stays, so digit
counts and the zero pattern that decides "and"/commas stay too), re-renders each span in its own
form, style and case, and leaves everything else -- sign words included -- as it was.
"""

from __future__ import annotations

from exe_coder.dataset.operand_spans import Span, render
from exe_coder.spec.phrasing import apply_case  # the case the prompt was written in


def rename_int(value: int, perm: list[int]) -> int:
    """``value`` with each digit d written ``perm[d]`` (``perm[0] == 0``), sign kept."""
    magnitude = int("".join(str(perm[int(d)]) for d in str(abs(value))))
    return -magnitude if value < 0 else magnitude


def rename(prompt: str, a: int, b: int, spans: tuple[Span, Span], perm: list[int]) -> tuple[str, int, int]:
    """(prompt, a, b) with both operands renamed by ``perm`` and re-rendered in place."""
    new = (rename_int(a, perm), rename_int(b, perm))
    out, at = [], 0
    for span in sorted(spans, key=lambda s: s.start):
        out += [prompt[at : span.start], apply_case(render(abs(new[span.operand]), span), span.case)]
        at = span.end
    out.append(prompt[at:])
    return "".join(out), new[0], new[1]
