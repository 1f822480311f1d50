"""The steps every experiment shares: the problem's standard parts from the
configuration's sections, and the baseline vs optimised-control comparison.

The sections `objective` (`alpha`, `steps`, `gamma`, `eta`; the horizon is
$T = N\alpha$, `steps` $N$ SGD steps of size `alpha`), `control` (`knots`,
`lower`, `upper`, `init`), `optimiser` (`iterations`; where an experiment
offers the choice, `method`: `"lbfgsb"`, `lc.optimizers.LBFGSB` run until the
projected-gradient norm is at most `gtol`, `"pga"`, the paper's Algorithm 1
with the control learning rate `lr`, or, where the paper used it, `"adam"`,
Adam with the learning rate `lr`) and `solver`
(`rtol`, `atol`, `max_steps`) mean the same in every experiment; the
builders below turn them into library objects.

An experiment's `run` builds its `Setup`, then calls `compare` to solve the
baseline ($\\theta$ giving $g = $ `baseline_value`, usually 0), optimise the
control and solve the controlled run on the same time grid; `comparison_arrays`
and `comparison_summary` turn the result into the standard `results.npz`
arrays and `summary.json` entries. Experiments add only what is specific to
them (extra arrays, findings, figures).
"""

from __future__ import annotations

import typing

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import lecontrol as lc

from ...checkpoint import Checkpointer, CheckpointFolder
from ...runner import Config, ConfigError, Setup, require


class Comparison(typing.NamedTuple):
    setup: Setup
    optimizer: lc.optimizers.AbstractOptimizer
    gtol: float | None
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


def horizon(cfg: Config) -> float:
    """The horizon $T = N\alpha$ (`objective.steps` × `objective.alpha`)."""
    return cfg.objective.steps * cfg.objective.alpha


def objective(cfg: Config) -> lc.Objective:
    """`lc.Objective` on $[0, T]$ with `objective.gamma` and `objective.eta`."""
    return lc.Objective(
        T=horizon(cfg), gamma=cfg.objective.gamma, eta=cfg.objective.eta
    )


def knot_times(cfg: Config) -> jax.Array:
    """`control.knots` evenly spaced knots on $[0, T]$."""
    return jnp.linspace(0.0, horizon(cfg), cfg.control.knots)


def knot_control(cfg: Config, shape) -> lc.controls.PiecewiseLinear:
    """Piecewise-linear control of `shape` on `knot_times`, within
    [`control.lower`, `control.upper`]."""
    c = cfg.control
    return lc.controls.PiecewiseLinear(
        knot_times(cfg), shape=shape, lower=c.lower, upper=c.upper
    )


def setup(cfg: Config, system, control, cost) -> Setup:
    """The problem with `objective(cfg)`, starting from the constant `control.init`."""
    problem = lc.Problem(system, control, cost, objective(cfg))
    try:  # the control checks its bounds; say which key to change
        theta0 = control.init(cfg.control.init)
    except ValueError as e:
        raise ConfigError(f"`control.init`: {e}") from None
    return Setup(problem, theta0)


def control_lr(cfg: Config) -> float:
    """`optimiser.lr` as a step on the hat-basis coefficients (`paper_lr`)."""
    T = horizon(cfg)
    return paper_lr(cfg.optimiser.lr, cfg.objective.alpha, T / (cfg.control.knots - 1))


def projected_ascent(cfg: Config) -> lc.optimizers.ProjectedGradientAscent:
    """Projected gradient ascent (the paper's Algorithm 1) with `control_lr`, in
    the lumped metric (the paper's per-SGD-step gradient at every knot, the
    end knots included)."""
    return lc.optimizers.ProjectedGradientAscent(lr=control_lr(cfg), metric="lumped")


METHODS = ("lbfgsb", "pga", "newton")
"""The methods `configured_optimizer` offers by default; `"adam"` is offered
by the experiments the paper ran with Adam (`ADAM_METHODS`)."""

ADAM_METHODS = ("lbfgsb", "adam", "newton")

METRICS = {"discounted": "discounted", "euclidean": None}
r"""`optimiser.metric` (an optional key) -> the `metric` of `LBFGSB` and
`NewtonCG`: `"discounted"` (the default; $M_k = m_k\gamma^{t_k}$ per knot) or
`"euclidean"` (the identity)."""


