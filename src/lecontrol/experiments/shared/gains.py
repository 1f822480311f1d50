r"""The gain-modulation family (the paper's Sec. 6 and App. I; docs/systems/two-layer.md).

`effort-gaussians`, `effort-semantic`, `effort-digits`, `nonlinear` and
`task-switch` control a two-layer network through gains on its weights,
$\tilde W_i = (1 + G_i)\circ W_i$, $G \in$ [`control.lower`, `control.upper`],
at the cost $C = \exp(\beta\sum_i\lVert G_i\rVert_F^2) - 1$
(`lc.costs.ExpQuadratic`). They differ in the task and the system only; this
module holds the rest: the defaults (the paper's Table 5, column "Gaussians"),
the problem, the run (baseline vs optimised gains, the findings, the SGD
replay) and the figures.

Keys of the family (the standard sections are described in `comparison`):

- `system.init_scale`: standard deviation of the i.i.d. Gaussian initial
  weights (drawn from `seed`).
- `control.basis`: `"weight"` (one gain per weight of both layers, the
  paper's default) or `"neuron"` (one gain per output neuron on $W_2$'s rows,
  $G_1 = 0$: the paper's neuron basis, App. H.1.1).
- `outputs.record_every`: SGD steps between saved times (divides
  `objective.steps`).
- `outputs.threshold_fraction`: the "time to learn" threshold is reached when
  this fraction of the baseline's total loss reduction is done.
- `outputs.replay`: also run real minibatch SGD (`lc.simulate`) with the
  baseline and the optimised control, `outputs.replay_seeds` runs each of
  `outputs.replay_batch` samples per step.

**Figures** (every experiment of the family): the expected loss, the gains'
size per layer and every gain as a heatmap, the net-reward difference, the
weight norms, the SGD replay and the optimisation's progress.

**Findings** (summary keys, `FINDINGS`): the control is concentrated early
(`control_fraction_first_quarter` well above 1/4, `t_peak_control`) and near
the steepest loss drops (`t_steepest_drop_*`); the loss falls faster
(`t_threshold_*`, `cumulative_loss_*`); the weights end sparser
(`final_l1_*`, `final_l1_over_l2_*`). The SGD replay (`sgd_*`) checks the
ODE against real SGD.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

import lecontrol as lc

from ..base import Config, Experiment, RunOutput, Setup, config, require
from . import comparison as cmp, figures as fig, findings

BASES = ("weight", "neuron")
RUNS = ("baseline", "control")
GAUSSIANS = dict(mu=(3.0, 1.0), sigma=(1.0, 1.0), p=0.8)
"""The correlated-Gaussians task of Table 5 (`lc.tasks.CorrelatedGaussians`)."""

FAMILY = dict(
    system=dict(hidden=6, lam=0.01, tau=1.0, init_scale=0.01),
    control=dict(knots=201, lower=-0.5, upper=0.5, init=0.0, basis="weight"),
    cost=dict(beta=0.3),
    objective=dict(alpha=5e-3, steps=16000, gamma=0.99, eta=1.0),
    optimiser=dict(lr=10.0, iterations=1000),
    solver=dict(rtol=1e-7, atol=1e-9, max_steps=4096),
    outputs=dict(
        record_every=20,
        threshold_fraction=0.9,
        replay=True,
        replay_batch=32,
        replay_seeds=4,
    ),
)
FIGURES = (
    "loss.png",
    "control.png",
    "control_heatmap.png",
    "net_reward_difference.png",
    "weight_norms.png",
    "sgd_replay.png?",
    "optimisation.png?",
)
FINDINGS = (
    "V_gain",
    "control_fraction_first_quarter",
    "t_peak_control",
    *(
        f"{key}_{run}"
        for key in ("t_steepest_drop", "t_threshold", "cumulative_loss")
        + ("final_l1", "final_l1_over_l2")
        for run in RUNS
    ),
)


def defaults(task: dict, **sections: dict) -> Config:
    """The family's defaults (`FAMILY`) with `task`, and each section's entries
    added or changed by `sections`."""
    merged = {name: values | sections.get(name, {}) for name, values in FAMILY.items()}
    return config(task=task, **merged)


def check(cfg: Config) -> None:
    """What no constructor sees when the problem is built: the saved times and
    the SGD replay's sizes."""
    every, steps = cfg.outputs.record_every, cfg.objective.steps
    ok = every > 0 and steps % every == 0
    require(ok, "outputs.record_every", f"must divide objective.steps = {steps}", every)
    for key in ("replay_batch", "replay_seeds"):
        value = cfg.outputs[key]
        require(
            value > 0 or not cfg.outputs.replay, f"outputs.{key}", "must be > 0", value
        )


