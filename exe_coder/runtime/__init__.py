"""The verifier: any bytes in, one Outcome out (validate -> signature -> run -> compare).

    macho.py      a strict, never-crashing Mach-O 64 reader (header, load commands, segments, entry)
    validate.py   the loader's structural rules as a table; the first broken rule names the failure
    signature.py  the ad-hoc code signature: SuperBlob/CodeDirectory, every page hash recomputed
    emulate.py    unicorn AArch64 run with the macOS svc ABI (write, exit; all else refused), budgets
    native.py     the same run on the host CPU, on an Apple Silicon Mac
    execution.py  how a run ended (Execution), before it is judged
    verify.py     verify(image, expect_stdout) -> Outcome, never raising
    binary_file.py  read_binary: a regular file under MAX_BINARY_MIB, else a UserError (verify, inspect)
    outcome.py    the Outcome taxonomy (shared contract)
    describe.py   text views for `exe-coder inspect` and `exe-coder verify`
    selfcheck.py  the phase-A checks behind `exe-coder selfcheck`
"""
