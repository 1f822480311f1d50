r"""Single neuron: the optimal gain swept over γ, σ, β, λ and the horizon
(the paper's Table 1; Figs. 2e-h and 9).

**Builds:** the `single-neuron` problem (the default point) and, one at a time
with the others at default, each value of $\gamma$ (`objective.gammas`),
$\sigma$ (`task.sigmas`), $\beta$ (`cost.betas`), $\lambda$ (`system.lams`)
and the horizon $N$ in SGD steps (`objective.horizons`): $4\times30 + 21 + 1$
problems optimised in one vmapped, sharded computation (L-BFGS-B to a
projected-gradient norm of `optimiser.gtol`; `optimiser.method = "pga"`:
the paper's gradient ascent).

**Figures:** total control $\int_0^T g\,dt$ and value gain against each
parameter; $g(t)$ coloured by each value; the default point's optimisation.

**Findings:** measured: `trends` (Spearman correlation of the total control
with each parameter); checked (`shared.sweeps.trend`): more control for larger
$\gamma$, less for larger $\sigma$ and $\beta$.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

import lecontrol as lc

from ..runner import Experiment, RunOutput, Setup, config
from .shared import comparison as cmp, figures as fig, sweeps as sw

DEFAULT = config(
    task=dict(mu=2.0, sigma=1.0, sigmas=sw.grid(np.linspace(1e-5, 5, 30))),
    system=dict(lam=0.1, tau=1.0, w0=0.0, lams=sw.grid(np.linspace(0, 5, 30))),
    control=dict(knots=61, lower=0.0, upper=0.5, init=0.0),
    cost=dict(beta=0.3, betas=sw.grid(np.linspace(1e-5, 2, 30))),
    objective=dict(
        alpha=1e-3,
        steps=600,
        gamma=0.99,
        eta=1.0,
        gammas=sw.grid(10.0 ** np.linspace(-8, 0, 30)),
        horizons=tuple(range(200, 1201, 50)),
    ),
    optimiser=dict(method="lbfgsb", gtol=1e-9, iterations=700, lr=10.0),
    solver=dict(rtol=1e-7, atol=1e-9, max_steps=4096),
    outputs=dict(num_times=201),
)

SWEEPS = (  # (sweep = parameter, grid, axis label, log axis)
    ("gamma", "objective.gammas", "discount γ (per unit time)", True),
    ("sigma", "task.sigmas", "input noise σ", False),
    ("beta", "cost.betas", "cost scale β", False),
    ("lam", "system.lams", "regularisation λ", False),
    ("horizon", "objective.horizons", "horizon N (SGD steps)", False),
)


def points(cfg):
    """The batch (`lc.sweep.one_at_a_time`): the default point, then five sweeps
    (the horizon in SGD steps $N$; $T = N\alpha$)."""
    o, grids = cfg.objective, cfg.flat()
    default = dict(
        gamma=o.gamma, sigma=cfg.task.sigma, beta=cfg.cost.beta, lam=cfg.system.lam
    )
    sweeps = {name: grids[key] for name, key, _, _ in SWEEPS}
    return lc.sweep.one_at_a_time(default | {"horizon": o.steps}, sweeps)


def problem(cfg):
    """The function `p -> Setup` of one point (`lc.sweep`'s `build`)."""
    s, c, eta = cfg.system, cfg.control, cfg.objective.eta

    def build_point(p) -> Setup:
        T = p["horizon"] * cfg.objective.alpha
        task = lc.tasks.TwoGaussians(mu=cfg.task.mu, sigma=p["sigma"])
        system = lc.systems.SingleNeuronGain(task, lam=p["lam"], tau=s.tau, w0=s.w0)
        knots, shape = jnp.linspace(0.0, T, c.knots), system.control_shape
        control = lc.controls.PiecewiseLinear(knots, shape, c.lower, c.upper)
        cost = lc.costs.Quadratic(beta=p["beta"])
        objective = lc.Objective(T=T, gamma=p["gamma"], eta=eta)
        return Setup(lc.Problem(system, control, cost, objective), control.init(c.init))

    return build_point


def optimizer(cfg):
    """The function `p -> optimiser` of one point: `lc.optimizers.LBFGSB`
    (`optimiser.method = "lbfgsb"`), or projected gradient ascent at
    `cmp.paper_lr` with the knot spacing of its horizon (`"pga"`)."""
    if isinstance(cmp.configured_optimizer(cfg), lc.optimizers.LBFGSB):
        return lambda p: lc.optimizers.LBFGSB()

    def for_point(p):
        spacing = p["horizon"] * cfg.objective.alpha / (cfg.control.knots - 1)
        lr = cmp.paper_lr(cfg.optimiser.lr, cfg.objective.alpha, spacing)
        return lc.optimizers.ProjectedGradientAscent(lr=lr, metric="lumped")

    return for_point


def build(cfg) -> Setup:
    """The default point's problem; every sweep point is built once to check it."""
    return sw.build_all(problem(cfg), points(cfg)[0])[0]


def run(cfg, out_dir: Path, progress: bool, checkpoints=None) -> RunOutput:
    """Optimise every point of every sweep at once; solve baseline and optimum."""
    batch, make, opt = points(cfg), problem(cfg), optimizer(cfg)
    results, summary, _ = sw.run_sweep(cfg, make, batch, opt, progress, checkpoints)
    return RunOutput(results, summary)


def plot(results, cfg, out_dir: Path) -> list[Path]:
    """Total control and value gain vs each parameter; g(t) coloured by value."""
    sweeps = [(name, label, log) for name, _, label, log in SWEEPS]
    curves = [("control", "g", "Optimal gain g(t)", "control g(t)")]
    return fig.save(sw.sweep_figures(results, sweeps, "g", curves), out_dir)


EXPERIMENT = Experiment(
    name="single-neuron-sweep",
    description="Single neuron: optimal gain swept over gamma, sigma, beta, lambda "
    "and the horizon N, as one vmapped, sharded optimisation.",
    default=DEFAULT,
    quick={
        # Enough for every quick problem to converge (the slowest took 167).
        "optimiser.iterations": 200,
        "control.knots": 16,
        "objective.gammas": (1e-6, 1e-2, 0.99),
        "task.sigmas": (0.5, 1.0, 2.0),
        "cost.betas": (0.1, 0.3, 1.0),
        "system.lams": (0.0, 0.1, 1.0),
        "objective.horizons": (300, 600, 900),
        "outputs.num_times": 51,
    },
    build=build,
    run=run,
    plot=plot,
    figures=(
        "total_control.png",
        "value_gain.png",
        "optimisation.png",
        *(f"control_{name}.png" for name, *_ in SWEEPS),
    ),
    findings=(
        "trends",
        sw.trend(
            "more_control_for_larger_gamma",
            "gamma",
            1,
            "More control for larger γ (Fig. 2e).",
        ),
        sw.trend(
            "less_control_for_larger_sigma",
            "sigma",
            -1,
            "Less control for noisier data, larger σ (Fig. 2g).",
        ),
        sw.trend(
            "less_control_for_larger_beta",
            "beta",
            -1,
            "Less control when it costs more, larger β (Fig. 9a).",
        ),
    ),
    check=cmp.check_optimiser,
)
