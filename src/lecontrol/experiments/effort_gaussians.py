r"""Gain modulation on correlated Gaussians (Sec. 6; Table 5, column "Gaussians").

**Builds:** a two-layer linear network ($H = 6$, `lc.systems.TwoLayerGain`)
learning `lc.tasks.CorrelatedGaussians(**task)` by gradient flow, with gains on
every weight, vs $G = 0$ over $T = 16000 \times 0.005 = 80$.
**Figures:** the gain family's (`shared.gains.FIGURES`): loss, gain size per
layer and every gain over time, weight norms, net-reward difference, SGD
replay, optimisation (Fig. 5).
**Findings:** the gain family's (`shared.gains.FINDINGS`): control concentrated
early and near the steepest loss drop, faster learning, sparser weights.
"""

import lecontrol as lc

from .shared import gains


def system(cfg):
    task = lc.tasks.CorrelatedGaussians(**cfg.task)
    return gains.network(lc.systems.TwoLayerGain, cfg, task)


EXPERIMENT = gains.experiment(
    name="effort-gaussians",
    description="Gain modulation of a two-layer network on correlated Gaussians (H = 6).",
    default=gains.defaults(gains.GAUSSIANS),
    quick={"objective.steps": 4000, "control.knots": 41, "optimiser.iterations": 40},
    system=system,
)
