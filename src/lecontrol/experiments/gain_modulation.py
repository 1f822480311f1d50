r"""What the gain-modulation experiments share (the paper's Sec. 6 and App. I; docs/systems/two-layer.md).

`effort-gaussians`, `effort-semantic`, `effort-digits`, `nonlinear` and
`task-switch` all control a two-layer network through gains on its weights,
$\tilde W_i = (1 + G_i)\circ W_i$, with the cost
$C = \exp(\beta(\lVert G_1\rVert_F^2 + \lVert G_2\rVert_F^2)) - 1$ and the bounds
$G \in [-0.5, 0.5]$. They differ in the task and the system only, so this
module holds the rest:

- `GainConfig`: the fields of the Gaussians column of the paper's Table 5;
  each experiment subclasses it with its own defaults and task fields.
- `gain_setup`: system → control (per-weight gains, or the neuron basis on
  $W_2$'s rows) → cost → objective.
- `run_gain`: baseline vs optimised control (`common.compare`), derived
  arrays (weight norms, control magnitude per layer), the findings of the paper
  ("control concentrated early and near the steepest loss drops; loss falls
  faster than baseline; weights end sparser") as summary entries, and the SGD
  replay of both controls with `lc.simulate`.
- `gain_figures`: the paper's panels (loss, control over time and as a heatmap
  over weights, net-reward difference, weight norms, SGD replay).

The finding measures are plain functions of saved arrays
(`fraction_in_first_quarter`, `time_to_threshold`, `steepest_drop_time`), so
`lecontrol plot` and the reproduction report can recompute them.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lecontrol as lc

from .. import io, plotting
from ..checkpoint import CheckpointFolder
from .base import (
    ExperimentConfig,
    RunOutput,
    Setup,
    require,
    require_float,
    require_int,
)
from .common import (
    Comparison,
    compare,
    comparison_arrays,
    comparison_summary,
    next_checkpoint,
    paper_lr,
)

BASES = ("weight", "neuron")


@dataclasses.dataclass(frozen=True)
class GainConfig(ExperimentConfig):
    r"""Parameters shared by the gain-modulation experiments.

    Defaults are the Gaussians column of the paper's Table 5; the experiments
    override what differs.

    - `alpha`: SGD learning rate $\alpha$; with `steps` it sets the horizon
      $T = N\alpha$ (time in units of $\tau_w = 1$).
    - `steps`: number of SGD steps $N$ the learning period spans.
    - `hidden`: hidden units $H$.
    - `lam`: L2 regularisation $\lambda$ of the raw weights; `tau`: time constant.
    - `init_scale`: standard deviation of the i.i.d. Gaussian initial weights
      (drawn from `seed`).
    - `lower`, `upper`: bounds of every gain.
    - `gamma`: discount per unit time; `beta`: cost scale; `eta`: weight of
      performance.
    - `lr`: the paper's control learning rate (one control value per SGD step);
      the hat-basis coefficients move by `lr * alpha / dt_knots` (`paper_lr`).
    - `iterations`: optimisation iterations (projected gradient ascent).
    - `knots`: knots of the piecewise-linear control on $[0, T]$.
    - `basis`: `"weight"` (one gain per weight of both layers, the paper's
      default) or `"neuron"` (one gain per output neuron on $W_2$'s rows,
      $G_1 = 0$: the paper's neuron basis, App. H.1.1).
    - `control_init`: the constant gain the optimisation starts from.
    - `record_every`: SGD steps between saved time points (must divide `steps`).
    - `threshold_fraction`: the loss threshold of the "time to learn" finding is
      reached when this fraction of the baseline's total loss reduction is done.
    - `replay`: also run real minibatch SGD (`lc.simulate`) with the baseline
      and the optimised control; `replay_batch` samples per step,
      `replay_seeds` runs each.
    - `rtol`, `atol`, `max_steps`: ODE solver tolerances and step budget.
    - `seed`: initial weights and SGD batches.
    """

    alpha: float = 5e-3
    steps: int = 16000
    hidden: int = 6
    lam: float = 0.01
    tau: float = 1.0
    init_scale: float = 0.01
    lower: float = -0.5
    upper: float = 0.5
    gamma: float = 0.99
    beta: float = 0.3
    eta: float = 1.0
    lr: float = 10.0
    iterations: int = 1000
    knots: int = 201
    basis: str = "weight"
    control_init: float = 0.0
    record_every: int = 20
    threshold_fraction: float = 0.9
    replay: bool = True
    replay_batch: int = 32
    replay_seeds: int = 4
    rtol: float = 1e-7
    atol: float = 1e-9
    max_steps: int = 4096

    def check(self) -> None:
        check_gain(self)

    @property
    def T(self) -> float:
        """The horizon $T = N\\alpha$."""
        return self.steps * self.alpha


def check_gain(cfg: GainConfig) -> None:
    """Range checks of the `GainConfig` fields (raise `ConfigError` naming the key)."""
    require_float(cfg, "alpha", positive=True)
    require_int(cfg, "steps", minimum=1)
    require_int(cfg, "hidden", minimum=1)
    require_float(cfg, "init_scale", nonnegative=True)
    require_float(cfg, "lr", positive=True)
    require_int(cfg, "iterations", minimum=0)
    require_int(cfg, "knots", minimum=2)
    require(cfg.basis in BASES, "basis", f"must be one of {BASES}", cfg.basis)
    require_float(cfg, "control_init")
    require_int(cfg, "record_every", minimum=1)
    require(
        cfg.steps % cfg.record_every == 0,
        "record_every",
        f"must divide `steps` = {cfg.steps}",
        cfg.record_every,
    )
    require_float(cfg, "threshold_fraction", positive=True, at_most=1.0)
    require(isinstance(cfg.replay, bool), "replay", "must be true or false", cfg.replay)
    require_int(cfg, "replay_batch", minimum=1)
    require_int(cfg, "replay_seeds", minimum=1)
    require_float(cfg, "rtol", positive=True)
    require_float(cfg, "atol", nonnegative=True)
    require_int(cfg, "max_steps", minimum=1)
    if cfg.lower <= cfg.upper:
        require(
            cfg.lower <= cfg.control_init <= cfg.upper,
            "control_init",
            f"must lie within [lower, upper] = [{cfg.lower}, {cfg.upper}]",
            cfg.control_init,
        )


# ------------------------------------------------------------------ the problem


def gain_control(config: GainConfig, system) -> lc.controls.AbstractControl:
    """Piecewise-linear gains on `config.knots` knots, per weight or per neuron."""
    knots = jnp.linspace(0.0, config.T, config.knots)
    shape = system.control_shape
    if config.basis == "weight":
        return lc.controls.PiecewiseLinear(
            knots, shape=shape, lower=config.lower, upper=config.upper
        )
    outputs = shape[1][0]
    inner = lc.controls.PiecewiseLinear(
        knots, shape=(outputs,), lower=config.lower, upper=config.upper
    )
    return lc.controls.NeuronBasis(inner, shape, leaf=1, axis=0)


def gain_setup(config: GainConfig, system) -> Setup:
    """The `Setup` of a gain-modulation problem on `system`."""
    control = gain_control(config, system)
    cost = lc.costs.ExpQuadratic(beta=config.beta)
    objective = lc.Objective(T=config.T, gamma=config.gamma, eta=config.eta)
    return Setup(
        lc.Problem(system, control, cost, objective), control.init(config.control_init)
    )


def record_times(config: GainConfig) -> jax.Array:
    """Saved times: every `record_every` SGD steps, from 0 to $T$."""
    return jnp.linspace(0.0, config.T, config.steps // config.record_every + 1)


def numerics(config: GainConfig) -> lc.SolverOptions:
    return lc.SolverOptions(
        rtol=config.rtol, atol=config.atol, max_steps=config.max_steps
    )


# --------------------------------------------------------------- finding measures


def _integral(ts: np.ndarray, y: np.ndarray) -> float:
    return float(np.trapezoid(y, ts))


def fraction_in_first_quarter(ts, effort) -> float | None:
    r"""$\int_0^{T/4} e\,dt / \int_0^T e\,dt$ (trapezoid on `ts`); `None` if $e \equiv 0$.

    For a control that does not depend on time the fraction is 1/4; the paper's
    finding "control concentrated early" is a fraction well above that.
    """
    ts, e = np.asarray(ts, dtype=float), np.asarray(effort, dtype=float)
    total = _integral(ts, e)
    if not total > 0:
        return None
    quarter = ts[0] + 0.25 * (ts[-1] - ts[0])
    grid = np.union1d(ts[ts <= quarter], [quarter])
    return _integral(grid, np.interp(grid, ts, e)) / total


def time_to_threshold(ts, loss, threshold: float) -> float | None:
    """First time at which `loss` <= `threshold` (linear interpolation), or `None`."""
    ts, loss = np.asarray(ts, dtype=float), np.asarray(loss, dtype=float)
    below = np.flatnonzero(loss <= threshold)
    if below.size == 0:
        return None
    i = int(below[0])
    if i == 0:
        return float(ts[0])
    l0, l1 = loss[i - 1], loss[i]
    return float(ts[i - 1] + (l0 - threshold) / (l0 - l1) * (ts[i] - ts[i - 1]))


def steepest_drop_time(ts, loss) -> float:
    r"""Time of the fastest loss decrease, $\arg\max_t(-d\langle L\rangle/dt)$."""
    ts, loss = np.asarray(ts, dtype=float), np.asarray(loss, dtype=float)
    rate = -np.diff(loss) / np.diff(ts)
    i = int(np.argmax(rate))
    return float(0.5 * (ts[i] + ts[i + 1]))


def _layers(results: Mapping[str, np.ndarray], prefix: str, field: str):
    return [results[f"{prefix}_{field}{i}"] for i in (0, 1)]


def weight_norms(results, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    r"""$L_1 = \sum_i\lVert W_i\rVert_1$ and $L_2 = (\sum_i\lVert W_i\rVert_F^2)^{1/2}$ over time."""
    W = _layers(results, prefix, "w")
    n = W[0].shape[0]
    l1 = sum(np.abs(w.reshape(n, -1)).sum(1) for w in W)
    l2 = np.sqrt(sum((w.reshape(n, -1) ** 2).sum(1) for w in W))
    return l1, l2


def control_effort(results, prefix: str = "control") -> np.ndarray:
    r"""$\lVert G_1\rVert_F^2 + \lVert G_2\rVert_F^2$ over time (what the cost grows with)."""
    G = _layers(results, prefix, "g")
    n = G[0].shape[0]
    return sum((g.reshape(n, -1) ** 2).sum(1) for g in G)


def derived_arrays(results: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Weight norms of both runs and the controlled gains' size per layer."""
    out = {}
    for prefix in ("baseline", "control"):
        out[f"{prefix}_l1"], out[f"{prefix}_l2"] = weight_norms(results, prefix)
    G = _layers(results, "control", "g")
    n = G[0].shape[0]
    for i, g in enumerate(G):
        out[f"control_mean_abs_g{i}"] = np.abs(g.reshape(n, -1)).mean(1)
    out["control_effort"] = control_effort(results)
    return out


def gain_findings(results: Mapping[str, np.ndarray], config: GainConfig) -> dict:
    """Summary entries for the paper's gain-modulation findings (Sec. 6.1, Figs. 5, 10-11)."""
    ts = results["ts"]
    lb, lc_ = results["baseline_loss"], results["control_loss"]
    effort = results["control_effort"]
    target = lb[0] - config.threshold_fraction * (lb[0] - lb[-1])
    t_base = time_to_threshold(ts, lb, target)
    t_ctrl = time_to_threshold(ts, lc_, target)
    return {
        "control_fraction_first_quarter": fraction_in_first_quarter(ts, effort),
        "t_peak_control": float(ts[int(np.argmax(effort))]),
        "t_steepest_drop_baseline": steepest_drop_time(ts, lb),
        "t_steepest_drop_control": steepest_drop_time(ts, lc_),
        "loss_threshold": float(target),
        "t_threshold_baseline": t_base,
        "t_threshold_control": t_ctrl,
        "cumulative_loss_baseline": _integral(ts, lb),
        "cumulative_loss_control": _integral(ts, lc_),
        "final_loss_baseline": float(lb[-1]),
        "final_loss_control": float(lc_[-1]),
        "final_l1_baseline": float(results["baseline_l1"][-1]),
        "final_l1_control": float(results["control_l1"][-1]),
        "final_l2_baseline": float(results["baseline_l2"][-1]),
        "final_l2_control": float(results["control_l2"][-1]),
        "final_l1_over_l2_baseline": float(
            results["baseline_l1"][-1] / results["baseline_l2"][-1]
        ),
        "final_l1_over_l2_control": float(
            results["control_l1"][-1] / results["control_l2"][-1]
        ),
    }


# ----------------------------------------------------------------------- replay


class Replay(typing.NamedTuple):
    """SGD runs of the baseline and of the optimised control (`lc.simulate`)."""

    baseline: typing.Any
    control: typing.Any


def replay(
    config: GainConfig, setup: Setup, c: Comparison, *, data=None
) -> tuple[Replay, dict[str, np.ndarray], dict]:
    r"""Real minibatch SGD with $g = 0$ and with the optimised control.

    Both use the same seeds (`replay_seeds` runs derived from `seed`) and
    record every `record_every` steps, i.e. at the ODE's saved times.

    **Returns:** the two `lc.SimulationResult`s, arrays (seed-mean loss and its
    standard error per run) and summary entries: the final SGD losses, the value
    $V$ of each SGD run (trapezoid of $\gamma^t[-\eta L - C(g)]$ at the
    records), and the largest gap between the SGD mean and the ODE loss.
    """
    keys = jax.random.split(
        jax.random.fold_in(jax.random.key(config.seed), 1), config.replay_seeds
    )
    kw = dict(
        alpha=config.alpha,
        steps=config.steps,
        batch_size=config.replay_batch,
        seeds=keys,
        record_every=config.record_every,
        data=data,
    )
    s = setup
    sims = Replay(
        lc.simulate(s.problem, c.theta_baseline, **kw),
        lc.simulate(s.problem, c.result.theta, **kw),
    )
    arrays, summary = {}, {}
    for name, sim, ode in (
        ("baseline", sims.baseline, c.baseline),
        ("control", sims.control, c.controlled),
    ):
        ts = np.asarray(sim.ts)
        mean = np.asarray(sim.mean_loss)
        arrays[f"sgd_{name}_loss_mean"] = mean
        arrays[f"sgd_{name}_loss_stderr"] = np.asarray(sim.stderr_loss)
        cost = np.asarray(jax.vmap(s.cost)(sim.g))
        v = config.gamma**ts * (-config.eta * mean - cost)
        summary[f"sgd_V_{name}"] = _integral(ts, v)
        summary[f"sgd_final_loss_{name}"] = float(mean[-1])
        summary[f"sgd_max_gap_to_ode_{name}"] = float(
            np.max(np.abs(mean - np.asarray(ode.loss)))
        )
    arrays["sgd_ts"] = np.asarray(sims.control.ts)
    summary["sgd_batch"] = config.replay_batch
    summary["sgd_seeds"] = config.replay_seeds
    return sims, arrays, summary


# ------------------------------------------------------------------------- run


class GainRun(typing.NamedTuple):
    """Everything `run_gain` computed, for experiments that add to it."""

    setup: Setup
    comparison: Comparison
    results: dict[str, np.ndarray]
    summary: dict
    replay: Replay | None

    @property
    def output(self) -> RunOutput:
        return RunOutput(self.results, self.summary)


def run_gain(
    config: GainConfig,
    system,
    progress: bool,
    *,
    replay_data=None,
    checkpoints: CheckpointFolder | None = None,
) -> GainRun:
    """Baseline vs optimised gains on `system`, findings, and the SGD replay.

    **Arguments:**

    - `config`: a `GainConfig`.
    - `system`: the learning system (`control_shape` `((H, in), (out, H))`).
    - `progress`: show the optimisation's progress bar.
    - `replay_data`: where SGD's samples come from (default: the system's task).
    - `checkpoints`: the run's checkpoint folder (from `execute`), or None.
    """
    setup = gain_setup(config, system)
    lr = paper_lr(config.lr, config.alpha, config.T / (config.knots - 1))
    c = compare(
        setup,
        ts=record_times(config),
        optimizer=lc.optimizers.ProjectedGradientAscent(lr=lr),
        iterations=config.iterations,
        options=numerics(config),
        progress=progress,
        checkpoint=next_checkpoint(checkpoints),
    )
    results = comparison_arrays(c) | {"knots": np.asarray(setup.control.knots)}
    results |= derived_arrays(results)
    summary = comparison_summary(c, control_lr_theta=lr, T=config.T)
    summary |= gain_findings(results, config)
    sims = None
    if config.replay:
        sims, arrays, extra = replay(config, setup, c, data=replay_data)
        results |= arrays
        summary |= extra
    return GainRun(setup, c, results, summary, sims)


# ---------------------------------------------------------------------- figures

PAIR = {
    "baseline (G = 0)": plotting.BASELINE_STYLE,
    "optimal control": plotting.CONTROL_STYLE,
}
BASE, CTRL = list(PAIR)


def _mark(fig, vlines: Sequence[float], label: str = "task switch"):
    for ax in fig.axes[:1]:
        for j, x in enumerate(vlines):
            ax.axvline(
                x,
                color="tab:purple",
                alpha=0.35,
                linewidth=0.9,
                label=label if j == 0 else None,
            )
        if len(vlines):
            ax.legend(loc="best")
    return fig


def control_heatmap(results, config: GainConfig, *, vlines: Sequence[float] = ()):
    """Every gain over time: rows are weights (G1 then G2), colour the gain."""
    import matplotlib.pyplot as plt

    ts = plotting.check_plottable("ts", results["ts"])
    G = [
        plotting.check_plottable(f"G{i + 1}", g)
        for i, g in enumerate(_layers(results, "control", "g"))
    ]
    n = ts.shape[0]
    rows = [g.reshape(n, -1).T for g in G]
    image = np.concatenate(rows, axis=0)
    lim = max(abs(config.lower), abs(config.upper), float(np.abs(image).max()), 1e-12)
    fig, ax = plt.subplots(figsize=(7.2, 4.2), layout="constrained")
    mesh = ax.imshow(
        image,
        aspect="auto",
        origin="lower",
        interpolation="nearest",
        cmap="RdBu_r",
        vmin=-lim,
        vmax=lim,
        extent=(ts[0], ts[-1], 0, image.shape[0]),
    )
    ax.axhline(rows[0].shape[0], color="k", linewidth=0.8)
    for x in vlines:
        ax.axvline(x, color="tab:purple", alpha=0.5, linewidth=0.8)
    ax.set_title("Optimal gains G(t), one row per weight")
    ax.set_xlabel(plotting.TIME_LABEL)
    ax.set_ylabel(f"weight index (G1: 0–{rows[0].shape[0] - 1}, then G2)")
    fig.colorbar(mesh, ax=ax, label="gain G")
    return fig


def weight_norms_figure(results, *, vlines: Sequence[float] = ()):
    """$L_1$ and $L_2$ norms of the raw weights, baseline vs control."""
    import matplotlib.pyplot as plt

    ts = plotting.check_plottable("ts", results["ts"])
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.8), layout="constrained")
    for ax, norm in zip(axes, ("l1", "l2")):
        for label, prefix in ((BASE, "baseline"), (CTRL, "control")):
            y = plotting.check_plottable(
                f"{prefix}_{norm}", results[f"{prefix}_{norm}"]
            )
            ax.plot(ts, y, label=label, **PAIR[label])
        for x in vlines:
            ax.axvline(x, color="tab:purple", alpha=0.35, linewidth=0.9)
        ax.set_title({"l1": "L1 norm Σ|W|", "l2": "L2 norm (Σ W²)^½"}[norm])
        ax.set_xlabel(plotting.TIME_LABEL)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best")
    return fig


