"""The exe-coder command line: one thin command a pipeline stage.

Each command parses its arguments, calls one library function and prints what it did. Bad
input raises ``UserError``; ``main`` prints it on one line and exits non-zero.
"""

from __future__ import annotations

import sys

import typer

from exe_coder.errors import UserError

app = typer.Typer(
    name="exe-coder",
    help="Natural language to signed macOS arm64 executables: build, train, infer, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


# --- golden binaries: assemble, verify, inspect, selfcheck (issue 2) -------------------------


# --- datasets: build (issue 3) -----------------------------------------------------------------


# --- training: train (issue 4) -----------------------------------------------------------------


# --- inference and evaluation: infer, generate, evaluate, run-stage, acceptance (issue 5) -------


def main() -> None:
    try:
        app()
    except UserError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
