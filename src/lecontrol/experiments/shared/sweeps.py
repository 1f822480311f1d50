r"""Sweeps, many problems optimised as one computation, and the learning-rate
problem on the semantic hierarchy: the parts of `single-neuron-sweep`,
`learning-rate`, `learning-rate-sweep` and `maml`.

`lc.sweep.optimize_batch` vmaps the optimiser over a batch of problems and
shards it across `jax.devices()`. Row 0 of a sweep's batch is the default
point; each sweep varies one value over the grid in that value's section
(`objective.gammas`, `cost.betas`, `task.sigmas`, `system.lams`,
`objective.horizons`: SGD steps $N$, $T = N\alpha$), the others at default.

Family keys: `outputs.num_times` (samples per saved curve); `cost.offset` (the
free $\rho$ of the learning-rate cost $\beta(\rho - \text{offset})^2$; $-1$:
all learning costs effort); `system.init_scale` (standard deviation of the
Gaussian initial weights, drawn from `seed`); `control.quadrature_intervals`
(sub-intervals of the adjoint's quadrature for MAML's constant control);
`outputs.eval_steps` (MAML's evaluation window in inner steps; 0: the largest
horizon).
"""

from __future__ import annotations

import sys

import jax
import numpy as np

import lecontrol as lc

from ...findings import Finding
from ...runner import Config, Setup, config
from . import comparison as cmp, findings
from .figures import plotting


def grid(values) -> tuple[float, ...]:
    """A sweep's values as a config tuple of floats."""
    return tuple(float(v) for v in values)


def build_all(make, params: dict) -> list[Setup]:
    """Every point's `Setup` (their constructors check the values)."""
    n = len(next(iter(params.values())))
    return [make({k: v[i] for k, v in params.items()}) for i in range(n)]


def optimize(make, params, cfg, optimizer, progress, checkpoints, **kw):
    """`lc.sweep.optimize_batch` of every point for at most
    `optimiser.iterations`, each stopping at `optimiser.gtol` (if set and
    above 0)."""
    n, iterations = len(jax.tree.leaves(params)[0]), cfg.optimiser.iterations
    if progress:  # one computation, without a progress bar: say what it does
        devices = f"{jax.device_count()} device(s)"
        what = f"{n} problems x {iterations} iterations as one computation on {devices}"
        print(f"optimising {what}...", file=sys.stderr, flush=True)
    checkpoint, options = cmp.next_checkpoint(checkpoints), cmp.options(cfg)
    return lc.sweep.optimize_batch(
        make,
        params,
        optimizer=optimizer,
        steps=iterations,
        options=options,
        checkpoint=checkpoint,
        progress=progress,
        gtol=cfg.optimiser.get("gtol") or None,
        batch_size=cmp.batch_size(cfg),
        **kw,
    )


def batch_summary(res, optimizer=None, gtol=None) -> dict:
    """The standard summary entries of an `lc.sweep.optimize_batch` result:
    the most iterations any problem ran, the status (the first failure, else
    `converged` if every problem converged), the largest projected-gradient
    norm at the optima and the `optimizer` (a description) with `gtol`."""
    problems, iterations = len(res.iterations), int(res.iterations.max())
    failed, converged = ~res.completed, res.status == "converged"
    message = (
        f"optimised {problems} problems ({int(converged.sum())} converged) for up "
        f"to {iterations} iterations each on {res.num_devices} device(s)"
    )
    status = "converged" if converged.all() else "completed"
    if failed.any():
        first = res.message[int(np.argmax(failed))]
        message = f"{failed.sum()} problems stopped early (best theta kept): {first}"
        status = str(res.status[failed][0])
    return {
        "iterations": iterations,
        "wall_time_s": float(res.wall_time),
        "status": status,
        "message": message,
        "problems": int(problems),
        "devices": int(res.num_devices),
        "optimiser": optimizer,
        "projected_grad_norm": float(np.max(res.projected_grad_norm)),
        "gtol": gtol,
    }


