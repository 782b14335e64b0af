"""One table across runs and seeds (``exe-coder compare``): the README's results tables.

Each report is one row: its headline metrics with 95% intervals, its gates and its training
time. Reports of one config on one build of its data with different seeds (their run cards
share ``config_sha256_except_seed`` and ``manifest_sha256``) also get a summary row: the mean and
sample standard deviation across seeds, so a reader sees how much of a difference between
configs is seed noise.
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from exe_coder.errors import UserError
from exe_coder.evaluate.regions import DECODING_ABLATIONS
from exe_coder.evaluate.report import EvalReport

REPORT_PREFIX = "exe-coder.eval-report/"
METRICS = (
    "answer_accuracy", "heldout_heldout_answer_accuracy", "baseline_answer_accuracy",
    "parse_success_rate", "exec_success_rate", "patch_exact_match_rate", "operands_match_rate",
    "operand_mae",
)
SPLITS = ("test", "val", "all")


@dataclass
class Row:
    run: str
    data: str
    split: str
    mode: str
    seed: int | None
    n: int
    values: dict[str, tuple[float | None, float | None, float | None]]  # metric -> (value, lo, hi)
    gates: dict[str, bool]
    train_s: float | None
    family: tuple[str, str | None] | None  # (config hash without the seed, training data's manifest hash)
    source: str
    track: str | None = None  # what the predictions were decoded under (None: reports before it was kept)


@dataclass
class SeedGroup:
    run: str  # every member's run name, in brace form (group_name)
    data: str
    split: str
    mode: str
    seeds: list[int]
    n: int
    mean_sd: dict[str, tuple[float, float] | None]  # metric -> (mean, sd)
    gates_passed: dict[str, int]  # gate -> in how many seeds it passed
    train_s: float | None  # mean
    rows: list[Row] = field(default_factory=list)


def _read_report(path: Path, *, explicit: bool) -> EvalReport | None:
    """The report in ``path``; a JSON file that is not one is skipped in a folder, an error when named."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        if not explicit:
            return None
        raise UserError(f"not a JSON report: {getattr(err, 'msg', None) or err}", path) from None
    if not (isinstance(data, dict) and str(data.get("schema_version", "")).startswith(REPORT_PREFIX)):
        if not explicit:
            return None
        raise UserError("not an exe-coder evaluation report (no eval-report schema_version)", path)
    try:
        return EvalReport.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        raise UserError(f"damaged report: {'.'.join(str(x) for x in first['loc'])}: {first['msg']}", path) from None


def load_reports(paths: list[Path]) -> list[tuple[Path, EvalReport]]:
    """Reports named directly, and every report JSON under the folders named (sorted)."""
    out = []
    for path in paths:
        if path.is_dir():
            for candidate in sorted(path.rglob("*.json")):
                report = _read_report(candidate, explicit=False)
                if report is not None:
                    out.append((candidate, report))
        elif path.is_file():
            out.append((path, _read_report(path, explicit=True)))  # type: ignore[arg-type]
        else:
            raise UserError("no such report file or folder", path)
    return out


def row_of(path: Path, report: EvalReport) -> Row:
    card = report.run_card
    values = {}
    for name in METRICS:
        source, field_name = _metric_source(report, name)
        iv = None if source is None else source.intervals.get(field_name)
        value = None if source is None else getattr(source, field_name)
        values[name] = (value, None if iv is None else iv.lo, None if iv is None else iv.hi)
    return Row(
        # an ablation's decoding of a run is a row of its own, named apart from the run's own
        run=(card.run_name if card and card.run_name else path.stem)
        + (f" ({report.track})" if report.track in DECODING_ABLATIONS else ""),
        data=(Path(card.dataset).name if card and card.dataset else "–"),
        split=str(report.split),
        mode=report.mode,
        seed=card.seed if card else None,
        n=report.metrics.n,
        values=values,
        gates={g: r.passed for g, r in report.milestone_gates.items()},
        train_s=card.phases_s.get("train") if card else None,
        family=_family(report),
        source=str(path),
        track=report.track,
    )


