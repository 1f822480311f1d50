"""Figures of results (matplotlib, Agg backend: files only, no display).

Each function takes plain arrays and returns a `matplotlib.figure.Figure`;
save it with `lecontrol.io.save_figure`. Non-finite data is an error, never a
silent gap in a curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = [
    "check_plottable",
    "plot_curves_by_value",
    "plot_panels",
    "plot_difference",
    "plot_lines",
    "plot_optimisation",
]

TIME_LABEL = "time t  (SGD steps × α, τ_w = 1)"
BASELINE_STYLE = {"color": "0.35", "linestyle": "--", "linewidth": 1.8}
CONTROL_STYLE = {"color": "C0", "linestyle": "-", "linewidth": 2.0}


def check_plottable(name: str, values) -> np.ndarray:
    """`values` as a float array; raise `ValueError` if any entry is not finite."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError(f"Cannot plot `{name}`: it is empty.")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = np.argwhere(bad)[0].tolist()
        raise ValueError(
            f"Cannot plot `{name}`: {int(bad.sum())} of {arr.size} values are not "
            f"finite (first at index {first}). The run that produced it failed; "
            "see its summary.json."
        )
    return arr


def _axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _columns(arr: np.ndarray, n: int, name: str) -> np.ndarray:
    if arr.shape[0] != n:
        raise ValueError(
            f"Cannot plot `{name}`: its leading axis has {arr.shape[0]} entries but "
            f"there are {n} times."
        )
    return arr.reshape(n, -1)


def plot_lines(
    ts,
    series: Mapping[str, object],
    *,
    title: str,
    ylabel: str,
    xlabel: str = TIME_LABEL,
    styles: Mapping[str, Mapping] | None = None,
    hlines: Sequence[tuple[float, str]] = (),
) -> Figure:
    """Curves over time, one legend entry per series.

    **Arguments:**

    - `ts`: times, shape `(n,)`.
    - `series`: label → values of shape `(n,)` or `(n, ...)`; extra axes are
      drawn as several thin curves sharing the label.
    - `title`, `ylabel`, `xlabel`: text of the figure.
    - `styles`: label → matplotlib line keywords.
    - `hlines`: `(y, label)` pairs drawn as dotted horizontal reference lines.

    **Returns:** the figure.
    """
    ts = check_plottable("ts", ts)
    styles = styles or {}
    fig, ax = _axes(title, xlabel, ylabel)
    for label, values in series.items():
        cols = _columns(check_plottable(label, values), ts.shape[0], label)
        style = dict(styles.get(label, {}))
        if cols.shape[1] > 1:
            style["linewidth"] = 1.0
        for j in range(cols.shape[1]):
            ax.plot(ts, cols[:, j], label=label if j == 0 else None, **style)
    for y, label in hlines:
        ax.axhline(y, color="0.6", linestyle=":", linewidth=1.0, label=label)
    ax.legend(loc="best")
    return fig


def plot_difference(
    ts, diff, *, title: str, ylabel: str, label: str, xlabel: str = TIME_LABEL
) -> Figure:
    """A signed difference over time, shaded above (green) and below (red) zero."""
    ts = check_plottable("ts", ts)
    d = _columns(check_plottable(label, diff), ts.shape[0], label)[:, 0]
    fig, ax = _axes(title, xlabel, ylabel)
    ax.axhline(0.0, color="0.4", linewidth=0.8)
    ax.plot(ts, d, label=label, **CONTROL_STYLE)
    ax.fill_between(
        ts, d, 0.0, where=d >= 0, color="tab:green", alpha=0.25, label="gain"
    )
    ax.fill_between(ts, d, 0.0, where=d < 0, color="tab:red", alpha=0.25, label="loss")
    ax.legend(loc="best")
    return fig


def plot_optimisation(values, *, baseline: float | None = None) -> Figure:
    """$V$ per optimisation iteration (and the baseline value for reference)."""
    v = check_plottable("V per iteration", values)
    fig, ax = _axes("Optimisation of the control", "iteration", "value V")
    ax.plot(np.arange(v.shape[0]), v, label="V(θ) at iteration", **CONTROL_STYLE)
    if baseline is not None:
        b = float(check_plottable("V_baseline", baseline))
        ax.axhline(b, label="V baseline (g = 0)", **BASELINE_STYLE)
    ax.legend(loc="best")
    return fig


def plot_panels(panels, *, title: str, ylabel: str, hline: float | None = None):
    """One small panel per swept parameter, `panels` holding `(xlabel, x, y,
    log_x)` each: `y` against the parameter's values `x`."""
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    size = (4.2 * cols, 3.4 * rows)
    fig, axes = plt.subplots(rows, cols, figsize=size, layout="constrained")
    axes = np.atleast_1d(axes).ravel()
    for ax, (xlabel, x, y, logx) in zip(axes, panels):
        x = check_plottable(xlabel, x)
        y = check_plottable(f"{ylabel} vs {xlabel}", y)
        ax.plot(x, y, marker="o", **{**CONTROL_STYLE, "linewidth": 1.5})
        if hline is not None:
            ax.axhline(hline, color="0.6", linestyle=":", linewidth=1.0)
        ax.set(xlabel=xlabel, ylabel=ylabel, xscale="log" if logx else "linear")
        ax.grid(True, alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig


def plot_curves_by_value(
    ts, curves, values, *, title, ylabel, label, log=False, xlabel=TIME_LABEL
):
    """Curves `curves[i]` over `ts[i]` (or a shared `ts`), coloured by `values[i]`."""
    from matplotlib.colors import LogNorm, Normalize

    curves = check_plottable(ylabel, curves)
    values = check_plottable(label, values)
    ts = np.broadcast_to(check_plottable("ts", ts), curves.shape)
    lo, hi = float(values.min()), float(values.max())
    hi = lo + 1.0 if hi == lo else hi
    norm = LogNorm(lo, hi) if log and lo > 0 else Normalize(lo, hi)
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    for t, c, v in zip(ts, curves, values):
        ax.plot(t, c, color=cmap(norm(v)), linewidth=1.2)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=label)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    return fig
