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


@app.command("assemble")
def assemble_cmd(
    template: Path = typer.Argument(..., help="Assembly template, e.g. templates/add.s.j2."),
    set_: list[str] = typer.Option([], "--set", help="Operand value NAME=INT (repeat), e.g. --set a=17 --set b=-4."),
    out: Path = typer.Option(..., "-o", "--out", help="Where to write the signed executable."),
) -> None:
    """Render a template, assemble, link and sign it: a golden macOS arm64 executable."""
    from exe_coder.codegen.emit import write_executable
    from exe_coder.codegen.program import build_template_file

    written = write_executable(build_template_file(template, set_), out)
    typer.echo(f"{written.path}  {written.size} bytes  sha256 {written.sha256}")


# --- datasets: build (issue 3) -----------------------------------------------------------------


@app.command("build")
def build_cmd(
    spec: Path = typer.Argument(..., help="The stage's spec file, e.g. specs/stage1.spec."),
    out_dir: Path | None = typer.Option(None, "--out-dir", help="Records, manifest and quality report (default data/processed/<stage>)."),
    binaries_dir: Path | None = typer.Option(None, "--binaries-dir", help="Val/test golden binaries (default outputs/bin/<stage>)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing build (it stays intact if this one fails)."),
    jobs: int | None = typer.Option(None, "--jobs", min=1, help="Worker processes (default: every core); output is the same for any N."),
    limit_train: int | None = typer.Option(None, "--limit-train", min=1, help="Train size override (smoke runs)."),
    limit_val: int | None = typer.Option(None, "--limit-val", min=1, help="Val size override."),
    limit_test: int | None = typer.Option(None, "--limit-test", min=1, help="Test size override."),
) -> None:
    """Build a stage from its spec: sample splits, build and verify every golden binary, write them."""
    from exe_coder.dataset.build import build_stage, summary_lines
    from exe_coder.spec import load_spec

    limits = {"train": limit_train, "val": limit_val, "test": limit_test}
    sizes = {k: v for k, v in limits.items() if v is not None} or None
    result = build_stage(load_spec(spec), out_dir, binaries_dir, force=force, jobs=jobs, sizes=sizes)
    for line in summary_lines(result):
        typer.echo(line)


# --- training: train (issue 4) -----------------------------------------------------------------


# --- inference and evaluation: infer, generate, evaluate, run-stage, acceptance (issue 5) -------


@app.command("infer")
def infer_cmd(
    mode: str = typer.Option(
        "sft_patch_model", "--mode", help="sft_patch_model (the trained model), oracle (gold patch) or regex_baseline."
    ),
    input: Path = typer.Option(..., "--input", help="Example JSONL, e.g. data/processed/stage0/val.jsonl."),
    out: Path = typer.Option(..., "--out", help="Predictions JSONL to write (atomically)."),
    weights: Path | None = typer.Option(
        None, "--weights", help="Run dir or .safetensors file (sft_patch_model); its config gives the bounds."
    ),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Prompts decoded together."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 is greedy; > 0 samples."),
    top_k: int = typer.Option(0, "--top-k", min=0, help="Sample among the k most likely allowed tokens (0: all)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N examples."),
    decode_min_int: int | None = typer.Option(
        None, "--decode-min-int", help="Override the lower operand bound (default: config, or int32 min)."
    ),
    decode_max_int: int | None = typer.Option(
        None, "--decode-max-int", help="Override the upper operand bound (default: config, or int32 max)."
    ),
) -> None:
    """Decode every example (grammar-constrained), reconstruct, verify; write one Prediction a line."""
    from exe_coder.decode.generate import Sampling
    from exe_coder.decode.infer import make_predictor, run_inference, summarize, write_predictions
    from exe_coder.train.data import load_examples

    sampling = Sampling(temperature=temperature, top_k=top_k, seed=seed)
    predictor, grammar = make_predictor(
        mode, weights, sampling=sampling, min_int=decode_min_int, max_int=decode_max_int
    )
    examples = load_examples(input)[:limit]
    predictions = run_inference(examples, predictor, grammar, batch_size=batch_size, progress=True)
    write_predictions(predictions, out)
    s = summarize(predictions)
    typer.echo(
        f"{mode}: {len(predictions)} examples, bounds [{grammar.min_int}, {grammar.max_int}]: "
        f"answer_accuracy {s['answer_accuracy']:.4f}, parse_success_rate {s['parse_success_rate']:.4f}, "
        f"exec_success_rate {s['exec_success_rate']:.4f}, exact_byte_match_rate {s['exact_byte_match_rate']:.4f}"
    )
    typer.echo(f"wrote {out}")


