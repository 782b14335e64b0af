"""The exe-coder command line: one thin command a pipeline stage.

Each command parses its arguments, calls one library function and prints what it did. Bad
input raises ``UserError``; ``main`` prints it on one line and exits non-zero.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path

import typer

from exe_coder.errors import UserError
from exe_coder.paths import SPEC_SUFFIX, SPECS_DIR, shipped
from exe_coder.runtime.binary_file import MAX_BINARY_MIB

# Help texts are rich markup: a literal "[" is written "\\[" there, else "[rl]" vanishes.

# --- choices that --help lists (case-insensitive) ----------------------------------------------


class InferMode(str, Enum):
    """decode/infer.py MODES (kept equal by a test; importing it here would slow every command)."""

    sft_patch_model = "sft_patch_model"
    oracle = "oracle"
    regex_baseline = "regex_baseline"


class RunMode(str, Enum):
    auto = "auto"
    native = "native"
    emulate = "emulate"


class EvalSplit(str, Enum):
    val = "val"
    test = "test"


# the shipped stages: run-stage builds specs/<stage>.spec
Stage = Enum("Stage", {name: name for name in shipped(SPECS_DIR, SPEC_SUFFIX)}, type=str)


def _config_overrides(
    set_: list[str], seed: int | None = None, max_steps: int | None = None, out: Path | None = None
) -> list[str]:
    """--set items, then the shorthands (which win over a --set of the same key)."""
    extra = [f"run.seed={seed}"] if seed is not None else []
    extra += [f"train.max_steps={max_steps}"] if max_steps is not None else []
    extra += [f"run.output_dir={json.dumps(str(out))}"] if out is not None else []  # a TOML string
    return [*set_, *extra]


def _renamed(new: object, old: object, old_name: str, new_name: str) -> object:
    """A value given under a deprecated (hidden) option spelling; not both."""
    if old is None:
        return new
    if new is not None:
        raise UserError(f"{old_name} is the old spelling of {new_name}; give one of them")
    typer.echo(f"warning: {old_name} is deprecated; use {new_name}", err=True)
    return old


_SET_HELP = "Config override TABLE.KEY=VALUE, a TOML value (repeat), e.g. --set train.max_steps=3000."

app = typer.Typer(
    name="exe-coder",
    help="Natural language to signed macOS arm64 executables: build, train, infer, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _print_version(value: bool) -> None:
    if value:
        from exe_coder import __version__

        typer.echo(f"exe-coder {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    pass  # only the app-wide options; the help text is the Typer's above


# --- golden binaries: assemble, verify, inspect, selfcheck (issue 2) -------------------------


@app.command("assemble")
def assemble_cmd(
    template: Path = typer.Argument(..., help="Assembly template file or shipped name, e.g. templates/add.s.j2 or add."),
    set_: list[str] = typer.Option([], "--set", help="Operand value NAME=INT (repeat), e.g. --set a=17 --set b=-4."),
    out: Path = typer.Option(..., "-o", "--out", help="Where to write the signed executable."),
) -> None:
    """Render a template, assemble, link and sign it: a golden macOS arm64 executable."""
    from exe_coder.codegen.emit import write_executable
    from exe_coder.codegen.program import build_template_file
    from exe_coder.paths import resolve_template

    written = write_executable(build_template_file(resolve_template(template), set_), out)
    typer.echo(f"{written.path}  {written.size} bytes  sha256 {written.sha256}")


_RANKS_HELP = (
    "Data-parallel training processes on this machine (default: one a core on the CPU, 1 on a GPU); "
    "1 trains in this process. Under mlx.launch each launched process is one rank."
)


def _check_binaries_folder(path: Path | None) -> None:
    """``--save-binaries`` names a folder (made when absent), never an existing file."""
    if path is not None and path.exists() and not path.is_dir():
        raise UserError("--save-binaries needs a folder, and this is a file", path)


def _use_fast_blas() -> None:
    """Commands that run a model (train, infer, generate, run-stage, acceptance) re-execute once
    with OpenBLAS preloaded on Linux (see train/blas.py): Track B decodes 4.3x faster with it."""
    from exe_coder.train.blas import ensure_optimized_blas

    ensure_optimized_blas(lambda line: typer.echo(line, err=True))


# verify and inspect read a regular file of at most this size; a FIFO or device is refused unopened
_BINARY_LIMIT = f"a regular file of at most {MAX_BINARY_MIB} MiB"


@app.command("verify")
def verify_cmd(
    file: Path = typer.Argument(..., help=f"The executable to judge (any bytes at all): {_BINARY_LIMIT}."),
    expect: str | None = typer.Option(None, "--expect", help="Expected stdout, e.g. 13 (a trailing newline is added if absent)."),
    run: RunMode = typer.Option(RunMode.auto, "--run", case_sensitive=False, help="auto (native on an Apple Silicon Mac, else emulated), native or emulate."),
    max_instructions: int = typer.Option(100_000, "--max-instructions", min=1, help="Emulator instruction budget (then: timeout)."),
    timeout: float = typer.Option(2.0, "--timeout", min=0.001, help="Wall-clock limit in seconds (then: timeout)."),
    as_json: bool = typer.Option(False, "--json", help="Print the Outcome as one JSON object."),
) -> None:
    """Validate, check the signature, run (natively or emulated) and compare: print the Outcome.

    Exit status: 0 when the Outcome is ok; 1 for any other Outcome (invalid_macho:<rule>,
    bad_signature, crash, timeout, bad_syscall, nonzero_exit, wrong_output); 2 for bad input.
    """
    import json

    from exe_coder.runtime.binary_file import read_binary
    from exe_coder.runtime.describe import describe_outcome
    from exe_coder.runtime.native import native_available
    from exe_coder.runtime.verify import verify

    modes = {RunMode.auto: None, RunMode.native: True, RunMode.emulate: False}
    if run is RunMode.native and not native_available():
        raise UserError("--run native needs an Apple Silicon Mac (macOS arm64); use --run emulate")
    expected = None if expect is None else (expect if expect.endswith("\n") else expect + "\n")
    image = read_binary(file)
    outcome = verify(image, expected, max_instructions=max_instructions, native=modes[run], timeout_s=timeout)
    if as_json:
        record = outcome.model_dump(mode="python")
        record.update(kind=outcome.kind.value, label=outcome.label, stdout=outcome.stdout.decode("latin-1"))
        typer.echo(json.dumps(record, sort_keys=True))
    else:
        typer.echo("\n".join(describe_outcome(outcome)))
    raise typer.Exit(0 if outcome.stdout_correct else 1)


@app.command("inspect")
def inspect_cmd(file: Path = typer.Argument(..., help=f"The executable to describe: {_BINARY_LIMIT}.")) -> None:
    """Print the header, load commands, rule verdict, code-signature summary and __text disassembly.

    Exit status: 0 when every structural rule holds and the signature verifies, 1 otherwise, 2
    for a missing or unreadable file.
    """
    from exe_coder.runtime.binary_file import read_binary
    from exe_coder.runtime.describe import inspect_image

    inspection = inspect_image(read_binary(file), str(file))
    typer.echo("\n".join(inspection.lines))
    raise typer.Exit(0 if inspection.valid else 1)


@app.command("selfcheck")
def selfcheck_cmd(
    template: str | None = typer.Option(None, "--template", help="One template under templates/ (NAME.s.j2); default: every one."),
) -> None:
    """Phase-A checks on this host: determinism, patch == build, LIEF layout, golden a+b (emulated,
    and natively on a Mac), and that the verifier refuses a tampered binary. Exit 1 on any failure."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from exe_coder.paths import TEMPLATE_SUFFIX, TEMPLATES_DIR, shipped
    from exe_coder.runtime.selfcheck import run_selfchecks

    templates = [template] if template is not None else shipped(TEMPLATES_DIR, TEMPLATE_SUFFIX)
    with Progress(transient=True) as bar:
        task = bar.add_task("selfcheck", total=None)
        checks = run_selfchecks(templates, progress=lambda name: bar.update(task, description=name))
    table = Table("check", "result", "detail", title=f"exe-coder selfcheck ({', '.join(templates)})")
    for check in checks:
        table.add_row(check.name, "[green]PASS[/green]" if check.passed else "[red]FAIL[/red]", check.detail)
    Console().print(table)
    failed = sum(not c.passed for c in checks)
    typer.echo(f"{len(checks) - failed}/{len(checks)} checks passed")
    raise typer.Exit(1 if failed else 0)


