r"""Learning-rate control swept over the discount γ and the cost scale β.

The `learning-rate` problem (the paper's App. F.2 on the 4-level semantic
hierarchy) with $\gamma \in [0.6, 1]$ at $\beta = 1$, and
$\beta \in [10^{-3}, 2]$ at $\gamma = 1$ (the paper's Table 3, "learning rate
(Semantic)": "sweep 0.6–1", "sweep 1e-3–2"). Every problem of both sweeps,
and the default point, is optimised in ONE computation:
`lc.sweep.optimize_batch` vmaps the Adam loop over them and shards them
across `jax.devices()`.

The paper finds more control for larger $\gamma$ and smaller $\beta$. The
run measures the total control $\int_0^T\rho\,dt$ and the value gain per
value, the Spearman rank correlation of the total control with each
parameter (`trends`), and the two findings as booleans. It also saves each
optimum's loss curve and per-level losses, which show how many levels of the
hierarchy are worth learning as control gets costlier.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

import lecontrol as lc

from .. import io, plotting
from ..checkpoint import CheckpointFolder
from .base import Experiment, RunOutput, Setup, require_int
from .common import next_checkpoint
from .learning_rate import (
    LearningRateConfig,
    check_learning_rate,
    level_losses,
    numerics,
    setup,
    system,
)
from .single_neuron_sweep import (
    announce,
    batch_arrays,
    check_values,
    plot_curves_by_value,
    plot_panels,
    sweep_points,
    sweep_summary,
)

NAME = "learning-rate-sweep"
DESCRIPTION = (
    "Learning-rate control on the semantic hierarchy swept over gamma and beta, "
    "as one vmapped, sharded optimisation."
)


def _grid(values) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@dataclasses.dataclass(frozen=True)
class LearningRateSweepConfig(LearningRateConfig):
    r"""Parameters of `learning-rate-sweep`.

    Every `LearningRateConfig` field (the default point: the paper's Table 3, "learning
    rate (Semantic)" row), and

    - `gammas`: the values of $\gamma$ (at the default $\beta$).
    - `betas`: the values of $\beta$ (at the default $\gamma$).
    - `num_times`: samples of each $\rho(t)$ and loss curve in the results.
    """

    gammas: tuple[float, ...] = _grid(np.linspace(0.6, 1.0, 10))
    betas: tuple[float, ...] = _grid(np.linspace(1e-3, 2.0, 10))
    num_times: int = 201

    def check(self) -> None:
        check_learning_rate(self)
        require_int(self, "iterations", minimum=1)
        require_int(self, "num_times", minimum=2)
        check_values(self, "gammas", lambda v: 0 < v <= 1, "in (0, 1]")
        check_values(self, "betas", lambda v: v >= 0, ">= 0")


QUICK = {
    "iterations": 30,
    "knots": 31,
    "lr": 0.05,
    "gammas": (0.6, 0.8, 1.0),
    "betas": (0.01, 0.5, 2.0),
    "num_times": 101,
}

SWEEPS = (
    # (sweep name, parameter key, config field, axis label, log axis)
    ("gamma", "gamma", "gammas", "discount γ (per unit time)", False),
    ("beta", "beta", "betas", "cost scale β", False),
)


def points(config: LearningRateSweepConfig):
    """The batch: the default point, then the γ sweep, then the β sweep."""
    default = {"gamma": config.gamma, "beta": config.beta}
    return sweep_points(
        default,
        [(name, key, getattr(config, field)) for name, key, field, _, _ in SWEEPS],
    )


def problem(config: LearningRateSweepConfig):
    """The function `p -> Setup` of one point `p = {"gamma", "beta"}`."""
    net = system(config)

    def build_point(p) -> Setup:
        return setup(config, net, gamma=p["gamma"], beta=p["beta"])

    return build_point


def build(config: LearningRateSweepConfig) -> Setup:
    """The default point's problem; every sweep point is built once to check it."""
    params, _ = points(config)
    make = problem(config)
    for i in range(len(params["gamma"])):
        make({k: v[i] for k, v in params.items()})
    return make({k: v[0] for k, v in params.items()})


def run(
    config: LearningRateSweepConfig,
    out_dir: Path,
    progress: bool,
    checkpoints: CheckpointFolder | None = None,
) -> RunOutput:
    """Optimise every point of both sweeps at once; solve baseline and optimum."""
    params, segments = points(config)
    make = problem(config)
    announce(progress, len(params["gamma"]), config.iterations)
    res = lc.sweep.optimize_batch(
        make,
        params,
        optimizer=lc.optimizers.Adam(lr=config.lr),
        steps=config.iterations,
        options=numerics(config),
        checkpoint=next_checkpoint(checkpoints),
        progress=progress,
    )
    n = len(params["gamma"])
    both = {k: np.concatenate([v, v]) for k, v in params.items()}
    # Baseline: the base rate, rho = 0.
    thetas = np.concatenate([np.zeros_like(res.theta), res.theta])
    traj = lc.sweep.solve_batch(
        make, both, thetas, num_times=config.num_times, options=numerics(config)
    )
    knots = np.linspace(0.0, config.T, config.knots)
    task = lc.tasks.SemanticHierarchy(config.levels)
    W1, W2 = traj.w
    per_row = {
        "ts": traj.ts[n:],
        "g": traj.g[n:],
        "baseline_loss": traj.loss[:n],
        "control_loss": traj.loss[n:],
        "level_loss": np.stack(
            [level_losses(task, W1[i], W2[i]) for i in range(n, 2 * n)]
        ),
        "theta": res.theta,
        "total_control": np.trapezoid(res.theta, knots, axis=1),
        "V_baseline": traj.V[:n, -1],
        "V_control": traj.V[n:, -1],
        "V_history": res.values,
    }
    results = batch_arrays(segments, per_row)
    results["default_baseline_level_loss"] = level_losses(task, W1[0], W2[0])
    summary = sweep_summary(
        res,
        segments,
        results,
        solver_steps={
            "baseline": int(traj.num_steps[0]),
            "control": int(traj.num_steps[n]),
        },
        findings={
            "more_control_for_larger_gamma": ("gamma", 1),
            "less_control_for_larger_beta": ("beta", -1),
        },
    )
    for s in segments:
        final = results[f"{s.name}_level_loss"][:, -1, :]
        initial = results[f"{s.name}_level_loss"][:, 0, :]
        summary[f"{s.name}_levels_learned"] = [
            int(np.sum(f <= 0.5 * i)) for f, i in zip(final, initial)
        ]
    return RunOutput(results, summary)


def plot(results, config: LearningRateSweepConfig, out_dir: Path) -> list[Path]:
    """Total control and value gain vs γ and β; ρ(t) and loss coloured by value."""
    out_dir = Path(out_dir)
    labels = {name: (label, log) for name, _, _, label, log in SWEEPS}

    def panels(field):
        return [
            (label, results[f"{name}_values"], field(name), log)
            for name, (label, log) in labels.items()
        ]

    figures = {
        "total_control.png": lambda: plot_panels(
            panels(lambda s: results[f"{s}_total_control"]),
            title="Total control ∫ ρ dt vs each parameter",
            ylabel="∫₀ᵀ ρ(t) dt",
        ),
        "value_gain.png": lambda: plot_panels(
            panels(lambda s: results[f"{s}_V_control"] - results[f"{s}_V_baseline"]),
            title="Value gain V_control − V_baseline vs each parameter",
            ylabel="V gain",
            hline=0.0,
        ),
        "optimisation.png": lambda: plotting.plot_optimisation(
            results["default_V_history"], baseline=float(results["default_V_baseline"])
        ),
    }
    for name, (label, log) in labels.items():
        for field, ylabel, what in (
            ("g", "control ρ(t)", "Optimal learning-rate control ρ(t)"),
            ("control_loss", "expected loss ⟨L⟩", "Loss under the optimal ρ(t)"),
        ):
            short = "control" if field == "g" else "loss"
            figures[f"{short}_{name}.png"] = (
                lambda name=name, label=label, log=log, field=field, ylabel=ylabel, what=what: (
                    plot_curves_by_value(
                        results[f"{name}_ts"],
                        results[f"{name}_{field}"],
                        results[f"{name}_values"],
                        title=f"{what} across {label}",
                        ylabel=ylabel,
                        label=label,
                        log=log,
                    )
                )
            )
    return [io.save_figure(draw(), out_dir / name) for name, draw in figures.items()]


EXPERIMENT = Experiment(
    name=NAME,
    description=DESCRIPTION,
    config=LearningRateSweepConfig,
    quick=QUICK,
    build=build,
    run=run,
    plot=plot,
)

__all__ = ["EXPERIMENT", "LearningRateSweepConfig", "build", "plot", "points", "run"]
