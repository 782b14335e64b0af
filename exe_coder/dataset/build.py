"""``exe-coder build``: a Spec -> verified splits, golden binaries, a manifest, a quality report.

The output appears whole or not at all. Everything is written into temporary folders beside
the destinations and renamed into place only after every binary verified and every quality
check passed; a build that fails or is interrupted leaves the previous output as it was.

Binaries: val and test binaries are written one file each (runnable, sparse: a golden binary
is mostly zero padding) into the binaries folder; a record's ``binary_path`` names its file
relative to the data folder (the JSONL's), e.g. ``../../../outputs/bin/stage0/val/<id>``, so
it resolves the way dataset tools expect. Train binaries are built and verified but not
written; a train record keeps ``binary_path=""`` and the sha256 of ``golden_image(program, a,
b)``, which rebuilds it on demand. So a stage2 build stays small and training opens no
per-example files. A dataset card (README.md) beside the records describes the build.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from exe_coder import files
from exe_coder.dataset.golden import GoldenResult, GoldenTask, build_chunk
from exe_coder.dataset.quality import QualityReport, assess
from exe_coder.dataset.records import Example, patch_text
from exe_coder.dataset.sample import Draw, sample_stage
from exe_coder.errors import UserError
from exe_coder.paths import RESOURCES_ROOT, TEMPLATES_DIR
from exe_coder.spec.load import load_spec
from exe_coder.spec.model import NUMERAL_STYLES, SPLITS, Spec, Split

MANIFEST = "manifest.json"
QUALITY = "quality.json"
CARD = "README.md"
# 2: binary_path relative to the data folder and "" (not null) where no file is stored;
# 3: numerals, how the prompt writes each operand
RECORD_FORMAT = 3
DATA_LICENSE = "CC0-1.0"  # generated data: no rights reserved (see dataset_card)
WRITTEN_SPLITS: tuple[Split, ...] = ("val", "test")  # splits whose binaries are files on disk
CHUNK_MAX = 256


@dataclass
class BuildResult:
    stage: str
    out_dir: Path
    bin_dir: Path
    counts: dict[str, int]
    data_bytes: int  # apparent size of the data folder
    binary_bytes: int  # apparent size of the binaries folder
    binary_disk_bytes: int  # blocks allocated on disk (binaries are sparse)
    binaries_written: int
    quality: QualityReport
    manifest: dict = field(repr=False)


# outputs go under the working folder (the repository root when run from there), never into
# an installed package; the shipped configs' data paths are relative to it too
def default_out_dir(stage: str) -> Path:
    return Path.cwd() / "data" / "processed" / stage


def default_bin_dir(stage: str) -> Path:
    return Path.cwd() / "outputs" / "bin" / stage


def build_stage(
    spec: Spec | str | Path,
    out_dir: str | Path | None = None,
    binaries_dir: str | Path | None = None,
    *,
    force: bool = False,
    jobs: int | None = None,
    sizes: dict[str, int] | None = None,
    progress: bool = True,
) -> BuildResult:
    """Build ``spec`` into ``out_dir`` (records, manifest, quality) and ``binaries_dir``.

    ``spec`` is a loaded Spec or a .spec path. Defaults: ``data/processed/<stage>`` and
    ``outputs/bin/<stage>`` under the working folder. ``sizes`` overrides split sizes
    (``{"train": 16}``) for smoke runs; ``jobs`` worker processes (default: every core); the
    output is byte-identical for any ``jobs``. ``force`` replaces an existing build.
    """
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(spec.stage)
    bin_dir = Path(binaries_dir) if binaries_dir is not None else default_bin_dir(spec.stage)
    jobs = jobs or os.cpu_count() or 1
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, not {jobs}")
    unknown = sorted(set(sizes or {}) - set(SPLITS))
    if unknown:
        raise UserError(f"unknown split(s) in sizes: {', '.join(unknown)}; splits are {', '.join(SPLITS)}")
    split_sizes: dict[Split, int] = {s: (sizes or {}).get(s, spec.split(s).size) for s in SPLITS}
    for s, n in split_sizes.items():
        if n < 1:
            raise UserError(f"split {s}: size must be at least 1, not {n}")
    _check_apart(out_dir, bin_dir)

    with ExitStack() as held:
        for dest in (out_dir, bin_dir):
            held.enter_context(build_lock(dest))
        _sweep_stale([out_dir, bin_dir])
        _check_destinations(out_dir, bin_dir, force)
        draws = sample_stage(spec, split_sizes)
        staging = _Staging(out_dir, bin_dir)
        try:
            results = _build_golden(spec, draws, staging.bin_tmp, jobs, progress)
            records = _admit(spec, draws, results, _bins_from_data(out_dir, bin_dir))
            quality = assess(spec, records, split_sizes)
            manifest = _write_outputs(spec, records, quality, staging, split_sizes, sizes is not None)
            if not quality.ok:
                failed = quality.failures()
                raise UserError(
                    f"the dataset breaks the spec's promises: {failed[0].name}: {failed[0].detail}"
                    + (f" (and {len(failed) - 1} more checks)" if len(failed) > 1 else ""),
                    spec.path,
                )
            staging.commit(force)
        finally:
            staging.discard()
    return BuildResult(
        stage=spec.stage,
        out_dir=out_dir,
        bin_dir=bin_dir,
        counts={s: len(records[s]) for s in SPLITS},
        data_bytes=_apparent_bytes(out_dir),
        binary_bytes=_apparent_bytes(bin_dir),
        binary_disk_bytes=_disk_bytes(bin_dir),
        binaries_written=sum(len(records[s]) for s in WRITTEN_SPLITS),
        quality=quality,
        manifest=manifest,
    )


def _check_apart(out_dir: Path, bin_dir: Path) -> None:
    a, b = out_dir.resolve(), bin_dir.resolve()
    if a == b or a in b.parents or b in a.parents:
        raise UserError(f"the data folder {out_dir} and the binaries folder {bin_dir} must not contain each other")


def _check_destinations(out_dir: Path, bin_dir: Path, force: bool) -> None:
    for path in (out_dir, bin_dir):
        if path.exists() and not path.is_dir():
            raise UserError(f"{path} exists and is not a folder")
        if path.exists() and any(path.iterdir()) and not force:
            raise UserError(f"{path} already holds a build; pass --force to replace it")


class _Staging:
    """Temporary folders beside the destinations, renamed into place by ``commit``."""

    def __init__(self, out_dir: Path, bin_dir: Path) -> None:
        self.pairs = [(out_dir, self._temp(out_dir, "building")), (bin_dir, self._temp(bin_dir, "building"))]
        for _, tmp in self.pairs:
            tmp.mkdir(parents=True)
        self.out_tmp, self.bin_tmp = self.pairs[0][1], self.pairs[1][1]

    @staticmethod
    def _temp(dest: Path, what: str) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{what}-{os.getpid()}"
        if tmp.exists():  # left by an earlier process with our pid that was killed
            shutil.rmtree(tmp)
        return tmp

    def commit(self, force: bool) -> None:
        # binaries first: a data folder (which names the binaries) never appears without them
        for dest, tmp in reversed(self.pairs):
            old = None
            if dest.exists():
                if not force and any(dest.iterdir()):
                    raise UserError(f"{dest} was filled while this build ran; pass --force to replace it")
                old = self._temp(dest, "replaced")
                dest.rename(old)
            tmp.rename(dest)
            if old is not None:
                shutil.rmtree(old)

    def discard(self) -> None:
        for _, tmp in self.pairs:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def build_lock(dest: Path) -> Iterator[None]:
    """Hold the exclusive lock on ``dest`` (a file ``.NAME.lock`` beside it) or fail at once.

    The holder unlinks the lock file before it lets go, so no lock file outlives a build. A
    process that opened the old file just before that may then win its lock, so a lock only
    counts when the locked file is still the one at the path (else: try again on the new one).
    """
    path = dest.parent / f".{dest.name}.lock"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UserError(f"another build is writing {dest}") from None
            if _same_file(fd, path):
                break
            os.close(fd)
    except OSError as err:
        raise UserError(f"cannot write beside {dest}: {err.strerror or err}") from None
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


_STAGING_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<what>building|replaced)-(?P<pid>[0-9]+)$")


def _sweep_stale(own: list[Path]) -> None:
    """Clear what killed builds (their process gone) left beside any stage's folders.

    Every staging folder in the parents of ``own`` (this build's destinations, whose locks it
    holds) is looked at, not only this stage's: a killed stage1 build is swept by the next
    build of stage0 too. A ``.replaced-`` folder whose destination is missing is the previous
    build, killed between the two renames of a commit: it is put back. Another stage's
    leftovers are touched only under that stage's lock, so a live build is never disturbed.
    """
    own = [Path(os.path.abspath(p)) for p in own]
    stale: dict[Path, list[tuple[str, Path]]] = {}
    for parent in sorted({p.parent for p in own}):
        if not parent.is_dir():
            continue
        for tmp in sorted(parent.iterdir()):  # "building" before "replaced"
            m = _STAGING_NAME.match(tmp.name)
            if m and tmp.is_dir() and not _alive(int(m["pid"])):
                stale.setdefault(parent / m["name"], []).append((m["what"], tmp))
    for dest, tmps in stale.items():
        with ExitStack() as held:
            if dest not in own:
                try:
                    held.enter_context(build_lock(dest))
                except UserError:
                    continue  # its own build is running and sweeps it
            for what, tmp in tmps:
                if what == "replaced" and not dest.exists():
                    tmp.rename(dest)
                else:
                    shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process (or no such pid at all)
        return False
    except PermissionError:
        return True
    return True


def _binary_rel_path(draw: Draw) -> str | None:
    """The binary's file relative to the binaries folder; None: not written."""
    return f"{draw.split}/{draw.id}" if draw.split in WRITTEN_SPLITS else None