def replay_figure(results, *, loss_key: str = "loss", title: str | None = None):
    """ODE expected loss vs the seed-mean loss of real SGD (± 2 standard errors).

    `loss_key` picks the SGD arrays `sgd_{run}_{loss_key}_mean` / `_stderr`
    (e.g. `"real_loss"`: the real tanh network's loss in `nonlinear`).
    """
    import matplotlib.pyplot as plt

    ts = plotting.check_plottable("ts", results["ts"])
    sgd_ts = plotting.check_plottable("sgd_ts", results["sgd_ts"])
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    colours = {"baseline": "0.35", "control": "C0"}
    for prefix, label in (("baseline", BASE), ("control", CTRL)):
        ode = plotting.check_plottable(f"{prefix}_loss", results[f"{prefix}_loss"])
        ax.plot(ts, ode, label=f"ODE, {label}", **PAIR[label])
        mean = plotting.check_plottable(
            f"sgd_{prefix}_{loss_key}_mean", results[f"sgd_{prefix}_{loss_key}_mean"]
        )
        err = results[f"sgd_{prefix}_{loss_key}_stderr"]
        ax.plot(
            sgd_ts,
            mean,
            color=colours[prefix],
            linewidth=0.9,
            alpha=0.8,
            label=f"SGD mean, {label}",
        )
        ax.fill_between(
            sgd_ts, mean - 2 * err, mean + 2 * err, color=colours[prefix], alpha=0.2
        )
    ax.set_title(title or "SGD replay of the optimised control")
    ax.set_xlabel(plotting.TIME_LABEL)
    ax.set_ylabel("expected loss ⟨L⟩")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    return fig


