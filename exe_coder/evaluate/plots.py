"""PNG plots for a report: training curves (loss, val accuracy, lr; an RL run's reward, pass
rate, KL, entropy) and answer accuracy by slice (matplotlib, Agg).

Each function returns the PNG's bytes, so the report writer can put every file in place
atomically. No timestamps or version strings go into the files: same inputs, same bytes.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display on a build machine; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

from exe_coder.evaluate.metrics import TrainingLosses  # noqa: E402
from exe_coder.evaluate.slices import Slices  # noqa: E402

_PNG_METADATA = {"Software": None}  # keep the matplotlib version out of the bytes


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata=_PNG_METADATA)
    plt.close(fig)
    return buf.getvalue()


def training_curves_png(training: TrainingLosses, title: str = "training") -> bytes:
    """Panels against step: train and val loss; val exact match and answer accuracy (the eval
    hook's); learning rate; and the gradient norm when the loop logged it. An RL run's log
    (it has ``reward``) gets ``rl_curves_png`` instead."""
    series = training.series
    if series.get("reward"):
        return rl_curves_png(training, title)
    panels = ["loss", "accuracy", "lr"] + (["grad_norm"] if series.get("grad_norm") else [])
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.4 * len(panels)), sharex=True, squeeze=False)
    by_name = dict(zip(panels, axes[:, 0]))

    ax = by_name["loss"]
    if training.curve:
        ax.plot(*zip(*training.curve), label="train_loss", linewidth=1.2)
    if training.val_curve:
        ax.plot(*zip(*training.val_curve), "o-", label="val_loss", linewidth=1.2, markersize=3)
    if not training.curve and not training.val_curve:
        _nothing(ax, "no losses logged")
    else:
        ax.legend(fontsize=8)
        if all(v > 0 for _, v in training.curve + training.val_curve):
            ax.set_yscale("log")
    ax.set_ylabel("cross-entropy")
    ax.set_title(title)

    ax = by_name["accuracy"]
    shown = [k for k in ("val_exact_match", "answer_accuracy") if series.get(k)]
    for key in shown:
        ax.plot(*zip(*series[key]), "o-", label=f"val {key}" if key == "answer_accuracy" else key,
                linewidth=1.2, markersize=3)
    if shown:
        ax.legend(fontsize=8)
        ax.set_ylim(-0.02, 1.02)
    else:
        _nothing(ax, "no val exact match or answer accuracy logged")
    ax.set_ylabel("val accuracy")

    ax = by_name["lr"]
    if series.get("lr"):
        ax.plot(*zip(*series["lr"]), linewidth=1.2, color="tab:green")
    else:
        _nothing(ax, "no learning rate logged")
    ax.set_ylabel("learning rate")

    if "grad_norm" in by_name:
        by_name["grad_norm"].plot(*zip(*series["grad_norm"]), linewidth=1.0, color="tab:red")
        by_name["grad_norm"].set_ylabel("grad norm")
    for ax in axes[:, 0]:
        ax.grid(True, alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    return _png(fig)


def rl_curves_png(training: TrainingLosses, title: str = "RL") -> bytes:
    """An RL run (train/rl.py's metrics.jsonl) against step: the reward and its parts; pass rate,
    share of groups with signal and val answer accuracy; KL to the SFT model; entropy."""
    series = training.series
    fig, axes = plt.subplots(4, 1, figsize=(7, 9.6), sharex=True, squeeze=False)
    panels = [
        ("reward", ["reward", "verifier_reward", "is_valid_macho", "exec_ok", "stdout_correct", "timeout_or_crash"]),
        ("rate", ["pass_rate", "signal_groups", "answer_accuracy"]),
        ("kl_to_sft", ["kl"]),
        ("entropy", ["entropy"]),
    ]
    for ax, (ylabel, keys) in zip(axes[:, 0], panels):
        shown = [k for k in keys if series.get(k)]
        for key in shown:
            style = "o-" if key == "answer_accuracy" else "-"
            ax.plot(*zip(*series[key]), style, label="val answer_accuracy" if key == "answer_accuracy" else key,
                    linewidth=1.2 if key in ("reward", "pass_rate") else 0.9, markersize=3)
        if shown:
            ax.legend(fontsize=7, ncol=2)
        else:
            _nothing(ax, f"no {ylabel} logged")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    axes[1, 0].set_ylim(-0.02, 1.02)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    return _png(fig)


def _nothing(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


def slice_accuracy_png(
    slices: Slices,
    title: str = "answer accuracy by slice",
    *,
    label: str = "model",
    baseline: Slices | None = None,
    baseline_label: str = "baseline",
) -> bytes:
    """One horizontal bar chart a slice axis (the baseline's bars beside the model's, grey);
    empty slices are drawn as 'n=0' without a bar."""
    axes_names = list(slices)
    heights = [max(len(slices[a]), 1) for a in axes_names]
    fig, axes = plt.subplots(
        len(axes_names), 1, figsize=(7, 1.2 + 0.28 * sum(heights) + 0.6 * len(axes_names)),
        gridspec_kw={"height_ratios": heights}, squeeze=False,
    )
    for ax, axis in zip(axes[:, 0], axes_names):
        names = list(slices[axis])
        accs = [slices[axis][v].answer_accuracy for v in names]
        ys = range(len(names))
        if baseline is None:
            ax.barh(list(ys), [a or 0.0 for a in accs], color="tab:blue", height=0.7)
        else:
            base = baseline.get(axis, {})
            b_accs = [(base[v].answer_accuracy if v in base else None) or 0.0 for v in names]
            ax.barh([y - 0.18 for y in ys], [a or 0.0 for a in accs], color="tab:blue", height=0.36, label=label)
            ax.barh([y + 0.18 for y in ys], b_accs, color="tab:gray", height=0.36, label=baseline_label)
            if axis == axes_names[0]:
                fig.legend(fontsize=7, loc="upper right", ncol=2, frameon=False)
        for y, v, a in zip(ys, names, accs):
            n = slices[axis][v].n
            ax.text(1.01, y, f"n={n}" if a is None else f"{a:.2f} (n={n})", va="center", fontsize=7,
                    transform=ax.get_yaxis_transform())
        ax.set_yticks(list(ys), names, fontsize=7)
        ax.set_ylim(max(len(names), 1) - 0.5, -0.5)  # first slice on top, no padding
        ax.set_xlim(0, 1)
        ax.set_title(axis, fontsize=9, loc="left")
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return _png(fig)