@app.command("generate")
def generate_cmd(
    prompt: str = typer.Argument(..., help='The question, e.g. "What is 17 plus -4?".'),
    weights: Path = typer.Option(..., "--weights", help="Run dir or .safetensors file of a trained model."),
    out: Path = typer.Option(..., "-o", "--out", help="Where to write the executable (mode 0755)."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 is greedy; > 0 samples."),
    top_k: int = typer.Option(0, "--top-k", min=0, help="Sample among the k most likely allowed tokens (0: all)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
) -> None:
    """Write one executable from one prompt and print what the verifier saw when it ran it."""
    from exe_coder.decode.generate import Sampling
    from exe_coder.decode.infer import generate_executable

    result = generate_executable(prompt, weights, out, sampling=Sampling(temperature, top_k, seed))
    typer.echo(f"patch: {result.text!r} ({result.generate_ms:.1f} ms)")
    if result.path is None:
        typer.echo(f"verifier: {result.outcome.label} ({result.outcome.detail}); nothing written")
        raise typer.Exit(1)
    a, b = result.operands  # type: ignore[misc]
    where = "natively" if result.outcome.native else "in the emulator"
    typer.echo(f"wrote {result.path} (sha256 {result.sha256})")
    typer.echo(
        f"verifier ran it {where}: {result.outcome.label}, stdout {result.outcome.stdout.decode(errors='replace')!r}, "
        f"exit {result.outcome.exit_code} (expected {a + b!r} from the decoded operands {a} and {b}, not from a gold answer)"
    )


@app.command("evaluate")
def evaluate_cmd(
    predictions: Path = typer.Option(..., "--predictions", help="Predictions JSONL written by `exe-coder infer`."),
    out: Path = typer.Option(..., "--out", help="Report JSON; R.md and R_*.png are written beside it."),
    ckpt: Path | None = typer.Option(None, "--ckpt", help="Training run dir (its metrics.jsonl gives the losses)."),
    split: str | None = typer.Option(None, "--split", help="The split the predictions must all belong to."),
    baseline: Path | None = typer.Option(
        None, "--baseline", help="Baseline predictions (e.g. regex_baseline) on the same examples."
    ),
    beta: float | None = typer.Option(
        None, "--beta", help="Reward's KL weight; default: the run's [rl] beta, else 0 (kl_to_sft is 0 for SFT)."
    ),
) -> None:
    """Score predictions: metrics, slices, milestone gates, error taxonomy and latencies."""
    from exe_coder.evaluate.report import evaluate_files, headline_lines

    report, written = evaluate_files(predictions, out, split=split, ckpt=ckpt, baseline=baseline, beta=beta)
    for line in headline_lines(report):
        typer.echo(line)
    typer.echo("wrote " + ", ".join(str(p) for p in written))


@app.command("run-stage")
def run_stage_cmd(
    stage: str = typer.Argument(..., help="Stage name: stage0, stage1, stage1a, stage1b, stage2, stage3."),
    config: Path | None = typer.Option(None, "--config", help="Training config (default: the stage's, see stages.py)."),
    force: bool = typer.Option(False, "--force", help="Rebuild the dataset and train from scratch."),
) -> None:
    """Build, train, infer (model and regex baseline) and evaluate one stage; print the gates."""
    from exe_coder.stages import run_stage

    result = run_stage(stage, config=config, force=force)
    for split, files in result.report_files.items():
        typer.echo(f"{split} report: " + ", ".join(str(p) for p in files))
    typer.echo("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()))


@app.command("acceptance")
def acceptance_cmd(
    train_n: int = typer.Option(16, "--train-n", min=4, help="Train examples in the tiny build."),
    val_n: int = typer.Option(8, "--val-n", min=4, help="Val examples."),
    test_n: int = typer.Option(8, "--test-n", min=4, help="Test examples."),
    steps: int = typer.Option(40, "--steps", min=2, help="Training steps of the tiny model."),
    work: Path | None = typer.Option(None, "--work", help="Work dir (default outputs/acceptance, replaced)."),
) -> None:
    """Quick smoke run of the whole pipeline on a tiny stage0-shaped build; exit 1 on any failed check."""
    from exe_coder.stages import run_acceptance

    checks, result = run_acceptance(train_n=train_n, val_n=val_n, test_n=test_n, steps=steps, work=work)
    for c in checks:
        typer.echo(f"{'ok  ' if c.passed else 'FAIL'} {c.name}: {c.detail}")
    failed = [c for c in checks if not c.passed]
    typer.echo(f"acceptance: {len(checks) - len(failed)}/{len(checks)} checks passed in "
               f"{sum(result.seconds.values()):.1f} s ({', '.join(f'{k} {v:.1f}' for k, v in result.seconds.items())})")
    if failed:
        raise typer.Exit(1)


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
