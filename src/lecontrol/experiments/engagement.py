r"""Task engagement on three digit pair tasks (the paper's Sec. 5).

A two-layer linear network learns three binary digit tasks at once (0 vs 1,
7 vs 1 and 8 vs 9 by default; inputs and outputs concatenated as in the paper's
App. H.2). Each task $\tau$ has an engagement coefficient $\psi_\tau(t)$
that weights its loss in the gradient flow, while performance is the
unweighted sum of the task losses. $\psi = 1$ is plain gradient flow (the
baseline, zero cost in the attentive and vector variants). The three
experiments differ in the cost of engagement (the paper's Sec. 5) and its
bounds:

| experiment | cost $C(\psi)$ | bounds |
|---|---|---|
| `engagement-attentive` | $\beta\lVert\psi - 1\rVert^2$ | $[0, 2]$ |
| `engagement-active` | $\beta\lVert\psi\rVert^2$ | $[0, 1]$ |
| `engagement-vector` | $\beta(\lVert\psi\rVert^2 - N_\tau)^2$ | $[0, 2]$ |

The paper finds that easier tasks are engaged first (0v1, then 7v1, then
8v9) and that no task is ever fully disengaged. The summary measures both:
per task, the time of peak engagement, the engagement-weighted mean time
(`centre`) and the time engagement is let go (`release`, see
`engagement_timing`), the order of the tasks by the last two next to their
order by difficulty (the time the baseline needs to halve each
task's loss), and the minimum of $\psi_\tau(t)$ over the run. With
`sgd_seeds > 0` the optimised schedule is replayed on real minibatch SGD
(`lc.simulate`, each task's loss weighted by $\psi_\tau$ in the gradient).

The registry imports one `EXPERIMENT` per module: `engagement_attentive`,
`engagement_active` and `engagement_vector` each re-export one of
`ATTENTIVE`, `ACTIVE`, `VECTOR` defined here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import jax
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

# A coefficient below this counts as "fully disengaged" in the findings.
DISENGAGED = 1e-2

# The `gradient` config values and the strategies they stand for.
GRADIENTS = {
    "checkpoint": lc.CheckpointAdjoint,
    "continuous": lc.ContinuousAdjoint,
}


# ------------------------------------------------------------ configuration


@dataclasses.dataclass(frozen=True)
class _EngagementConfig(ExperimentConfig):
    r"""Parameters shared by the three task-engagement experiments.

    Defaults are the paper's table row "engagement attentive/active/vector";
    the variants differ only in `variant` (the cost) and `upper`.

    - `alpha`: SGD learning rate $\alpha$; with `steps` it sets the horizon
      $T = N\alpha$.
    - `steps`: number of SGD steps $N$ the learning period spans.
    - `pairs`: the digit pairs, flattened (`(0, 1, 7, 1, 8, 9)` is 0v1, 7v1,
      8v9); one ±1 task per pair, +1 for the first digit.
    - `hidden`: hidden units $H$; `lam`: L2 regularisation $\lambda$; `tau`:
      time constant; `init_scale`: standard deviation of the initial weights
      (drawn with `seed`).
    - `lower`, `upper`: bounds of $\psi$.
    - `gamma`: discount per unit time; `beta`: cost scale; `eta`: weight of
      performance.
    - `lr`: the paper's control learning rate (one control value per SGD step),
      converted to the hat-basis step `lr * alpha / dt_knots`.
    - `iterations`: optimisation iterations (0 keeps $\psi$ = `control_init`).
    - `knots`: knots of the piecewise-linear $\psi$ on $[0, T]$ (evenly
      spaced; the default spacing 0.1 resolves the first few time units, in
      which the tasks are learnt).
    - `control_init`: the constant $\psi$ the optimisation starts from.
    - `samples`: time points saved, evenly spaced on $[0, T]$; `samples - 1`
      must divide `steps` (they are also the SGD replay's records).
    - `mnist_folder`: folder with MNIST idx files; `None` uses scikit-learn's
      bundled 8×8 digits. `size`: side of the resized images (5 in the paper).
    - `sgd_seeds`: number of SGD replays per schedule (0: no replay);
      `batch_size`: samples per task per SGD step.
    - `gradient`: how $\nabla_\theta V$ is computed: `"checkpoint"`
      (`lc.CheckpointAdjoint`, the default here: several times faster per
      iteration than the continuous adjoint on these problems, measured with
      equal values) or `"continuous"` (`lc.ContinuousAdjoint`).
    - `rtol`, `atol`, `max_steps`: ODE solver tolerances and step budget.
    - `seed`: seed of the initial weights, the train/test split and the SGD
      replays (seeds `seed, seed + 1, ...`).
    """

    variant: ClassVar[str]

    alpha: float = 5e-3
    steps: int = 13000
    pairs: tuple[int, ...] = (0, 1, 7, 1, 8, 9)
    hidden: int = 20
    lam: float = 0.0
    tau: float = 1.0
    init_scale: float = 0.01
    lower: float = 0.0
    upper: float = 2.0
    gamma: float = 0.99
    beta: float = 0.1
    eta: float = 1.0
    lr: float = 1.0
    iterations: int = 800
    knots: int = 651
    control_init: float = 1.0
    samples: int = 521
    mnist_folder: str | None = None
    size: int = 5
    sgd_seeds: int = 4
    batch_size: int = 32
    gradient: str = "checkpoint"
    rtol: float = 1e-7
    atol: float = 1e-9
    max_steps: int = 4096

    def check(self) -> None:
        require_float(self, "alpha", positive=True)
        require_int(self, "steps", minimum=1)
        require(
            len(self.pairs) >= 2 and len(self.pairs) % 2 == 0,
            "pairs",
            "must list digit pairs, flattened (e.g. 0,1,7,1,8,9)",
            self.pairs,
        )
        require_int(self, "hidden", minimum=1)
        require_float(self, "init_scale", nonnegative=True)
        require_float(self, "lr", positive=True)
        require_int(self, "iterations", minimum=0)
        require_int(self, "knots", minimum=2)
        require_int(self, "size", minimum=1)
        check_schedule_fields(self)

    @property
    def T(self) -> float:
        """The horizon $T = N\\alpha$."""
        return self.steps * self.alpha

    @property
    def pair_list(self) -> list[tuple[int, int]]:
        p = self.pairs
        return [(p[i], p[i + 1]) for i in range(0, len(p), 2)]

    @property
    def labels(self) -> list[str]:
        return [f"{a}v{b}" for a, b in self.pair_list]


def check_schedule_fields(cfg) -> None:
    """Checks shared by the engagement and category-engagement configurations."""
    require_float(cfg, "control_init")
    require_int(cfg, "samples", minimum=2)
    require(
        cfg.steps % (cfg.samples - 1) == 0,
        "samples",
        f"minus one must divide steps = {cfg.steps} (saved times are SGD steps)",
        cfg.samples,
    )
    require_int(cfg, "sgd_seeds", minimum=0)
    require_int(cfg, "batch_size", minimum=1)
    require(
        cfg.gradient in GRADIENTS,
        "gradient",
        f"must be one of {sorted(GRADIENTS)}",
        cfg.gradient,
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


@dataclasses.dataclass(frozen=True)
class AttentiveConfig(_EngagementConfig):
    r"""`engagement-attentive`: cost $\beta\lVert\psi - 1\rVert^2$, $\psi\in[0, 2]$.

    Fields: see `_EngagementConfig`.
    """

    variant: ClassVar[str] = "attentive"


@dataclasses.dataclass(frozen=True)
class ActiveConfig(_EngagementConfig):
    r"""`engagement-active`: cost $\beta\lVert\psi\rVert^2$, $\psi\in[0, 1]$.

    Fields: see `_EngagementConfig`.
    """

    variant: ClassVar[str] = "active"
    upper: float = 1.0


@dataclasses.dataclass(frozen=True)
class VectorConfig(_EngagementConfig):
    r"""`engagement-vector`: cost $\beta(\lVert\psi\rVert^2 - N_\tau)^2$, $\psi\in[0, 2]$.

    Fields: see `_EngagementConfig`.
    """

    variant: ClassVar[str] = "vector"


QUICK = {
    "steps": 2000,
    "iterations": 8,
    "knots": 11,
    "samples": 101,
    "sgd_seeds": 2,
}


# ----------------------------------------------------------------- the problem


def statistics_only(task: lc.tasks.Digits) -> lc.tasks.Digits:
    """`task` without its samples (statistics only).

    The optimisation differentiates $V$ with respect to the whole problem,
    and the integer label arrays of a `Digits` task built from images have no
    gradient; the learning system needs the statistics only. The tasks with
    samples feed the SGD replay.
    """
    return lc.tasks.Digits(task.train, task.test, task.classes)


def cost_of(config: _EngagementConfig, n_tasks: int) -> lc.costs.AbstractCost:
    """The engagement cost of the variant (the paper's Sec. 5)."""
    if config.variant == "attentive":
        return lc.costs.Quadratic(beta=config.beta, offset=1.0)
    if config.variant == "active":
        return lc.costs.Quadratic(beta=config.beta)
    return lc.costs.FixedNorm(beta=config.beta, norm2=float(n_tasks))


def _problem(config: _EngagementConfig) -> tuple[Setup, lc.tasks.ConcatenatedTasks]:
    """The `Setup`, and the concatenated tasks with samples (for SGD)."""
    digits = [
        lc.tasks.Digits.load(
            classes=pair,
            mnist_folder=config.mnist_folder,
            size=config.size,
            seed=config.seed,
        )
        for pair in config.pair_list
    ]
    tasks = lc.tasks.ConcatenatedTasks([statistics_only(d) for d in digits])
    system = lc.systems.TaskEngagement(
        tasks,
        hidden=config.hidden,
        lam=config.lam,
        tau=config.tau,
        seed=config.seed,
        scale=config.init_scale,
    )
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0.0, config.T, config.knots),
        shape=system.control_shape,
        lower=config.lower,
        upper=config.upper,
    )
    cost = cost_of(config, tasks.n_tasks)
    objective = lc.Objective(T=config.T, gamma=config.gamma, eta=config.eta)
    setup = Setup(
        lc.Problem(system, control, cost, objective), control.init(config.control_init)
    )
    return setup, lc.tasks.ConcatenatedTasks(digits)


