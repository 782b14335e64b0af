"""The exe-coder command line: one thin command a pipeline stage.

Each command parses its arguments, calls one library function and prints what it did. Bad
input raises ``UserError``; ``main`` prints it on one line and exits non-zero.
"""

from __future__ import annotations

import sys
from pathlib import Path

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


@app.command("evaluate")
def evaluate_cmd(
    predictions: Path = typer.Option(..., "--predictions", help="Predictions JSONL written by `exe-coder infer`."),
    out: Path = typer.Option(..., "--out", help="Report JSON; R.md and R_*.png are written beside it."),
    ckpt: Path | None = typer.Option(None, "--ckpt", help="Training run dir (its metrics.jsonl gives the losses)."),
    split: str | None = typer.Option(None, "--split", help="The split the predictions must all belong to."),
    baseline: Path | None = typer.Option(
        None, "--baseline", help="Baseline predictions (e.g. regex_baseline) on the same examples."
    ),
    beta: float = typer.Option(0.0, "--beta", help="Reward's KL weight (kl_to_sft is 0 for SFT predictions)."),
) -> None:
    """Score predictions: metrics, slices, milestone gates, error taxonomy and latencies."""
    from exe_coder.evaluate.report import evaluate_files, headline_lines

    report, written = evaluate_files(predictions, out, split=split, ckpt=ckpt, baseline=baseline, beta=beta)
    for line in headline_lines(report):
        typer.echo(line)
    typer.echo("wrote " + ", ".join(str(p) for p in written))


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
