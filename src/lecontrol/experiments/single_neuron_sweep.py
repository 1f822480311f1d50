r"""Single neuron: the optimal gain control swept over γ, σ, β, λ and the horizon.

The paper's single-neuron sweeps (Table 1; Figs. 2e-h and 9): starting from the single-neuron problem
(`single-neuron`, the first row of the table), one parameter at a time takes
30 values — the discount $\gamma \in 10^{[-8, 0]}$, the input noise
$\sigma \in [10^{-5}, 5]$, the cost scale $\beta \in [10^{-5}, 2]$, the
regularisation $\lambda \in [0, 5]$ and the horizon $N \in \{200, 250, \dots,
1200\}$ SGD steps — while the others keep their defaults. Every problem of
every sweep (and the default point) is optimised in ONE computation:
`lc.sweep.optimize_batch` vmaps projected gradient ascent over the
$4\times30 + 21 + 1$ problems and shards them across `jax.devices()`.

The paper finds more control for larger $\gamma$ (the future counts, so
faster learning pays), and less for larger $\sigma$ (noise makes the gain less
useful) and larger $\beta$ (control costs more). The run measures the total
control $\int_0^T g\,dt$ and the gain $V_\text{control} - V_\text{baseline}$
per value, and reports the Spearman rank correlation of the total control
with each parameter (`trends`) and the three findings as booleans.

The helpers `sweep_points`, `rank_correlation`, `plot_panels` and
`plot_curves_by_value` are shared with `learning-rate-sweep`.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
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
from .common import next_checkpoint, paper_lr

NAME = "single-neuron-sweep"
DESCRIPTION = (
    "Single neuron: optimal gain swept over gamma, sigma, beta, lambda and the "
    "horizon N, as one vmapped, sharded optimisation."
)


def _grid(values) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@dataclasses.dataclass(frozen=True)
class SingleNeuronSweepConfig(ExperimentConfig):
    r"""Parameters of the single-neuron sweeps (defaults: the paper's Table 1).

    The default point is the `single-neuron` experiment's configuration:

    - `alpha`, `steps`: SGD learning rate and number of steps ($T = N\alpha$).
    - `mu`, `sigma`: class mean and standard deviation of the inputs.
    - `lam`, `tau`, `w0`: regularisation, time constant, initial weight.
    - `lower`, `upper`: bounds of the control $g$.
    - `gamma`, `beta`, `eta`: discount per unit time, cost scale, weight of
      performance.
    - `lr`: the paper's control learning rate, converted per problem to a step
      on the hat coefficients (`paper_lr`; the knot spacing changes with $N$).
    - `iterations`: projected-gradient-ascent iterations (every problem).
    - `knots`: knots of the piecewise-linear control on each problem's $[0, T]$.

    The sweeps (each varies one parameter, the others at the default point):

    - `gammas`, `sigmas`, `betas`, `lams`: the values of $\gamma$, $\sigma$,
      $\beta$, $\lambda$.
    - `horizons`: the values of $N$ (SGD steps; $T = N\alpha$).

    Output and numerics:

    - `num_times`: samples of each $g(t)$ and loss curve in the results.
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
    gammas: tuple[float, ...] = _grid(10.0 ** np.linspace(-8, 0, 30))
    sigmas: tuple[float, ...] = _grid(np.linspace(1e-5, 5, 30))
    betas: tuple[float, ...] = _grid(np.linspace(1e-5, 2, 30))
    lams: tuple[float, ...] = _grid(np.linspace(0, 5, 30))
    horizons: tuple[int, ...] = tuple(range(200, 1201, 50))
    num_times: int = 201
    rtol: float = 1e-7
    atol: float = 1e-9
    max_steps: int = 4096

    def check(self) -> None:
        require_float(self, "alpha", positive=True)
        require_int(self, "steps", minimum=1)
        require_float(self, "lr", positive=True)
        require_int(self, "iterations", minimum=1)
        require_int(self, "knots", minimum=2)
        require_int(self, "num_times", minimum=2)
        require_float(self, "rtol", positive=True)
        require_float(self, "atol", nonnegative=True)
        require_int(self, "max_steps", minimum=1)
        check_values(self, "gammas", lambda v: 0 < v <= 1, "in (0, 1]")
        check_values(self, "sigmas", lambda v: v >= 0, ">= 0")
        check_values(self, "betas", lambda v: v >= 0, ">= 0")
        check_values(self, "lams", lambda v: v >= 0, ">= 0")
        check_values(self, "horizons", lambda v: v >= 1, ">= 1")

    @property
    def T(self) -> float:
        """The default horizon $T = N\\alpha$."""
        return self.steps * self.alpha


QUICK = {
    "iterations": 40,
    "knots": 16,
    "gammas": (1e-6, 1e-2, 0.99),
    "sigmas": (0.5, 1.0, 2.0),
    "betas": (0.1, 0.3, 1.0),
    "lams": (0.0, 0.1, 1.0),
    "horizons": (300, 600, 900),
    "num_times": 51,
}


def check_values(cfg, key: str, ok: Callable[[float], bool], what: str) -> None:
    """A sweep's values: a non-empty tuple of finite numbers satisfying `ok`."""
    values = getattr(cfg, key)
    require(
        isinstance(values, tuple) and len(values) > 0,
        key,
        "must be a non-empty list of values",
        values,
    )
    for v in values:
        require(
            isinstance(v, (int, float))
            and not isinstance(v, bool)
            and math.isfinite(v)
            and ok(v),
            key,
            f"must hold finite values {what}",
            values,
        )


# ------------------------------------------------------- sweeps as one batch


class Segment(typing.NamedTuple):
    """One sweep inside the batch: `values` of `name` at `rows` of the batch."""

    name: str
    values: np.ndarray
    rows: slice


def sweep_points(
    default: Mapping[str, float], sweeps: Sequence[tuple[str, str, Sequence[float]]]
) -> tuple[dict[str, np.ndarray], list[Segment]]:
    """One batch of parameter points: the default point, then every sweep.

    **Arguments:**

    - `default`: parameter name → default value (the batch's keys).
    - `sweeps`: `(name, key, values)`: the sweep `name` sets parameter `key` to
      each of `values`, the others at their defaults.

    **Returns:** `(params, segments)`: `params` maps each key to an array over
    the batch (row 0 is the default point); `segments` says which rows belong
    to which sweep.
    """
    rows = [dict(default)]
    segments = []
    for name, key, values in sweeps:
        start = len(rows)
        rows += [{**default, key: float(v)} for v in values]
        segments.append(
            Segment(name, np.asarray(values, dtype=float), slice(start, len(rows)))
        )
    params = {k: np.asarray([r[k] for r in rows], dtype=float) for k in default}
    return params, segments


def announce(progress: bool, problems: int, iterations: int) -> None:
    """A sweep runs as one computation, without a progress bar: say what it does."""
    if progress:
        import jax

        print(
            f"optimising {problems} problems x {iterations} iterations as one "
            f"computation on {jax.device_count()} device(s)...",
            file=sys.stderr,
            flush=True,
        )


def rank_correlation(x, y) -> float:
    """Spearman's rank correlation of `x` and `y` (0 when either is constant)."""
    rx = np.argsort(np.argsort(np.asarray(x, dtype=float))).astype(float)
    ry = np.argsort(np.argsort(np.asarray(y, dtype=float))).astype(float)
    if rx.std() == 0 or ry.std() == 0 or np.ptp(np.asarray(y, dtype=float)) == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def batch_arrays(
    segments: Sequence[Segment], per_row: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """`{sweep}_{field}` arrays: each per-row array cut into the sweeps' rows,
    plus `{sweep}_values`; `default_{field}` holds row 0."""
    out: dict[str, np.ndarray] = {}
    for field, arr in per_row.items():
        out[f"default_{field}"] = np.asarray(arr[0])
        for s in segments:
            out[f"{s.name}_{field}"] = np.asarray(arr[s.rows])
    for s in segments:
        out[f"{s.name}_values"] = s.values
    return out


# ------------------------------------------------------------------ the problem

SWEEPS = (
    # (sweep name, parameter key, config field, axis label, log axis)
    ("gamma", "gamma", "gammas", "discount γ (per unit time)", True),
    ("sigma", "sigma", "sigmas", "input noise σ", False),
    ("beta", "beta", "betas", "cost scale β", False),
    ("lam", "lam", "lams", "regularisation λ", False),
    ("horizon", "T", "horizons", "horizon N (SGD steps)", False),
)


def problem(config: SingleNeuronSweepConfig) -> Callable[[Mapping], Setup]:
    """The function `p -> Setup` of one parameter point (`lc.sweep`'s `build`).

    `p` holds `gamma`, `sigma`, `beta`, `lam` and the horizon `T`; everything
    else comes from `config`.
    """

    def build_point(p) -> Setup:
        task = lc.tasks.TwoGaussians(mu=config.mu, sigma=p["sigma"])
        system = lc.systems.SingleNeuronGain(
            task, lam=p["lam"], tau=config.tau, w0=config.w0
        )
        control = lc.controls.PiecewiseLinear(
            jnp.linspace(0.0, p["T"], config.knots),
            shape=system.control_shape,
            lower=config.lower,
            upper=config.upper,
        )
        cost = lc.costs.Quadratic(beta=p["beta"])
        objective = lc.Objective(T=p["T"], gamma=p["gamma"], eta=config.eta)
        return Setup(lc.Problem(system, control, cost, objective), control.init(0.0))

    return build_point


def optimizer(config: SingleNeuronSweepConfig):
    """The function `p -> ProjectedGradientAscent` of one parameter point.

    The paper's learning rate `lr` is one step per SGD step; on hat
    coefficients it becomes `lr * alpha / dt_knots` (`paper_lr`), and the knot
    spacing grows with the horizon.
    """

    def for_point(p) -> lc.optimizers.ProjectedGradientAscent:
        spacing = p["T"] / (config.knots - 1)
        return lc.optimizers.ProjectedGradientAscent(
            lr=paper_lr(config.lr, config.alpha, spacing)
        )

    return for_point


def points(config: SingleNeuronSweepConfig):
    """The batch of `sweep_points`: default point, then the five sweeps."""
    default = {
        "gamma": config.gamma,
        "sigma": config.sigma,
        "beta": config.beta,
        "lam": config.lam,
        "T": config.T,
    }
    sweeps = []
    for name, key, field, _, _ in SWEEPS:
        values = getattr(config, field)
        if name == "horizon":
            values = [n * config.alpha for n in values]
        sweeps.append((name, key, values))
    params, segments = sweep_points(default, sweeps)
    # The horizon sweep is reported in SGD steps.
    segments = [
        s._replace(values=np.asarray(config.horizons, dtype=float))
        if s.name == "horizon"
        else s
        for s in segments
    ]
    return params, segments


def _row(params, i):
    return {k: v[i] for k, v in params.items()}


def build(config: SingleNeuronSweepConfig) -> Setup:
    """The default point's problem; every sweep point is built once to check it."""
    params, _ = points(config)
    make = problem(config)
    for i in range(len(params["T"])):
        make(_row(params, i))
    return make(_row(params, 0))


def run(
    config: SingleNeuronSweepConfig,
    out_dir: Path,
    progress: bool,
    checkpoints: CheckpointFolder | None = None,
) -> RunOutput:
    """Optimise every point of every sweep at once; solve baseline and optimum."""
    params, segments = points(config)
    make = problem(config)
    options = lc.SolverOptions(
        rtol=config.rtol, atol=config.atol, max_steps=config.max_steps
    )
    announce(progress, len(params["T"]), config.iterations)
    res = lc.sweep.optimize_batch(
        make,
        params,
        optimizer=optimizer(config),
        steps=config.iterations,
        options=options,
        checkpoint=next_checkpoint(checkpoints),
        progress=progress,
    )
    n = len(params["T"])
    # Baseline (g = 0) and optimum of every point, in one more batch.
    both = {k: np.concatenate([v, v]) for k, v in params.items()}
    thetas = np.concatenate([np.zeros_like(res.theta), res.theta])
    traj = lc.sweep.solve_batch(
        make, both, thetas, num_times=config.num_times, options=options
    )
    knots = np.linspace(0.0, 1.0, config.knots)[None, :] * params["T"][:, None]
    per_row = {
        "ts": traj.ts[n:],
        "g": traj.g[n:],
        "baseline_loss": traj.loss[:n],
        "control_loss": traj.loss[n:],
        "theta": res.theta,
        "total_control": np.trapezoid(res.theta, knots, axis=1),
        "V_baseline": traj.V[:n, -1],
        "V_control": traj.V[n:, -1],
        "V_history": res.values,
    }
    results = batch_arrays(segments, per_row)
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
            "less_control_for_larger_sigma": ("sigma", -1),
            "less_control_for_larger_beta": ("beta", -1),
        },
    )
    return RunOutput(results, summary)


