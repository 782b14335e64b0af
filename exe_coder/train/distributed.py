"""Data-parallel training over MLX's own distributed layer (``mx.distributed``, ring over TCP).

Two ways in, one worker code path (``loop.train`` and ``rl.train_rl`` read the group from the environment):

- ``mlx.launch -n 2 --backend ring -- exe-coder train --config C`` (or ``--hosts h1,h2`` /
  ``--hostfile``): MLX starts the ranks and sets ``MLX_RANK`` / ``MLX_HOSTFILE``; each rank runs
  the ordinary ``train`` command, which joins the group.
- ``exe-coder train`` / ``run-stage`` with ``--ranks N`` (default: one rank a core on the CPU):
  ``train_on_ranks`` spawns N workers of this module over loopback with a hostfile of free ports,
  forwards their output, and stops every rank as soon as one fails, so a dead rank ends the run
  with an error instead of leaving the others blocked in an all-reduce.

The arithmetic lives in the loops: SFT (``loop.train``) gives each rank rows ``rank::size`` of
the same global batch, RL (``rl.train_rl``) whole rollout chunks of the same step; each rank
scales its loss by the global count, and the gradients are summed across ranks, so an update
equals the single-process update up to float reduction order.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from exe_coder.errors import UserError

_RESULT = "EXE_CODER_RESULT_FILE"  # rank 0 writes its TrainResult here (JSON)
STOP_GRACE_S = 5.0  # after one rank fails, the others get this long to exit before SIGKILL


@dataclass(frozen=True)
class World:
    """This process's place in the training group (rank 0 of 1 when not launched)."""

    group: mx.distributed.Group | None
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_sum(self, x: mx.array) -> mx.array:
        return x if self.size == 1 else mx.distributed.all_sum(x, group=self.group)

    def sum_tree(self, tree):
        """Sum a tree of arrays across ranks in one all-reduce (arrays concatenated by dtype)."""
        if self.size == 1:
            return tree
        flat = tree_flatten(tree)
        out = dict(flat)
        # the same order on every rank: by dtype name, then key (dict order may differ after a load)
        for dtype in sorted({str(v.dtype) for _, v in flat}):
            keys = sorted(k for k, v in flat if str(v.dtype) == dtype)
            buf = mx.distributed.all_sum(mx.concatenate([out[k].reshape(-1) for k in keys]), group=self.group)
            offset = 0
            for k in keys:
                n = out[k].size
                out[k] = buf[offset : offset + n].reshape(out[k].shape)
                offset += n
        return tree_unflatten([(k, out[k]) for k, _ in flat])

    def broadcast_tree(self, tree):
        """Rank 0's values of a tree every rank holds in the same structure (a resumed state)."""
        if self.size == 1:
            return tree
        zeroed = tree if self.is_main else tree_unflatten([(k, mx.zeros_like(v)) for k, v in tree_flatten(tree)])
        return self.sum_tree(zeroed)

    def all_gather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's ``data``, in rank order, on every rank (lengths may differ)."""
        if self.size == 1:
            return [data]
        sizes = mx.distributed.all_gather(mx.array([len(data)], dtype=mx.int32), group=self.group).tolist()
        width = max(sizes)  # all_gather wants one shape on every rank: pad to the longest
        padded = np.zeros(width, dtype=np.uint8)
        padded[: len(data)] = np.frombuffer(data, dtype=np.uint8)
        rows = np.array(mx.distributed.all_gather(mx.array(padded), group=self.group)).reshape(self.size, width)
        return [rows[r, : sizes[r]].tobytes() for r in range(self.size)]

    def broadcast_json(self, value):
        """Rank 0's JSON-able ``value`` on every rank, exactly (floats stay float64)."""
        if self.size == 1:
            return value
        return json.loads(self.all_gather_bytes(json.dumps(value).encode() if self.is_main else b"")[0])

    def barrier(self) -> None:
        if self.size > 1:
            mx.eval(self.all_sum(mx.array(1.0)))


def launched() -> bool:
    """Whether a launcher (ours, mlx.launch, mpirun) started this process as one rank of a group."""
    return any(v in os.environ for v in ("MLX_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK"))


_world: World | None = None


