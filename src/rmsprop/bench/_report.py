"""What ``rmsprop bench`` shows: the machine, the table, the figure, the files."""

import json
import platform
import sys
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

from rmsprop.bench._settings import DTYPES, OPTAX, OURS, OURS_OPTAX, ROOFLINE


def machine() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in ("rmsprop", "numpy", "numba", "torch", "jax", "optax"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    layer: str | None = None
    if "numba" in sys.modules:
        try:
            layer = sys.modules["numba"].threading_layer()
        except ValueError:
            layer = None
    import os  # noqa: PLC0415

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
        "numba_threading_layer": layer,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


# --- reporting -------------------------------------------------------------------------------


def table(report: dict[str, Any]) -> str:
    """The report as text: one block per dtype and size, then speed-ups and ResNet-50."""
    lines = []
    rows = [r for r in report["arrays"] if "skipped" not in r]
    for dtype in DTYPES:
        for n in sorted({r["elements"] for r in rows if r["dtype"] == dtype}):
            lines.append(f"\n{dtype}, N = {n:,}")
            lines.append(HEADER)
            for r in rows:
                if r["dtype"] == dtype and r["elements"] == n:
                    lines.append(_row(r))
    skipped = {r["implementation"]: r["skipped"] for r in report["arrays"] if "skipped" in r}
    for name, reason in skipped.items():
        lines.append(f"\n(skipped {name}: {reason})")
    lines += _speedups(rows)
    for model in report.get("models", []):
        lines.append(
            f"\n{model['model']}: {model['tensors']} {model['dtype']} tensors, "
            f"{model['elements']:,} values, {model['bytes_per_element']} bytes each a step"
            f"\n{HEADER}"
        )
        for r in model["results"]:
            lines.append(
                _row(r)
                if "skipped" not in r
                else f"  {r['implementation']}: skipped ({r['skipped']})"
            )
        timed = {r["implementation"]: r["median_s"] for r in model["results"] if "skipped" not in r}
        ours = timed.get("rmsprop.torch.RMSProp")
        if ours:
            for name, seconds in timed.items():
                if name not in OURS and not name.startswith(ROOFLINE) and name != OPTAX:
                    lines.append(
                        f"  rmsprop.torch.RMSProp is {seconds / ours:.1f}x faster than {name}"
                    )
        lines += _jax_ratio(timed)
    return "\n".join(lines)


def _jax_ratio(timed: Mapping[str, float]) -> list[str]:
    """rmsprop.optax against optax.rmsprop, where both were timed."""
    if OURS_OPTAX not in timed or OPTAX not in timed:
        return []
    return [f"  {OURS_OPTAX} takes {timed[OURS_OPTAX] / timed[OPTAX]:.2f}x the time of {OPTAX}"]


WIDTH = 40
HEADER = (
    f"  {'implementation':<{WIDTH}} {'median':>10} {'(min - max)':>21} {'GB/s':>7} {'roofline':>9}"
)


def _row(r: dict[str, Any]) -> str:
    share = f"{r['share_of_roofline']:.0%}" if r.get("share_of_roofline") else ""
    spread = f"({_ms(r['min_s'])} - {_ms(r['max_s'])})"
    name, gbps = r["implementation"], r["gb_per_s_5_streams"]
    return f"  {name:<{WIDTH}} {_ms(r['median_s']):>10} {spread:>21} {gbps:7.1f} {share:>9}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds >= 1e-4 else f"{seconds * 1e6:.2f} µs"


def _speedups(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for dtype in DTYPES:
        at = {
            r["implementation"]: r["median_s"]
            for r in rows
            if r["dtype"] == dtype and r["elements"] == 10**7
        }
        ours = at.get("rmsprop.step_")
        if not ours:
            continue
        lines.append(f"\nAt N = 10,000,000 ({dtype}), rmsprop.step_ is")
        for name, seconds in at.items():
            if name not in OURS and name != ROOFLINE:
                lines.append(f"  {seconds / ours:6.1f}x faster than {name}")
        if ROOFLINE in at:
            lines.append(f"  at {at[ROOFLINE] / ours:.0%} of the roofline loop's throughput")
        lines += _jax_ratio(at)
    return lines


def plot(report: dict[str, Any], out: Path | BinaryIO) -> None:
    """Throughput against N (log axis), one panel per dtype; below, where the report has
    them, each model's whole step as a share of its flat roofline."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = [r for r in report["arrays"] if "skipped" not in r]
    models = report.get("models", [])
    in_models = (r["implementation"] for m in models for r in m["results"])
    names = list(dict.fromkeys([*(r["implementation"] for r in rows), *in_models]))
    # One color per implementation in every panel, whichever of them it appears in.
    dark = plt.get_cmap("Dark2")
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"] + [dark(i) for i in range(8)]
    colors = dict(zip(names, palette * 2, strict=False))
    fig = plt.figure(figsize=(14, 11 if models else 5.5))
    grid = fig.add_gridspec(2 if models else 1, len(DTYPES))
    axes = [fig.add_subplot(grid[0, i]) for i in range(len(DTYPES))]
    for axis, dtype in zip(axes, DTYPES, strict=True):
        for name in names:
            points = sorted(
                (r["elements"], r["gb_per_s_5_streams"])
                for r in rows
                if r["implementation"] == name and r["dtype"] == dtype
            )
            if points:
                style = {"ls": "--", "color": "k"} if name == ROOFLINE else {"color": colors[name]}
                width = 2.4 if name in OURS else 1.4
                axis.semilogx(
                    *zip(*points, strict=True), marker="o", lw=width, ms=4, label=name, **style
                )
        axis.set(xlabel="N, elements per array", title=f"{dtype}: one RMSProp step on N elements")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7, loc="upper left")
    top = max(axis.get_ylim()[1] for axis in axes)
    for axis in axes:
        axis.set_ylim(0, top)
    axes[0].set_ylabel("throughput, GB/s (5 streams: read p, g, v; write p, v)")
    if models:
        _plot_models(fig.add_subplot(grid[1, :]), models, colors)
    cpus = report["machine"]["cpus"]
    fig.suptitle(f"rmsprop and its peers, same process, interleaved rounds ({cpus} CPUs)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _plot_models(axis: Any, models: list[dict[str, Any]], colors: dict[str, str]) -> None:
    """Grouped bars: each model's whole optimizer step as a share of its flat roofline."""
    names = list(
        dict.fromkeys(
            r["implementation"]
            for m in models
            for r in m["results"]
            if "skipped" not in r and not r["implementation"].startswith(ROOFLINE)
        )
    )
    width = 0.84 / len(names)
    for k, name in enumerate(names):
        for i, model in enumerate(models):
            found = [r for r in model["results"] if r["implementation"] == name]
            if not found or "skipped" in found[0]:
                continue
            share = 100 * found[0]["share_of_roofline"]
            x = i + (k - (len(names) - 1) / 2) * width
            axis.bar(x, share, width, color=colors[name], label=name if i == 0 else None)
            axis.text(x, share + 1, f"{share:.0f}", ha="center", va="bottom", fontsize=6)
    axis.axhline(100, ls="--", color="k", lw=1, label=f"{ROOFLINE}: one flat pass")
    labels = [
        f"{m['model']}\n({m['tensors']} tensors, {m['elements'] / 1e6:.1f}M values)" for m in models
    ]
    axis.set_xticks(range(len(models)), labels)
    axis.set(
        ylabel="share of the roofline over the same bytes, %",
        title="one optimizer step over a model's parameters (float32 unless named)",
        ylim=(0, 115),
    )
    axis.grid(True, axis="y", alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", ncol=3)


def save(report: dict[str, Any], out: Path) -> list[Path]:
    """Write bench.json and (with matplotlib) bench.png into ``out``; the paths written."""
    from rmsprop.cli._common import save_figure, write_bytes_atomically  # noqa: PLC0415

    write_bytes_atomically(out / "bench.json", json.dumps(report, indent=1).encode())
    written = [out / "bench.json"]
    try:
        save_figure(out / "bench.png", lambda target: plot(report, target))
    except ImportError:
        return written  # no matplotlib: the JSON and the table only
    return [*written, out / "bench.png"]
