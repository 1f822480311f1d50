r"""Learning-rate control swept over the discount γ and the cost scale β
(the paper's Table 3, "learning rate (Semantic)"; Fig. 3c,d; Fig. 8).

**Builds:** the `learning-rate` problem (the default point), with
$\gamma \in [0.6, 1]$ (`objective.gammas`) at $\beta = 1$ and
$\beta \in [10^{-3}, 2]$ (`cost.betas`) at $\gamma = 1$; every problem is
optimised by Adam in one vmapped, sharded computation
(`lc.sweep.optimize_batch`). `cost.offset = -1` makes all learning cost effort.

**Figures:** total control $\int_0^T\rho\,dt$ and value gain against $\gamma$
and $\beta$; $\rho(t)$ and the loss coloured by each value; the default
point's optimisation.

**Findings:** checked (`shared.sweeps.trend`): more control for larger
$\gamma$ and smaller $\beta$; measured: `trends`, `beta_levels_learned` (with the saved per-level
losses `beta_level_loss`): how many levels of the hierarchy are learned
(final loss at most half the initial) as control gets costlier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import lecontrol as lc

from ..runner import Experiment, RunOutput, Setup
from .shared import comparison as cmp, figures as fig, sweeps as sw

DEFAULT = sw.learning_rate_config(
    objective=dict(gammas=sw.grid(np.linspace(0.6, 1.0, 10))),
    cost=dict(betas=sw.grid(np.linspace(1e-3, 2.0, 10))),
    outputs=dict(num_times=201),
)

SWEEPS = (  # (sweep, axis label, log axis)
    ("gamma", "discount γ (per unit time)", False),
    ("beta", "cost scale β", False),
)


def points(cfg):
    """The batch: the default point, then the γ sweep, then the β sweep."""
    default = {"gamma": cfg.objective.gamma, "beta": cfg.cost.beta}
    return lc.sweep.one_at_a_time(
        default, {"gamma": cfg.objective.gammas, "beta": cfg.cost.betas}
    )


def build(cfg) -> Setup:
    """The default point's problem; every sweep point is built once to check it."""
    return sw.build_all(sw.learning_rate_problem(cfg), points(cfg)[0])[0]


def run(cfg, out_dir: Path, progress: bool, checkpoints=None) -> RunOutput:
    """Optimise every point of both sweeps at once; solve baseline and optimum;
    measure the levels' losses of each optimum and of the default baseline."""
    batch, make = points(cfg), sw.learning_rate_problem(cfg)
    opt = cmp.configured_optimizer(cfg, cmp.ADAM_METHODS)
    results, summary, traj = sw.run_sweep(cfg, make, batch, opt, progress, checkpoints)
    task, (W1, W2) = lc.tasks.SemanticHierarchy(cfg.task.levels), traj.w
    n = len(W1) // 2  # rows n: are the optima
    levels = task.level_losses(np.asarray(W2[n:]) @ np.asarray(W1[n:]))
    results |= lc.sweep.split(batch[1], {"level_loss": levels})
    results["default_baseline_level_loss"] = task.level_losses(W2[0] @ W1[0])
    for name in ("gamma", "beta"):
        losses = results[f"{name}_level_loss"]
        learned = np.sum(losses[:, -1] <= 0.5 * losses[:, 0], axis=1)
        summary[f"{name}_levels_learned"] = learned.tolist()
    return RunOutput(results, summary)


def plot(results, cfg, out_dir: Path) -> list[Path]:
    """Total control and value gain vs γ and β; ρ(t) and loss coloured by value."""
    curves = [
        ("control", "g", "Optimal learning-rate control ρ(t)", "control ρ(t)"),
        ("loss", "control_loss", "Loss under the optimal ρ(t)", "expected loss ⟨L⟩"),
    ]
    return fig.save(sw.sweep_figures(results, SWEEPS, "ρ", curves), out_dir)


EXPERIMENT = Experiment(
    name="learning-rate-sweep",
    description="Learning-rate control on the semantic hierarchy swept over gamma "
    "and beta, as one vmapped, sharded optimisation.",
    default=DEFAULT,
    quick=sw.LEARNING_RATE_QUICK
    | {
        "objective.gammas": (0.6, 0.8, 1.0),
        "cost.betas": (0.01, 0.5, 2.0),
        "outputs.num_times": 101,
    },
    build=build,
    run=run,
    plot=plot,
    figures=(
        "total_control.png",
        "value_gain.png",
        "optimisation.png",
        "control_gamma.png",
        "loss_gamma.png",
        "control_beta.png",
        "loss_beta.png",
    ),
    findings=(
        "trends",
        "beta_levels_learned",
        sw.trend(
            "more_control_for_larger_gamma",
            "gamma",
            1,
            "More control for larger γ (Figs. 3c, 8a-d).",
        ),
        sw.trend(
            "less_control_for_larger_beta",
            "beta",
            -1,
            "Less control when it costs more, larger β (Figs. 3d, 8e-h).",
        ),
    ),
    check=lambda cfg: cmp.check_optimiser(cfg, cmp.ADAM_METHODS),
)
