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
