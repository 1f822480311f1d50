r"""Active task engagement on three digit pairs (the paper's Sec. 5, Fig. 4a-f).

**Builds:** `engagement-attentive`'s tasks and network, $\psi_\tau(t) \in
[0, 1]$ at the cost $\beta\lVert\psi\rVert^2$ (the baseline $\psi = 1$ pays too).
**Figures:** those of `engagement-attentive`.
**Findings:** easier tasks are let go first (`order_by_engagement_release`; not
by `..._centre`: $\psi < 1$ all along); no task is fully disengaged (`engagement_min`).
"""

import lecontrol as lc

from .shared import engagement as eng

DEFAULT = eng.TASK_DEFAULT.replace({"control.upper": 1.0}, source="engagement-active")

EXPERIMENT = eng.task_experiment(
    "engagement-active",
    "Task engagement on digit pairs 0v1, 7v1, 8v9, cost β‖ψ‖², ψ ∈ [0, 1].",
    DEFAULT,
    cost=lambda cfg, n: lc.costs.Quadratic(beta=cfg.cost.beta),
)