def sweep_summary(
    res: lc.sweep.SweepResult,
    segments: Sequence[Segment],
    results: Mapping[str, np.ndarray],
    *,
    solver_steps: dict,
    findings: Mapping[str, tuple[str, int]],
) -> dict:
    """Summary of a sweep run: the default point's values, trends, findings.

    `findings` maps a finding's name to `(sweep, sign)`: it holds when the rank
    correlation of the total control with the swept parameter has that sign.
    """
    trends = {
        s.name: rank_correlation(s.values, results[f"{s.name}_total_control"])
        for s in segments
    }
    gains = np.concatenate(
        [
            results[f"{s.name}_V_control"] - results[f"{s.name}_V_baseline"]
            for s in segments
        ]
    )
    failed = ~res.completed
    completed = not np.any(failed)
    V_b, V_c = float(results["default_V_baseline"]), float(results["default_V_control"])
    return {
        "V_baseline": V_b,
        "V_control": V_c,
        "V_gain": V_c - V_b,
        "iterations": int(res.values.shape[1]),
        "wall_time_s": float(res.wall_time),
        "solver_steps": solver_steps,
        "status": "completed" if completed else str(res.status[failed][0]),
        "message": (
            f"optimised {res.values.shape[0]} problems for {res.values.shape[1]} "
            f"iterations each on {res.num_devices} device(s)"
            if completed
            else f"{int(np.sum(failed))} problems stopped early, their best theta "
            f"kept; the first: {res.message[int(np.argmax(failed))]}"
        ),
        "problems": int(res.values.shape[0]),
        "devices": int(res.num_devices),
        "min_V_gain": float(gains.min()),
        "trends": trends,
        "findings": {
            name: bool(np.sign(trends[sweep]) == sign)
            for name, (sweep, sign) in findings.items()
        },
    }