def experiment(*, figures=(), findings=(), **fields) -> Experiment:
    """An `Experiment` of the family: its figures and findings plus the
    experiment's own, and `check`."""
    figures, findings = (*FIGURES, *figures), (*FINDINGS, *findings)
    return Experiment(figures=figures, findings=findings, check=check, **fields)


# ------------------------------------------------------------------ the problem


def gaussians(task: Config, suffix: str = "") -> lc.tasks.CorrelatedGaussians:
    """`lc.tasks.CorrelatedGaussians` from the task keys `mu`, `sigma`, `p`
    (each followed by `suffix`)."""
    mu, sigma, p = (task[key + suffix] for key in ("mu", "sigma", "p"))
    return lc.tasks.CorrelatedGaussians(mu=mu, sigma=sigma, p=p)


def network(cls, cfg: Config, task, **extra):
    """The system `cls` (`lc.systems.TwoLayerGain`, `TanhTaylor`) on `task`
    with the `system` section and `seed`."""
    s = cfg.system
    return cls(
        task,
        hidden=s.hidden,
        lam=s.lam,
        tau=s.tau,
        seed=cfg.seed,
        scale=s.init_scale,
        **extra,
    )


def control(cfg: Config, system) -> lc.controls.AbstractControl:
    """Piecewise-linear gains per weight, or per output neuron (`control.basis`)."""
    basis, shape = cfg.control.basis, system.control_shape
    require(basis in BASES, "control.basis", f"must be one of {BASES}", basis)
    if basis == "weight":
        return cmp.knot_control(cfg, shape)
    inner = cmp.knot_control(cfg, (shape[1][0],))
    return lc.controls.NeuronBasis(inner, shape, leaf=1, axis=0)


def setup(cfg: Config, system) -> Setup:
    """The problem of gains on `system` at the `ExpQuadratic` cost."""
    cost = lc.costs.ExpQuadratic(beta=cfg.cost.beta)
    return cmp.setup(cfg, system, control(cfg, system), cost)


# ------------------------------------------------------------------------- run


def layers(results, run: str, field: str) -> tuple[np.ndarray, np.ndarray]:
    """A run's two layers of `field` (`"w"` or `"g"`) over time."""
    return results[f"{run}_{field}0"], results[f"{run}_{field}1"]


def _rows(arrays) -> list[np.ndarray]:
    return [a.reshape(a.shape[0], -1) for a in arrays]


def weight_norms(results, run: str) -> tuple[np.ndarray, np.ndarray]:
    r"""$L_1 = \sum_i\lVert W_i\rVert_1$ and $L_2 = (\sum_i\lVert W_i\rVert_F^2)^{1/2}$ over time."""
    W = _rows(layers(results, run, "w"))
    return sum(np.abs(w).sum(1) for w in W), np.sqrt(sum((w**2).sum(1) for w in W))


def derived_arrays(results) -> dict[str, np.ndarray]:
    r"""Weight norms of both runs, the controlled gains' mean size per layer,
    and the control effort $\sum_i\lVert G_i\rVert_F^2$ over time."""
    out = {}
    for run in RUNS:
        out[f"{run}_l1"], out[f"{run}_l2"] = weight_norms(results, run)
    G = _rows(layers(results, "control", "g"))
    for i, g in enumerate(G):
        out[f"control_mean_abs_g{i}"] = np.abs(g).mean(1)
    out["control_effort"] = sum((g**2).sum(1) for g in G)
    return out


def gain_findings(results, cfg: Config) -> dict:
    """The summary entries of the family's findings (Sec. 6.1, Figs. 5, 10-11)."""
    ts, effort, lb = results["ts"], results["control_effort"], results["baseline_loss"]
    target = lb[0] - cfg.outputs.threshold_fraction * (lb[0] - lb[-1])
    out = {
        "control_fraction_first_quarter": findings.fraction_in_first_quarter(
            ts, effort
        ),
        "t_peak_control": float(ts[int(np.argmax(effort))]),
        "loss_threshold": float(target),
    }
    for run in RUNS:
        loss, l1, l2 = (results[f"{run}_{key}"] for key in ("loss", "l1", "l2"))
        out |= {
            f"t_steepest_drop_{run}": findings.steepest_drop_time(ts, loss),
            f"t_threshold_{run}": findings.crossing_time(ts, loss, target),
            f"cumulative_loss_{run}": findings.integral(ts, loss),
            f"final_loss_{run}": float(loss[-1]),
            f"final_l1_{run}": float(l1[-1]),
            f"final_l2_{run}": float(l2[-1]),
            f"final_l1_over_l2_{run}": float(l1[-1] / l2[-1]),
        }
    return out


