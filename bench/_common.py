"""What every benchmark shares (run as ``python bench/<name>.py``, so this folder is on sys.path)."""

from __future__ import annotations

import os


def pin_one_core() -> str:
    """Pin this process (and its children) to one CPU, so figures are single-core figures."""
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to cpu {cpu}"
    return "not pinned (no sched_setaffinity on this OS)"


def compiled_sft_step(model_cfg, weight_decay: float = 0.0, reduce_grads=None):
    """A freshly initialised model of ``[model]`` and its training step compiled as the SFT loop
    compiles it (forward, backward, gradient reduction across ranks, clipping, AdamW):
    ``step(x, y) -> loss`` and the state to evaluate with it."""
    from functools import partial

    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim

    from exe_coder.model.transformer import Transformer

    mx.random.seed(0)
    model = Transformer.from_config(model_cfg)
    optimizer = optim.AdamW(learning_rate=1e-3, weight_decay=weight_decay)
    optimizer.init(model.trainable_parameters())
    mx.eval(model.parameters())

    def loss_fn(model, x, y):
        return nn.losses.cross_entropy(model(x), y).mean()

    loss_and_grad = nn.value_and_grad(model, loss_fn)
    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, y):
        loss, grads = loss_and_grad(model, x, y)
        grads, _ = optim.clip_grad_norm(grads if reduce_grads is None else reduce_grads(grads), 1.0)
        optimizer.update(model, grads)
        return loss

    return step, state
