"""exe-coder build: verified records and binaries, manifest, quality gate, atomic and parallel."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exe_coder.dataset import build as build_module
from exe_coder.dataset import golden as golden_module
from exe_coder.dataset.build import build_stage, existing_build, read_manifest
from exe_coder.dataset.golden import golden_image
from exe_coder.dataset.quality import assess
from exe_coder.dataset.records import Example
from exe_coder.errors import UserError
from exe_coder.paths import SPECS_DIR
from exe_coder.runtime.outcome import Outcome, OutcomeKind
from exe_coder.runtime.verify import verify
from exe_coder.spec import load_spec
from tests._spec_text import SPEC, write_spec

SIZES = {"train": 24, "val": 16, "test": 12}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _records(out: Path, split: str) -> list[Example]:
    return [Example.model_validate_json(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    spec = load_spec(write_spec(root))
    result = build_stage(spec, root / "a" / "data", root / "a" / "bin", jobs=1, sizes=SIZES, progress=False)
    return spec, root, result


def test_records_binaries_and_manifest(tiny):
    spec, root, result = tiny
    out, bins = root / "a" / "data", root / "a" / "bin"
    assert result.counts == SIZES
    manifest = read_manifest(out)
    assert manifest["spec"]["sha256"] == spec.sha256()
    assert manifest["toolchain"]["template_sha256"] == hashlib.sha256(
        (Path(build_module.TEMPLATES_DIR) / "add.s.j2").read_bytes()
    ).hexdigest()
    for name, sha in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == sha
    assert (out / manifest["binaries_dir"]).resolve() == bins.resolve()
    for split in ("val", "test"):
        records = _records(out, split)
        assert len(records) == SIZES[split]
        for r in records:
            path = r.binary_file(out)  # relative to the JSONL's folder, inside the binaries folder
            assert path.resolve().parent == (bins / split).resolve()
            data = path.read_bytes()
            assert os.access(path, os.X_OK)
            assert hashlib.sha256(data).hexdigest() == r.binary_sha256 == manifest["binaries"][r.binary_path]
            assert verify(data, r.expected_stdout).kind is OutcomeKind.OK
    for r in _records(out, "train"):
        assert r.binary_path == "" and r.binary_file(out) is None  # rebuilt on demand, never a file per example
        assert hashlib.sha256(golden_image(spec.program, r.a, r.b)).hexdigest() == r.binary_sha256
    assert sum(1 for _ in bins.rglob("*") if _.is_file()) == SIZES["val"] + SIZES["test"]
    assert manifest["counts"]["val"]["sign_pattern"] == {"++": 4, "+-": 4, "-+": 4, "--": 4}
    assert json.loads((out / "quality.json").read_text())["ok"] is True


def test_binaries_are_stored_sparse(tiny):
    _, _, result = tiny
    # a golden binary is mostly zero pages; on a filesystem with holes it takes less room
    assert result.binary_disk_bytes <= result.binary_bytes


def test_any_jobs_gives_byte_identical_output(tiny):
    spec, root, _ = tiny
    build_stage(spec, root / "b" / "data", root / "b" / "bin", jobs=2, sizes=SIZES, progress=False)
    assert _tree(root / "a" / "data") == _tree(root / "b" / "data")
    assert _tree(root / "a" / "bin") == _tree(root / "b" / "bin")


def test_existing_output_needs_force_and_force_replaces(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    out, bins = tmp_path / "data", tmp_path / "bin"
    build_stage(spec, out, bins, jobs=1, sizes=SIZES, progress=False)
    before = _tree(out)
    with pytest.raises(UserError, match="pass --force"):
        build_stage(spec, out, bins, jobs=1, sizes=SIZES, progress=False)
    assert _tree(out) == before
    other = load_spec(write_spec(tmp_path, SPEC.replace("seed 7", "seed 9"), name="other.spec"))
    build_stage(other, out, bins, jobs=1, sizes=SIZES, force=True, progress=False)
    assert read_manifest(out)["spec"]["sha256"] == other.sha256() != spec.sha256()
    assert existing_build(other, out, SIZES) is not None and existing_build(spec, out, SIZES) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "data", "other.spec", "tiny.prompts", "tiny.spec"]


@pytest.mark.parametrize("failure", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_failure_mid_build_leaves_the_previous_output_intact(tmp_path, monkeypatch, failure):
    spec = load_spec(write_spec(tmp_path))
    out, bins = tmp_path / "data", tmp_path / "bin"
    build_stage(spec, out, bins, jobs=1, sizes=SIZES, progress=False)
    before_out, before_bin = _tree(out), _tree(bins)

    real, calls = build_module.build_chunk, []

    def failing_chunk(task):
        calls.append(task)
        if len(calls) == 2:  # the first chunk's binaries are already on disk in the temp folder
            raise failure
        return real(task)

    monkeypatch.setattr(build_module, "CHUNK_MAX", 16)
    monkeypatch.setattr(build_module, "build_chunk", failing_chunk)
    with pytest.raises(type(failure)):
        build_stage(spec, out, bins, jobs=1, sizes={"train": 40, "val": 16, "test": 16}, force=True, progress=False)
    assert len(calls) == 2
    assert _tree(out) == before_out and _tree(bins) == before_bin
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "data", "tiny.prompts", "tiny.spec"]


def test_a_killed_build_leaves_the_previous_output_intact(tmp_path):
    spec_path = write_spec(tmp_path)
    out, bins = tmp_path / "data", tmp_path / "bin"
    build_stage(load_spec(spec_path), out, bins, jobs=1, sizes=SIZES, progress=False)
    before_out, before_bin = _tree(out), _tree(bins)
    cmd = [sys.executable, "-m", "exe_coder.cli", "build", str(spec_path), "-o", str(out),
           "--binaries-dir", str(bins), "--force", "--jobs", "1", "--limit-train", "6000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".bin.building-*")) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # well into building binaries (6000 take seconds)
        assert proc.poll() is None, "the build ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _tree(out) == before_out and _tree(bins) == before_bin
    assert list(tmp_path.glob(".*.building-*"))  # the killed build's leftovers ...
    build_stage(load_spec(spec_path), out, bins, jobs=1, sizes=SIZES, force=True, progress=False)
    assert not list(tmp_path.glob(".*"))  # ... are swept by the next build
    assert _tree(out) == before_out


def test_a_golden_binary_that_fails_verification_fails_the_build(tmp_path, monkeypatch):
    spec = load_spec(write_spec(tmp_path))
    real = golden_module.verify

    def flaky(image, expect):
        if expect == "3\n":
            return Outcome(kind=OutcomeKind.CRASH, detail="injected")
        return real(image, expect)

    monkeypatch.setattr(golden_module, "verify", flaky)
    sampled = build_module.sample_stage(spec, SIZES)
    if not any(d.a + d.b == 3 for s in sampled.values() for d in s):
        pytest.fail("the test needs an example whose sum is 3; change the sizes")
    with pytest.raises(UserError, match="failed verification.*crash injected"):
        build_stage(spec, tmp_path / "data", tmp_path / "bin", jobs=1, sizes=SIZES, progress=False)
    assert not (tmp_path / "data").exists() and not (tmp_path / "bin").exists()


def test_a_broken_promise_fails_the_build_loudly(tmp_path, monkeypatch):
    spec = load_spec(write_spec(tmp_path))
    real = build_module.sample_stage

    def without_negative_sums(spec, sizes):
        draws = real(spec, sizes)
        draws["val"] = [d for d in draws["val"] if d.sign_pattern != "--"]
        return draws

    monkeypatch.setattr(build_module, "sample_stage", without_negative_sums)
    with pytest.raises(UserError, match="breaks the spec's promises: sizes"):
        build_stage(spec, tmp_path / "data", tmp_path / "bin", jobs=1, sizes=SIZES, progress=False)
    assert not (tmp_path / "data").exists() and not (tmp_path / "bin").exists()


def test_quality_checks_recompute_from_a_and_b(tiny):
    spec, root, _ = tiny
    records = {s: _records(root / "a" / "data", s) for s in ("train", "val", "test")}
    assert assess(spec, records, SIZES).ok
    first = records["val"][0]
    wrong_pair = "heldout/heldout" if first.magnitude_pair != "heldout/heldout" else "core/core"
    records["val"][0] = first.model_copy(update={"magnitude_pair": wrong_pair})
    report = assess(spec, records, SIZES)
    assert not report.ok
    assert any("magnitude pair of every record" in c.name for c in report.failures())
    records["val"][0] = first
    records["train"][0] = records["train"][0].model_copy(update={"prompt": records["test"][3].prompt})
    assert [c.name for c in assess(spec, records, SIZES).failures()] == ["no prompt text twice (so none in two splits)"]
    records["train"][0] = records["train"][0].model_copy(update={"template_id": spec.heldout_template_ids[0]})
    names = [c.name for c in assess(spec, records, SIZES).failures()]
    assert "held-out templates never in train" in names


def test_every_record_names_the_spec_program_and_quality_checks_it(tiny):
    spec, root, _ = tiny
    records = {s: _records(root / "a" / "data", s) for s in ("train", "val", "test")}
    assert {r.program for rs in records.values() for r in rs} == {spec.program}
    records["val"][0] = records["val"][0].model_copy(update={"program": "sub"})
    assert [c.name for c in assess(spec, records, SIZES).failures()] == [
        "records are consistent (split, program, sign pattern, target, stdout from a and b)"
    ]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_build_sweeps_stale_staging_folders_of_every_stage(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    out, bins = tmp_path / "processed" / "tiny", tmp_path / "bin" / "tiny"
    dead = _dead_pid()
    stale = [tmp_path / "processed" / f".stage1.building-{dead}", tmp_path / "bin" / f".stage2.replaced-{dead}"]
    (tmp_path / "bin" / "stage2").mkdir(parents=True)  # stage2's commit went through: only sweep
    for folder in stale:
        (folder / "val").mkdir(parents=True)
        (folder / "val" / "x").write_bytes(b"half")
    # killed between the two renames of stage3's commit: its previous build is put back
    (tmp_path / "processed" / f".stage3.replaced-{dead}").mkdir()
    (tmp_path / "processed" / f".stage3.replaced-{dead}" / "manifest.json").write_text("{}")
    # a staging folder of a build that is still running (this process) is left alone
    live = tmp_path / "processed" / f".stage4.building-{os.getpid()}"
    live.mkdir()

    build_stage(spec, out, bins, jobs=1, sizes=SIZES, progress=False)
    assert sorted(p.name for p in (tmp_path / "processed").iterdir()) == [live.name, "stage3", "tiny"]
    assert (tmp_path / "processed" / "stage3" / "manifest.json").read_text() == "{}"
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["stage2", "tiny"]


def test_a_held_lock_refuses_a_second_build_into_that_folder(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    out, bins = tmp_path / "data", tmp_path / "bin"
    for held in (out, bins):
        with build_module.build_lock(held):
            with pytest.raises(UserError, match=f"another build is writing {held}$"):
                build_stage(spec, out, bins, jobs=1, sizes=SIZES, progress=False)
        assert not out.exists() and not bins.exists()
    build_stage(spec, out, bins, jobs=1, sizes=SIZES, progress=False)  # free again once released
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "data", "tiny.prompts", "tiny.spec"]


def test_a_lock_won_on_a_lock_file_its_holder_just_unlinked_is_retried(tmp_path, monkeypatch):
    dest, real = tmp_path / "data", fcntl.flock
    first: list[int] = []

    def late_flock(fd, op):
        if not first:  # the previous holder unlinks the file and lets go between our open and our flock
            first.append(fd)
            os.unlink(tmp_path / ".data.lock")
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", late_flock)
    with build_module.build_lock(dest):
        assert first and (tmp_path / ".data.lock").exists()  # retried on a fresh file at the path
        with pytest.raises(UserError, match="another build is writing"):
            with build_module.build_lock(dest):
                pass
    assert not (tmp_path / ".data.lock").exists()


def test_quality_sees_a_missing_sign_pattern(tiny):
    spec, root, _ = tiny
    records = {s: _records(root / "a" / "data", s) for s in ("train", "val", "test")}
    records["val"] = [r for r in records["val"] if r.sign_pattern != "--"]
    report = assess(spec, records, {**SIZES, "val": len(records["val"])})
    failed = {c.name: c.detail for c in report.failures()}
    assert "'--' missing" in failed["val: sign patterns ++ +- -+ -- all present and balanced"]
    assert report.splits["val"].sign_pattern == {"++": 4, "+-": 4, "-+": 4}


def test_containing_folders_are_refused(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    with pytest.raises(UserError, match="must not contain each other"):
        build_stage(spec, tmp_path / "data", tmp_path / "data" / "bin", jobs=1, sizes=SIZES, progress=False)


def test_stage0_first_records(tmp_path, snapshot):
    result = build_stage(SPECS_DIR / "stage0.spec", tmp_path / "data", tmp_path / "bin", jobs=2, progress=False)
    assert result.counts == {"train": 512, "val": 128, "test": 128}
    first = {s: _records(tmp_path / "data", s)[:3] for s in ("train", "val", "test")}
    for records in first.values():  # the hashes belong to codegen's snapshots; here: they are the images'
        for r in records:
            assert r.binary_sha256 == hashlib.sha256(golden_image("add", r.a, r.b)).hexdigest()
    dumps = {s: [r.model_dump(exclude={"binary_sha256"}) for r in rs] for s, rs in first.items()}
    assert dumps == snapshot


def test_cli_build_prints_counts_footprint_and_paths(tmp_path):
    spec_path = write_spec(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "exe_coder.cli", "build", str(spec_path), "-o", str(tmp_path / "d"),
         "--binaries-dir", str(tmp_path / "b"), "--limit-train", "8", "--limit-val", "4", "--limit-test", "4"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "tiny: train 8, val 4, test 4 examples" in proc.stdout
    assert str(tmp_path / "d") in proc.stdout and "MB on disk" in proc.stdout
    assert read_manifest(tmp_path / "d")["limited"] is True