def configured_optimizer(
    cfg: Config, methods: tuple[str, ...] = METHODS
) -> lc.optimizers.AbstractOptimizer:
    """The optimiser `optimiser.method` names, one of `methods`: `"lbfgsb"`
    (`lc.optimizers.LBFGSB`), `"newton"` (`lc.optimizers.NewtonCG`, exact
    Hessian-vector products: not with `optimiser.gradient = "checkpoint"`),
    `"pga"` (`projected_ascent`) or `"adam"` (`lc.optimizers.Adam` with the
    learning rate `optimiser.lr`). The first two take their metric from
    `optimiser.metric` when the configuration has it (`METRICS`)."""
    method = cfg.optimiser.method
    if method not in methods:
        raise ConfigError(
            f"`optimiser.method` must be one of {list(methods)}; got {method!r}."
        )
    metric = cfg.optimiser.get("metric", "discounted")
    if metric not in METRICS:
        raise ConfigError(
            f"`optimiser.metric` must be one of {list(METRICS)}; got {metric!r}."
        )
    if method == "lbfgsb":
        return lc.optimizers.LBFGSB(metric=METRICS[metric])
    if method == "newton":
        return lc.optimizers.NewtonCG(metric=METRICS[metric])
    if method == "adam":
        return lc.optimizers.Adam(lr=cfg.optimiser.lr)
    return projected_ascent(cfg)


def check_optimiser(cfg: Config, methods: tuple[str, ...] = METHODS) -> None:
    """`optimiser.method` is one of `methods`, `optimiser.gtol` is >= 0 and
    `optimiser.batch_size`, if set, is >= 1 (an `Experiment.check` for
    experiments that offer the choice)."""
    configured_optimizer(cfg, methods)
    gtol = cfg.optimiser.gtol
    require(gtol >= 0, "optimiser.gtol", "must be >= 0", gtol)
    batch_size(cfg)


def batch_size(cfg: Config) -> int | None:
    """`optimiser.batch_size` (an optional key): how many problems of a batch
    (a sweep's points, the seeds of `control_seeds`) are computed together, one
    group after another (`lc.sweep.optimize_batch`'s `batch_size`); absent:
    the whole batch at once."""
    size = cfg.optimiser.get("batch_size")
    ok = size is None or (type(size) is int and size >= 1)
    require(ok, "optimiser.batch_size", "must be an integer >= 1", size)
    return size


def options(cfg: Config) -> lc.SolverOptions:
    """`lc.SolverOptions` from the `solver` section."""
    s = cfg.solver
    return lc.SolverOptions(rtol=s.rtol, atol=s.atol, max_steps=s.max_steps)


