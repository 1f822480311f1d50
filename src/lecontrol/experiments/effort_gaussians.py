r"""Gain modulation on correlated Gaussians (the paper's Sec. 6; Table 5, column "Gaussians").

**Builds:** a two-layer linear network ($H = 6$) learning
`lc.tasks.CorrelatedGaussians` by gradient flow (`lc.systems.TwoLayerGain`),
with gains on every weight (`shared.gains`), compared with $G = 0$ over
$T = 16000 \times 0.005 = 80$.

**Figures:** the family's (`shared.gains`).

**Findings:** the family's: control concentrated early and near the steepest
loss drops, a loss that falls faster than the baseline's, and weights that
end sparser; the SGD replay checks the ODE against real minibatch SGD.
"""

from __future__ import annotations

from pathlib import Path

import lecontrol as lc

from .base import RunOutput, Setup
from .shared import gains

DEFAULT = gains.defaults(gains.GAUSSIANS)


def system(cfg) -> lc.systems.TwoLayerGain:
    return gains.network(lc.systems.TwoLayerGain, cfg, gains.gaussians(cfg.task))


def build(cfg) -> Setup:
    """Task → system → per-weight gains → cost → objective, and the start θ."""
    return gains.setup(cfg, system(cfg))


def run(cfg, out_dir: Path, progress: bool, checkpoints=None) -> RunOutput:
    """Baseline vs optimal gains, findings, and the SGD replay."""
    return gains.run(cfg, system(cfg), progress, checkpoints)


EXPERIMENT = gains.experiment(
    name="effort-gaussians",
    description="Gain modulation of a two-layer network on correlated Gaussians (H = 6).",
    default=DEFAULT,
    quick={
        "objective.steps": 4000,
        "control.knots": 41,
        "optimiser.iterations": 40,
        "outputs.record_every": 20,
        "outputs.replay_seeds": 2,
    },
    build=build,
    run=run,
    plot=gains.plot,
)
