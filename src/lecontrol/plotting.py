"""Figures of results (matplotlib, Agg backend: files only, no display).

Each function takes plain arrays and returns a `matplotlib.figure.Figure`;
save it with `lecontrol.io.save_figure`, which letters the panels of a
multi-panel figure (`letter_panels`). Non-finite data is an error, never a
silent gap in a curve.

Every figure draws the same kind of line the same way:

| line | style |
|---|---|
| the baseline (uncontrolled run) | `BASELINE_STYLE`: grey, dashed |
| the optimal control | `CONTROL_STYLE`: blue, solid |
| a bound of the control | `BOUND_STYLE`: thin black dotted |
| an upper bound or reference curve | `REFERENCE_STYLE`: dash-dot |

Curves over time use `time_axis`, which switches to a symmetric-log time axis
when all the dynamics happen early (see `time_axis` for the rule), and a
`SeedRuns` array is drawn as its mean with a shaded ±1 sd band.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = [
    "BASELINE_STYLE",
    "BOUND_STYLE",
    "CONTROL_STYLE",
    "REFERENCE_STYLE",
    "SeedRuns",
    "bounds",
    "check_plottable",
    "early_time",
    "letter_panels",
    "main_axes",
    "panel_grid",
    "plot_curves_by_value",
    "plot_difference",
    "plot_lines",
    "plot_optimisation",
    "plot_panels",
    "seed_band",
    "time_axis",
]

TIME_LABEL = "time t  (SGD steps × α, τ_w = 1)"
BASELINE_STYLE = {"color": "0.35", "linestyle": "--", "linewidth": 1.8}
CONTROL_STYLE = {"color": "C0", "linestyle": "-", "linewidth": 2.0}
BOUND_STYLE = {"color": "black", "linestyle": ":", "linewidth": 1.0}
REFERENCE_STYLE = {"color": "0.25", "linestyle": "-.", "linewidth": 1.3}

EARLY_SHARE = 0.5
"""`early_time`: the share of a curve's total variation that marks its dynamics."""
EARLY_FRACTION = 0.05
"""`time_axis`: dynamics marked within this fraction of the time span are early."""
LETTER_GID = "panel-letter"
"""The `gid` of the text artists `letter_panels` adds."""


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


@dataclasses.dataclass(frozen=True)
class SeedRuns:
    """Runs of one curve over several seeds, shape `(seeds, n)` on `n` times:
    `plot_lines` draws their mean and a shaded band of ±1 standard deviation
    (the paper's "mean ± sd over seeds").

    **Arguments:**

    - `values`: one row per seed.
    """

    values: object


def bounds(lower: float, upper: float) -> list[tuple[float, str, dict]]:
    """The `hlines` of a control's box bounds, drawn in `BOUND_STYLE`."""
    return [(lower, "lower bound", BOUND_STYLE), (upper, "upper bound", BOUND_STYLE)]


# ------------------------------------------------------------------- time axis


def _data_lines(ax) -> list:
    """The curves drawn on `ax` in data coordinates (not `axhline`/`axvline`)."""
    return [ln for ln in ax.get_lines() if ln.get_transform() is ax.transData]


def early_time(lines: Sequence[tuple[object, object]]) -> float | None:
    """The time by which every curve has made `EARLY_SHARE` (half) of its total
    variation $\\int |\\mathrm d y|$ (summed over a curve's columns).

    **Arguments:**

    - `lines`: `(ts, y)` pairs, `y` of shape `(n,)` or `(n, ...)` on the `n`
      increasing times `ts`.

    **Returns:** that time, or `None` when every curve is constant.
    """
    latest = None
    for ts, y in lines:
        ts = np.asarray(ts, dtype=float)
        y = np.asarray(y, dtype=float).reshape(ts.shape[0], -1)
        step = np.abs(np.diff(y, axis=0)).sum(axis=1)
        cum = np.cumsum(step)
        if ts.shape[0] < 2 or cum[-1] <= 1e-12 * max(np.abs(y).max(), 1e-300):
            continue
        t = ts[1 + int(np.searchsorted(cum, EARLY_SHARE * cum[-1]))]
        latest = t if latest is None else max(latest, t)
    return latest