def record_times(cfg: Config, every: int) -> jax.Array:
    """Saved times: every `every` SGD steps, from 0 to $T$."""
    return jnp.linspace(0.0, horizon(cfg), cfg.objective.steps // every + 1)


def compare(
    setup: Setup,
    cfg: Config,
    *,
    ts,
    progress: bool,
    checkpoints: CheckpointFolder | None,
    optimizer: lc.optimizers.AbstractOptimizer | None = None,
    adjoint: lc.AbstractGradientStrategy | None = None,
    baseline_value: float = 0.0,
) -> Comparison:
    """Solve the baseline, optimise from `setup.theta0`, solve the optimum.

    The optimisation runs at most `optimiser.iterations` steps of `optimizer`
    (default: `configured_optimizer(cfg)` if the configuration has
    `optimiser.method`, else `projected_ascent(cfg)`), stopping once the
    projected-gradient norm is at most `optimiser.gtol` (if set), with the
    `solver` options; it saves and
    resumes through the next checkpointer of `checkpoints` (the folder
    `execute` hands to the experiment's `run`; None: no checkpoints).
    Both trajectories are saved at `ts`.
    """
    s, opts = setup, options(cfg)
    kw = {} if adjoint is None else {"adjoint": adjoint}

    def trajectory(theta):
        return lc.solve(s.problem, theta, ts=ts, options=opts)

    if optimizer is None:
        has_method = "method" in cfg.optimiser
        optimizer = configured_optimizer(cfg) if has_method else projected_ascent(cfg)
    gtol = cfg.optimiser.get("gtol")
    theta_baseline = s.control.init(baseline_value)
    baseline = trajectory(theta_baseline)
    res = lc.optimize(
        s.problem,
        s.theta0,
        optimizer=optimizer,
        steps=cfg.optimiser.iterations,
        gtol=gtol,
        progress=progress,
        checkpoint=next_checkpoint(checkpoints),
        options=opts,
        **kw,
    )
    controlled = trajectory(res.theta)
    return Comparison(s, optimizer, gtol, baseline, controlled, res, theta_baseline)


def _flatten(prefix: str, tree) -> dict[str, np.ndarray]:
    leaves = jax.tree.leaves(tree)
    if len(leaves) == 1:
        return {prefix: np.asarray(leaves[0])}
    return {f"{prefix}{i}": np.asarray(x) for i, x in enumerate(leaves)}


def comparison_arrays(c: Comparison) -> dict[str, np.ndarray]:
    """`ts`, `knots`, `theta_init` (the start), `theta`, the optimisation
    history and both trajectories as arrays.

    Pytree fields (weights, controls) are stored one array per leaf:
    `baseline_w` for a single array, `baseline_w0`, `baseline_w1`, … otherwise.
    """
    control = getattr(c.setup.control, "inner", c.setup.control)  # NeuronBasis
    out = {
        "ts": np.asarray(c.baseline.ts),
        "knots": np.asarray(control.knots),
        "values": c.result.values,
        "grad_norms": c.result.grad_norms,
        "projected_grad_norms": c.result.projected_grad_norms,
    }
    out |= _flatten("theta_init", c.setup.theta0) | _flatten("theta", c.result.theta)
    for prefix, tr in (("baseline", c.baseline), ("control", c.controlled)):
        for field in ("w", "g"):
            out |= _flatten(f"{prefix}_{field}", getattr(tr, field))
        for field in ("loss", "v", "V"):
            out[f"{prefix}_{field}"] = np.asarray(getattr(tr, field))
    return out


def comparison_summary(c: Comparison, **extra) -> dict:
    """`V_baseline`, `V_control`, iterations, wall time, solver steps, status,
    the optimiser and the projected-gradient norm at the optimum (with the
    tolerance `gtol` it was run to, `None`: none)."""
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
        "optimiser": repr(c.optimizer),
        "projected_grad_norm": float(c.result.projected_grad_norm),
        "gtol": c.gtol,
        "message": c.result.message,
    }
    return summary | extra


def hamiltonian_results(c: Comparison, cfg: Config) -> tuple[dict, dict]:
    r"""The Hamiltonian $H(t)$ (`lc.hamiltonian`) along the optimum, along the
    baseline, and along the optimum reversed in time, at the comparison's
    times: arrays `control_hamiltonian`, `baseline_hamiltonian`,
    `reversed_hamiltonian`, and the summary's `hamiltonian_spread` (each
    one's $\max_t H - \min_t H$) and `hamiltonian_relative_spread` (the
    optimum's spread over that of its net reward $v(t) = \gamma^t[\eta P -
    C]$, one of the terms of $H$: the scale on which $H$ would vary).

    For an autonomous problem ($\gamma = 1$, nothing changing in time) $H$ is
    constant along an optimal control, and its spread falls as the knots are
    refined. It is constant along *any* constant control too ($dH/dt =
    \partial H/\partial g\,\dot g$ there), so a constant baseline is no
    reference; the optimum reversed in time, a control of the same values in
    the wrong order, is."""
    s, ts, opts = c.setup, c.baseline.ts, options(cfg)
    theta = c.result.theta
    backwards = jax.tree.map(lambda x: jnp.flip(x, axis=0), theta)
    # Compiled once for the three (called eagerly, each compiled its solves).
    hamiltonian = eqx.filter_jit(
        lambda problem, th: lc.hamiltonian(problem, th, ts=ts, options=opts)
    )
    arrays = {
        f"{name}_hamiltonian": np.asarray(hamiltonian(s.problem, th))
        for name, th in (
            ("control", theta),
            ("baseline", c.theta_baseline),
            ("reversed", backwards),
        )
    }
    spread = {
        k.removesuffix("_hamiltonian"): float(np.ptp(v)) for k, v in arrays.items()
    }
    v = float(np.ptp(np.asarray(c.controlled.v)))
    relative = spread["control"] / max(v, np.finfo(float).tiny)
    return arrays, {
        "hamiltonian_spread": spread,
        "hamiltonian_relative_spread": relative,
    }
