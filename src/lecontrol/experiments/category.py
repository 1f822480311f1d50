r"""Category engagement on 10 digits and on the semantic hierarchy (the paper's Sec. 5, App. H.3).

A two-layer linear network learns one task with one engagement coefficient
$\varphi_c(t)$ per output class: the squared error of output $c$ is weighted
by $\varphi_c^2$ in the gradient flow, while performance is the unweighted
loss. $\varphi = 1$ is plain gradient flow (the baseline). The cost keeps the
total engagement fixed, $C(\varphi) = \beta(\lVert\varphi\rVert^2 - C)^2$
with $C$ the number of classes (`lc.costs.FixedNorm`), and
$\varphi\in[0, 2]$: engaging one class more means engaging others less.

- `category-digits`: the 10-class digit task (one-hot targets; paper table
  row "category engagement MNIST"). The paper finds easier digits engaged
  first.
- `category-semantic`: the semantic hierarchy with $h = 4$ levels (15 output
  features; row "category engagement Semantic"), small initial weights (std
  1e-4, the paper's App. J) so the levels are learnt one after another. The
  paper finds that higher levels of the hierarchy (level 0 is the root) get
  more engagement, earlier.

The summary holds, per class, the timing measures of
`engagement.engagement_findings`, and for the hierarchy the mean engagement
and its timing per level (`level_findings`).

**Control learning rate.** With the fixed-total cost, projected gradient
ascent on $\varphi$ multiplies $\lVert\varphi\rVert^2 - C$ by
$1 - 8\,\text{lr}\,\alpha\,\beta\,C\,\gamma^t$ per iteration (linearising
$\beta(\lVert\varphi\rVert^2 - C)^2$ around $\lVert\varphi\rVert^2 = C$;
lr in the paper's units). At the paper's lr = 1 the factor is $1 - 20$ for
the digits and $1 - 3$ for the hierarchy, so the iteration diverges along
that direction (measured on the hierarchy with 31 knots: $V$ rose once, then
fell from −45.6 to −708 within 12 iterations). The defaults use the largest
rate that removes this deviation in one step, lr $= 1/(8\alpha\beta C)$:
0.05 for the digits and 1/3 for the hierarchy. `--set lr=1` runs the
paper's value.

The registry imports one `EXPERIMENT` per module: `category_digits` and
`category_semantic` re-export `DIGITS` and `SEMANTIC` defined here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np

import lecontrol as lc

from .. import plotting
from ..checkpoint import CheckpointFolder
from .base import (
    Experiment,
    ExperimentConfig,
    RunOutput,
    Setup,
    require,
    require_float,
    require_int,
)
from .engagement import (
    check_schedule_fields,
    common_figures,
    engagement_findings,
    engagement_timing,
    order,
    run_comparison,
    save_figures,
    statistics_only,
)

# ------------------------------------------------------------ configuration


@dataclasses.dataclass(frozen=True)
class _CategoryConfig(ExperimentConfig):
    r"""Parameters shared by the two category-engagement experiments.

    - `alpha`: SGD learning rate $\alpha$; with `steps` it sets the horizon
      $T = N\alpha$.
    - `steps`: number of SGD steps $N$ the learning period spans.
    - `hidden`: hidden units $H$; `lam`: L2 regularisation $\lambda$; `tau`:
      time constant; `init_scale`: standard deviation of the initial weights
      (drawn with `seed`).
    - `lower`, `upper`: bounds of $\varphi$.
    - `gamma`: discount per unit time; `beta`: cost scale; `eta`: weight of
      performance.
    - `lr`: the control learning rate in the paper's units (one control value
      per SGD step), converted to the hat-basis step `lr * alpha / dt_knots`;
      see the module docstring for why the default is not the paper's 1.
    - `iterations`: optimisation iterations (0 keeps $\varphi$ = `control_init`).
    - `knots`: knots of the piecewise-linear $\varphi$ on $[0, T]$.
    - `control_init`: the constant $\varphi$ the optimisation starts from.
    - `samples`: time points saved, evenly spaced on $[0, T]$; `samples - 1`
      must divide `steps` (they are also the SGD replay's records).
    - `sgd_seeds`: number of SGD replays per schedule (0: no replay);
      `batch_size`: samples per SGD step. The replay weights each class's
      squared error by $\varphi_c^2$ (`CategoryEngagement.batch_loss`).
    - `gradient`: `"checkpoint"` or `"continuous"`, as in
      `engagement._EngagementConfig`.
    - `rtol`, `atol`, `max_steps`: ODE solver tolerances and step budget.
    - `seed`: seed of the initial weights, of the train/test split (digits)
      and of the SGD replays (seeds `seed, seed + 1, ...`).
    """

    variant: ClassVar[str]

    alpha: float = 5e-3
    steps: int = 18000
    hidden: int = 30
    lam: float = 0.0
    tau: float = 1.0
    init_scale: float = 1e-4
    lower: float = 0.0
    upper: float = 2.0
    gamma: float = 0.99
    beta: float = 5.0
    eta: float = 1.0
    lr: float = 1.0 / 3.0
    iterations: int = 600
    knots: int = 181
    control_init: float = 1.0
    samples: int = 601
    sgd_seeds: int = 4
    batch_size: int = 32
    gradient: str = "checkpoint"
    rtol: float = 1e-7
    atol: float = 1e-9
    max_steps: int = 4096

    def check(self) -> None:
        require_float(self, "alpha", positive=True)
        require_int(self, "steps", minimum=1)
        require_int(self, "hidden", minimum=1)
        require_float(self, "init_scale", nonnegative=True)
        require_float(self, "lr", positive=True)
        require_int(self, "iterations", minimum=0)
        require_int(self, "knots", minimum=2)
        check_schedule_fields(self)

    @property
    def T(self) -> float:
        """The horizon $T = N\\alpha$."""
        return self.steps * self.alpha


@dataclasses.dataclass(frozen=True)
class DigitsCategoryConfig(_CategoryConfig):
    r"""`category-digits` (paper row "category engagement MNIST").

    Fields of `_CategoryConfig`, plus:

    - `classes`: the digit classes, one output each (one-hot targets).
    - `mnist_folder`: folder with MNIST idx files; `None` uses scikit-learn's
      bundled 8×8 digits. `size`: side of the resized images.
    """

    variant: ClassVar[str] = "digits"

    alpha: float = 5e-2
    steps: int = 30000
    hidden: int = 50
    init_scale: float = 0.01
    lr: float = 0.05
    knots: int = 301
    classes: tuple[int, ...] = tuple(range(10))
    mnist_folder: str | None = None
    size: int = 5

    def check(self) -> None:
        _CategoryConfig.check(self)
        require_int(self, "size", minimum=1)
        require(
            len(self.classes) >= 3,
            "classes",
            "must list at least three digits (two make a single ±1 output)",
            self.classes,
        )


@dataclasses.dataclass(frozen=True)
class SemanticCategoryConfig(_CategoryConfig):
    r"""`category-semantic` (paper row "category engagement Semantic").

    Fields of `_CategoryConfig`, plus:

    - `levels`: levels $h$ of the hierarchy ($2^h - 1$ output features).
    """

    variant: ClassVar[str] = "semantic"

    levels: int = 4

    def check(self) -> None:
        _CategoryConfig.check(self)
        require_int(self, "levels", minimum=2)


QUICK_DIGITS = {
    "steps": 1000,
    "iterations": 8,
    "knots": 11,
    "samples": 101,
    "sgd_seeds": 2,
}
QUICK_SEMANTIC = {
    "iterations": 8,
    "knots": 16,
    "samples": 101,
    "sgd_seeds": 2,
}


# ----------------------------------------------------------------- the problem


def _task(config) -> lc.tasks.AbstractTask:
    if config.variant == "digits":
        return lc.tasks.Digits.load(
            classes=config.classes,
            mnist_folder=config.mnist_folder,
            size=config.size,
            seed=config.seed,
        )
    return lc.tasks.SemanticHierarchy(config.levels)


def _problem(config) -> tuple[Setup, lc.tasks.AbstractTask]:
    """The `Setup`, and the task with samples (for SGD)."""
    data = _task(config)
    task = statistics_only(data) if isinstance(data, lc.tasks.Digits) else data
    system = lc.systems.CategoryEngagement(
        task,
        hidden=config.hidden,
        lam=config.lam,
        tau=config.tau,
        seed=config.seed,
        scale=config.init_scale,
    )
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0.0, config.T, config.knots),
        shape=system.control_shape,
        lower=config.lower,
        upper=config.upper,
    )
    cost = lc.costs.FixedNorm(beta=config.beta, norm2=float(task.n_outputs))
    objective = lc.Objective(T=config.T, gamma=config.gamma, eta=config.eta)
    setup = Setup(
        lc.Problem(system, control, cost, objective), control.init(config.control_init)
    )
    return setup, data


def build(config) -> Setup:
    """Task → system → control → cost → objective, and the starting coefficients."""
    return _problem(config)[0]


def class_labels(config) -> list[str]:
    """Digit names, or `"L<level>.<index>"` for the hierarchy's features."""
    if config.variant == "digits":
        return [str(c) for c in config.classes]
    levels = lc.tasks.SemanticHierarchy(config.levels).level_of_output()
    return [f"L{lev}.{int(np.sum(levels[:i] == lev))}" for i, lev in enumerate(levels)]


# ------------------------------------------------------------------ findings


def level_findings(levels: np.ndarray, results) -> dict[str, Any]:
    r"""Engagement per level of the hierarchy (level 0 is the root).

    For each level, the level's mean coefficient $\bar\varphi_\ell(t)$ (over
    its features) is summarised by `engagement_timing`: its time average
    (`level_engagement_mean`), the time of its peak and its engagement-weighted
    mean time (`level_engagement_centre_time`). The paper's finding holds when
    the time averages decrease and the centre times increase with the level.
    """
    ts = results["ts"]
    levels = np.asarray(levels)
    n = int(levels.max()) + 1
    g = np.asarray(results["control_g"])
    per_level = np.stack([g[:, levels == lev].mean(axis=1) for lev in range(n)], axis=1)
    timing = engagement_timing(ts, per_level)
    names = [f"level {lev}" for lev in range(n)]
    mean, centre = timing["mean"], timing["centre"]
    return {
        "level_engagement_mean": dict(zip(names, map(float, mean))),
        "level_engagement_peak_time": dict(zip(names, map(float, timing["peak"]))),
        "level_engagement_centre_time": dict(zip(names, map(float, centre))),
        "order_of_levels_by_engagement_centre": order(names, centre),
        "level_findings": {
            "higher_levels_more_engagement": bool(np.all(np.diff(mean) < 0)),
            "higher_levels_engaged_earlier": bool(np.all(np.diff(centre) > 0)),
        },
    }


def run(
    config,
    out_dir: Path,
    progress: bool,
    checkpoints: CheckpointFolder | None = None,
) -> RunOutput:
    """Solve the baseline, optimise $\\varphi$, solve the controlled run, replay on SGD."""
    setup, data = _problem(config)
    results, summary = run_comparison(
        config, setup, data, setup.system.class_losses, progress, checkpoints
    )
    labels = class_labels(config)
    found = engagement_findings(labels, results) | {"classes": labels}
    if config.variant == "semantic":
        levels = setup.system.task.level_of_output()
        results["levels"] = np.asarray(levels)
        found |= level_findings(levels, results)
    return RunOutput(results, summary | found)


# ------------------------------------------------------------------- figures


def plot(results, config, out_dir: Path) -> list[Path]:
    """Figures of the paper's category-engagement panels (Fig. 4h-k), from the saved arrays."""
    labels = class_labels(config)
    bounds = (config.lower, config.upper)
    if config.variant == "digits":
        groups = {f"digit {lab}": [i] for i, lab in enumerate(labels)}
        figures = common_figures(
            results, groups=groups, what="class", symbol="φ", bounds=bounds
        )
        return save_figures(figures, out_dir)
    levels = np.asarray(results["levels"])
    names = [f"level {lev}" for lev in range(int(levels.max()) + 1)]
    groups = {name: np.flatnonzero(levels == lev) for lev, name in enumerate(names)}
    figures = common_figures(
        results, groups=groups, what="feature", symbol="φ", bounds=bounds
    )
    g = np.asarray(results["control_g"])
    figures["engagement_levels.png"] = lambda: plotting.plot_lines(
        results["ts"],
        {name: g[:, idx].mean(axis=1) for name, idx in groups.items()},
        title="Mean engagement φ(t) per level of the hierarchy (0 = root)",
        ylabel="mean engagement of the level's features",
        styles={
            name: {"color": f"C{i}", "linewidth": 1.8} for i, name in enumerate(names)
        },
        hlines=[(1.0, "baseline")],
    )
    return save_figures(figures, out_dir)


# --------------------------------------------------------------- experiments

DIGITS = Experiment(
    name="category-digits",
    description="Category engagement on 10 digits: optimal φ(t) per class vs φ = 1.",
    config=DigitsCategoryConfig,
    quick=QUICK_DIGITS,
    build=build,
    run=run,
    plot=plot,
)
SEMANTIC = Experiment(
    name="category-semantic",
    description="Category engagement on the 4-level semantic hierarchy: φ(t) per feature.",
    config=SemanticCategoryConfig,
    quick=QUICK_SEMANTIC,
    build=build,
    run=run,
    plot=plot,
)

__all__ = [
    "DIGITS",
    "SEMANTIC",
    "DigitsCategoryConfig",
    "SemanticCategoryConfig",
    "build",
    "class_labels",
    "level_findings",
    "plot",
    "run",
]
