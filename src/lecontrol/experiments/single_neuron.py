r"""Single neuron with a gain control (the paper's Sec. 2.1, Table 1).

A neuron $\hat y = x\,w\,(1 + g)$ learns the two-Gaussian task by gradient
flow. The control $g(t) \in [0, 0.5]$ speeds learning up at a cost
$\beta g^2$. The run compares the baseline $g = 0$ with the control that
maximises $V$ (projected gradient ascent, the paper's Algorithm 1). The paper
finds $g(t)$ largest early and decaying, a controlled run that gives up net
reward early to gain it later, and $V_\text{control} > V_\text{baseline}$.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import lecontrol as lc

from .. import io, plotting
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
from .common import (
    compare,
    comparison_arrays,
    comparison_summary,
    next_checkpoint,
    paper_lr,
)

NAME = "single-neuron"
DESCRIPTION = "Single neuron with gain control on two Gaussians: optimal g(t) vs g = 0."


@dataclasses.dataclass(frozen=True)
class SingleNeuronConfig(ExperimentConfig):
    r"""Parameters of the single-neuron experiment (defaults: the paper's table).

    - `alpha`: SGD learning rate $\alpha$; with `steps` it sets the horizon
      $T = N\alpha$ (time in units of $\tau_w = 1$).
    - `steps`: number of SGD steps $N$ the learning period spans.
    - `mu`, `sigma`: class mean and standard deviation of the inputs.
    - `lam`: L2 regularisation $\lambda$; `tau`: time constant; `w0`: $w(0)$.
    - `lower`, `upper`: bounds of the control $g$.
    - `gamma`: discount per unit time; `beta`: cost scale; `eta`: weight of
      performance.
    - `lr`: the paper's control learning rate (one control value per SGD step).
      The hat-basis coefficients are updated with `lr * alpha / dt_knots`, which
      is the same step in function space (see `ProjectedGradientAscent`).
    - `iterations`: optimisation iterations (0 runs the fixed control
      `control_init`).
    - `knots`: number of knots of the piecewise-linear control on $[0, T]$.
    - `control_init`: the constant control the optimisation starts from.
    - `rtol`, `atol`, `max_steps`: ODE solver tolerances and step budget.
    - `seed`: recorded only; this experiment draws no random numbers.
    """

    alpha: float = 1e-3
    steps: int = 600
    mu: float = 2.0
    sigma: float = 1.0
    lam: float = 0.1
    tau: float = 1.0
    w0: float = 0.0
    lower: float = 0.0
    upper: float = 0.5
    gamma: float = 0.99
    beta: float = 0.3
    eta: float = 1.0
    lr: float = 10.0
    iterations: int = 700
    knots: int = 61
    control_init: float = 0.0
    rtol: float = 1e-7
    atol: float = 1e-9
    max_steps: int = 4096

    def check(self) -> None:
        require_float(self, "alpha", positive=True)
        require_int(self, "steps", minimum=1)
        require_float(self, "lr", positive=True)
        require_int(self, "iterations", minimum=0)
        require_int(self, "knots", minimum=2)
        require_float(self, "control_init")
        require_float(self, "rtol", positive=True)
        require_float(self, "atol", nonnegative=True)
        require_int(self, "max_steps", minimum=1)
        if self.lower <= self.upper:
            require(
                self.lower <= self.control_init <= self.upper,
                "control_init",
                f"must lie within [lower, upper] = [{self.lower}, {self.upper}]",
                self.control_init,
            )

    @property
    def T(self) -> float:
        """The horizon $T = N\\alpha$."""
        return self.steps * self.alpha


QUICK = {"iterations": 60, "knots": 31}


def build(config: SingleNeuronConfig) -> Setup:
    """Task → system → control → cost → objective, and the starting coefficients."""
    task = lc.tasks.TwoGaussians(mu=config.mu, sigma=config.sigma)
    system = lc.systems.SingleNeuronGain(
        task, lam=config.lam, tau=config.tau, w0=config.w0
    )
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0.0, config.T, config.knots),
        shape=system.control_shape,
        lower=config.lower,
        upper=config.upper,
    )
    cost = lc.costs.Quadratic(beta=config.beta)
    objective = lc.Objective(T=config.T, gamma=config.gamma, eta=config.eta)
    return Setup(
        lc.Problem(system, control, cost, objective), control.init(config.control_init)
    )


def run(
    config: SingleNeuronConfig,
    out_dir: Path,
    progress: bool,
    checkpoints: CheckpointFolder | None = None,
) -> RunOutput:
    """Solve the baseline, optimise the control, solve the controlled run."""
    s = build(config)
    lr = paper_lr(config.lr, config.alpha, config.T / (config.knots - 1))
    c = compare(
        s,
        ts=jnp.linspace(0.0, config.T, config.steps + 1),  # one point per SGD step
        optimizer=lc.optimizers.ProjectedGradientAscent(lr=lr),
        iterations=config.iterations,
        options=lc.SolverOptions(
            rtol=config.rtol, atol=config.atol, max_steps=config.max_steps
        ),
        progress=progress,
        checkpoint=next_checkpoint(checkpoints),
    )
    results = comparison_arrays(c) | {
        "knots": np.asarray(s.control.knots),
        "theta0": np.asarray(s.theta0),
    }
    return RunOutput(results, comparison_summary(c, control_lr_theta=lr))


def plot(results, config: SingleNeuronConfig, out_dir: Path) -> list[Path]:
    """Figures of the paper's single-neuron panels (Fig. 2), from the saved arrays."""
    out_dir = Path(out_dir)
    ts = results["ts"]
    pair = {
        "baseline (g = 0)": plotting.BASELINE_STYLE,
        "optimal control": plotting.CONTROL_STYLE,
    }
    base, ctrl = list(pair)
    figures = {
        "control.png": lambda: plotting.plot_lines(
            ts,
            {ctrl: results["control_g"]},
            title="Optimal gain control g(t)",
            ylabel="control g(t)",
            styles=pair,
            hlines=[(config.lower, "lower bound"), (config.upper, "upper bound")],
        ),
        "loss.png": lambda: plotting.plot_lines(
            ts,
            {base: results["baseline_loss"], ctrl: results["control_loss"]},
            title="Expected loss ⟨L⟩(t)",
            ylabel="expected loss ⟨L⟩",
            styles=pair,
        ),
        "net_reward_difference.png": lambda: plotting.plot_difference(
            ts,
            results["control_v"] - results["baseline_v"],
            title="Net reward: control minus baseline",
            ylabel="v_control(t) − v_baseline(t)",
            label="γ^t [η P − C(g)] difference",
        ),
        "weights.png": lambda: plotting.plot_lines(
            ts,
            {base: results["baseline_w"], ctrl: results["control_w"]},
            title="Weight w(t)",
            ylabel="weight w",
            styles=pair,
        ),
    }
    if results["values"].size:
        figures["optimisation.png"] = lambda: plotting.plot_optimisation(
            results["values"], baseline=float(results["baseline_V"][-1])
        )
    return [io.save_figure(draw(), out_dir / name) for name, draw in figures.items()]


EXPERIMENT = Experiment(
    name=NAME,
    description=DESCRIPTION,
    config=SingleNeuronConfig,
    quick=QUICK,
    build=build,
    run=run,
    plot=plot,
)

__all__ = ["EXPERIMENT", "SingleNeuronConfig", "build", "plot", "run"]
