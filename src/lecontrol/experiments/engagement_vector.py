r"""Task engagement with a fixed total on three digit pairs (the paper's Sec. 5).

**Builds:** `engagement-attentive`'s tasks and network, $\psi_\tau(t) \in
[0, 2]$ at the cost $\beta(\lVert\psi\rVert^2 - N_\tau)^2$ ($N_\tau$: the paper
leaves it open; it makes $\psi = 1$ free). **Figures:** `engagement-attentive`'s.
**Findings:** easier tasks are engaged first, one peak after another (peak and
release orders vs `order_by_difficulty`); none is disengaged (`engagement_min`).
"""

import lecontrol as lc

from .shared import engagement as eng

DEFAULT = eng.TASK_DEFAULT.replace({"optimiser.gtol": 1e-3}, source="engagement-vector")

EXPERIMENT = eng.task_experiment(
    "engagement-vector",
    "Task engagement on digit pairs 0v1, 7v1, 8v9, fixed total cost β(‖ψ‖² − N_τ)².",
    DEFAULT,
    cost=lambda cfg, n: lc.costs.FixedNorm(beta=cfg.cost.beta, norm2=float(n)),
)
