r"""Category engagement on the semantic hierarchy (the paper's Sec. 5, App. H.3).

**Builds:** a linear network learning the 4-level hierarchy (15 features) from
small weights (std 1e-4, App. J: levels learnt one after another), feature
$c$'s error weighted by $\varphi_c(t)^2$, $\varphi \in [0, 2]$, at the cost
$\beta(\lVert\varphi\rVert^2 - 15)^2$, vs $\varphi = 1$, replayed on SGD.
**Figures:** engagement and loss per level, mean engagement per level
(`engagement_levels.png`), total loss, net reward (four of them lettered in
`overview.png`), SGD replay (mean ± sd over seeds), optimisation.
**Findings:** checked: higher levels (0 = root) get more engagement
(`higher_levels_more_engagement`) and are engaged earlier
(`higher_levels_earlier`); measured: `level_findings`,
`level_engagement_mean`, `level_engagement_centre_time`.
"""

import numpy as np

import lecontrol as lc

from ..findings import Finding
from ..runner import config
from .shared import engagement as eng, figures as fig

DEFAULT = config(
    task=dict(levels=4),
    system=dict(hidden=30, lam=0.0, tau=1.0, init_scale=1e-4),
    control=dict(knots=181, lower=0.0, upper=2.0, init=1.0),
    cost=dict(beta=5.0),
    objective=dict(alpha=5e-3, steps=18000, gamma=0.99, eta=1.0),
    # L-BFGS-B in the Euclidean metric to a projected gradient of 1e-2: see
    # docs/experiments.md, "What converges slowly".
    optimiser=dict(
        method="lbfgsb",
        metric="euclidean",
        gtol=1e-2,
        iterations=5000,
        lr=1 / 3,
        gradient="checkpoint",
    ),
    solver=dict(rtol=1e-7, atol=1e-9, max_steps=4096),
    outputs=dict(samples=601, sgd_seeds=4, batch_size=32),
)


def groups(cfg) -> dict[str, np.ndarray]:
    """The features of each level $k$ (0 = root): $2^k$ of them, in order."""
    h = cfg.task.levels
    return {f"level {k}": np.arange(2**k - 1, 2 ** (k + 1) - 1) for k in range(h)}


def labels(cfg) -> list[str]:
    return [f"L{k}.{i}" for k in range(cfg.task.levels) for i in range(2**k)]


def level_means(results, cfg) -> dict[str, np.ndarray]:
    g = results["control_g"]
    return {name: g[:, idx].mean(axis=1) for name, idx in groups(cfg).items()}


def level_findings(cfg, results) -> dict:
    """Each level's mean coefficient, timed by `eng.timing`."""
    results["levels"] = lc.tasks.SemanticHierarchy(cfg.task.levels).level_of_output()
    means = level_means(results, cfg)
    t = eng.timing(results["ts"], np.stack(list(means.values()), axis=1))
    per = {k: dict(zip(means, map(float, t[k]))) for k in ("mean", "peak", "centre")}
    return {
        "level_engagement_mean": per["mean"],
        "level_engagement_peak_time": per["peak"],
        "level_engagement_centre_time": per["centre"],
        "order_of_levels_by_engagement_centre": eng.order(list(means), t["centre"]),
        "level_findings": {
            "higher_levels_more_engagement": bool(np.all(np.diff(t["mean"]) < 0)),
            "higher_levels_engaged_earlier": bool(np.all(np.diff(t["centre"]) > 0)),
        },
    }


def more_engagement(r) -> tuple[float, str]:
    r"""$-\rho$: Spearman's $\rho$ between each feature's level and its
    time-mean engagement $\bar\varphi_c$."""
    mean = np.trapezoid(r["control_g"], r["ts"], axis=0) / (r["ts"][-1] - r["ts"][0])
    rho = eng.rank_correlation(r["paper_rank"], mean)
    by_level = [mean[r["paper_rank"] == k].mean() for k in np.unique(r["paper_rank"])]
    return -rho, "time-mean φ per level, root first: " + ", ".join(
        f"{m:.4g}" for m in by_level
    )


def features_reversed(r):
    return r | {"control_g": r["control_g"][:, ::-1]}


MORE_ENGAGEMENT = Finding(
    "higher_levels_more_engagement",
    "In Semantic, higher levels of the hierarchy get more engagement (Fig. 4k).",
    more_engagement,
    margin=0.5,
    criterion="Spearman ρ between a feature's level (0 = root) and its time-mean "
    "engagement below −0.5",
    negative_controls=("baseline", ("features reversed", features_reversed)),
)


def level_figure(results, cfg):
    return fig.plotting.plot_lines(
        results["ts"],
        level_means(results, cfg),
        title="Mean engagement φ(t) per level of the hierarchy (0 = root)",
        ylabel="mean engagement of the level's features",
        hlines=[(1.0, "baseline (φ = 1)", fig.plotting.BASELINE_STYLE)],
    )


EXPERIMENT = eng.experiment(
    "category-semantic",
    "Category engagement on the 4-level semantic hierarchy: φ(t) per feature.",
    DEFAULT,
    eng.QUICK | {"control.knots": 16},
    what="feature",
    tasks=lambda cfg: (lc.tasks.SemanticHierarchy(cfg.task.levels),) * 2,
    labels=labels,
    groups=groups,
    extra=level_findings,
    more_figures={"engagement_levels.png": level_figure},
    more_findings=(
        "level_findings",
        "level_engagement_centre_time",
        "level_engagement_mean",
    ),
    ranks={
        "paper_rank": lambda cfg: lc.tasks.SemanticHierarchy(
            cfg.task.levels
        ).level_of_output()
    },
    checks=(
        MORE_ENGAGEMENT,
        eng.engaged_in_order(
            "higher_levels_earlier",
            "In Semantic, higher levels of the hierarchy are engaged earlier (Fig. 4k).",
        ),
    ),
)