def time_axis(ax, scale: str = "auto", lines=None) -> str:
    """Choose the time axis of `ax` from the curves drawn on it, so that early
    dynamics are not squeezed into the first few percent of the axis.

    The rule (`scale="auto"`): let $t_e$ be the `early_time` of the curves (when
    every curve has made half its change) and $[t_0, t_1]$ their time span. If
    $t_e - t_0 \\le$ `EARLY_FRACTION` $(t_1 - t_0)$ (the first 5% of the run),
    the axis is symmetric-log (`"symlog"`): linear on $[0, \\tau]$ with
    $\\tau = \\max((t_e - t_0)/5, \\Delta t)$ ($\\Delta t$ the smallest time step
    drawn), logarithmic above. Otherwise it stays linear.

    **Arguments:**

    - `ax`: a matplotlib axes with time on its x axis.
    - `scale`: `"auto"` (the rule above), `"symlog"` (always) or `"linear"`.
    - `lines`: `(ts, y)` pairs the rule reads (default: the curves drawn on
      `ax`; pass them for an image such as a `pcolormesh` over time).

    **Returns:** the scale set, `"linear"` or `"symlog"`.
    """
    if scale not in ("auto", "symlog", "linear"):
        raise ValueError(
            f"`time_scale` must be 'auto', 'symlog' or 'linear', not {scale!r}."
        )
    if lines is None:
        lines = [(ln.get_xdata(), ln.get_ydata()) for ln in _data_lines(ax)]
    lines = [(np.asarray(x, float), y) for x, y in lines if len(x) > 1]
    if scale == "linear" or not lines:
        return "linear"
    t0 = min(float(x[0]) for x, _ in lines)
    t1 = max(float(x[-1]) for x, _ in lines)
    te = early_time(lines)
    if scale == "auto" and (te is None or te - t0 > EARLY_FRACTION * (t1 - t0)):
        return "linear"
    steps = np.concatenate([np.diff(x) for x, _ in lines])
    dt = float(steps[steps > 0].min()) if (steps > 0).any() else 1.0
    te = t1 if te is None else te
    linthresh = max((te - t0) / 5, dt)
    ax.set_xscale("symlog", linthresh=linthresh, linscale=1.0)
    ax.set_xlim(t0, t1)
    first = np.ceil(np.log10(linthresh / 3))  # no tick crowding the one at 0
    decades = 10.0 ** np.arange(first, np.log10(t1) + 1e-9)
    ticks = [t for t in (0.0, *decades) if t0 <= t <= t1]
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
    return "symlog"


# ---------------------------------------------------------------- bands, panels


def seed_band(ax, ts, runs, *, label: str, **style):
    """Draw runs over seeds (shape `(seeds, n)`) as their mean line and a shaded
    band of ±1 sample standard deviation; the legend says so.

    **Returns:** the mean line.
    """
    runs = check_plottable(label, runs)
    if runs.ndim != 2 or runs.shape[1] != len(ts):
        raise ValueError(
            f"Cannot plot `{label}`: seed runs must have shape (seeds, {len(ts)}), "
            f"not {runs.shape}."
        )
    k = runs.shape[0]
    mean = runs.mean(axis=0)
    sd = runs.std(axis=0, ddof=1) if k > 1 else np.zeros_like(mean)
    seeds = "seed" if k == 1 else "seeds"
    (line,) = ax.plot(ts, mean, label=f"{label} (mean ± sd, {k} {seeds})", **style)
    ax.fill_between(
        ts, mean - sd, mean + sd, color=line.get_color(), alpha=0.2, linewidth=0
    )
    return line


def main_axes(fig) -> list:
    """The panels of `fig`: visible axes that are neither colorbars, insets
    nor twins of an earlier panel."""
    out, seen = [], []
    for ax in fig.axes:
        if not ax.get_visible() or ax.get_label() == "<colorbar>":
            continue
        if ax.get_axes_locator() is not None:  # an inset
            continue
        box = tuple(np.round(ax.get_position().bounds, 6))
        if box in seen:  # a twin
            continue
        seen.append(box)
        out.append(ax)
    return out


def letter_panels(fig) -> list[str]:
    """Letter the panels of a multi-panel figure a, b, c, … (bold, top left of
    each panel, in reading order). A one-panel figure is left alone.

    **Returns:** the letters added.
    """
    axes = main_axes(fig)
    if len(axes) < 2:
        return []
    fig.draw_without_rendering()  # lay out, to find each panel's labels
    renderer = fig.canvas.get_renderer()
    letters = []
    for i, ax in enumerate(axes):
        letter = "abcdefghijklmnopqrstuvwxyz"[i] if i < 26 else f"a{i - 25}"
        box, tight = ax.get_window_extent(), ax.get_tightbbox(renderer)
        x = (tight.x0 - box.x0) / box.width if box.width else 0.0
        old = ax.get_title(loc="left")
        text = ax.set_title(
            f"{letter}   {old}" if old else letter,
            loc="left",
            fontweight="bold",
            fontsize="large",
        )
        text.set_x(min(x, 0.0))
        text.set_gid(LETTER_GID)
        letters.append(letter)
    return letters


# ---------------------------------------------------------------------- figures


