"""The steps every experiment shares: baseline vs optimised control.

An experiment's `run` builds its `Setup`, then calls `compare` to solve the
baseline ($\\theta$ giving $g = $ `baseline_value`, usually 0), optimise the
control and solve the controlled run on the same time grid; `comparison_arrays`
and `comparison_summary` turn the result into the standard `results.npz`
arrays and `summary.json` entries. Experiments add only what is specific to
them (extra arrays, findings, figures).
"""

from __future__ import annotations

import typing

import jax
import numpy as np

import lecontrol as lc

from ..checkpoint import Checkpointer, CheckpointFolder
from .base import Setup


class Comparison(typing.NamedTuple):
    baseline: lc.Trajectory
    controlled: lc.Trajectory
    result: lc.OptimizeResult
    theta_baseline: typing.Any


def next_checkpoint(checkpoints: CheckpointFolder | None) -> Checkpointer | None:
    """The checkpointer of a run's next optimisation (None without checkpoints).

    `execute` passes the run's `CheckpointFolder` to `Experiment.run`; every
    optimisation takes the next one, so files are numbered in the (fixed)
    order the optimisations run.
    """
    return None if checkpoints is None else checkpoints.next()


def paper_lr(lr: float, alpha: float, knot_spacing: float) -> float:
    """The paper's control learning rate (one control value per SGD step of
    size `alpha`) as a step on hat-basis coefficients with `knot_spacing`
    (see `lc.optimizers.ProjectedGradientAscent`)."""
    return lr * alpha / knot_spacing


def compare(
    setup: Setup,
    *,
    ts,
    optimizer: lc.optimizers.AbstractOptimizer,
    iterations: int,
    options: lc.SolverOptions,
    progress: bool,
    baseline_value: float = 0.0,
    adjoint: lc.AbstractGradientStrategy | None = None,
    checkpoint: Checkpointer | None = None,
) -> Comparison:
    """Solve the baseline, optimise from `setup.theta0`, solve the optimum.

    `checkpoint` saves (and resumes) the optimisation: pass
    `next_checkpoint(checkpoints)` with the `CheckpointFolder` that `execute`
    hands to the experiment's `run` (None: no checkpoints).
    """
    s = setup
    kw = {} if adjoint is None else {"adjoint": adjoint}

    def trajectory(theta):
        return lc.solve(s.problem, theta, ts=ts, options=options)

    theta_baseline = s.control.init(baseline_value)
    baseline = trajectory(theta_baseline)
    res = lc.optimize(
        s.problem,
        s.theta0,
        optimizer=optimizer,
        steps=iterations,
        progress=progress,
        checkpoint=checkpoint,
        options=options,
        **kw,
    )
    return Comparison(baseline, trajectory(res.theta), res, theta_baseline)


def _flatten(prefix: str, tree) -> dict[str, np.ndarray]:
    leaves = jax.tree.leaves(tree)
    if len(leaves) == 1:
        return {prefix: np.asarray(leaves[0])}
    return {f"{prefix}{i}": np.asarray(x) for i, x in enumerate(leaves)}


def comparison_arrays(c: Comparison) -> dict[str, np.ndarray]:
    """`ts`, `theta`, optimisation history and both trajectories as arrays.

    Pytree fields (weights, controls) are stored one array per leaf:
    `baseline_w` for a single array, `baseline_w0`, `baseline_w1`, … otherwise.
    """
    out = {
        "ts": np.asarray(c.baseline.ts),
        "values": c.result.values,
        "grad_norms": c.result.grad_norms,
    }
    out |= _flatten("theta", c.result.theta)
    for prefix, tr in (("baseline", c.baseline), ("control", c.controlled)):
        for field in ("w", "g"):
            out |= _flatten(f"{prefix}_{field}", getattr(tr, field))
        for field in ("loss", "v", "V"):
            out[f"{prefix}_{field}"] = np.asarray(getattr(tr, field))
    return out


def comparison_summary(c: Comparison, **extra) -> dict:
    """`V_baseline`, `V_control`, iterations, wall time, solver steps, status."""
    summary = {
        "V_baseline": float(c.baseline.V[-1]),
        "V_control": float(c.controlled.V[-1]),
        "V_gain": float(c.controlled.V[-1] - c.baseline.V[-1]),
        "iterations": int(c.result.iterations),
        "best_iteration": int(c.result.best_iteration),
        "wall_time_s": float(c.result.wall_time),
        "solver_steps": {
            "baseline": int(c.baseline.num_steps),
            "control": int(c.controlled.num_steps),
        },
        "status": lc.result_name(c.result.result),
        "message": c.result.message,
    }
    return summary | extra