# ----------------------------------------------------------------- figures


def plot_panels(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray, bool]],
    *,
    title: str,
    ylabel: str,
    hline: float | None = None,
):
    """One small panel per sweep: `(xlabel, x, y, log_x)`."""
    import matplotlib.pyplot as plt

    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols, 3.4 * rows), layout="constrained"
    )
    axes = np.atleast_1d(axes).ravel()
    for ax, (xlabel, x, y, logx) in zip(axes, panels):
        x = plotting.check_plottable(xlabel, x)
        y = plotting.check_plottable(f"{ylabel} vs {xlabel}", y)
        ax.plot(x, y, marker="o", **{**plotting.CONTROL_STYLE, "linewidth": 1.5})
        if hline is not None:
            ax.axhline(hline, color="0.6", linestyle=":", linewidth=1.0)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig


def plot_curves_by_value(
    ts,
    curves,
    values,
    *,
    title: str,
    ylabel: str,
    label: str,
    log: bool = False,
    xlabel: str = plotting.TIME_LABEL,
):
    """Curves `curves[i]` over `ts[i]` (or a shared `ts`), coloured by `values[i]`."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize

    curves = plotting.check_plottable(ylabel, curves)
    values = plotting.check_plottable(label, values)
    ts = plotting.check_plottable("ts", ts)
    if ts.ndim == 1:
        ts = np.broadcast_to(ts, curves.shape)
    lo, hi = float(values.min()), float(values.max())
    if hi == lo:
        hi = lo + 1.0
    norm = LogNorm(lo, hi) if log and lo > 0 else Normalize(lo, hi)
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    for t, c, v in zip(ts, curves, values):
        ax.plot(t, c, color=cmap(norm(v)), linewidth=1.2)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig


def plot(results, config: SingleNeuronSweepConfig, out_dir: Path) -> list[Path]:
    """Total control and value gain vs each parameter; g(t) coloured by value."""
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
            title="Total control ∫ g dt vs each parameter",
            ylabel="∫₀ᵀ g(t) dt",
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
        figures[f"control_{name}.png"] = lambda name=name, label=label, log=log: (
            plot_curves_by_value(
                results[f"{name}_ts"],
                results[f"{name}_g"],
                results[f"{name}_values"],
                title=f"Optimal gain g(t) across {label}",
                ylabel="control g(t)",
                label=label,
                log=log,
            )
        )
    return [io.save_figure(draw(), out_dir / name) for name, draw in figures.items()]


EXPERIMENT = Experiment(
    name=NAME,
    description=DESCRIPTION,
    config=SingleNeuronSweepConfig,
    quick=QUICK,
    build=build,
    run=run,
    plot=plot,
)

__all__ = [
    "EXPERIMENT",
    "SingleNeuronSweepConfig",
    "Segment",
    "announce",
    "batch_arrays",
    "build",
    "optimizer",
    "plot",
    "plot_curves_by_value",
    "plot_panels",
    "points",
    "problem",
    "rank_correlation",
    "run",
    "sweep_points",
    "sweep_summary",
]
