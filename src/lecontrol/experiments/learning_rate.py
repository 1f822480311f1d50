r"""Learning-rate control on the semantic hierarchy (the paper's App. F.2).

A two-layer linear network ($H = 40$) learns the $h = 4$ level hierarchy of
`lc.tasks.SemanticHierarchy` from small initial weights (standard deviation
$10^{-4}$: step-like learning, one drop per level). The control is the
learning rate itself: both weight equations are multiplied by $1 + \rho(t)$,
$\rho \in [-1, 1]$ (`lc.systems.LearningRate`, the bilevel-programming view of
a learning-rate schedule), at the cost $\beta(\rho - \text{offset})^2$. The
run compares the base rate ($\rho = 0$) with the schedule that maximises $V$
(Adam, the paper's "learning rate (Semantic)" row: lr $5\cdot10^{-3}$, 800
iterations, $N = 18000$ steps at $\alpha = 5\cdot10^{-3}$, $\gamma = \beta = 1$).

Besides $V$, the summary reports the total control $\int_0^T\rho\,dt$, and per
level of the hierarchy its final loss and when its loss has halved
(`level_times_*`): the paper finds (App. F.2, Fig. 8) that with costly control only the first
levels are worth learning (see `learning-rate-sweep` for the dependence on
$\gamma$ and $\beta$, and `offset = -1`, where all learning costs effort).
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
)

NAME = "learning-rate"
DESCRIPTION = (
    "Learning-rate schedule (1 + rho(t)) of a two-layer network on a 4-level "
    "semantic hierarchy (H = 40)."
)


@dataclasses.dataclass(frozen=True)
class LearningRateConfig(ExperimentConfig):
    r"""Parameters of `learning-rate` (defaults: the paper's Table 3).

    - `alpha`: SGD learning rate $\alpha$; with `steps` it sets the horizon
      $T = N\alpha$ (time in units of $\tau_w = 1$).
    - `steps`: number of SGD steps $N$ the learning period spans.
    - `levels`: levels $h$ of the hierarchy ($2^{h-1}$ items, $2^h - 1$ outputs).
    - `hidden`: hidden units $H$.
    - `lam`: L2 regularisation $\lambda$; `tau`: time constant.
    - `init_scale`: standard deviation of the i.i.d. Gaussian initial weights
      (drawn from `seed`); $10^{-4}$ is the paper's "rich" regime (App. J).
    - `lower`, `upper`: bounds of the control $\rho$.
    - `gamma`: discount per unit time; `beta`: cost scale; `offset`: the free
      value of $\rho$ in the cost $\beta(\rho - \text{offset})^2$ (0: the base
      rate is free; $-1$: every bit of learning costs effort); `eta`: weight of
      performance.
    - `lr`: Adam's learning rate on the control coefficients.
    - `iterations`: optimisation iterations.
    - `knots`: knots of the piecewise-linear $\rho(t)$ on $[0, T]$.
    - `control_init`: the constant $\rho$ the optimisation starts from.
    - `record_every`: SGD steps between saved time points (must divide `steps`).
    - `rtol`, `atol`, `max_steps`: ODE solver tolerances and step budget (a
      solve takes a few hundred steps).
    - `seed`: initial weights.
    """

    alpha: float = 5e-3
    steps: int = 18000
    levels: int = 4
    hidden: int = 40
    lam: float = 0.0
    tau: float = 1.0
    init_scale: float = 1e-4
    lower: float = -1.0
    upper: float = 1.0
    gamma: float = 1.0
    beta: float = 1.0
    offset: float = 0.0
    eta: float = 1.0
    lr: float = 5e-3
    iterations: int = 800
    knots: int = 91
    control_init: float = 0.0
    record_every: int = 20
    rtol: float = 1e-7
    atol: float = 1e-9
    max_steps: int = 4096

    def check(self) -> None:
        check_learning_rate(self)

    @property
    def T(self) -> float:
        """The horizon $T = N\\alpha$."""
        return self.steps * self.alpha


def check_learning_rate(cfg: LearningRateConfig) -> None:
    """Range checks of the `LearningRateConfig` fields (raise naming the key)."""
    require_float(cfg, "alpha", positive=True)
    require_int(cfg, "steps", minimum=1)
    require_int(cfg, "levels", minimum=1)
    require_int(cfg, "hidden", minimum=1)
    require_float(cfg, "init_scale", nonnegative=True)
    require_float(cfg, "offset")
    require_float(cfg, "lr", positive=True)
    require_int(cfg, "iterations", minimum=0)
    require_int(cfg, "knots", minimum=2)
    require_float(cfg, "control_init")
    require_int(cfg, "record_every", minimum=1)
    require(
        cfg.steps % cfg.record_every == 0,
        "record_every",
        f"must divide `steps` = {cfg.steps}",
        cfg.record_every,
    )
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


# Adam moves each coefficient by about `lr` per iteration: the quick run takes
# larger steps so that 30 iterations reach a visible schedule.
QUICK = {"iterations": 30, "knots": 31, "lr": 0.05, "record_every": 100}


def system(config: LearningRateConfig) -> lc.systems.LearningRate:
    """The two-layer network with a controlled learning rate."""
    return lc.systems.LearningRate(
        lc.tasks.SemanticHierarchy(config.levels),
        hidden=config.hidden,
        lam=config.lam,
        tau=config.tau,
        seed=config.seed,
        scale=config.init_scale,
    )


def setup(config: LearningRateConfig, system, *, gamma=None, beta=None) -> Setup:
    """`system` → $\\rho(t)$ → cost → objective (`gamma`, `beta` may be traced)."""
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0.0, config.T, config.knots),
        shape=system.control_shape,
        lower=config.lower,
        upper=config.upper,
    )
    cost = lc.costs.Quadratic(
        beta=config.beta if beta is None else beta, offset=config.offset
    )
    objective = lc.Objective(
        T=config.T, gamma=config.gamma if gamma is None else gamma, eta=config.eta
    )
    return Setup(
        lc.Problem(system, control, cost, objective), control.init(config.control_init)
    )


def build(config: LearningRateConfig) -> Setup:
    """Task → system → control → cost → objective, and the starting coefficients."""
    return setup(config, system(config))


def record_times(config: LearningRateConfig):
    """Saved times: every `record_every` SGD steps, from 0 to $T$."""
    return jnp.linspace(0.0, config.T, config.steps // config.record_every + 1)


def numerics(config: LearningRateConfig) -> lc.SolverOptions:
    return lc.SolverOptions(
        rtol=config.rtol, atol=config.atol, max_steps=config.max_steps
    )


# ------------------------------------------------------- levels of the hierarchy


def level_losses(task: lc.tasks.SemanticHierarchy, W1, W2) -> np.ndarray:
    r"""The fit loss split by level of the hierarchy, shape `(times, levels)`.

    Output feature $r$ contributes $\tfrac12[\Sigma_y - 2W\Sigma_{xy} +
    W\Sigma_xW^\top]_{rr}$ ($W = W_2W_1$) to the loss; summing over the
    features of each level gives that level's loss (the levels add up to the
    loss without the regulariser).
    """
    W = np.einsum("toh,thi->toi", np.asarray(W2), np.asarray(W1))
    Sx, Sxy, Sy = (np.asarray(a) for a in (task.Sx, task.Sxy, task.Sy))
    fit = 0.5 * (
        np.diag(Sy)[None]
        - 2 * np.einsum("toi,io->to", W, Sxy)
        + np.einsum("toi,ij,toj->to", W, Sx, W)
    )
    level = task.level_of_output()
    return np.stack([fit[:, level == k].sum(1) for k in range(task.levels)], axis=1)


def time_to_half(ts, loss) -> float | None:
    """First time `loss` is at most half its initial value (linear
    interpolation between samples), or `None` if it never is."""
    ts, loss = np.asarray(ts, dtype=float), np.asarray(loss, dtype=float)
    threshold = 0.5 * loss[0]
    below = np.flatnonzero(loss <= threshold)
    if below.size == 0:
        return None
    i = int(below[0])
    if i == 0:
        return float(ts[0])
    l0, l1 = loss[i - 1], loss[i]
    return float(ts[i - 1] + (l0 - threshold) / (l0 - l1) * (ts[i] - ts[i - 1]))


def run(
    config: LearningRateConfig,
    out_dir: Path,
    progress: bool,
    checkpoints: CheckpointFolder | None = None,
) -> RunOutput:
    """Solve the base rate, optimise $\\rho(t)$ with Adam, solve the optimum."""
    s = build(config)
    c = compare(
        s,
        ts=record_times(config),
        optimizer=lc.optimizers.Adam(lr=config.lr),
        iterations=config.iterations,
        options=numerics(config),
        progress=progress,
        checkpoint=next_checkpoint(checkpoints),
    )
    results = comparison_arrays(c) | {"knots": np.asarray(s.control.knots)}
    task = s.system.task
    ts = results["ts"]
    summary = comparison_summary(c)
    for prefix in ("baseline", "control"):
        losses = level_losses(task, results[f"{prefix}_w0"], results[f"{prefix}_w1"])
        results[f"{prefix}_level_loss"] = losses
        summary[f"level_times_{prefix}"] = [
            time_to_half(ts, losses[:, k]) for k in range(losses.shape[1])
        ]
        summary[f"level_final_loss_{prefix}"] = [float(x) for x in losses[-1]]
    rho = results["control_g"]
    summary["total_control"] = float(np.trapezoid(results["theta"], results["knots"]))
    summary["mean_rho"] = summary["total_control"] / config.T
    summary["max_rho"] = float(rho.max())
    return RunOutput(results, summary)


# ----------------------------------------------------------------- figures


def level_figure(ts, baseline, control, *, title: str):
    """Loss of each level of the hierarchy, baseline dashed, control solid."""
    import matplotlib.pyplot as plt

    ts = plotting.check_plottable("ts", ts)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    for name, losses, style in (
        ("base rate", baseline, "--"),
        ("optimal rate", control, "-"),
    ):
        losses = plotting.check_plottable(f"level loss ({name})", losses)
        for k in range(losses.shape[1]):
            ax.plot(
                ts,
                losses[:, k],
                color=f"C{k}",
                linestyle=style,
                linewidth=1.4,
                label=f"level {k}, {name}",
            )
    ax.set_title(title)
    ax.set_xlabel(plotting.TIME_LABEL)
    ax.set_ylabel("level's share of ⟨L⟩ (without regulariser)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small", ncols=2)
    return fig


def plot(results, config: LearningRateConfig, out_dir: Path) -> list[Path]:
    """The paper's panels: ρ(t), loss, net-reward difference, levels, optimisation."""
    out_dir = Path(out_dir)
    ts = results["ts"]
    pair = {
        "base rate (ρ = 0)": plotting.BASELINE_STYLE,
        "optimal ρ(t)": plotting.CONTROL_STYLE,
    }
    base, ctrl = list(pair)
    figures = {
        "control.png": lambda: plotting.plot_lines(
            ts,
            {ctrl: results["control_g"]},
            title="Optimal learning-rate control: α(t) = α (1 + ρ(t))",
            ylabel="control ρ(t)",
            styles=pair,
            hlines=[
                (config.lower, "lower bound"),
                (config.upper, "upper bound"),
                (config.offset, "cost offset"),
            ],
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
            label="γ^t [η P − C(ρ)] difference",
        ),
        "level_loss.png": lambda: level_figure(
            ts,
            results["baseline_level_loss"],
            results["control_level_loss"],
            title="Loss of each level of the hierarchy",
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
    config=LearningRateConfig,
    quick=QUICK,
    build=build,
    run=run,
    plot=plot,
)

__all__ = [
    "EXPERIMENT",
    "LearningRateConfig",
    "build",
    "check_learning_rate",
    "level_losses",
    "plot",
    "run",
    "setup",
    "system",
]