def replay(cfg: Config, s: Setup, c: cmp.Comparison, *, data=None, loss=None):
    r"""Real minibatch SGD with $G = 0$ and with the optimised gains.

    Both runs use the same `outputs.replay_seeds` seeds (derived from `seed`),
    draw from `data` (default: the system's task) and record every
    `outputs.record_every` steps, at the ODE's saved times. `loss(w, g)`
    (over the records) measures the SGD weights instead of the system's loss;
    its entries are named `sgd_real_*` (`nonlinear`: the real tanh network).

    **Returns:** arrays (`sgd_ts`, the seed-mean loss and its standard error
    per run) and summary entries per run: the final SGD loss, its integral,
    the value $V$ of the SGD run (trapezoid of $\gamma^t[-\eta L - C(G)]$ at
    the records) and the largest gap between the SGD mean and the ODE loss.
    """
    o, ob = cfg.outputs, cfg.objective
    key = jax.random.fold_in(jax.random.key(cfg.seed), 1)
    kw = dict(alpha=ob.alpha, steps=ob.steps, batch_size=o.replay_batch, data=data)
    kw |= dict(seeds=jax.random.split(key, o.replay_seeds), record_every=o.record_every)
    tag = "" if loss is None else "real_"
    arrays, summary = {}, {"sgd_batch": o.replay_batch, "sgd_seeds": o.replay_seeds}
    for run, theta, ode in (
        ("baseline", c.theta_baseline, c.baseline),
        ("control", c.result.theta, c.controlled),
    ):
        sim = lc.simulate(s.problem, theta, **kw)
        ts = arrays["sgd_ts"] = np.asarray(sim.ts)
        per_seed = sim.loss if loss is None else jax.vmap(loss, (0, None))(sim.w, sim.g)
        per_seed = np.asarray(per_seed)
        mean, n = per_seed.mean(0), per_seed.shape[0]
        err = per_seed.std(0, ddof=1) / np.sqrt(n) if n > 1 else 0 * mean
        arrays |= {
            f"sgd_{run}_{tag}loss_mean": mean,
            f"sgd_{run}_{tag}loss_stderr": err,
        }
        v = ob.gamma**ts * (-ob.eta * mean - np.asarray(jax.vmap(s.cost)(sim.g)))
        summary |= {
            f"sgd_{tag}V_{run}": findings.integral(ts, v),
            f"sgd_{tag}final_loss_{run}": float(mean[-1]),
            f"sgd_{tag}cumulative_loss_{run}": findings.integral(ts, mean),
            f"sgd_{tag}max_gap_to_ode_{run}": float(
                np.max(np.abs(mean - np.asarray(ode.loss)))
            ),
        }
    return arrays, summary


def run(
    cfg: Config, system, progress: bool, checkpoints, *, data=None, loss=None
) -> RunOutput:
    """Baseline vs optimised gains on `system`, the findings, and (with
    `outputs.replay`) the SGD replay on `data`, measured by `loss` (`replay`)."""
    s = setup(cfg, system)
    ts = cmp.record_times(cfg, cfg.outputs.record_every)
    c = cmp.compare(s, cfg, ts=ts, progress=progress, checkpoints=checkpoints)
    results = cmp.comparison_arrays(c) | {"knots": np.asarray(s.control.knots)}
    results |= derived_arrays(results)
    summary = cmp.comparison_summary(
        c, control_lr_theta=cmp.control_lr(cfg), T=cmp.horizon(cfg)
    )
    summary |= gain_findings(results, cfg)
    if cfg.outputs.replay:
        arrays, extra = replay(cfg, s, c, data=data, loss=loss)
        results, summary = results | arrays, summary | extra
    return RunOutput(results, summary)


# ---------------------------------------------------------------------- figures

PAIR = fig.pair("baseline (G = 0)")
BASE, CTRL = list(PAIR)