def _filled(values: np.ndarray) -> np.ndarray:
    """Each row's `nan`s (iterations after the problem stopped) as its last
    finite value."""
    out = np.array(values, dtype=float)
    for row in out:
        finite = np.flatnonzero(np.isfinite(row))
        if finite.size:
            row[finite[-1] + 1 :] = row[finite[-1]]
    return out


def trend(name: str, sweep: str, sign: int, claim: str) -> Finding:
    r"""The claim that the total control $\int_0^T g\,dt$ rises (`sign` 1) or
    falls (-1) with the values of `sweep`: Spearman's $\rho$ times `sign`
    above 0.5. Negative controls: the values in reverse order, and no control."""

    def measure(r):
        rho = findings.rank_correlation(
            r[f"{sweep}_values"], r[f"{sweep}_total_control"]
        )
        return (
            sign * rho,
            f"Spearman ρ = {rho:.3f} over {len(r[f'{sweep}_values'])} values",
        )

    def reverse(r):
        return r | {f"{sweep}_values": r[f"{sweep}_values"][::-1]}

    def zero(r):
        return r | {f"{sweep}_total_control": 0 * r[f"{sweep}_total_control"]}

    direction = "rises" if sign > 0 else "falls"
    return Finding(
        name,
        claim,
        measure,
        margin=0.5,
        criterion=f"the total control {direction} with {sweep}: sign × Spearman ρ > 0.5",
        negative_controls=(("values reversed", reverse), ("no control", zero)),
    )


def run_sweep(cfg, make, points, optimizer, progress, checkpoints):
    r"""Optimise every point of `points = (params, segments)`, then solve the
    baseline ($\theta = 0$) and optimum of each in one batch.

    Returns `(results, summary, trajectories)`: per sweep the
    `{sweep}_{field}` arrays (`default_{field}`: row 0) of the saved curves,
    $\theta$, the total control $\int_0^T g\,dt$ and $V$; the summary has the
    default point's $V$ and `trends` (rank correlation of the total control with
    each sweep's values; `trend` checks one).
    """
    params, segments = points
    res = optimize(make, params, cfg, optimizer, progress, checkpoints)
    both = {k: np.concatenate([v, v]) for k, v in params.items()}
    thetas = np.concatenate([np.zeros_like(res.theta), res.theta])
    num_times, options = cfg.outputs.num_times, cmp.options(cfg)
    traj = lc.sweep.solve_batch(
        make,
        both,
        thetas,
        num_times=num_times,
        options=options,
        batch_size=cmp.batch_size(cfg),
    )
    knots = np.stack([s.control.knots for s in build_all(make, params)])
    n = len(res.values)
    per_row = {
        "ts": traj.ts[n:],
        "g": traj.g[n:],
        "baseline_loss": traj.loss[:n],
        "control_loss": traj.loss[n:],
        "theta": res.theta,
        "total_control": np.trapezoid(res.theta, knots, axis=1),
        "V_baseline": traj.V[:n, -1],
        "V_control": traj.V[n:, -1],
        # After a problem stops (converged) its last V repeats; `iterations`
        # says how many ran.
        "V_history": _filled(res.values),
        "iterations": res.iterations,
    }
    results = lc.sweep.split(segments, per_row)
    trends = {
        s.name: findings.rank_correlation(
            s.values, results[f"{s.name}_total_control"], constant=0.0
        )
        for s in segments
    }
    gains = per_row["V_control"][1:] - per_row["V_baseline"][1:]
    V_b, V_c = float(per_row["V_baseline"][0]), float(per_row["V_control"][0])
    steps = {"baseline": int(traj.num_steps[0]), "control": int(traj.num_steps[n])}
    summary = {"V_baseline": V_b, "V_control": V_c, "V_gain": V_c - V_b}
    described = optimizer
    if not isinstance(optimizer, lc.optimizers.AbstractOptimizer):
        described = optimizer({k: v[0] for k, v in params.items()})
    summary |= batch_summary(res, repr(described), cfg.optimiser.get("gtol"))
    summary["solver_steps"] = steps
    summary |= {"min_V_gain": float(gains.min()), "trends": trends}
    return results, summary, traj


# ----------------------------------------------------------------- figures


