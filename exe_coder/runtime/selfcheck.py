"""The phase-A checks on this host: is the toolchain deterministic, and are its binaries right?

Every template in the templates folder is checked (``run_selfchecks``), or one chosen by name.

For a fixed set of operands (zero, both int32 extremes and their mixes, small values of every
sign): building twice gives the same bytes; the patch path gives the build path's bytes; each
binary passes every structural rule and its signature; LIEF parses it and its layout check
holds; it prints a+b and exits 0 under the emulator, and natively too on an Apple Silicon Mac.
Finally the verifier must refuse a binary with one flipped code byte, so that a verifier that
accepts everything cannot pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from exe_coder.codegen.program import ProgramTemplate
from exe_coder.errors import UserError
from exe_coder.paths import TEMPLATE_SUFFIX, TEMPLATES_DIR, shipped
from exe_coder.runtime import macho as m
from exe_coder.runtime.native import native_available
from exe_coder.runtime.outcome import OutcomeKind
from exe_coder.runtime.verify import verify

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
OPERANDS: tuple[tuple[int, int], ...] = (
    (0, 0),
    (17, -4),
    (-1, 1),
    (1, -1),
    (-5, -7),
    (999, 1),
    (-1000, 999),
    (INT32_MAX, 0),
    (0, INT32_MIN),
    (INT32_MAX, INT32_MAX),
    (INT32_MIN, INT32_MIN),
    (INT32_MIN, INT32_MAX),
)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def _lief_layout(image: bytes) -> str | None:
    import lief  # imported here: only this check needs it, and it is slow to import

    lief.logging.disable()
    parsed = lief.MachO.parse(list(image))
    if parsed is None or parsed.size != 1:
        return "LIEF cannot parse it"
    binary = parsed.at(0)
    ok, why = lief.MachO.check_layout(binary)
    if not ok:
        return f"LIEF check_layout: {why.strip()}"
    if binary.main_command is None or binary.code_signature is None or binary.uuid is None:
        return "LIEF sees no LC_MAIN, LC_CODE_SIGNATURE or LC_UUID"
    return None


def _over_operands(name: str, what: Callable[[int, int], str | None], operands: tuple[tuple[int, int], ...]) -> Check:
    failures = []
    for a, b in operands:
        problem = what(a, b)
        if problem:
            failures.append(f"a={a} b={b}: {problem}")
    detail = failures[0] + (f" (+{len(failures) - 1} more)" if len(failures) > 1 else "") if failures else f"{len(operands)} operand pairs"
    return Check(name, not failures, detail)


def run_selfchecks(
    templates: Sequence[str] | None = None,
    operands: tuple[tuple[int, int], ...] = OPERANDS,
    *,
    native: bool | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Check]:
    """``run_selfcheck`` for each of ``templates`` (default: every ``NAME.s.j2`` in the templates
    folder); with more than one, each check's name starts with its template's."""
    names = list(templates) if templates is not None else shipped(TEMPLATES_DIR, TEMPLATE_SUFFIX)
    if not names:
        raise UserError(f"no templates (NAME{TEMPLATE_SUFFIX}) to check", path=TEMPLATES_DIR)
    for name in names:
        ProgramTemplate.load(name)  # an unknown name is the user's error, before any check runs
    results = []
    for name in names:
        prefix = f"{name}: " if len(names) > 1 else ""
        report = None if progress is None else (lambda check, p=prefix: progress(p + check))
        checks = run_selfcheck(name, operands, native=native, progress=report)
        results += [replace(c, name=prefix + c.name) for c in checks]
    return results


def run_selfcheck(
    template: str,
    operands: tuple[tuple[int, int], ...] = OPERANDS,
    *,
    native: bool | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Check]:
    """Run every check; ``progress(name)`` is called before each (for a progress bar)."""
    run_native = native_available() if native is None else native
    program = ProgramTemplate.load(template)
    builds: dict[tuple[int, int], bytes] = {}

    def build(a: int, b: int) -> bytes:
        if (a, b) not in builds:
            builds[a, b] = program.build(a=a, b=b)
        return builds[a, b]

    def deterministic(a: int, b: int) -> str | None:
        return None if build(a, b) == program.build(a=a, b=b) else "two builds differ"

    def patch_is_build(a: int, b: int) -> str | None:
        return None if program.patch(a=a, b=b) == build(a, b) else "patch != build"

    def uuids_differ(a: int, b: int) -> str | None:
        # the UUID is derived from the content, so different operands must give different UUIDs
        zero = m.parse(build(0, 0)).uuid
        return None if (a, b) == (0, 0) or m.parse(build(a, b)).uuid != zero else "UUID equals the (0, 0) build's"

    def runs(native_run: bool) -> Callable[[int, int], str | None]:
        def check(a: int, b: int) -> str | None:
            outcome = verify(build(a, b), f"{a + b}\n", native=native_run)
            return None if outcome.kind is OutcomeKind.OK else f"{outcome.label}: {outcome.detail or outcome.stdout!r}"

        return check

    def refuses_tampering() -> Check:
        image = bytearray(build(17, -4))
        image[program.text_offset] ^= 0x01
        outcome = verify(bytes(image), "13\n", native=False)
        return Check("verifier refuses a flipped code byte", outcome.kind is OutcomeKind.BAD_SIGNATURE, outcome.label)

    plan: list[tuple[str, Callable[[str], Check]]] = [
        ("deterministic: build twice, same bytes", lambda n: _over_operands(n, deterministic, operands)),
        ("patch == build", lambda n: _over_operands(n, patch_is_build, operands)),
        ("UUID follows the content", lambda n: _over_operands(n, uuids_differ, operands)),
        ("LIEF parses it, check_layout holds", lambda n: _over_operands(n, lambda a, b: _lief_layout(build(a, b)), operands)),
        ("emulated: valid, signed, prints a+b, exit 0", lambda n: _over_operands(n, runs(False), operands)),
    ]
    if run_native:
        plan.append(("native (this Mac): prints a+b, exit 0", lambda n: _over_operands(n, runs(True), operands)))
    plan.append(("verifier refuses a flipped code byte", lambda _n: refuses_tampering()))

    results = []
    for name, check in plan:
        if progress:
            progress(name)
        try:
            results.append(check(name))
        except Exception as err:  # a check that cannot run has failed; say why and go on
            results.append(Check(name, False, f"{type(err).__name__}: {err}"))
    return results