def panel_grid(
    n: int, *, columns: int = 2, title: str | None = None
) -> tuple[Figure, list]:
    """A figure of `n` panels, `columns` to a row, for the plotters' `ax=`
    (`lecontrol.io.save_figure` letters them a, b, c, …).

    **Returns:** the figure and its `n` axes, in reading order.
    """
    columns = min(n, columns)
    rows = math.ceil(n / columns)
    size = (5.6 * columns, 3.9 * rows)
    fig, axes = plt.subplots(rows, columns, figsize=size, layout="constrained")
    axes = list(np.atleast_1d(axes).ravel())
    for ax in axes[n:]:
        fig.delaxes(ax)
    if title:
        fig.suptitle(title)
    return fig, axes[:n]


def _axes(title: str, xlabel: str, ylabel: str, ax=None) -> tuple[Figure, plt.Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    else:
        fig = ax.figure
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


def _legend(ax) -> None:
    """A legend; a long one in two small columns, so it covers fewer curves."""
    n = len(ax.get_legend_handles_labels()[1])
    long = dict(ncols=2, fontsize="small") if n > 5 else {}
    ax.legend(loc="best", **long)


def _hline(ax, line) -> None:
    y, label, *style = line
    ax.axhline(y, label=label, **(style[0] if style else BOUND_STYLE))


def plot_lines(
    ts,
    series: Mapping[str, object],
    *,
    title: str,
    ylabel: str,
    xlabel: str = TIME_LABEL,
    styles: Mapping[str, Mapping] | None = None,
    hlines: Sequence[tuple] = (),
    time_scale: str = "auto",
    ax=None,
) -> Figure:
    """Curves over time, one legend entry per series.

    **Arguments:**

    - `ts`: times, shape `(n,)`.
    - `series`: label → values of shape `(n,)` or `(n, ...)`, extra axes drawn
      as several thin curves sharing the label; or label → `SeedRuns` of shape
      `(seeds, n)`, drawn as mean ± sd (`seed_band`).
    - `title`, `ylabel`, `xlabel`: text of the figure.
    - `styles`: label → matplotlib line keywords.
    - `hlines`: horizontal lines `(y, label)`, drawn in `BOUND_STYLE` (use
      `bounds(lower, upper)` for a control's bounds), or `(y, label, style)`
      (e.g. `BASELINE_STYLE`, `REFERENCE_STYLE`).
    - `time_scale`: the time axis, `"auto"`, `"symlog"` or `"linear"`
      (`time_axis`; use `"linear"` with an `xlabel` that is not time).
    - `ax`: draw into this axes (a panel of `panel_grid`) instead of a new figure.

    **Returns:** the figure.
    """
    ts = check_plottable("ts", ts)
    styles = styles or {}
    fig, ax = _axes(title, xlabel, ylabel, ax)
    for label, values in series.items():
        style = dict(styles.get(label, {}))
        if isinstance(values, SeedRuns):
            seed_band(ax, ts, values.values, label=label, **style)
            continue
        cols = _columns(check_plottable(label, values), ts.shape[0], label)
        if cols.shape[1] > 1:
            style["linewidth"] = 1.0
        for j in range(cols.shape[1]):
            ax.plot(ts, cols[:, j], label=label if j == 0 else None, **style)
    for line in hlines:
        _hline(ax, line)
    time_axis(ax, time_scale)
    _legend(ax)
    return fig


def plot_difference(
    ts,
    diff,
    *,
    title: str,
    ylabel: str,
    label: str,
    xlabel: str = TIME_LABEL,
    time_scale: str = "auto",
    ax=None,
) -> Figure:
    """A signed difference over time, shaded above (green) and below (red) zero
    (`time_scale`, `ax`: as for `plot_lines`)."""
    ts = check_plottable("ts", ts)
    d = _columns(check_plottable(label, diff), ts.shape[0], label)[:, 0]
    fig, ax = _axes(title, xlabel, ylabel, ax)
    ax.axhline(0.0, color="0.4", linewidth=0.8)
    ax.plot(ts, d, label=label, **CONTROL_STYLE)
    shade = dict(alpha=0.25, interpolate=True)  # up to the zero crossings
    ax.fill_between(ts, d, 0.0, where=d >= 0, color="tab:green", label="gain", **shade)
    ax.fill_between(ts, d, 0.0, where=d < 0, color="tab:red", label="loss", **shade)
    time_axis(ax, time_scale)
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
    log_x)` each: `y` against the parameter's values `x` (`hline`: a
    reference level, drawn in `REFERENCE_STYLE`)."""
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
            ax.axhline(hline, **REFERENCE_STYLE)
        ax.set(xlabel=xlabel, ylabel=ylabel, xscale="log" if logx else "linear")
        ax.grid(True, alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig


def plot_curves_by_value(
    ts,
    curves,
    values,
    *,
    title,
    ylabel,
    label,
    log=False,
    xlabel=TIME_LABEL,
    time_scale: str = "auto",
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
    time_axis(ax, time_scale)
    return fig