def sweep_figures(results, sweeps, symbol: str, curves) -> dict:
    """`total_control.png`, `value_gain.png`, `optimisation.png` (row 0), and
    for each sweep `(name, label, log)` and curve `(prefix, field, what,
    ylabel)` the figure `{prefix}_{name}.png` of `field` coloured by value."""

    def panels(y):
        return [(lbl, results[f"{n}_values"], y(n), log) for n, lbl, log in sweeps]

    def curve(name, label, log, field, what, ylabel):
        ts, values = results[f"{name}_ts"], results[f"{name}_values"]
        return lambda: plotting.plot_curves_by_value(
            ts,
            results[f"{name}_{field}"],
            values,
            title=f"{what} across {label}",
            ylabel=ylabel,
            label=label,
            log=log,
        )

    def gain(s):
        return results[f"{s}_V_control"] - results[f"{s}_V_baseline"]

    history, baseline = results["default_V_history"], results["default_V_baseline"]
    figures = {
        "total_control.png": lambda: plotting.plot_panels(
            panels(lambda s: results[f"{s}_total_control"]),
            title=f"Total control ∫ {symbol} dt vs each parameter",
            ylabel=f"∫₀ᵀ {symbol}(t) dt",
        ),
        "value_gain.png": lambda: plotting.plot_panels(
            panels(gain),
            title="Value gain V_control − V_baseline vs each parameter",
            ylabel="V gain",
            hline=0.0,
        ),
        "optimisation.png": lambda: plotting.plot_optimisation(
            history, baseline=float(baseline)
        ),
    }
    for name, label, log in sweeps:
        for prefix, *spec in curves:
            figures[f"{prefix}_{name}.png"] = curve(name, label, log, *spec)
    return figures


# ------------------------------------- learning rate on the semantic hierarchy


def learning_rate_config(**extra) -> Config:
    """The `learning-rate` problem (the paper's Table 3, "learning rate
    (Semantic)"), with the keys of `extra` (sections) added."""
    sections = dict(
        task=dict(levels=4),
        system=dict(hidden=40, lam=0.0, tau=1.0, init_scale=1e-4),
        control=dict(knots=91, lower=-1.0, upper=1.0, init=0.0),
        cost=dict(beta=1.0, offset=0.0),
        objective=dict(alpha=5e-3, steps=18000, gamma=1.0, eta=1.0),
        optimiser=dict(method="lbfgsb", gtol=1e-5, iterations=800, lr=5e-3),
        solver=dict(rtol=1e-7, atol=1e-9, max_steps=4096),
    )
    names = {**sections, **extra}
    return config(**{k: sections.get(k, {}) | extra.get(k, {}) for k in names})


# L-BFGS-B reaches `optimiser.gtol` in about 15-20 iterations at the quick size
# (31 knots); `optimiser.lr` is Adam's (`optimiser.method = "adam"`), which
# moves each coefficient by about `lr` per iteration: the quick runs take
# larger steps so that 60 iterations reach a visible schedule.
LEARNING_RATE_QUICK = {
    "optimiser.iterations": 60,
    "control.knots": 31,
    "optimiser.lr": 0.05,
}


def learning_rate_problem(cfg):
    """The two-layer network learning the `task.levels`-level hierarchy at the
    rate $\\alpha(1 + \\rho(t))$ (`lc.systems.LearningRate`), with the cost
    $\\beta(\\rho - $ `cost.offset`$)^2$. Returns `p -> Setup`, `p` holding
    `gamma` and `beta` (traced in a sweep)."""
    s, task = cfg.system, lc.tasks.SemanticHierarchy(cfg.task.levels)
    system = lc.systems.LearningRate(
        task, hidden=s.hidden, lam=s.lam, tau=s.tau, seed=cfg.seed, scale=s.init_scale
    )
    control = cmp.knot_control(cfg, system.control_shape)
    T, eta, init = cmp.horizon(cfg), cfg.objective.eta, cfg.control.init

    def build(p) -> Setup:
        cost = lc.costs.Quadratic(beta=p["beta"], offset=cfg.cost.offset)
        objective = lc.Objective(T=T, gamma=p["gamma"], eta=eta)
        return Setup(lc.Problem(system, control, cost, objective), control.init(init))

    return build