def _family(report: EvalReport) -> tuple[str, str | None] | None:
    """What seeds of one run share: the config hash without the seed, and the hash of the training
    data's manifest (one config trained on two builds of a stage, such as a variant spec built
    under the stage's name, is two runs). The config hash is of the run's config as this code
    reads it where the run folder is here (a run trained before a key existed, at its default,
    then groups with runs after), else the one its card recorded."""
    from exe_coder.train.config import parse_config
    from exe_coder.train.runcard import config_hashes

    card = report.run_card
    manifest = card.manifest_sha256 if card else None
    config_file = Path(report.ckpt or "") / "config.toml"
    if report.ckpt and config_file.is_file():
        try:
            return config_hashes(parse_config(config_file.read_text(encoding="utf-8"), config_file))[1], manifest
        except UserError:
            pass  # a config this code no longer reads: the card's hash
    return (card.config_sha256_except_seed, manifest) if card else None


def _metric_source(report: EvalReport, name: str):
    """(the Metrics that holds ``name``, its field): the headline, the held-out magnitude slice
    (absent where a split draws no held-out magnitudes), or the regex baseline's headline."""
    if name == "heldout_heldout_answer_accuracy":
        m = report.slices.get("magnitude_pair", {}).get("heldout/heldout")
        return (m if m is not None and m.n else None), "answer_accuracy"
    if name == "baseline_answer_accuracy":
        return (report.baseline.metrics if report.baseline is not None else None), "answer_accuracy"
    return report.metrics, name


def _seed_key(r: Row) -> tuple | None:
    # the config's hash names its track; only an ablation's decoding of it is another row
    ablation = r.track if r.track in DECODING_ABLATIONS else None
    return None if r.family is None or r.seed is None else (r.family, r.split, r.mode, ablation, r.seed)


def _first_per_seed(rows: list[Row]) -> tuple[dict[tuple, Row], list[tuple[tuple, Row, Row]]]:
    """The first row of each (config, split, mode, decoding ablation, seed), so a report read twice counts once; and
    (key, kept, other) for each later row of a key with other figures."""
    first: dict[tuple, Row] = {}
    clashes = []
    for r in rows:
        if (key := _seed_key(r)) is None:
            continue
        kept = first.setdefault(key, r)
        if kept is not r and kept.values != r.values:
            clashes.append((key, kept, r))
    return first, clashes


def seed_clashes(rows: list[Row]) -> list[tuple[Row, Row]]:
    """(kept, left out) for each report that is a seed of a config already seen with other
    figures (an older run of a config whose data has since changed, say) where that config has a
    mean ± sd row: the mean uses the first, so a reader must be told."""
    first, clashes = _first_per_seed(rows)
    seeds = Counter(key[:-1] for key in first)
    return [(kept, r) for key, kept, r in clashes if seeds[key[:-1]] >= 2]


def group_name(names: list[str]) -> str:
    """The runs' names, sorted, in shell brace form: "sft_s4{,_seed1}" for "sft_s4_seed1" and "sft_s4":
    the group's row then names every run it averages and no single one of them."""
    names = sorted(names)
    if len(set(names)) == 1:
        return names[0]
    head = os.path.commonprefix(names)
    tails = [n[len(head):] for n in names]
    foot = os.path.commonprefix([t[::-1] for t in tails])[::-1]
    return head + "{" + ",".join(t[: len(t) - len(foot)] for t in tails) + "}" + foot


def seed_groups(rows: list[Row]) -> list[SeedGroup]:
    """Rows of one config (same hash without the seed), split and mode, with two or more seeds;
    one row a seed (the first), so a report read twice does not count twice."""
    by_key: dict[tuple, dict[int, Row]] = {}
    for key, r in _first_per_seed(rows)[0].items():
        by_key.setdefault(key[:-1], {})[key[-1]] = r
    groups = []
    for per_seed in by_key.values():
        if len(per_seed) < 2:
            continue
        members = list(per_seed.values())  # group_name sorts the names, the mean needs no order
        mean_sd: dict[str, tuple[float, float] | None] = {}
        for name in METRICS:
            vals = [m.values[name][0] for m in members]
            ok = [v for v in vals if v is not None]
            mean_sd[name] = (statistics.fmean(ok), statistics.stdev(ok)) if len(ok) == len(vals) else None
        times = [m.train_s for m in members]
        first = members[0]
        groups.append(SeedGroup(
            run=group_name([m.run for m in members]), data=first.data, split=first.split, mode=first.mode,
            seeds=sorted(per_seed),
            n=first.n, mean_sd=mean_sd,
            gates_passed={g: sum(m.gates.get(g, False) for m in members) for g in first.gates},
            train_s=statistics.fmean(times) if all(t is not None for t in times) else None,  # type: ignore[arg-type]
            rows=members,
        ))
    return groups