def gain_figures(
    results: Mapping[str, np.ndarray],
    config: GainConfig,
    *,
    vlines: Sequence[float] = (),
) -> dict[str, Callable]:
    """Figure name → function drawing it, for the panels every gain experiment has."""
    ts = results["ts"]
    figures = {
        "loss.png": lambda: _mark(
            plotting.plot_lines(
                ts,
                {BASE: results["baseline_loss"], CTRL: results["control_loss"]},
                title="Expected loss ⟨L⟩(t)",
                ylabel="expected loss ⟨L⟩",
                styles=PAIR,
            ),
            vlines,
        ),
        "control.png": lambda: _mark(
            plotting.plot_lines(
                ts,
                {
                    "mean |G1| (layer 1)": results["control_mean_abs_g0"],
                    "mean |G2| (layer 2)": results["control_mean_abs_g1"],
                },
                title="Size of the optimal gains per layer",
                ylabel="mean |G| over the layer's weights",
                styles={
                    "mean |G1| (layer 1)": {"color": "C1", "linewidth": 2.0},
                    "mean |G2| (layer 2)": {"color": "C0", "linewidth": 2.0},
                },
            ),
            vlines,
        ),
        "control_heatmap.png": lambda: control_heatmap(results, config, vlines=vlines),
        "net_reward_difference.png": lambda: _mark(
            plotting.plot_difference(
                ts,
                results["control_v"] - results["baseline_v"],
                title="Net reward: control minus baseline",
                ylabel="v_control(t) − v_baseline(t)",
                label="γ^t [η P − C(G)] difference",
            ),
            vlines,
        ),
        "weight_norms.png": lambda: weight_norms_figure(results, vlines=vlines),
    }
    if "sgd_ts" in results:
        figures["sgd_replay.png"] = lambda: replay_figure(results)
    if results["values"].size:
        figures["optimisation.png"] = lambda: plotting.plot_optimisation(
            results["values"], baseline=float(results["baseline_V"][-1])
        )
    return figures


def save_figures(figures: Mapping[str, Callable], out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    return [io.save_figure(draw(), out_dir / name) for name, draw in figures.items()]


__all__ = [
    "GainConfig",
    "GainRun",
    "check_gain",
    "control_effort",
    "fraction_in_first_quarter",
    "gain_control",
    "gain_figures",
    "gain_findings",
    "gain_setup",
    "record_times",
    "replay",
    "run_gain",
    "save_figures",
    "steepest_drop_time",
    "time_to_threshold",
    "weight_norms",
]
