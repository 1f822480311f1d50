r"""Attentive task engagement on three digit pairs (the paper's Sec. 5, Fig. 4a-f).

**Builds:** a linear network learning 0v1, 7v1 and 8v9 at once, task losses
weighted by $\psi_\tau(t) \in [0, 2]$ at the cost $\beta\lVert\psi - 1\rVert^2$,
vs $\psi = 1$, replayed on SGD (`shared.engagement`).
**Figures:** engagement and loss per task (and zoomed on the start), total
loss, net-reward difference (these four lettered in `overview.png`), SGD
replay (mean ± sd over seeds), optimisation.
**Findings:** easier tasks are let go first (`order_by_engagement_release` =
`order_by_difficulty`); no task is fully disengaged (`engagement_min`).
"""

import lecontrol as lc

from .shared import engagement as eng

DEFAULT = eng.TASK_DEFAULT

EXPERIMENT = eng.task_experiment(
    "engagement-attentive",
    "Task engagement on digit pairs 0v1, 7v1, 8v9, cost β‖ψ − 1‖²: optimal ψ(t) vs ψ = 1.",
    DEFAULT,
    cost=lambda cfg, n: lc.costs.Quadratic(beta=cfg.cost.beta, offset=1.0),
)
