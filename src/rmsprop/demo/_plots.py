"""The demo's figures, drawn with matplotlib's non-interactive Agg backend."""

from pathlib import Path as FilePath
from typing import Any, BinaryIO

import numpy as np

from rmsprop.demo._digits import Run
from rmsprop.demo._surfaces import Path, Surface

COLORS = {
    "gradient descent": "#d95f02",
    "RMSProp": "#1b9e77",
    "rmsprop.RMSProp": "#1b9e77",
    "SGD": "#d95f02",
    "Adam": "#7570b3",
    "torch.optim.RMSprop": "#e7298a",
    "rmsprop.RMSProp 16-bit": "#66a61e",
}


def _pyplot() -> Any:
    import matplotlib  # noqa: PLC0415 - optional, and slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def adaptive_scaling(
    results: list[tuple[Surface, tuple[Path, Path]]], out: FilePath | BinaryIO
) -> None:
    """Trajectories over contour lines (top) and the loss per step (bottom)."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(results), figsize=(6.2 * len(results), 10), squeeze=False)
    for column, (surface, paths) in enumerate(results):
        top, bottom = axes[0][column], axes[1][column]
        (x0, x1), (y0, y1) = surface.view
        xs, ys = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
        zs = surface.loss(np.stack([xs, ys]))
        levels = np.logspace(np.log10(max(zs.min(), 1e-3)), np.log10(zs.max()), 18)
        top.contour(xs, ys, zs, levels=levels, cmap="Greys", linewidths=0.7)
        for path in paths:
            label = f"{path.optimizer} ({path.settings})"
            top.plot(*path.points.T, ".-", ms=2.5, lw=1, color=COLORS[path.optimizer], label=label)
            bottom.semilogy(
                np.maximum(path.losses, 1e-16), lw=1.6, color=COLORS[path.optimizer], label=label
            )
        top.plot(*surface.start, "ko", ms=6, label="start")
        top.plot(*surface.minimum, "k*", ms=12, label="minimum")
        top.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="x", ylabel="y")
        top.set_title(
            f"{surface.name}: f = {surface.formula}\n{surface.steps} steps from the same start"
        )
        top.legend(loc="lower right", fontsize=8)
        bottom.set(xlabel="step", ylabel="loss f(x, y) (log scale)")
        bottom.set_title(f"{surface.name}: loss per step")
        bottom.grid(True, which="major", alpha=0.3)
        bottom.legend(fontsize=8)
    fig.suptitle(
        "Adaptive scaling: RMSProp divides each step by the root of its own gradient's average"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def digits_training(runs: list[Run], out: FilePath | BinaryIO) -> None:
    """Training loss (moving average) and test accuracy against the step, per optimizer."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    window = 25
    for run in runs:
        # torch.optim.RMSprop and 16-bit state draw over rmsprop.RMSProp's nearly identical
        # curve: dashed, dotted.
        style = {
            "color": COLORS.get(run.name),
            "lw": 1.5,
            "ls": "--" if "torch" in run.name else ":" if "16-bit" in run.name else "-",
        }
        losses = np.array(run.train_losses)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        label = f"{run.name} ({run.settings})"
        left.semilogy(np.arange(window, len(losses) + 1), smooth, label=label, **style)
        steps, accuracy = zip(*run.test_accuracy_curve, strict=True)
        right.plot(steps, np.array(accuracy) * 100, label=label, **style)
    left.set(xlabel="step (minibatch of 32)", ylabel=f"training loss, mean of {window} steps (log)")
    left.set_title("Cross-entropy on the training minibatches")
    right.set(xlabel="step (minibatch of 32)", ylabel="test accuracy (%)", ylim=(80, 100))
    right.set_title("Accuracy on the 450 held-out digits")
    for axis in (left, right):
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle(
        "A 64-32-10 network on scikit-learn's 8×8 handwritten digits, same data order for all"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