def compare(paths: list[Path], split: str = "test") -> tuple[list[Row], list[SeedGroup], int]:
    """(rows, seed groups, reports skipped for another split); no report at all is a ``UserError``."""
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    loaded = load_reports(paths)
    if not loaded:
        raise UserError("no evaluation reports found in " + ", ".join(str(p) for p in paths))
    rows = [row_of(p, r) for p, r in loaded if split == "all" or r.split == split]
    if not rows:
        raise UserError(f"none of the {len(loaded)} reports is of split {split}; pass --split all or val")
    return rows, seed_groups(rows), len(loaded) - len(rows)


# --- rendering -----------------------------------------------------------------------------

HEADERS = ["run", "data", "split", "seed", "n", *METRICS, "gates", "train s"]


def _value(v: tuple[float | None, float | None, float | None]) -> str:
    x, lo, hi = v
    if x is None:
        return "–"
    return f"{x:.3f}" + ("" if lo is None or hi is None else f" [{lo:.3f}, {hi:.3f}]")


def _gates(gates: dict[str, bool]) -> str:
    return " ".join(f"{g.split('_')[0]} {'✓' if ok else '✗'}" for g, ok in gates.items()) or "–"


def _secs(s: float | None) -> str:
    return "–" if s is None else f"{s:.0f}"


def table_cells(rows: list[Row], groups: list[SeedGroup]) -> list[list[str]]:
    """The display rows: one a report, then one a seed group (mean ± sd)."""
    cells = [[r.run, r.data, r.split, "–" if r.seed is None else str(r.seed), str(r.n),
              *(_value(r.values[m]) for m in METRICS), _gates(r.gates), _secs(r.train_s)] for r in rows]
    for g in groups:
        k = len(g.seeds)
        cells.append([
            f"{g.run} (mean ± sd)", g.data, g.split, f"{k} seeds", str(g.n),
            *("–" if g.mean_sd[m] is None else f"{g.mean_sd[m][0]:.3f} ± {g.mean_sd[m][1]:.3f}" for m in METRICS),
            " ".join(f"{gate.split('_')[0]} {n}/{k}" for gate, n in g.gates_passed.items()),
            _secs(g.train_s),
        ])
    return cells


def markdown(rows: list[Row], groups: list[SeedGroup]) -> str:
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * 5 + "---:|" * len(METRICS) + "---|---:|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in table_cells(rows, groups)]
    lines += ["", "Metrics with 95% intervals (Wilson for rates, bootstrap for operand_mae); seed rows: mean ± "
              "sample standard deviation across seeds. Gates: g0 loop sanity, g1 pilot success, g2 RL ready."]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[Row], groups: list[SeedGroup]) -> str:
    """One line a report, then one a seed group; numbers unrounded, intervals in _lo/_hi columns."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    gate_names = sorted({g for r in rows for g in r.gates})
    w.writerow(["kind", "run", "data", "split", "mode", "seed", "seeds", "n",
                *(f"{m}{s}" for m in METRICS for s in ("", "_lo", "_hi", "_sd")), *gate_names, "train_s", "source"])
    blank = lambda x: "" if x is None else x  # noqa: E731
    for r in rows:
        nums = [blank(x) for m in METRICS for x in (*r.values[m], None)]
        w.writerow(["run", r.run, r.data, r.split, r.mode, blank(r.seed), 1, r.n, *nums,
                    *(blank(r.gates.get(g)) for g in gate_names), blank(r.train_s), r.source])
    for g in groups:
        nums = []
        for m in METRICS:
            ms = g.mean_sd[m]
            nums += ["" if ms is None else ms[0], "", "", "" if ms is None else ms[1]]
        w.writerow(["seed_mean", g.run, g.data, g.split, g.mode, "", len(g.seeds), g.n, *nums,
                    *(f"{g.gates_passed.get(x, 0)}/{len(g.seeds)}" for x in gate_names), blank(g.train_s),
                    " ".join(r.source for r in g.rows)])
    return buf.getvalue()
