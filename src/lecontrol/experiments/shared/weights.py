r"""Per-weight trajectories of a two-layer network with gains (the paper's
Figs. 12–14 and 16): every entry of $W_1(t)$, $W_2(t)$ and of the optimal gains
$G_1(t)$, $G_2(t)$, one colour per weight, the same colour for a weight and its
gain. A large network shows the `MOST` weights that move most."""

from __future__ import annotations

import numpy as np

from . import figures as fig

MOST = 40
"""Weights drawn per layer at most (those whose controlled trajectory moves most)."""


def _chosen(w: np.ndarray) -> np.ndarray:
    """Indices of the (flattened) entries of `w` (times × entries) that move most."""
    travel = np.abs(w - w[:1]).max(0)
    return np.sort(np.argsort(-travel, kind="stable")[:MOST])


def figure(results):
    """2 × 2 panels: $W_1$, $W_2$ (controlled, solid; baseline, dashed) and
    $G_1$, $G_2$ over time."""
    p, ts = fig.plotting, results["ts"]
    figure, axes = p.panel_grid(4, title="Weights and gains of each connection")
    for layer in (0, 1):
        w = results[f"control_w{layer}"].reshape(len(ts), -1)
        base = results[f"baseline_w{layer}"].reshape(len(ts), -1)
        g = results[f"control_g{layer}"].reshape(len(ts), -1)
        pick = _chosen(w)
        colours = [f"C{k % 10}" for k in range(len(pick))]
        top, bottom = axes[layer], axes[2 + layer]
        for k, c in zip(pick, colours):
            top.plot(ts, w[:, k], color=c, linewidth=1.2)
            top.plot(ts, base[:, k], color=c, linewidth=0.8, linestyle="--")
            bottom.plot(ts, g[:, k], color=c, linewidth=1.2)
        shown = f"{len(pick)} of {w.shape[1]}" if len(pick) < w.shape[1] else "all"
        top.set_title(f"W{layer + 1}(t), {shown} entries (dashed: baseline)")
        top.set(xlabel=p.TIME_LABEL, ylabel=f"weight W{layer + 1}[i, j]")
        bottom.set_title(f"Optimal gain G{layer + 1}(t), the same entries")
        bottom.set(xlabel=p.TIME_LABEL, ylabel=f"gain G{layer + 1}[i, j]")
        for ax in (top, bottom):
            p.time_axis(ax)
            ax.grid(True, alpha=0.3)
    return figure


def ode_vs_sgd(results):
    """3 × 2 panels (the paper's Fig. 19c–h): $W_1$ and $W_2$ along the ODE
    (solid) and along SGD (dashed, the first seed) for the baseline and for the
    control, then the weight norms $L_1$ and $L_2$ along the ODE and along SGD
    (dotted, mean over seeds). The SGD records must be at the ODE's times."""
    p, ts = fig.plotting, results["ts"]
    figure, axes = p.panel_grid(6, title="Learning dynamics (ODE) against SGD")
    runs = (("baseline", "baseline (G = 0)"), ("control", "with control"))
    for row, (run, label) in enumerate(runs):
        for layer in (0, 1):
            ode = results[f"{run}_w{layer}"].reshape(len(ts), -1)
            sgd = results[f"sgd_{run}_w{layer}"].reshape(len(ts), -1)
            pick = _chosen(ode)
            ax = axes[2 * row + layer]
            for j, k in enumerate(pick):
                c = f"C{j % 10}"
                ax.plot(ts, ode[:, k], color=c, linewidth=1.2)
                ax.plot(ts, sgd[:, k], color=c, linewidth=0.9, linestyle="--")
            shown = (
                f"{len(pick)} of {ode.shape[1]}" if len(pick) < ode.shape[1] else "all"
            )
            ax.set_title(f"W{layer + 1}(t), {label}: {shown} entries (dashed: SGD)")
            ax.set(xlabel=p.TIME_LABEL, ylabel=f"weight W{layer + 1}[i, j]")
    norms = {"l1": "L1 norm Σ|W|", "l2": "L2 norm (Σ W²)^½"}
    for ax, (norm, title) in zip(axes[4:], norms.items()):
        for (label, style), run in zip(fig.pair("baseline (G = 0)").items(), runs):
            ax.plot(ts, results[f"{run[0]}_{norm}"], label=f"ODE, {label}", **style)
            sgd = dict(style, linestyle=":", linewidth=1.4)
            ax.plot(ts, results[f"sgd_{run[0]}_{norm}"], label=f"SGD, {label}", **sgd)
        ax.set(title=f"{title} (SGD: mean over seeds)", xlabel=p.TIME_LABEL)
        ax.set_ylabel(f"{title.split()[0]} over both layers")
        ax.legend(loc="best")
    for ax in axes:
        p.time_axis(ax)
        ax.grid(True, alpha=0.3)
    return figure
