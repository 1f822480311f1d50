r"""Single neuron with a gain control (the paper's Sec. 2.1, Table 1).

**Builds:** a neuron $\hat y = x\,w\,(1 + g)$ learning the two-Gaussian task
by gradient flow (`lc.systems.SingleNeuronGain` on `lc.tasks.TwoGaussians`),
a piecewise-linear gain $g(t) \in [0, 0.5]$ at the cost $\beta g^2$
(`lc.costs.Quadratic`), and projected gradient ascent on $V$ (the paper's
Algorithm 1), compared with the baseline $g = 0$.

**Figures:** the optimal control, the expected loss and the weight of both
runs, the net-reward difference, and the optimisation's progress (Fig. 2).

**Findings** (summary keys): `V_gain` $= V_\text{control} - V_\text{baseline}
> 0$; the paper also finds $g(t)$ largest early and decaying, and a controlled
run that gives up net reward early to gain it later (read off the figures).
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp

import lecontrol as lc

from ..runner import Experiment, RunOutput, Setup, config
from .shared import comparison as cmp, figures as fig

DEFAULT = config(
    task=dict(mu=2.0, sigma=1.0),
    system=dict(lam=0.1, tau=1.0, w0=0.0),
    control=dict(knots=61, lower=0.0, upper=0.5, init=0.0),
    cost=dict(beta=0.3),
    objective=dict(alpha=1e-3, steps=600, gamma=0.99, eta=1.0),
    optimiser=dict(lr=10.0, iterations=700),
    solver=dict(rtol=1e-7, atol=1e-9, max_steps=4096),
)


def build(cfg) -> Setup:
    """Task → system → control → cost → objective, and the starting coefficients."""
    task = lc.tasks.TwoGaussians(mu=cfg.task.mu, sigma=cfg.task.sigma)
    s = cfg.system
    system = lc.systems.SingleNeuronGain(task, lam=s.lam, tau=s.tau, w0=s.w0)
    control = cmp.knot_control(cfg, system.control_shape)
    return cmp.setup(cfg, system, control, lc.costs.Quadratic(beta=cfg.cost.beta))


def run(cfg, out_dir: Path, progress: bool, checkpoints=None) -> RunOutput:
    """Solve the baseline, optimise the control, solve the controlled run."""
    s = build(cfg)
    ts = jnp.linspace(0.0, cmp.horizon(cfg), cfg.objective.steps + 1)  # per SGD step
    c = cmp.compare(s, cfg, ts=ts, progress=progress, checkpoints=checkpoints)
    results = cmp.comparison_arrays(c)
    summary = cmp.comparison_summary(c, control_lr_theta=cmp.control_lr(cfg))
    return RunOutput(results, summary)


def plot(results, cfg, out_dir: Path) -> list[Path]:
    """The paper's single-neuron panels (Fig. 2), from the saved arrays."""
    ts = results["ts"]
    pair = fig.pair("baseline (g = 0)")
    base, ctrl = list(pair)
    c = cfg.control
    figures = {
        "control.png": lambda: fig.plotting.plot_lines(
            ts,
            {ctrl: results["control_g"]},
            title="Optimal gain control g(t)",
            ylabel="control g(t)",
            styles=pair,
            hlines=[(c.lower, "lower bound"), (c.upper, "upper bound")],
        ),
        "loss.png": lambda: fig.loss(results, pair),
        "net_reward_difference.png": lambda: fig.net_reward_difference(results, "g"),
        "weights.png": lambda: fig.plotting.plot_lines(
            ts,
            {base: results["baseline_w"], ctrl: results["control_w"]},
            title="Weight w(t)",
            ylabel="weight w",
            styles=pair,
        ),
    }
    return fig.save(figures | fig.optimisation(results), out_dir)


EXPERIMENT = Experiment(
    name="single-neuron",
    description="Single neuron with gain control on two Gaussians: optimal g(t) vs g = 0.",
    default=DEFAULT,
    quick={"optimiser.iterations": 60, "control.knots": 31},
    build=build,
    run=run,
    plot=plot,
    figures=(
        "control.png",
        "loss.png",
        "net_reward_difference.png",
        "weights.png",
        "optimisation.png?",
    ),
    findings=("V_gain",),
)
