"""After decoding, for the user: could the operands the model wrote have come from the prompt?

The verifier proves that a binary prints the sum of the operands the model *wrote*; it cannot
know whether the prompt held them. Under the grammar's masks the model always writes some
in-bounds operands, so a prompt with no number still yields an "ok" binary, and a number beyond
the decode bounds comes out as something else (often the bound itself). These checks read the
prompt only after decoding, to warn the user; they are never an input to the model.
"""

from __future__ import annotations

import re

from exe_coder.dataset.numwords import ONES, SCALES, TENS

NUMBER_WORDS = frozenset(ONES) | {t for t in TENS if t != "_"} | {"hundred"} | {name for _, name in SCALES}
_DIGIT_RUN = re.compile(r"[0-9]+(?:,[0-9]{3})*")  # "1,000" is one number
_WORD = re.compile(r"[a-z]+")
_MAX_DIGITS = 20  # longer runs are beyond any decode bound (and quoted only this far)


def has_number(prompt: str) -> bool:
    """A digit run or an English number word ("seventeen", "thousand") anywhere in the prompt."""
    return bool(_DIGIT_RUN.search(prompt)) or any(w in NUMBER_WORDS for w in _WORD.findall(prompt.lower()))


def prompt_warnings(prompt: str, operands: tuple[int, int] | None, min_int: int, max_int: int) -> list[str]:
    """One line per reason to doubt that ``operands`` (decoded within ``[min_int, max_int]``)
    are the prompt's numbers; empty when there is none."""
    bounds = f"[{min_int}, {max_int}]"
    warnings = []
    if not has_number(prompt):
        read = "" if operands is None else f"; a={operands[0]} and b={operands[1]} did not come from it"
        warnings.append(f"the prompt holds no number (no digits, no number word){read}")
    for run in _DIGIT_RUN.findall(prompt):
        digits = run.replace(",", "")
        # either sign may be meant ("minus 5000"), so only a magnitude no operand can take is flagged
        fits = len(digits) <= _MAX_DIGITS and any(min_int <= v <= max_int for v in (int(digits), -int(digits)))
        if not fits:
            shown = run if len(run) <= _MAX_DIGITS else run[:_MAX_DIGITS] + "..."
            warnings.append(f"the prompt's number {shown} is outside the model's decode bounds {bounds}: it cannot write it")
    if operands is not None:
        for name, value in zip("ab", operands):
            if value in (min_int, max_int):
                warnings.append(
                    f"operand {name}={value} sits on a decode bound of {bounds}: the prompt's number may lie "
                    "beyond it and have been clamped"
                )
    return warnings
