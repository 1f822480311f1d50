r"""Gain modulation on the semantic hierarchy (the paper's Sec. 6; Table 5, column "Semantic").

**Builds:** a two-layer linear network ($H = 30$) learning the $h = 4$ level
hierarchy of `lc.tasks.SemanticHierarchy` from small initial weights
(standard deviation $10^{-4}$, the "rich" regime of App. J), which gives
step-like learning: a plateau, then a drop, per level. Gains on every weight
(`shared.gains`), compared with $G = 0$.

**Figures:** the family's, and the loss of each level (`level_loss.png`).

**Findings:** the family's, and that the control skips the plateaus: per
level, when its loss has fallen to half its initial value with and without
control (`level_times_*`, `levels_learned_earlier`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import lecontrol as lc

from .base import RunOutput, Setup
from .shared import findings, gains
from .shared.figures import plotting

DEFAULT = gains.defaults(dict(levels=4), system=dict(hidden=30, init_scale=1e-4))


def system(cfg) -> lc.systems.TwoLayerGain:
    task = lc.tasks.SemanticHierarchy(cfg.task.levels)
    return gains.network(lc.systems.TwoLayerGain, cfg, task)


def build(cfg) -> Setup:
    """Task → system → per-weight gains → cost → objective, and the start θ."""
    return gains.setup(cfg, system(cfg))


def level_losses(task: lc.tasks.SemanticHierarchy, w, g) -> np.ndarray:
    r"""The fit loss split by level of the hierarchy, shape `(times, levels)`.

    With effective weights $\tilde W = \tilde W_2\tilde W_1$, output feature $r$
    contributes $\tfrac12[\Sigma_y - 2\tilde W\Sigma_{xy} + \tilde W\Sigma_x
    \tilde W^\top]_{rr}$ to the loss; summing over the features of each level
    gives that level's loss (the levels add up to the loss without the
    regulariser).
    """
    (W1, W2), (G1, G2) = w, g
    We = np.einsum("toh,thi->toi", (1.0 + G2) * W2, (1.0 + G1) * W1)
    Sx, Sxy, Sy = (np.asarray(a) for a in (task.Sx, task.Sxy, task.Sy))
    fit = 0.5 * (
        np.diag(Sy)[None]
        - 2 * np.einsum("toi,io->to", We, Sxy)
        + np.einsum("toi,ij,toj->to", We, Sx, We)
    )
    level = task.level_of_output()
    return np.stack([fit[:, level == k].sum(1) for k in range(task.levels)], axis=1)


def level_learning_times(ts, losses: np.ndarray) -> list[float | None]:
    """Per level: the first time its loss is at most half its initial value."""
    return [findings.crossing_time(ts, x, 0.5 * x[0]) for x in np.asarray(losses).T]


def run(cfg, out_dir: Path, progress: bool, checkpoints=None) -> RunOutput:
    """Baseline vs optimal gains, per-level learning times, and the SGD replay."""
    s = system(cfg)
    results, summary = gains.run(cfg, s, progress, checkpoints)
    for run in gains.RUNS:
        w, g = (gains.layers(results, run, field) for field in ("w", "g"))
        losses = results[f"{run}_level_loss"] = level_losses(s.task, w, g)
        summary[f"level_times_{run}"] = level_learning_times(results["ts"], losses)
    pairs = zip(summary["level_times_baseline"], summary["level_times_control"])
    summary["levels_learned_earlier"] = [
        None if b is None or c is None else bool(c < b) for b, c in pairs
    ]
    return RunOutput(results, summary)


def plot(results, cfg, out_dir: Path) -> list[Path]:
    """The family's panels and the loss of each level of the hierarchy."""

    def levels():
        series, styles = {}, {}
        for label, run in zip(gains.PAIR, gains.RUNS):
            dashes = "--" if run == "baseline" else "-"
            for k, loss in enumerate(np.asarray(results[f"{run}_level_loss"]).T):
                series[f"level {k}, {label}"] = loss
                styles[f"level {k}, {label}"] = dict(
                    color=f"C{k}", linestyle=dashes, linewidth=1.4
                )
        figure = plotting.plot_lines(
            results["ts"],
            series,
            title="Loss of each level of the hierarchy",
            ylabel="level's share of ⟨L⟩ (without regulariser)",
            styles=styles,
        )
        figure.axes[0].legend(loc="best", fontsize="small", ncols=2)
        return figure

    return gains.plot(results, cfg, out_dir, {"level_loss.png": levels})


EXPERIMENT = gains.experiment(
    name="effort-semantic",
    description=(
        "Gain modulation of a two-layer network on a 4-level semantic hierarchy (H = 30)."
    ),
    default=DEFAULT,
    quick={
        "system.hidden": 8,
        "system.init_scale": 0.01,
        "objective.steps": 6000,
        "control.knots": 31,
        "optimiser.iterations": 30,
        "outputs.record_every": 20,
        "outputs.replay_seeds": 2,
    },
    build=build,
    run=run,
    plot=plot,
    figures=("level_loss.png",),
    findings=("level_times_baseline", "level_times_control", "levels_learned_earlier"),
)