def _record_binary_path(draw: Draw, bins_from_data: str) -> str:
    """The record's ``binary_path``: relative to the data folder, "" where none is written."""
    rel = _binary_rel_path(draw)
    return "" if rel is None else f"{bins_from_data}/{rel}"


def _bins_from_data(out_dir: Path, bin_dir: Path) -> str:
    # the final folders (not the staging ones): they are renamed into place, so this holds after
    return Path(os.path.relpath(bin_dir.resolve(), out_dir.resolve())).as_posix()


def _chunks(spec: Spec, draws: dict[Split, list[Draw]], bin_root: Path, jobs: int) -> list[GoldenTask]:
    flat = [d for s in SPLITS for d in draws[s]]
    size = max(16, min(CHUNK_MAX, len(flat) // (jobs * 8) or 1))
    return [
        GoldenTask(spec.program, str(bin_root), tuple((d.a, d.b, _binary_rel_path(d)) for d in flat[i : i + size]))
        for i in range(0, len(flat), size)
    ]


def _init_worker(program: str) -> None:
    from exe_coder.dataset.golden import golden_image

    golden_image(program, 0, 0)  # load (assemble, link) the template once per worker


def _build_golden(
    spec: Spec, draws: dict[Split, list[Draw]], bin_root: Path, jobs: int, progress: bool
) -> list[GoldenResult]:
    tasks = _chunks(spec, draws, bin_root, jobs)
    total = sum(len(t.items) for t in tasks)
    results: list[GoldenResult] = []
    _init_worker(spec.program)  # in the parent too: forked workers inherit the loaded template
    if jobs == 1 or len(tasks) == 1:
        with _progress_bar(progress, f"{spec.stage}: golden binaries", total) as advance:
            for task in tasks:
                results.extend(build_chunk(task))
                advance(len(task.items))
        return results
    # the pool starts before the progress bar's refresh thread, so nothing forks mid-render
    with multiprocessing.get_context().Pool(jobs, initializer=_init_worker, initargs=(spec.program,)) as pool:
        with _progress_bar(progress, f"{spec.stage}: golden binaries", total) as advance:
            for chunk in pool.imap(build_chunk, tasks):  # in task order: same output for any jobs
                results.extend(chunk)
                advance(len(chunk))
    return results


class _progress_bar:
    def __init__(self, enabled: bool, what: str, total: int) -> None:
        self.progress = (
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            if enabled
            else None
        )
        self.what, self.total = what, total

    def __enter__(self) -> Callable[[int], None]:
        if self.progress is None:
            return lambda n: None
        self.progress.start()
        task = self.progress.add_task(self.what, total=self.total)
        return lambda n: self.progress.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


def _admit(
    spec: Spec, draws: dict[Split, list[Draw]], results: list[GoldenResult], bins_from_data: str
) -> dict[Split, list[Example]]:
    """Only examples whose golden binary verified become records; any other is a loud failure."""
    flat = [d for s in SPLITS for d in draws[s]]
    assert len(flat) == len(results)
    bad = [(d, r) for d, r in zip(flat, results) if r.outcome != "ok"]
    if bad:
        d, r = bad[0]
        raise UserError(
            f"{len(bad)} golden binaries failed verification, e.g. {d.id} (a={d.a}, b={d.b}): "
            f"{r.outcome} {r.detail}".strip(),
            spec.path,
        )
    records: dict[Split, list[Example]] = {s: [] for s in SPLITS}
    for d, r in zip(flat, results):
        records[d.split].append(
            Example(
                **vars(d),  # a Draw is an Example before its binary exists: same fields
                program=spec.program,
                expected_stdout=f"{d.a + d.b}\n",
                target=patch_text(d.a, d.b),
                binary_path=_record_binary_path(d, bins_from_data),
                binary_sha256=r.sha256,
            )
        )
    return records


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def toolchain(program: str) -> dict[str, str]:
    """What made the binaries: the package version and the program template's hash."""
    try:
        package = version("exe-coder")
    except PackageNotFoundError:
        package = "unknown"
    template = TEMPLATES_DIR / f"{program}.s.j2"
    return {"exe_coder": package, "program": program, "template_sha256": _sha256_file(template)}


def _write_outputs(
    spec: Spec,
    records: dict[Split, list[Example]],
    quality: QualityReport,
    staging: _Staging,
    sizes: dict[Split, int],
    limited: bool,
) -> dict:
    hashes: dict[str, str] = {}

    def write(name: str, text: str) -> None:
        data = text.encode("utf-8")
        files.write_bytes(staging.out_tmp / name, data)
        hashes[name] = hashlib.sha256(data).hexdigest()

    for s in SPLITS:
        write(f"{s}.jsonl", "".join(r.model_dump_json() + "\n" for r in records[s]))
    write(QUALITY, quality.model_dump_json(indent=2) + "\n")

    dest_out, dest_bin = staging.pairs[0][0], staging.pairs[1][0]
    bins_from_data = _bins_from_data(dest_out, dest_bin)
    binaries: dict[str, str] = {}  # record binary_path -> sha256
    for s in WRITTEN_SPLITS:
        for r in records[s]:
            assert r.binary_path.startswith(bins_from_data + "/")
            on_disk = staging.bin_tmp / r.binary_path.removeprefix(bins_from_data + "/")
            sha = _sha256_file(on_disk)  # read back what is on disk
            if sha != r.binary_sha256:
                raise UserError(f"binary {r.binary_path} on disk does not match its record's sha256")
            binaries[r.binary_path] = sha
    manifest = {
        "stage": spec.stage,
        "spec": {"path": _repo_relative(spec.path), "sha256": spec.sha256()},
        "seed": spec.seed,
        "program": spec.program,
        "toolchain": toolchain(spec.program),
        "sizes": sizes,
        "limited": limited,  # True when sizes were overridden (a smoke build)
        "train_templates": spec.train_template_ids,
        "heldout_templates": spec.heldout_template_ids,
        "record_format": RECORD_FORMAT,
        "license": DATA_LICENSE,
        "binaries_dir": bins_from_data,
        "binaries_written_for": list(WRITTEN_SPLITS),
        "counts": {s: quality.splits[s].model_dump() for s in SPLITS},
        "quality_ok": quality.ok,
        "files": hashes,
        "binaries": binaries,
    }
    files.write_text(staging.out_tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    files.write_text(staging.out_tmp / CARD, dataset_card(spec, manifest, quality))
    return manifest


def dataset_card(spec: Spec, manifest: dict, quality: QualityReport) -> str:
    """The build's README.md: what a reader needs before using the data (Hugging Face style)."""
    stage = manifest["stage"]
    sizes = "\n".join(
        f"| {s} | {quality.splits[s].size} | {'yes' if s in WRITTEN_SPLITS else 'no (rebuilt from a, b)'} |"
        for s in SPLITS
    )
    heldout = ", ".join(manifest["heldout_templates"]) or "none"

    def template_rows() -> str:
        rows = []
        for t in sorted({t for s in SPLITS for t in quality.splits[s].templates}):
            counts = " | ".join(str(quality.splits[s].templates.get(t, 0)) for s in SPLITS)
            rows.append(f"| {t} | {'held out' if t in manifest['heldout_templates'] else 'train'} | {counts} |")
        return "\n".join(rows)

    magnitudes = f"core {', '.join(map(str, spec.magnitudes.core))}"
    if spec.magnitudes.heldout:
        magnitudes += f"; held out {', '.join(map(str, spec.magnitudes.heldout))}"
    pairs = "; ".join(f"{s}: {' '.join(spec.split(s).pairs)}" for s in SPLITS)
    numerals = ", ".join(f"{style} {w}" for style, w in zip(NUMERAL_STYLES, spec.numerals.weights()) if w)
    limited = " (sizes overridden: a smoke build)" if manifest["limited"] else ""
    skewed = "".join(
        f" In {s.name}, sub frames write the subtrahend positive {s.subtrahend.positive} : negative"
        f" {s.subtrahend.negative}, so its sign patterns are skewed in b on purpose."
        for s in spec.splits if s.subtrahend is not None
    )
    skewed += "".join(
        f" In {s.name}, prompt sets come up {' : '.join(f'{n} {k}' for n, k in zip(s.prompt_sets, s.prompt_shares))},"
        " so its templates are not balanced across sets."
        for s in spec.splits if s.prompt_shares is not None
    )
    return f"""---
license: {DATA_LICENSE.lower()}
pretty_name: exe-coder {stage}
---

# exe-coder dataset: {stage}

Prompts asking for the sum of two integers (e.g. "What is 17 plus -4?"), each with its
operands, its patch target (`A=17;B=-4`) and the sha256 of its golden macOS arm64 executable,
which printed the right sum when it was verified. Generated by `exe-coder build` from
`{manifest["spec"]["path"]}` (sha256 `{manifest["spec"]["sha256"]}`), seed {manifest["seed"]},
program template `{manifest["program"]}`, exe-coder {manifest["toolchain"]["exe_coder"]}.

## Splits{limited}

| split | examples | binaries stored |
|---|---|---|
{sizes}

Load all three together:

```python
from datasets import load_dataset
ds = load_dataset("json", data_files={{s: f"{{s}}.jsonl" for s in ("train", "val", "test")}})
```

`binary_path` is relative to this folder (binaries folder: `{manifest["binaries_dir"]}`);
it is `""` where no file is stored (train), and `binary_sha256` always names the executable.

## Prompt templates

{len(manifest["train_templates"])} train templates; {len(manifest["heldout_templates"])} held out (never in train): {heldout}.

| template | kind | {" | ".join(SPLITS)} |
|---|---|{"---|" * len(SPLITS)}
{template_rows()}

## Operands

Operands {spec.operands}; magnitudes {magnitudes}; sign patterns {" ".join(spec.signs)};
magnitude pairs by split: {pairs}. Numerals (relative weights): {numerals}; each record's
`numerals` names the style of a and of b ("words/digits").{skewed}

## Licence

{DATA_LICENSE}: the data is generated by a program, and no rights are reserved on it.
The quality checks are in `quality.json`; every file's sha256 is in `manifest.json`.
"""


def _repo_relative(path: str) -> str:
    """A shipped spec's path relative to the folder that ships it (``specs/stage0.spec`` from a
    checkout and an installed wheel alike), so manifests do not depend on where exe-coder lies
    or how the spec was named on the command line."""
    try:
        return Path(path).resolve().relative_to(RESOURCES_ROOT.resolve()).as_posix()
    except ValueError:
        return path


def _walk(path: Path) -> Iterator[Path]:
    if path.exists():
        yield from (p for p in path.rglob("*") if p.is_file())


def _apparent_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in _walk(path))


def _disk_bytes(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in _walk(path))


def read_manifest(out_dir: str | Path) -> dict:
    return json.loads((Path(out_dir) / MANIFEST).read_text(encoding="utf-8"))


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def summary_lines(result: BuildResult) -> list[str]:
    """What ``exe-coder build`` prints: counts, footprint, paths."""
    counts = ", ".join(f"{s} {n}" for s, n in result.counts.items())
    slices = result.quality.splits
    return [
        f"{result.stage}: {counts} examples, every golden binary verified",
        "  sign patterns (val): " + " ".join(f"{k}={v}" for k, v in slices["val"].sign_pattern.items()),
        "  magnitude pairs (val): " + " ".join(f"{k}={v}" for k, v in slices["val"].magnitude_pair.items()),
        f"  records:  {result.out_dir} ({_mb(result.data_bytes)}: train/val/test.jsonl, {MANIFEST}, {QUALITY}, {CARD})",
        f"  binaries: {result.bin_dir} ({result.binaries_written} files for val/test, "
        f"{_mb(result.binary_bytes)} apparent, {_mb(result.binary_disk_bytes)} on disk; "
        "train binaries are rebuilt on demand from (a, b))",
    ]


def existing_build(spec: Spec, out_dir: str | Path, sizes: dict[str, int] | None = None) -> dict | None:
    """The manifest of a complete build of this very spec (and sizes) in ``out_dir``, else None.

    Lets a pipeline reuse a build instead of asking for ``--force``.
    """
    try:
        manifest = read_manifest(out_dir)
    except (OSError, ValueError):
        return None
    want = {s: (sizes or {}).get(s, spec.split(s).size) for s in SPLITS}
    if manifest.get("spec", {}).get("sha256") != spec.sha256() or manifest.get("sizes") != want:
        return None
    if manifest.get("toolchain") != toolchain(spec.program) or manifest.get("record_format") != RECORD_FORMAT:
        return None
    return manifest
