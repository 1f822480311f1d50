r"""Gain modulation on the semantic hierarchy (the paper's Sec. 6; Table 5, column "Semantic").

A two-layer linear network ($H = 30$) learns the $h = 4$ level hierarchy of
`lc.tasks.SemanticHierarchy` from small initial weights (standard deviation
$10^{-4}$), which gives step-like learning: a plateau, then a drop, per level.
A control scales every weight, $\tilde W_i = (1 + G_i)\circ W_i$,
$G \in [-0.5, 0.5]$, at the cost $\exp(\beta\sum_i\lVert G_i\rVert_F^2) - 1$.
Besides the findings of every gain experiment (`gain_modulation`), the paper
finds that on this task the control skips the plateaus: the summary reports,
per level of the hierarchy, when its loss has fallen to half its initial
value with and without control (`level_learning_times`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

import lecontrol as lc

from .. import plotting
from ..checkpoint import CheckpointFolder
from .base import Experiment, RunOutput, Setup, require_int
from .gain_modulation import (
    BASE,
    CTRL,
    GainConfig,
    check_gain,
    gain_figures,
    gain_setup,
    run_gain,
    save_figures,
    time_to_threshold,
)

NAME = "effort-semantic"
DESCRIPTION = (
    "Gain modulation of a two-layer network on a 4-level semantic hierarchy (H = 30)."
)


@dataclasses.dataclass(frozen=True)
class EffortSemanticConfig(GainConfig):
    r"""Parameters of `effort-semantic` (defaults: the paper's Table 5, "Semantic").

    All `GainConfig` fields (here $H = 30$ and initial weights of standard
    deviation $10^{-4}$, the "rich" regime of the paper's App. J), and

    - `levels`: levels $h$ of the hierarchy ($2^{h-1}$ items, $2^h - 1$ outputs).
    """

    hidden: int = 30
    init_scale: float = 1e-4
    levels: int = 4

    def check(self) -> None:
        check_gain(self)
        require_int(self, "levels", minimum=1)


QUICK = {
    "hidden": 8,
    "init_scale": 0.01,
    "steps": 6000,
    "knots": 31,
    "iterations": 30,
    "record_every": 20,
    "replay_seeds": 2,
}


def system(config: EffortSemanticConfig) -> lc.systems.TwoLayerGain:
    return lc.systems.TwoLayerGain(
        lc.tasks.SemanticHierarchy(config.levels),
        hidden=config.hidden,
        lam=config.lam,
        tau=config.tau,
        seed=config.seed,
        scale=config.init_scale,
    )


def build(config: EffortSemanticConfig) -> Setup:
    """Task → system → per-weight gains → cost → objective, and the start θ."""
    return gain_setup(config, system(config))


def level_losses(task: lc.tasks.SemanticHierarchy, W1, W2, G1, G2) -> np.ndarray:
    r"""The fit loss split by level of the hierarchy, shape `(times, levels)`.

    With effective weights $\tilde W = \tilde W_2\tilde W_1$, output feature $r$
    contributes $\tfrac12[\Sigma_y - 2\tilde W\Sigma_{xy} + \tilde W\Sigma_x
    \tilde W^\top]_{rr}$ to the loss; summing over the features of each level
    gives that level's loss (the levels add up to the loss without the
    regulariser).
    """
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
    return [
        time_to_threshold(ts, losses[:, k], 0.5 * losses[0, k])
        for k in range(losses.shape[1])
    ]


def run(
    config: EffortSemanticConfig,
    out_dir: Path,
    progress: bool,
    checkpoints: CheckpointFolder | None = None,
) -> RunOutput:
    """Baseline vs optimal gains, per-level learning times, and the SGD replay."""
    r = run_gain(config, system(config), progress, checkpoints=checkpoints)
    task = r.setup.system.task
    results, summary = r.results, r.summary
    for prefix in ("baseline", "control"):
        losses = level_losses(
            task,
            *(results[f"{prefix}_w{i}"] for i in (0, 1)),
            *(results[f"{prefix}_g{i}"] for i in (0, 1)),
        )
        results[f"{prefix}_level_loss"] = losses
        summary[f"level_times_{prefix}"] = level_learning_times(results["ts"], losses)
    base, ctrl = summary["level_times_baseline"], summary["level_times_control"]
    summary["levels_learned_earlier"] = [
        None if b is None or c is None else bool(c < b) for b, c in zip(base, ctrl)
    ]
    return RunOutput(results, summary)


def plot(results, config: EffortSemanticConfig, out_dir: Path) -> list[Path]:
    """The gain-modulation panels and the loss of each level of the hierarchy."""
    import matplotlib.pyplot as plt

    def levels_figure():
        ts = plotting.check_plottable("ts", results["ts"])
        fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
        for prefix, label in (("baseline", BASE), ("control", CTRL)):
            losses = plotting.check_plottable(
                f"{prefix}_level_loss", results[f"{prefix}_level_loss"]
            )
            for k in range(losses.shape[1]):
                ax.plot(
                    ts,
                    losses[:, k],
                    color=f"C{k}",
                    linestyle="--" if prefix == "baseline" else "-",
                    linewidth=1.4,
                    label=f"level {k}, {label}",
                )
        ax.set_title("Loss of each level of the hierarchy")
        ax.set_xlabel(plotting.TIME_LABEL)
        ax.set_ylabel("level's share of ⟨L⟩ (without regulariser)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small", ncols=2)
        return fig

    figures = gain_figures(results, config) | {"level_loss.png": levels_figure}
    return save_figures(figures, out_dir)


EXPERIMENT = Experiment(
    name=NAME,
    description=DESCRIPTION,
    config=EffortSemanticConfig,
    quick=QUICK,
    build=build,
    run=run,
    plot=plot,
)

__all__ = [
    "EXPERIMENT",
    "EffortSemanticConfig",
    "build",
    "level_learning_times",
    "level_losses",
    "plot",
    "run",
]