def world() -> World:
    """Join the group this process was launched into (once); a lone process is rank 0 of 1."""
    global _world
    if _world is None:
        if launched():
            group = mx.distributed.init()
            _world = World(group, group.rank(), group.size())
        else:
            _world = World(None)
    return _world


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def default_ranks() -> int:
    """One rank a core on the CPU (MLX's CPU ops use one thread); one process on a GPU."""
    return 1 if mx.default_device().type == mx.gpu else cores()


def device_line(size: int) -> str:
    """Which device this process computes on, in words, e.g. ``cpu, 2 ranks``."""
    if mx.default_device().type == mx.gpu:
        kind = "gpu (cuda)" if mx.cuda.is_available() else "gpu (metal)"
    else:
        kind = "cpu"
    return f"{kind}, {size} rank{'s' if size != 1 else ''}"


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def rank_env(rank: int, ranks: int, hostfile: Path) -> dict[str, str]:
    """A worker's environment: its rank, the ring hostfile, and BLAS threads sharing the cores."""
    env = dict(os.environ)
    if ranks > 1:  # a ring of one would wait to connect to itself
        env.update(MLX_RANK=str(rank), MLX_HOSTFILE=str(hostfile))  # also: launched(), never spawn again
    threads = str(max(1, cores() // ranks))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        env.setdefault(var, threads)
    return env


def run_ranks(
    command: list[str],
    ranks: int,
    env_extra: dict[str, str] | None = None,
    poll_s: float = 0.1,
    logs: Path | None = None,
) -> tuple[int, int | None]:
    """Run ``command`` as ``ranks`` ring ranks on loopback; return (exit code, failing rank).

    The first rank that exits non-zero stops the others (SIGTERM, then SIGKILL after
    ``STOP_GRACE_S``): a survivor would otherwise block in an all-reduce that never completes.
    Rank 0 writes to this process's stdout/stderr; with ``logs`` the other ranks write to
    ``logs/rank<r>.log`` (their output is the ring's noise about the peer that went away).
    """
    with tempfile.TemporaryDirectory(prefix="exe-coder-ranks-") as tmp, _stop_on_sigterm():
        hostfile = Path(tmp) / "hosts.json"
        hostfile.write_text(json.dumps([[f"127.0.0.1:{p}"] for p in _free_ports(ranks)]))
        procs = []
        try:
            for r in range(ranks):
                env = rank_env(r, ranks, hostfile)
                env.update(env_extra or {})
                sink = None if logs is None or r == 0 else (logs / f"rank{r}.log").open("wb")
                procs.append(subprocess.Popen(command, env=env, stdout=sink, stderr=sink))
                if sink is not None:
                    sink.close()  # the child holds its own copy
            while True:
                codes = [p.poll() for p in procs]
                failed = [r for r, c in enumerate(codes) if c not in (None, 0)]
                if failed:
                    _stop(procs)
                    return codes[failed[0]], failed[0]
                if all(c == 0 for c in codes):
                    return 0, None
                time.sleep(poll_s)
        except BaseException:
            _stop(procs)
            raise


@contextlib.contextmanager
def _stop_on_sigterm():
    """SIGTERM or SIGHUP to the launcher (``kill``, a closed terminal) raises SystemExit, so the
    ``except BaseException`` in ``run_ranks`` stops the ranks: by default the launcher would die
    alone and leave its ranks training, unseen, on every core."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    caught = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {s: signal.signal(s, _exit_on_signal) for s in caught}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _exit_on_signal(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def train_on_ranks(
    config,
    ranks: int | None,
    *,
    resume: bool = False,
    force: bool = False,
    eval_hook: bool = True,
    console=None,
    stop_after: int | None = None,
):
    """Train ``config`` on ``ranks`` processes (None: ``default_ranks()``); return rank 0's result:
    a ``TrainResult`` for SFT, an ``RLResult`` for RL (``[run].phase = 'rl'``).

    One rank, or a process that already is a rank of a launched group, trains in-process.
    ``stop_after`` is the loop's (a kill without a final save, for resume tests).
    """
    n = default_ranks() if ranks is None else ranks
    if n < 1:
        raise UserError(f"--ranks must be at least 1, not {n}")
    cap, why = rank_cap(config)
    if ranks is None:
        n = max(1, min(n, cap))
    elif n > cap:
        raise UserError(f"--ranks {n} exceeds {why}")
    if n == 1 or launched():
        return _train_here(config, resume=resume, force=force, eval_hook=eval_hook, console=console, stop_after=stop_after)
    with tempfile.TemporaryDirectory(prefix="exe-coder-train-") as tmp:
        cfg_file, result_file = Path(tmp) / "config.toml", Path(tmp) / "result.json"
        cfg_file.write_text(config.to_toml(), encoding="utf-8")
        command = [sys.executable, "-m", "exe_coder.train.distributed", "--config", str(cfg_file)]
        command += ["--resume"] * resume + ["--force"] * force + ["--no-eval-hook"] * (not eval_hook)
        command += [] if stop_after is None else ["--stop-after", str(stop_after)]
        code, rank = run_ranks(command, n, {_RESULT: str(result_file)}, logs=Path(tmp))
        if code != 0:
            for r in range(n):  # a rank's own UserError, as one process would have said it
                error = _error_file(result_file, r)
                if error.is_file():
                    raise UserError(error.read_text(encoding="utf-8"))
            log = Path(tmp) / f"rank{rank}.log"
            if log.is_file():
                sys.stderr.write(log.read_text(errors="replace")[-4000:])
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            raise UserError(f"training stopped: rank {rank} of {n} {how} (its output is above); the other ranks were stopped")
        data = json.loads(result_file.read_text())
        return _result_type(config)(**{**data, "out_dir": Path(data["out_dir"])})


def rank_cap(config) -> tuple[int, str]:
    """The most ranks ``config`` can use, and why, for the error that refuses more."""
    if config.run.phase == "rl":
        from exe_coder.train.rl import rollout_chunks

        per, chunks = rollout_chunks(config.rl)
        return chunks, (
            f"the {chunks} rollout chunk{'s' if chunks != 1 else ''} of an RL step ([rl].prompts_per_step = "
            f"{config.rl.prompts_per_step} groups, {per} a chunk): every rank needs a chunk"
        )
    bs = config.train.batch_size
    return bs, f"[train].batch_size = {bs}: every rank needs a row of each batch"


def _result_type(config):
    if config.run.phase == "rl":
        from exe_coder.train.rl import RLResult

        return RLResult
    from exe_coder.train.loop import TrainResult

    return TrainResult


def _train_here(config, *, resume: bool, force: bool, eval_hook: bool, console, stop_after: int | None):
    """This process's part: the loop of the config's phase (SFT or RL); the eval hook on rank 0."""
    if config.run.phase == "rl":
        from exe_coder.train.rl import train_rl  # builds its own hook, on rank 0

        return train_rl(config, resume=resume, force=force, eval_hook=eval_hook, console=console, stop_after=stop_after)
    from exe_coder.train.loop import train

    hook = None
    if eval_hook and world().is_main:
        from exe_coder.decode.infer import eval_hook_for

        hook = eval_hook_for(config)
    return train(config, resume=resume, force=force, eval_hook=hook, console=console, stop_after=stop_after)


def _error_file(result_file: Path, rank: int) -> Path:
    return result_file.with_name(f"error{rank}.txt")


def _worker() -> int:
    """One spawned rank: train the config file (SFT or RL); rank 0 reports its result to the launcher."""
    from dataclasses import asdict

    from exe_coder.train.config import load_config

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--no-eval-hook", action="store_true")
    parser.add_argument("--stop-after", type=int, default=None)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped by the launcher: exit quietly
    w = world()
    try:
        config = load_config(args.config)
        result = _train_here(
            config, resume=args.resume, force=args.force, eval_hook=not args.no_eval_hook, console=None, stop_after=args.stop_after
        )
    except UserError as err:  # the launcher says it, once
        if os.environ.get(_RESULT):
            _error_file(Path(os.environ[_RESULT]), w.rank).write_text(str(err), encoding="utf-8")
        else:
            print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    if w.is_main and os.environ.get(_RESULT):
        Path(os.environ[_RESULT]).write_text(json.dumps({**asdict(result), "out_dir": str(result.out_dir)}))
    return 0


if __name__ == "__main__":
    sys.exit(_worker())
