"""A rule-based baseline: the first two signed integers written in digits, in order.

It is deliberately simple, so that a report shows what the model adds over it. It reads
"What is 17 plus -4?" and "17 + -4" correctly, and fails where reading takes understanding:
numbers written in words ("minus forty-two", stage3), "minus 4" for -4, and operands given in
the other order ("add 4 to 17" gives a=4, b=17: the patch is wrong though the sum is right).
"""

from __future__ import annotations

import re

from exe_coder.dataset.records import patch_text

# An optional minus (ASCII hyphen-minus or U+2212) directly before a run of digits. Digits
# glued to a letter ("arm64") are part of a word, not a number; a minus glued to a preceding
# digit ("17-4") is a subtraction sign, not the sign of the number.
_SIGNED_INT = re.compile(r"(?<![0-9A-Za-z_])([-\u2212]?)([0-9]+)(?![0-9A-Za-z_])")

MODE = "regex_baseline"


def extract_operands(prompt: str) -> tuple[int, int] | None:
    """The first two signed integers in ``prompt``, or None when it holds fewer than two."""
    found = []
    for sign, digits in _SIGNED_INT.findall(prompt):
        found.append(-int(digits) if sign else int(digits))
        if len(found) == 2:
            return found[0], found[1]
    return None


def baseline_text(prompt: str, min_int: int | None = None, max_int: int | None = None) -> str:
    """The baseline's decode-language output: the patch text, or ``""`` where it finds no
    operands or they fall outside the decode bounds (which a constrained decoder could not emit).
    """
    ops = extract_operands(prompt)
    if ops is None:
        return ""
    if any((min_int is not None and v < min_int) or (max_int is not None and v > max_int) for v in ops):
        return ""
    return patch_text(*ops)
