"""PNG plots for a report: training curves and answer accuracy by slice (matplotlib, Agg).

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
    """Train loss (and validation loss where logged) against step."""
    fig, ax = plt.subplots(figsize=(7, 4))
    if training.curve:
        steps, losses = zip(*training.curve)
        ax.plot(steps, losses, label="train_loss", linewidth=1.2)
    if training.val_curve:
        steps, losses = zip(*training.val_curve)
        ax.plot(steps, losses, "o-", label="val_loss", linewidth=1.2, markersize=3)
    if not training.curve and not training.val_curve:
        ax.text(0.5, 0.5, "no losses logged", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend()
        if all(v > 0 for _, v in training.curve + training.val_curve):
            ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("token cross-entropy")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _png(fig)


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
