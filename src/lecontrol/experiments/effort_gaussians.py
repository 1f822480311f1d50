r"""Gain modulation on correlated Gaussians (the paper's Sec. 6; Table 5, column "Gaussians").

A two-layer linear network ($H = 6$) learns the correlated-Gaussians task by
gradient flow while a control scales each of its weights,
$\tilde W_i = (1 + G_i)\circ W_i$, $G \in [-0.5, 0.5]$, at the cost
$\exp(\beta\sum_i\lVert G_i\rVert_F^2) - 1$. The run compares $G = 0$ with the
gains that maximise $V$ over $T = 16000 \times 0.005 = 80$. The paper finds the
control concentrated early and near the steepest loss drops, a loss that falls
faster than the baseline's, and weights that end sparser (lower $L_1$); the
summary measures each (see `gain_modulation.gain_findings`), and the SGD
replay checks the ODE against real minibatch SGD.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lecontrol as lc

from ..checkpoint import CheckpointFolder
from .base import Experiment, RunOutput, Setup, require
from .gain_modulation import (
    GainConfig,
    check_gain,
    gain_figures,
    gain_setup,
    run_gain,
    save_figures,
)

NAME = "effort-gaussians"
DESCRIPTION = "Gain modulation of a two-layer network on correlated Gaussians (H = 6)."


@dataclasses.dataclass(frozen=True)
class EffortGaussiansConfig(GainConfig):
    r"""Parameters of `effort-gaussians` (defaults: the paper's Table 5, "Gaussians").

    All `GainConfig` fields, and the task's:

    - `mu`: class means $(\mu_1, \mu_2)$ of the two inputs.
    - `sigma`: their noise standard deviations.
    - `p`: probability that the second label is the flipped first one.
    """

    mu: tuple[float, ...] = (3.0, 1.0)
    sigma: tuple[float, ...] = (1.0, 1.0)
    p: float = 0.8

    def check(self) -> None:
        check_gain(self)
        for key in ("mu", "sigma"):
            v = getattr(self, key)
            require(len(v) == 2, key, "must hold two numbers", v)


QUICK = {
    "steps": 4000,
    "knots": 41,
    "iterations": 40,
    "record_every": 20,
    "replay_seeds": 2,
}


def task(config: EffortGaussiansConfig) -> lc.tasks.CorrelatedGaussians:
    return lc.tasks.CorrelatedGaussians(mu=config.mu, sigma=config.sigma, p=config.p)


def system(config: EffortGaussiansConfig) -> lc.systems.TwoLayerGain:
    return lc.systems.TwoLayerGain(
        task(config),
        hidden=config.hidden,
        lam=config.lam,
        tau=config.tau,
        seed=config.seed,
        scale=config.init_scale,
    )


def build(config: EffortGaussiansConfig) -> Setup:
    """Task → system → per-weight gains → cost → objective, and the start θ."""
    return gain_setup(config, system(config))


def run(
    config: EffortGaussiansConfig,
    out_dir: Path,
    progress: bool,
    checkpoints: CheckpointFolder | None = None,
) -> RunOutput:
    """Baseline vs optimal gains, findings, and the SGD replay."""
    return run_gain(config, system(config), progress, checkpoints=checkpoints).output


def plot(results, config: EffortGaussiansConfig, out_dir: Path) -> list[Path]:
    """The paper's gain-modulation panels, from the saved arrays."""
    return save_figures(gain_figures(results, config), out_dir)


EXPERIMENT = Experiment(
    name=NAME,
    description=DESCRIPTION,
    config=EffortGaussiansConfig,
    quick=QUICK,
    build=build,
    run=run,
    plot=plot,
)

__all__ = ["EXPERIMENT", "EffortGaussiansConfig", "build", "plot", "run"]