def build(config: _EngagementConfig) -> Setup:
    """Tasks → system → control → cost → objective, and the starting coefficients."""
    return _problem(config)[0]


# ------------------------------------------------------------------- the run


def run_comparison(
    config,
    setup: Setup,
    data,
    parts: Callable[[Any], jax.Array],
    progress: bool,
    checkpoints: CheckpointFolder | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Baseline ($g = 1$) vs optimised engagement, plus the SGD replays.

    Shared by the task- and category-engagement experiments. `parts(w)` gives
    the per-task (or per-class) losses of weights `w`.

    **Returns:** the arrays for `results.npz` (those of `comparison_arrays`,
    plus `baseline_parts`, `control_parts`, `knots`, `theta0` and, with SGD
    replays, `sgd_ts`, `sgd_{baseline,control}_loss` of shape
    `(seeds, records)` and `sgd_{baseline,control}_parts`, averaged over seeds)
    and the `comparison_summary`.
    """
    s = setup
    lr = paper_lr(config.lr, config.alpha, config.T / (config.knots - 1))
    c = compare(
        s,
        ts=jnp.linspace(0.0, config.T, config.samples),
        optimizer=lc.optimizers.ProjectedGradientAscent(lr=lr),
        iterations=config.iterations,
        options=lc.SolverOptions(
            rtol=config.rtol, atol=config.atol, max_steps=config.max_steps
        ),
        progress=progress,
        baseline_value=1.0,
        adjoint=GRADIENTS[config.gradient](),
        checkpoint=next_checkpoint(checkpoints),
    )
    many = jax.jit(jax.vmap(parts))
    results = comparison_arrays(c) | {
        "knots": np.asarray(s.control.knots),
        "theta0": np.asarray(s.theta0),
        "baseline_parts": np.asarray(many(c.baseline.w)),
        "control_parts": np.asarray(many(c.controlled.w)),
    }
    if config.sgd_seeds > 0:
        seeds = range(config.seed, config.seed + config.sgd_seeds)
        for label, theta in (
            ("baseline", c.theta_baseline),
            ("control", c.result.theta),
        ):
            # Same seeds for both schedules: common random numbers.
            sim = lc.simulate(
                s.problem,
                theta,
                alpha=config.alpha,
                steps=config.steps,
                batch_size=config.batch_size,
                seeds=seeds,
                record_every=config.steps // (config.samples - 1),
                data=data,
            )
            results["sgd_ts"] = np.asarray(sim.ts)
            results[f"sgd_{label}_loss"] = np.asarray(sim.loss)
            results[f"sgd_{label}_parts"] = np.asarray(
                jnp.mean(jax.vmap(many)(sim.w), axis=0)
            )
    return results, comparison_summary(c, control_lr_theta=lr)


# ------------------------------------------------------------------ findings


def first_time_below(ts: np.ndarray, x: np.ndarray, level: float) -> float:
    """First time at which `x` reaches `level` from above (`nan` if never),
    interpolated linearly between the samples."""
    hit = np.flatnonzero(x <= level)
    if not hit.size:
        return float("nan")
    k = int(hit[0])
    if k == 0:
        return float(ts[0])
    frac = (x[k - 1] - level) / (x[k - 1] - x[k])
    return float(ts[k - 1] + frac * (ts[k] - ts[k - 1]))


def half_loss_time(ts: np.ndarray, loss: np.ndarray) -> float:
    r"""First time the loss has covered half its way from $L(0)$ to $L(T)$."""
    return first_time_below(ts, loss, loss[-1] + 0.5 * (loss[0] - loss[-1]))


def engagement_timing(ts: np.ndarray, g: np.ndarray) -> dict[str, np.ndarray]:
    r"""When each coefficient is engaged, from $g(t)$ of shape `(times, parts)`.

    - `peak`: time of the largest value (the first, if it is reached on an
      interval, e.g. at the upper bound).
    - `centre`: engagement-weighted mean time of the part above the
      coefficient's minimum, $\int t\,e\,dt / \int e\,dt$ with
      $e = g(t) - \min_s g(s)$ (`nan` for a constant coefficient).
    - `release`: first time after the peak at which $g$ has come down half
      way from its peak to its lowest value after the peak (`nan` if $g$ never
      falls after its peak): when the coefficient lets go.
    - `min`, `min_time`: the smallest value and when it occurs.
    - `mean`: time average $\frac1T\int g\,dt$.
    """
    ts, g = np.asarray(ts, float), np.asarray(g, float)
    peak = np.argmax(g, axis=0)
    release = np.full(g.shape[1], np.nan)
    for j in range(g.shape[1]):
        after = g[peak[j] :, j]
        if after[0] > after.min():
            release[j] = first_time_below(
                ts[peak[j] :], after, 0.5 * (after[0] + after.min())
            )
    e = g - g.min(axis=0)
    area = np.trapezoid(e, ts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = np.where(
            area > 1e-12, np.trapezoid(ts[:, None] * e, ts, axis=0) / area, np.nan
        )
    return {
        "peak": ts[peak],
        "centre": centre,
        "release": release,
        "min": g.min(axis=0),
        "min_time": ts[np.argmin(g, axis=0)],
        "mean": np.trapezoid(g, ts, axis=0) / (ts[-1] - ts[0]),
    }


def order(labels: Sequence[str], times: np.ndarray) -> list[str]:
    """`labels` sorted by `times` (stable; `nan` last)."""
    key = np.where(np.isfinite(times), times, np.inf)
    return [labels[i] for i in np.argsort(key, kind="stable")]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two vectors (ties ranked by position)."""
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(float)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _per_label(labels: Sequence[str], values) -> dict[str, float]:
    return {lab: float(v) for lab, v in zip(labels, np.asarray(values))}


def engagement_findings(
    labels: Sequence[str], results: Mapping[str, np.ndarray]
) -> dict[str, Any]:
    """Summary entries on when and how much each task (or class) is engaged.

    Difficulty is the time the *baseline* needs to halve each part's loss
    (`baseline_half_loss_time`): the easier a part, the sooner. The findings
    compare it with the order of the engagement peaks (`easier_peaked_first`:
    strictly increasing peak times, so ties do not count), the order in which
    engagement is let go (`release`) and the engagement-weighted mean times
    (`centre`). With a fixed total engagement (`engagement-vector`) the peaks
    come one after another; with the attentive and active costs every task
    starts at or near the upper bound, so the order shows only in when each
    is let go. `centre` also weighs the late part of the run, where small
    offsets or an unconverged optimisation (e.g. `engagement-active` at the
    paper's 800 iterations) dominate it.
    """
    ts = results["ts"]
    timing = engagement_timing(ts, results["control_g"])
    difficulty = np.array(
        [
            half_loss_time(ts, results["baseline_parts"][:, i])
            for i in range(len(labels))
        ]
    )
    by_centre = order(labels, timing["centre"])
    by_release = order(labels, timing["release"])
    by_difficulty = order(labels, difficulty)
    return {
        "engagement_peak_time": _per_label(labels, timing["peak"]),
        "engagement_centre_time": _per_label(labels, timing["centre"]),
        "engagement_release_time": _per_label(labels, timing["release"]),
        "engagement_mean": _per_label(labels, timing["mean"]),
        "engagement_min": _per_label(labels, timing["min"]),
        "engagement_min_time": _per_label(labels, timing["min_time"]),
        "baseline_half_loss_time": _per_label(labels, difficulty),
        "control_half_loss_time": _per_label(
            labels,
            [
                half_loss_time(ts, results["control_parts"][:, i])
                for i in range(len(labels))
            ],
        ),
        "order_by_engagement_peak": order(labels, timing["peak"]),
        "order_by_engagement_centre": by_centre,
        "order_by_engagement_release": by_release,
        "order_by_difficulty": by_difficulty,
        "rank_correlation_centre_vs_difficulty": rank_correlation(
            timing["centre"], difficulty
        ),
        "disengaged_below": DISENGAGED,
        "findings": {
            "easier_peaked_first": bool(
                np.all(np.diff(timing["peak"][np.argsort(difficulty)]) > 0)
            ),
            "easier_released_first": by_release == by_difficulty,
            "easier_centred_earlier": by_centre == by_difficulty,
            "no_part_fully_disengaged": bool(np.all(timing["min"] > DISENGAGED)),
        },
    }


def run(
    config: _EngagementConfig,
    out_dir: Path,
    progress: bool,
    checkpoints: CheckpointFolder | None = None,
) -> RunOutput:
    """Solve the baseline, optimise $\\psi$, solve the controlled run, replay on SGD."""
    setup, data = _problem(config)
    results, summary = run_comparison(
        config, setup, data, setup.system.task_losses, progress, checkpoints
    )
    found = engagement_findings(config.labels, results)
    found["findings"]["released_in_listed_order"] = (
        found["order_by_engagement_release"] == config.labels
    )
    found["tasks"] = config.labels
    found["variant"] = config.variant
    return RunOutput(results, summary | found)


# ------------------------------------------------------------------- figures


def group_styles(groups: Sequence[str]):
    """Per-group colours, dashed for the baseline and solid for the control."""
    styles = {}
    for i, lab in enumerate(groups):
        color = f"C{i % 10}"
        styles[f"{lab} baseline"] = {
            "color": color,
            "linestyle": "--",
            "linewidth": 1.2,
        }
        styles[f"{lab} control"] = {"color": color, "linestyle": "-", "linewidth": 1.8}
        styles[lab] = {"color": color, "linestyle": "-", "linewidth": 1.8}
    return styles


def common_figures(
    results: Mapping[str, np.ndarray],
    *,
    groups: Mapping[str, Sequence[int]],
    what: str,
    symbol: str,
    bounds: tuple[float, float],
) -> dict[str, Callable[[], Any]]:
    """Figure makers shared by task and category engagement (name → draw).

    `groups` maps a legend label to the columns (tasks or classes) drawn in
    its colour, e.g. one class each, or all the classes of a hierarchy level.
    """
    ts = results["ts"]
    pair = {
        f"baseline ({symbol} = 1)": plotting.BASELINE_STYLE,
        "optimal engagement": plotting.CONTROL_STYLE,
    }
    base, ctrl = list(pair)
    styles = group_styles(list(groups))
    cols = {lab: np.asarray(idx, dtype=int) for lab, idx in groups.items()}
    parts = {}
    for lab, idx in cols.items():
        parts[f"{lab} baseline"] = results["baseline_parts"][:, idx]
        parts[f"{lab} control"] = results["control_parts"][:, idx]
    g = results["control_g"]
    figures: dict[str, Callable[[], Any]] = {
        "loss.png": lambda: plotting.plot_lines(
            ts,
            {base: results["baseline_loss"], ctrl: results["control_loss"]},
            title="Total expected loss ⟨L⟩(t)",
            ylabel="expected loss ⟨L⟩",
            styles=pair,
        ),
        f"{what}_losses.png": lambda: plotting.plot_lines(
            ts,
            parts,
            title=f"Loss per {what} (dashed: baseline, solid: optimal engagement)",
            ylabel=f"expected loss of the {what}",
            styles=styles,
        ),
        "engagement.png": lambda: plotting.plot_lines(
            ts,
            {lab: g[:, idx] for lab, idx in cols.items()},
            title=f"Optimal engagement {symbol}(t) per {what}",
            ylabel=f"engagement {symbol}(t)",
            styles={lab: styles[lab] for lab in cols},
            hlines=[
                (bounds[0], "lower bound"),
                (1.0, "baseline"),
                (bounds[1], "upper bound"),
            ],
        ),
        "net_reward_difference.png": lambda: plotting.plot_difference(
            ts,
            results["control_v"] - results["baseline_v"],
            title="Net reward: optimal engagement minus baseline",
            ylabel="v_control(t) − v_baseline(t)",
            label="γ^t [η P − C] difference",
        ),
    }
    zoom = early_window(ts, results["baseline_loss"])
    if zoom is not None:
        for name in ("engagement.png", f"{what}_losses.png"):
            figures[name.replace(".png", "_early.png")] = _zoomed(figures[name], zoom)
    if "sgd_control_loss" in results:
        sgd_ts = results["sgd_ts"]

        def replay():
            fig = plotting.plot_lines(
                ts,
                {base: results["baseline_loss"], ctrl: results["control_loss"]},
                title="SGD replay (dotted, mean over seeds) vs gradient flow",
                ylabel="expected loss ⟨L⟩",
                styles=pair,
            )
            ax = fig.axes[0]
            for key, color, label in (
                ("sgd_baseline_loss", "C1", "SGD, baseline"),
                ("sgd_control_loss", "C3", "SGD, optimal engagement"),
            ):
                loss = plotting.check_plottable(key, results[key])
                ax.plot(
                    sgd_ts,
                    loss.mean(axis=0),
                    color=color,
                    linestyle=":",
                    linewidth=1.6,
                    label=f"{label} ({loss.shape[0]} seeds)",
                )
            ax.legend(loc="best")
            return fig

        figures["sgd_replay.png"] = replay
    if results["values"].size:
        figures["optimisation.png"] = lambda: plotting.plot_optimisation(
            results["values"], baseline=float(results["baseline_V"][-1])
        )
    return figures


def early_window(ts: np.ndarray, loss: np.ndarray) -> float | None:
    """The start of the run worth a zoomed figure, or `None`.

    Twice the time the loss needs to cover 99% of its way from $L(0)$ to
    $L(T)$, when that is under half the horizon (learning is fast compared
    with the horizon, so the full-horizon figures squeeze it to the left).
    """
    t99 = first_time_below(ts, loss, loss[-1] + 0.01 * (loss[0] - loss[-1]))
    span = float(ts[-1] - ts[0])
    if not np.isfinite(t99) or t99 <= 0 or 2 * t99 >= 0.5 * span:
        return None
    return 2 * t99


def _zoomed(draw: Callable[[], Any], t_max: float) -> Callable[[], Any]:
    def zoomed():
        fig = draw()
        ax = fig.axes[0]
        ax.set_xlim(0.0, t_max)
        ax.set_title(f"{ax.get_title()}, t ≤ {t_max:.3g}", fontsize="medium")
        return fig

    return zoomed


def save_figures(figures: Mapping[str, Callable[[], Any]], out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    return [io.save_figure(draw(), out_dir / name) for name, draw in figures.items()]


def plot(results, config: _EngagementConfig, out_dir: Path) -> list[Path]:
    """Figures of the paper's task-engagement panels (Fig. 4a-f), from the saved arrays."""
    figures = common_figures(
        results,
        groups={lab: [i] for i, lab in enumerate(config.labels)},
        what="task",
        symbol="ψ",
        bounds=(config.lower, config.upper),
    )
    return save_figures(figures, out_dir)


# --------------------------------------------------------------- experiments


def _experiment(name: str, config: type[_EngagementConfig], description: str):
    return Experiment(
        name=name,
        description=description,
        config=config,
        quick=QUICK,
        build=build,
        run=run,
        plot=plot,
    )


ATTENTIVE = _experiment(
    "engagement-attentive",
    AttentiveConfig,
    "Task engagement on digit pairs 0v1, 7v1, 8v9, cost β‖ψ − 1‖²: optimal ψ(t) vs ψ = 1.",
)
ACTIVE = _experiment(
    "engagement-active",
    ActiveConfig,
    "Task engagement on digit pairs 0v1, 7v1, 8v9, cost β‖ψ‖², ψ ∈ [0, 1].",
)
VECTOR = _experiment(
    "engagement-vector",
    VectorConfig,
    "Task engagement on digit pairs 0v1, 7v1, 8v9, fixed total cost β(‖ψ‖² − N_τ)².",
)

__all__ = [
    "ACTIVE",
    "ATTENTIVE",
    "VECTOR",
    "ActiveConfig",
    "AttentiveConfig",
    "VectorConfig",
    "build",
    "engagement_findings",
    "engagement_timing",
    "plot",
    "run",
]
