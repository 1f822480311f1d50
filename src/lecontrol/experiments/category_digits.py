r"""Category engagement on the ten digits (the paper's Sec. 5, Fig. 4h-k).

**Builds:** a linear network learning the 10 digits (one-hot), class $c$'s
error weighted by $\varphi_c(t)^2$, $\varphi \in [0, 2]$, at the fixed-total
cost $\beta(\lVert\varphi\rVert^2 - 10)^2$, vs $\varphi = 1$, replayed on SGD.
**Figures:** engagement and loss per class (and zoomed on the start), total
loss, net-reward difference (these four lettered in `overview.png`), SGD
replay (mean ± sd over seeds), optimisation, and the class-proportion
curriculum (Fig. 4l,m; `shared.proportions`): a plain network trained by SGD on
batches whose class proportions follow $\varphi(t)$, against uniform batches.
**Findings:** checked: `easier_first`, easier digits are engaged first, in
the order of linear separability 0, 6, 1, 4, 7, 9, 2, 3, 8, 5 (the paper's App.
K.5; `digit-separability` measures it), and `papers_order`, in the order the
paper's engagement found, 0, 1, 7, 6, 4, 2, 3, 9, 8, 5 (both `shared.engagement`'s
`engaged_in_order`), and `curriculum_beats_uniform` (the class-proportion
curriculum's cumulative loss more than 1% below uniform batches); measured:
the order of release and of the baseline's
difficulty (`order_by_engagement_release`, `order_by_difficulty`,
`rank_correlation_centre_vs_difficulty`).
"""

from ..runner import config, require
from .shared import digits, engagement as eng, proportions

DEFAULT = config(
    task=dict(classes=tuple(range(10))) | digits.TASK,
    system=dict(hidden=50, lam=0.0, tau=1.0, init_scale=0.01),
    control=dict(knots=301, lower=0.0, upper=2.0, init=1.0),
    cost=dict(beta=5.0),
    objective=dict(alpha=5e-2, steps=30000, gamma=0.99, eta=1.0),
    # To a projected gradient of 3e-3 (docs/experiments.md, "What converges
    # slowly"), with the continuous adjoint's cheaper gradients.
    optimiser=dict(
        method="lbfgsb",
        metric="discounted",
        gtol=3e-3,
        iterations=2000,
        lr=0.05,
        gradient="continuous",
    ),
    solver=dict(rtol=1e-7, atol=1e-9, max_steps=4096),
    outputs=dict(samples=601, sgd_seeds=4, batch_size=32),
)


def rank_in(order):
    """Each class's rank in `order` (`nan` for a digit not in it)."""
    return lambda cfg: [
        order.index(c) if c in order else float("nan") for c in cfg.task.classes
    ]


def tasks(cfg):
    c = cfg.task.classes
    require(len(c) >= 3, "task.classes", "needs three digits (two make one output)", c)
    return eng.digits(cfg, c)


EXPERIMENT = digits.on_digits(
    eng.experiment(
        "category-digits",
        "Category engagement on 10 digits: optimal φ(t) per class vs φ = 1.",
        DEFAULT,
        eng.QUICK | {"objective.steps": 1000, "control.knots": 11},
        what="class",
        tasks=tasks,
        labels=lambda cfg: [str(c) for c in cfg.task.classes],
        groups=lambda cfg: {f"digit {c}": [i] for i, c in enumerate(cfg.task.classes)},
        replay=proportions.replay,
        more_figures={"class_proportions.png": proportions.figure},
        ranks={
            "separability_rank": rank_in(eng.SEPARABILITY_ORDER),
            "paper_rank": rank_in(eng.PAPER_DIGIT_ORDER),
        },
        checks=(
            eng.engaged_in_order(
                "easier_first",
                "Easier digits are engaged first: in the order of linear "
                "separability, 0, 6, 1, 4, 7, 9, 2, 3, 8, 5 (Sec. 5; App. K.5, "
                "Fig. 17b).",
                rank="separability_rank",
                order="the order of separability",
            ),
            proportions.CURRICULUM,
            eng.engaged_in_order(
                "papers_order",
                "The digits are engaged in the order the paper found: "
                "0, 1, 7, 6, 4, 2, 3, 9, 8, 5 (Sec. 5, Fig. 4i).",
            ),
        ),
    )
)