# --- datasets: build (issue 3) -----------------------------------------------------------------


@app.command("build")
def build_cmd(
    spec: Path = typer.Argument(..., help="The stage's spec file or shipped stage name, e.g. specs/stage1.spec or stage1."),
    out_dir: Path | None = typer.Option(None, "-o", "--out", help="Records, manifest, quality report, dataset card (default data/processed/<stage>)."),
    old_out_dir: Path | None = typer.Option(None, "--out-dir", hidden=True),
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

    out_dir = _renamed(out_dir, old_out_dir, "--out-dir", "-o/--out")
    limits = {"train": limit_train, "val": limit_val, "test": limit_test}
    sizes = {k: v for k, v in limits.items() if v is not None} or None
    from exe_coder.paths import resolve_spec

    result = build_stage(load_spec(resolve_spec(spec)), out_dir, binaries_dir, force=force, jobs=jobs, sizes=sizes)
    for line in summary_lines(result):
        typer.echo(line)


# --- training: train (issue 4) -----------------------------------------------------------------


@app.command("train")
def train_command(
    config: Path = typer.Option(..., "--config", help="Training config file or shipped name, e.g. configs/sft_stage0_overfit.toml or sft_stage0_overfit."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in the output dir from its last save."),
    force: bool = typer.Option(
        False, "--force", help="Replace an earlier run in the output dir (its run files are deleted first)."
    ),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
    seed: int | None = typer.Option(None, "--seed", help="Shorthand for --set run.seed=N."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Shorthand for --set train.max_steps=N."),
    out_dir: Path | None = typer.Option(None, "-o", "--out", help="The run folder: shorthand for --set run.output_dir=D."),
    old_out_dir: Path | None = typer.Option(None, "--out-dir", hidden=True),
    eval_hook: bool = typer.Option(
        True, "--eval-hook/--no-eval-hook",
        help="Every train.full_eval_every-th eval also decodes with the grammar, reconstructs and verifies.",
    ),
    ranks: int | None = typer.Option(None, "--ranks", min=1, help=_RANKS_HELP),
) -> None:
    """Train a model from a TOML config (SFT, or RL from the verifier for \\[run].phase = 'rl'); checkpoints and metrics.jsonl go to the output dir."""
    _use_fast_blas()
    from exe_coder.train.config import apply_overrides, load_config
    from exe_coder.train.distributed import train_on_ranks
    from exe_coder.train.loop import check_supported

    from exe_coder.paths import resolve_config

    out_dir = _renamed(out_dir, old_out_dir, "--out-dir", "-o/--out")
    cfg = apply_overrides(load_config(resolve_config(config)), _config_overrides(set_, seed, max_steps, out_dir))
    check_supported(cfg)  # before the eval hook reads any data (or any rank starts)
    if cfg.run.phase == "rl":  # RL from the verifier (train/rl.py), on the ranks as SFT
        rl = train_on_ranks(cfg, ranks, resume=resume, force=force, eval_hook=eval_hook)
        start = "n/a" if rl.start_val_answer_accuracy is None else f"{rl.start_val_answer_accuracy:.4f}"
        best = "n/a" if rl.best_val_answer_accuracy is None else f"{rl.best_val_answer_accuracy:.4f}"
        typer.echo(f"{rl.out_dir}: {rl.steps} RL steps, val answer accuracy {start} at the start, best {best} at step {rl.best_step}, {rl.wall_s:.0f} s")
        return
    result = train_on_ranks(cfg, ranks, resume=resume, force=force, eval_hook=eval_hook)
    typer.echo(
        f"{result.out_dir}: {result.steps} steps, best val exact match {max(result.best_val_exact_match, 0.0):.4f} "
        f"at step {result.best_step}, {result.wall_s:.0f} s"
    )


# --- inference and evaluation: infer, generate, evaluate, run-stage, acceptance (issue 5) -------


@app.command("infer")
def infer_cmd(
    mode: InferMode = typer.Option(
        InferMode.sft_patch_model, "--mode", case_sensitive=False,
        help="sft_patch_model (the trained model), oracle (gold patch) or regex_baseline.",
    ),
    input: Path = typer.Option(..., "--input", help="Example JSONL, e.g. data/processed/stage0/val.jsonl."),
    out: Path = typer.Option(..., "-o", "--out", help="Predictions JSONL to write (atomically)."),
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
    save_binaries: Path | None = typer.Option(
        None, "--save-binaries", help="Keep every executable built, as DIR/<example id> (mode 0755)."
    ),
    track: str | None = typer.Option(
        None, "--track", help="Decode under another track of the same target (default: the weights'), "
        "e.g. strict_one_shot_structured: Track B with the image's structure held fixed (an ablation).",
    ),
    too_long_wrong: bool = typer.Option(
        False, "--too-long-wrong", help="Score a prompt longer than the model's context as no answer "
        "(parse_error) instead of stopping with an error naming it.",
    ),
) -> None:
    """Decode every example (grammar-constrained), reconstruct, verify; write one Prediction a line."""
    _use_fast_blas()
    from exe_coder import files
    from exe_coder.dataset.records import load_examples
    from exe_coder.decode.generate import Sampling
    from exe_coder.decode.infer import TOO_LONG, make_predictor, run_inference, summarize, write_predictions

    sampling = Sampling(temperature=temperature, top_k=top_k, seed=seed)
    files.check_destination(out)  # before the slow part, not after it
    predictor, track = make_predictor(
        mode.value, weights, sampling=sampling, min_int=decode_min_int, max_int=decode_max_int, track=track
    )
    examples = load_examples(input)[:limit]
    _check_binaries_folder(save_binaries)
    predictions = run_inference(
        examples, predictor, track, batch_size=batch_size, progress=True, save_dir=save_binaries,
        too_long_wrong=too_long_wrong,
    )
    write_predictions(predictions, out)
    too_long = sum(p.outcome.detail == TOO_LONG for p in predictions)
    if too_long:
        typer.echo(f"{too_long} prompt(s) longer than the model's context scored as no answer", err=True)
    s = summarize(predictions)
    typer.echo(
        f"{mode.value}: {len(predictions)} examples, track {track}: "
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
    """Write one executable from one prompt and print what the model read and what the verifier
    saw when it ran it. Warnings (stderr) say when the operands cannot have come from the prompt.

    Exit status: 0 when the binary printed the sum of the decoded operands; 1 when nothing parsed
    or the verifier found otherwise; 2 for bad input (an empty prompt, a folder as -o).
    """
    _use_fast_blas()
    from exe_coder.decode.generate import Sampling
    from exe_coder.decode.infer import generate_executable

    result = generate_executable(prompt, weights, out, sampling=Sampling(temperature, top_k, seed))
    shown = result.text if result.operands is not None or len(result.text) <= 80 else f"{result.text[:72]}... ({len(result.text) // 2} tokens)"
    typer.echo(f"{'patch' if result.operands is not None else 'image'}: {shown!r} ({result.generate_ms:.1f} ms)")
    if result.operands is not None:
        typer.echo(f"model read: a={result.operands[0]}, b={result.operands[1]}")
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if result.path is None:
        typer.echo(f"verifier: {result.outcome.label} ({result.outcome.detail}); nothing written")
        raise typer.Exit(1)
    where = "natively" if result.outcome.native else "in the emulator"
    typer.echo(f"wrote {result.path} (sha256 {result.sha256})")
    if result.operands is None:  # Track B: the model wrote the whole image and no operands to check it against
        typer.echo(
            f"verifier ran it {where}: {result.outcome.label}, stdout {result.outcome.stdout.decode(errors='replace')!r}, "
            f"exit {result.outcome.exit_code} (the model wrote every byte; no decoded operands to check the answer against)"
        )
        raise typer.Exit(0 if result.outcome.exec_ok else 1)
    a, b = result.operands
    typer.echo(
        f"verifier ran it {where}: {result.outcome.label}, stdout {result.outcome.stdout.decode(errors='replace')!r}, "
        f"exit {result.outcome.exit_code} (expected {a + b!r} from the decoded operands {a} and {b}, not from a gold answer)"
    )
    raise typer.Exit(0 if result.outcome.stdout_correct else 1)


class ProbeMode(str, Enum):
    sft_patch_model = "sft_patch_model"
    regex_baseline = "regex_baseline"


@app.command("probe")
def probe_cmd(
    input: Path = typer.Argument(..., help='Probe JSONL: one {"prompt": "...", "answer": 13} a line ("answer" optional).'),
    weights: Path | None = typer.Option(None, "--weights", help="Run dir or .safetensors file of a trained model."),
    mode: ProbeMode = typer.Option(
        ProbeMode.sft_patch_model, "--mode", case_sensitive=False,
        help="sft_patch_model (the trained model) or regex_baseline (the first two integers in digits).",
    ),
    out: Path | None = typer.Option(None, "-o", "--out", help="Write one result a line (JSONL, atomically)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Prompts decoded together."),
    save_binaries: Path | None = typer.Option(
        None, "--save-binaries", help="Keep every executable built, as DIR/line<N> (mode 0755)."
    ),
    show: int = typer.Option(10, "--show", min=0, help="Wrong answers listed."),
    too_long_wrong: bool = typer.Option(
        False, "--too-long-wrong", help="Score a prompt longer than the model's context as no answer "
        "(a row with a warning) instead of stopping with an error naming its line.",
    ),
) -> None:
    """Your own prompts, with their answers, through a trained model (or the regex baseline):
    each becomes an executable that the verifier runs; prints the answer accuracy with its 95%
    interval and the wrong answers. For measuring on prompts written apart from exe-coder's."""
    _use_fast_blas()
    from exe_coder import files
    from exe_coder.decode.infer import ModelPredictor, RegexBaselinePredictor, load_trained
    from exe_coder.evaluate.probe import load_probe, run_probe, summary_lines, write_rows
    from exe_coder.decode.track import PatchTrack, track_for
    from exe_coder.errors import excerpt

    if out is not None:
        files.check_destination(out)  # before the slow part, not after it
    _check_binaries_folder(save_binaries)
    items = load_probe(input)
    if mode is ProbeMode.sft_patch_model:
        if weights is None:
            raise UserError("--mode sft_patch_model needs --weights")
        model, track, program = load_trained(weights)
        predictor = ModelPredictor(model, track)
    else:
        track, program = track_for(PatchTrack.name), "add"
        predictor = RegexBaselinePredictor()
    rows = run_probe(items, predictor, track, program, batch_size=batch_size, progress=True,
                     save_dir=save_binaries, source=input, too_long_wrong=too_long_wrong)
    wrong = [r for r in rows if r.correct is False]
    for r in wrong[:show]:
        read = f"a={r.a}, b={r.b}" if r.a is not None else excerpt(r.text.strip()) if r.text.strip() else "nothing"
        printed = "nothing" if r.printed is None else repr(r.printed.strip())
        typer.echo(f"wrong, line {r.line}: {r.prompt!r}: read {read}, printed {printed}, want {r.answer} ({r.verdict})")
    if len(wrong) > show:
        typer.echo(f"... and {len(wrong) - show} more wrong")
    for line in summary_lines(rows):
        typer.echo(f"{mode.value}: {line}")
    if out is not None:
        write_rows(rows, out)
        typer.echo(f"wrote {out}")


@app.command("evaluate")
def evaluate_cmd(
    predictions: Path = typer.Option(..., "--predictions", help="Predictions JSONL written by `exe-coder infer`."),
    out: Path = typer.Option(..., "-o", "--out", help="Report JSON; R.md and R_*.png are written beside it."),
    weights: Path | None = typer.Option(
        None, "--weights", help="The trained run: its folder or a .safetensors file in it (its metrics.jsonl gives the losses)."
    ),
    old_ckpt: Path | None = typer.Option(None, "--ckpt", hidden=True),
    split: EvalSplit | None = typer.Option(None, "--split", case_sensitive=False, help="The split the predictions must all belong to."),
    baseline: Path | None = typer.Option(
        None, "--baseline", help="Baseline predictions (e.g. regex_baseline) on the same examples."
    ),
    beta: float | None = typer.Option(
        None, "--beta", help="Reward's KL weight; default: the run's \\[rl] beta, else 0 (kl_to_sft is 0 for SFT)."
    ),
    failure_limit: int = typer.Option(25, "--failure-limit", min=0, help="Wrong examples listed in the report."),
) -> None:
    """Score predictions: metrics with 95% intervals, slices, milestone gates, error taxonomy, wrong
    examples, latencies and the run card."""
    from exe_coder.evaluate.report import evaluate_files, headline_lines

    weights = _renamed(weights, old_ckpt, "--ckpt", "--weights")
    run = weights.parent if weights is not None and weights.is_file() else weights  # the run folder
    report, written = evaluate_files(
        predictions, out, split=None if split is None else split.value, ckpt=run, baseline=baseline, beta=beta,
        failure_limit=failure_limit,
    )
    for line in headline_lines(report):
        typer.echo(line)
    typer.echo("wrote " + ", ".join(str(p) for p in written))


class RunTrack(str, Enum):
    a = "a"
    b = "b"


@app.command("run-stage")
def run_stage_cmd(
    stage: Stage = typer.Argument(..., case_sensitive=False, help="A shipped stage (specs/<stage>.spec)."),
    config: Path | None = typer.Option(None, "--config", help="Training config file or shipped name (default: the stage's, see stages.py)."),
    force: bool = typer.Option(False, "--force", help="Rebuild the dataset and train from scratch."),
    set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
    seed: int | None = typer.Option(None, "--seed", help="Shorthand for --set run.seed=N."),
    seeds: str | None = typer.Option(None, "--seeds", help="Run once a seed, e.g. 1,2,3 or 1 (as <name>_seed<N>, one build), then print and write the table (mean ± sd for two or more)."),
    ranks: int | None = typer.Option(None, "--ranks", min=1, help=_RANKS_HELP),
    track: RunTrack = typer.Option(RunTrack.a, "--track", case_sensitive=False, help="a: the operand patch; b: the model writes the whole image (stage1, stage1b, stage1_text, stage1b_text). Ignored with --config."),
) -> None:
    """Build, train, infer (model and regex baseline) and evaluate one stage; print the gates."""
    from exe_coder.paths import resolve_config
    from exe_coder.stages import parse_seeds, run_stage, run_stage_seeds

    if seeds is not None and seed is not None:
        raise UserError("--seed and --seeds: give one of them")
    seed_list = None if seeds is None else parse_seeds(seeds)  # a bad list fails before the BLAS re-exec
    _use_fast_blas()
    config_path = None if config is None else resolve_config(config)
    if seed_list is not None:
        many = run_stage_seeds(stage.value, seed_list, config=config_path, force=force, ranks=ranks,
                               overrides=_config_overrides(set_), track=track.value)
        typer.echo(many.table, nl=False)
        typer.echo("wrote " + ", ".join(str(p) for p in many.table_files))
        return
    overrides = _config_overrides(set_, seed)
    result = run_stage(stage.value, config=config_path, force=force, ranks=ranks, overrides=overrides, track=track.value)
    for split, files in result.report_files.items():
        typer.echo(f"{split} report: " + ", ".join(str(p) for p in files))
    typer.echo("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()))


class CompareSplit(str, Enum):
    test = "test"
    val = "val"
    all = "all"


@app.command("compare")
def compare_cmd(
    reports: list[Path] = typer.Argument(..., help="Report JSON files, or folders searched for them (e.g. outputs/reports)."),
    split: CompareSplit = typer.Option(CompareSplit.test, "--split", help="Which reports to compare: test is the headline."),
    out: str | None = typer.Option(None, "-o", "--out", help="Write PREFIX.md and PREFIX.csv."),
    md: Path | None = typer.Option(None, "--md", help="Write the table as Markdown here."),
    csv_path: Path | None = typer.Option(None, "--csv", help="Write the table as CSV here."),
) -> None:
    """One table across runs and seeds: headline metrics with 95% intervals, gates, train time;
    for several seeds of one config, mean and standard deviation."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from exe_coder import files
    from exe_coder.evaluate.compare import HEADERS, compare, csv_text, markdown, seed_clashes, table_cells

    rows, groups, skipped = compare(reports, split.value)
    for kept, other in seed_clashes(rows):
        typer.echo(f"warning: {other.source} is seed {other.seed} of {kept.run}'s config again, with other "
                   f"figures; the mean uses {kept.source}", err=True)
    table = Table(*HEADERS, title=f"exe-coder compare ({split.value})")
    for cells in table_cells(rows, groups):
        table.add_row(*(Text(c) for c in cells))  # Text: "[lo, hi]" is not markup
    # piped into a file or a README, the table keeps one line a run instead of the 80-column fold
    Console(width=None if sys.stdout.isatty() else 400).print(table)
    if skipped:
        typer.echo(f"({skipped} reports of another split left out; --split all shows them)")
    md_path = md or (Path(f"{out}.md") if out else None)
    csv_out = csv_path or (Path(f"{out}.csv") if out else None)
    if md_path:
        typer.echo(f"wrote {files.write_text(md_path, markdown(rows, groups))}")
    if csv_out:
        typer.echo(f"wrote {files.write_text(csv_out, csv_text(rows, groups))}")


@app.command("acceptance")
def acceptance_cmd(
    train_n: int = typer.Option(16, "--limit-train", min=4, help="Train examples in the tiny build."),
    val_n: int = typer.Option(8, "--limit-val", min=4, help="Val examples."),
    test_n: int = typer.Option(8, "--limit-test", min=4, help="Test examples."),
    steps: int = typer.Option(40, "--steps", min=2, help="Training steps of the tiny model."),
    work: Path | None = typer.Option(None, "-o", "--out", help="Work folder (default outputs/acceptance, replaced)."),
) -> None:
    """Quick smoke run of the whole pipeline on a tiny stage0-shaped build; exit 1 on any failed check."""
    _use_fast_blas()
    from exe_coder.acceptance import run_acceptance

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