def heatmap(results, cfg: Config):
    """Every gain over time: rows are weights (G1 then G2), colour the gain."""
    import matplotlib.pyplot as plt

    ts = fig.plotting.check_plottable("ts", results["ts"])
    rows = [g.T for g in _rows(layers(results, "control", "g"))]
    image = fig.plotting.check_plottable("control gains", np.concatenate(rows))
    c = cfg.control
    lim = max(abs(c.lower), abs(c.upper), float(np.abs(image).max()), 1e-12)
    figure, ax = plt.subplots(figsize=(7.2, 4.2), layout="constrained")
    extent = (ts[0], ts[-1], 0, image.shape[0])
    mesh = ax.imshow(
        image, aspect="auto", origin="lower", interpolation="nearest",
        cmap="RdBu_r", vmin=-lim, vmax=lim, extent=extent,
    )  # fmt: skip
    ax.axhline(rows[0].shape[0], color="k", linewidth=0.8)
    ax.set_title("Optimal gains G(t), one row per weight")
    ax.set_xlabel(fig.plotting.TIME_LABEL)
    ax.set_ylabel(f"weight index (G1: 0–{rows[0].shape[0] - 1}, then G2)")
    figure.colorbar(mesh, ax=ax, label="gain G")
    return figure


def norms_figure(results):
    """$L_1$ and $L_2$ norms of the raw weights, baseline vs control."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10.0, 3.8), layout="constrained")
    titles = {"l1": "L1 norm Σ|W|", "l2": "L2 norm (Σ W²)^½"}
    for ax, (norm, title) in zip(axes, titles.items()):
        for label, run in zip(PAIR, RUNS):
            y = fig.plotting.check_plottable(norm, results[f"{run}_{norm}"])
            ax.plot(results["ts"], y, label=label, **PAIR[label])
        ax.set_title(title)
        ax.set_xlabel(fig.plotting.TIME_LABEL)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best")
    return figure


def replay_figure(
    results, *, tag: str = "", title="SGD replay of the optimised control"
):
    """ODE expected loss vs the seed-mean loss of real SGD (± 2 standard errors);
    `tag` picks the SGD arrays `sgd_{run}_{tag}loss_mean` / `_stderr`."""
    figure = fig.plotting.plot_lines(
        results["ts"],
        {f"ODE, {label}": results[f"{run}_loss"] for label, run in zip(PAIR, RUNS)},
        title=title,
        ylabel="expected loss ⟨L⟩",
        styles={f"ODE, {label}": style for label, style in PAIR.items()},
    )
    ax, ts = figure.axes[0], results["sgd_ts"]
    for label, run, colour in zip(PAIR, RUNS, ("0.35", "C0")):
        mean = fig.plotting.check_plottable(
            "SGD loss", results[f"sgd_{run}_{tag}loss_mean"]
        )
        err = results[f"sgd_{run}_{tag}loss_stderr"]
        ax.plot(
            ts, mean, color=colour, linewidth=0.9, alpha=0.8, label=f"SGD mean, {label}"
        )
        ax.fill_between(ts, mean - 2 * err, mean + 2 * err, color=colour, alpha=0.2)
    ax.legend(loc="best")
    return figure


def _mark(figure, vlines):
    """Mark the times `vlines` (task switches) on every panel over time."""
    for ax in figure.axes:
        if not len(vlines) or ax.get_xlabel() != fig.plotting.TIME_LABEL:
            continue
        for j, x in enumerate(vlines):
            label = None if j else "task switch"
            ax.axvline(x, color="tab:purple", alpha=0.35, linewidth=0.9, label=label)
        if ax.get_legend() is not None:
            ax.legend(loc="best")
    return figure


def plot(results, cfg: Config, out_dir: Path, extra=None, vlines=()) -> list[Path]:
    """The family's figures, then `extra` (name → drawing function), with the
    times `vlines` marked on every panel over time."""
    mean_abs = {
        f"mean |G{i + 1}| (layer {i + 1})": results[f"control_mean_abs_g{i}"]
        for i in (0, 1)
    }
    figures = {
        "loss.png": lambda: fig.loss(results, PAIR),
        "control.png": lambda: fig.plotting.plot_lines(
            results["ts"],
            mean_abs,
            title="Size of the optimal gains per layer",
            ylabel="mean |G| over the layer's weights",
            styles=dict(
                zip(mean_abs, ({"color": c, "linewidth": 2.0} for c in ("C1", "C0")))
            ),
        ),
        "control_heatmap.png": lambda: heatmap(results, cfg),
        "net_reward_difference.png": lambda: fig.net_reward_difference(results, "G"),
        "weight_norms.png": lambda: norms_figure(results),
    }
    if "sgd_ts" in results:
        figures["sgd_replay.png"] = lambda: replay_figure(results)
    figures |= (extra or {}) | fig.optimisation(results)
    marked = {name: lambda d=draw: _mark(d(), vlines) for name, draw in figures.items()}
    return fig.save(marked, out_dir)
