r"""The gain-modulation family (Sec. 6, App. I; docs/systems/two-layer.md).

`effort-gaussians`, `effort-semantic`, `effort-digits`, `nonlinear` and
`task-switch` train a two-layer network under gains on its weights,
$\tilde W_i = (1 + G_i)\circ W_i$, at the cost $\exp(\beta\sum_i\lVert
G_i\rVert_F^2) - 1$; they differ in task and system. Family keys:
`system.init_scale` (std of the initial weights, drawn from `seed`);
`control.basis` (`"weight"`: a gain per weight; `"neuron"`: one per output
neuron on $W_2$'s rows, App. H.1.1); `outputs.record_every` (SGD steps between
saved times); `outputs.threshold_fraction` (the "time to learn" is when this
fraction of the baseline's loss reduction is done); `outputs.replay` (also run
minibatch SGD, `lc.simulate`, with both controls: `replay_seeds` runs of
`replay_batch` samples per step). **Figures:** `FIGURES`, and those of what
an experiment adds (`plot`).

**Findings** (`FINDINGS`): the control is concentrated early
(`control_fraction_first_quarter` well above 1/4, `t_peak_control`) and near
the steepest loss drops (`t_steepest_drop_*`), the loss falls faster
(`t_threshold_*`, `cumulative_loss_*`) and the weights end sparser
(`final_l1_*`, `final_l1_over_l2_*`). The SGD replay (`sgd_*`) checks the ODE.
Checked (`CHECKS`): `control_early`, `learns_faster`, `sparser_weights`, and
`control_tracks_loss_drops` (the lag at which $|d\langle L\rangle/dt|$ best
follows $\lVert G(t)\rVert$ is within 5% of $T$; it fails on the control
reversed or delayed by $T/4$); `loss_rate.png` draws both, normalised.
"""

import jax
import matplotlib.pyplot as plt
import numpy as np

import lecontrol as lc

from ...findings import Finding
from ...runner import Experiment, RunOutput, config, require
from . import comparison as cmp, figures as fig, findings, weights

RUNS = ("baseline", "control")
GAUSSIANS = dict(mu=(3.0, 1.0), sigma=(1.0, 1.0), p=0.8)
FAMILY = dict(
    system=dict(hidden=6, lam=0.01, tau=1.0, init_scale=0.01),
    control=dict(knots=201, lower=-0.5, upper=0.5, init=0.0, basis="weight"),
    cost=dict(beta=0.3),
    objective=dict(alpha=5e-3, steps=16000, gamma=0.99, eta=1.0),
    optimiser=dict(method="lbfgsb", gtol=1e-8, iterations=1000, lr=10.0),
    solver=dict(rtol=1e-7, atol=1e-9, max_steps=4096),
    outputs=dict(record_every=20, threshold_fraction=0.9, replay=True)
    | dict(replay_batch=32, replay_seeds=4),
)
FIGURES = ("overview.png", "loss.png", "control.png", "control_heatmap.png")
FIGURES += ("weight_norms.png",)
FIGURES += ("loss_rate.png", "weights.png")
FIGURES += ("net_reward_difference.png", "sgd_replay.png?", "optimisation.png?")
FIGURES += ("ode_vs_sgd.png?",)
_PER_RUN = ("t_steepest_drop", "t_threshold", "cumulative_loss", "final_l1")
FINDINGS = ("V_gain", "control_fraction_first_quarter", "t_peak_control") + tuple(
    f"{k}_{run}" for k in (*_PER_RUN, "final_l1_over_l2") for run in RUNS
)


def _effort(r):
    r"""The control's effort $\sum_i\lVert G_i(t)\rVert_F^2$ over time."""
    return sum((g**2).sum(1) for g in layers(r, "control", "g", flat=True))


def early_effort(r) -> tuple[float, str]:
    r"""Share of the effort $\int\sum_i\lVert G_i\rVert_F^2dt$ in the first
    quarter, minus the 1/4 of a control that does not depend on time."""
    share = findings.fraction_in_first_quarter(r["ts"], _effort(r))
    share = float("nan") if share is None else share
    return share - 0.25, f"{100 * share:.1f}% of the effort in the first quarter"


def learns_faster(r) -> tuple[float, str]:
    """$1 - t_c / t_b$: $t$ when a run's loss has fallen by the fraction of the
    baseline's reduction `loss_threshold` marks (saved with the arrays)."""
    lb, level = r["baseline_loss"], float(r["loss_threshold"])
    t = [findings.crossing_time(r["ts"], r[f"{k}_loss"], level) for k in RUNS]
    if None in t or not t[0] > 0:
        return float("nan"), f"a run never reaches the loss {level:.4g}"
    drop = f"{100 * (lb[0] - level) / (lb[0] - lb[-1]):.0f}%"
    text = f"{drop} of the baseline's loss reduction by t = {t[1]:.4g} with control"
    return 1 - t[1] / t[0], f"{text}, by t = {t[0]:.4g} without"


def sparser(r) -> tuple[float, str]:
    r"""$1 - \rho_c / \rho_b$, $\rho = \lVert w\rVert_1 / \lVert w\rVert_2$ of all
    weights at $T$ (lower: sparser)."""
    rho = []
    for run in RUNS:
        w = np.concatenate([x[-1] for x in layers(r, run, "w", flat=True)])
        rho.append(np.abs(w).sum() / np.sqrt((w**2).sum()))
    return 1 - rho[1] / rho[
        0
    ], f"L1/L2 at T {rho[1]:.4g} with control, {rho[0]:.4g} without"


def control_norm(r, run: str = "control"):
    r"""The control's size $\lVert G(t) - G_\text{base}\rVert =
    (\sum_i\lVert G_i(t)\rVert_F^2)^{1/2}$ over time ($G_\text{base} = 0$)."""
    return np.sqrt(sum((g**2).sum(1) for g in layers(r, run, "g", flat=True)))


def loss_rate(r, run: str = "control"):
    r"""$|d\langle L\rangle/dt|$ of a run over the saved times (central
    differences), within each stretch between the task switches `switch_times`
    where saved: the jump of the loss at a switch is a change of task, not a
    drop."""
    ts, loss = np.asarray(r["ts"], dtype=float), np.asarray(r[f"{run}_loss"], float)
    cuts = np.searchsorted(ts, np.asarray(r.get("switch_times", ()), dtype=float))
    rate = np.zeros_like(loss)
    for i, j in zip([0, *cuts], [*cuts, len(ts)]):
        if j - i > 1:
            rate[i:j] = np.gradient(loss[i:j], ts[i:j])
    return np.abs(rate)


NEAR, MIN_CORRELATION = 0.05, 0.5
"""`tracks_loss_drops`: the largest lag that counts as "near" (a share of
the horizon), and the correlation the best lag needs."""


def tracks_loss_drops(r) -> tuple[float, str]:
    r"""$\text{NEAR} - |\tau^*| / T$, $\tau^*$ the lag at which the controlled
    loss's rate $|d\langle L\rangle/dt|$ best follows the control's size
    $\lVert G(t)\rVert$ (`findings.best_lag`, over lags within $\pm T/2$, or
    half the `switch_period` where saved: a whole period would line up the next
    switch); $-\infty$ when the cross-correlation at $\tau^*$ is not above
    `MIN_CORRELATION` (nothing lines up).

    A lag rather than a correlation at lag 0 over $t > t_0$: a control and a
    loss rate that are both large early and small late correlate at lag 0 even
    when their peaks are apart (on the quick `effort-gaussians` run, with the
    first 5% of $T$ left out, $r = 0.95$, and 0.81 for the control delayed by
    $T/4$: that check could not tell them apart)."""
    ts = np.asarray(r["ts"], dtype=float)
    span = ts[-1] - ts[0]
    most = 0.5 * float(r["switch_period"]) if "switch_period" in r else span / 2
    lag, c = findings.best_lag(ts, control_norm(r), loss_rate(r), most)
    text = f"|dL/dt| follows ‖G(t)‖ best at lag {lag:.3g} (r = {c:.3f}, lags "
    text += f"up to ±{most:.3g} searched), T = {span:.4g}"
    if not c > MIN_CORRELATION:
        return -float("inf") if np.isfinite(c) else float("nan"), text
    return NEAR - abs(lag) / span, text


def _delayed(share: float):
    """The negative control "the control delayed by `share` of the horizon"."""

    def delayed(r):
        return findings.delayed_control(r, share * (r["ts"][-1] - r["ts"][0]))

    return (f"delayed by {share:g} T", delayed)


def tracks_loss_drops_check(delayed=_delayed(0.25), reversed_=True) -> Finding:
    """The finding "control near the steepest loss drops", failing on the
    baseline, on the control `delayed` (a `(name, transform)` negative
    control) and, with `reversed_`, on the control reversed in time."""
    controls = ("baseline",) + ("reversed",) * reversed_ + (delayed,)
    return Finding(
        "control_tracks_loss_drops",
        "Control is concentrated near the steepest loss drops (Figs. 5d, 10d, "
        "11d, 15d).",
        tracks_loss_drops,
        margin=0.0,
        criterion=f"|dL/dt| of the controlled run follows ‖G(t)‖ best (cross-"
        f"correlation > {MIN_CORRELATION}) at a lag within ±{NEAR:g} T",
        negative_controls=controls,
    )


CHECKS = {
    "control_early": Finding(
        "control_early",
        "Control is concentrated early (Figs. 5d, 10d).",
        early_effort,
        margin=0.25,
        criterion="over half the effort ∫Σ‖G_i‖² dt falls in the first quarter",
        negative_controls=("baseline", "reversed"),
    ),
    "learns_faster": Finding(
        "learns_faster",
        "The loss falls faster with control (Fig. 5c).",
        learns_faster,
        margin=0.05,
        criterion="the controlled run reaches the baseline's final-loss threshold "
        "more than 5% sooner",
    ),
    "control_tracks_loss_drops": tracks_loss_drops_check(),
    "sparser_weights": Finding(
        "sparser_weights",
        "The weights end sparser with control (Figs. 5b, 10c).",
        sparser,
        margin=0.05,
        criterion="L1/L2 norm ratio of the final weights more than 5% below "
        "the baseline's",
    ),
}


def defaults(task: dict, **sections: dict):
    """`FAMILY` with `task`, and each section's entries added or changed."""
    return config(task=task, **{k: v | sections.get(k, {}) for k, v in FAMILY.items()})


def check(cfg) -> None:
    """The saved times are SGD steps (no constructor sees this when building);
    the optimiser is known."""
    every = cfg.outputs.record_every
    ok = every > 0 and cfg.objective.steps % every == 0
    require(ok, "outputs.record_every", "must divide objective.steps", every)
    cmp.check_optimiser(cfg)


def experiment(
    *,
    system,
    quick,
    run=None,
    figures=(),
    findings=(),
    checks=tuple(CHECKS),
    plot_more=None,
    **fields,
):
    """An `Experiment` of the family on `system(cfg)` (`run` defaults to
    `run_on` it), drawn by `plot` and `plot_more` (the experiment's own
    `figures`, same signature), checking the `CHECKS` named in `checks`; the
    quick variant replays two SGD runs."""

    def default_run(cfg, out_dir, progress, checkpoints=None):
        return run_on(cfg, system(cfg), progress, checkpoints)

    fields |= dict(build=lambda cfg: setup(cfg, system(cfg)), run=run or default_run)
    checked = tuple(CHECKS[k] for k in checks)
    fields |= dict(figures=FIGURES + figures, findings=FINDINGS + findings + checked)
    quick = {"outputs.replay_seeds": 2} | quick

    def drawn(results, cfg, out_dir):
        more = plot_more(results, cfg, out_dir) if plot_more else []
        return plot(results, cfg, out_dir) + more

    return Experiment(quick=quick, plot=drawn, check=check, **fields)


def network(cls, cfg, task, **extra):
    """The system `cls` on `task` from the `system` section and `seed`."""
    s = cfg.system
    kw = dict(hidden=s.hidden, lam=s.lam, tau=s.tau, scale=s.init_scale)
    return cls(task, seed=cfg.seed, **kw, **extra)


def setup(cfg, system):
    """Gains per weight or per neuron (`control.basis`) on `system`, their cost."""
    basis, shape = cfg.control.basis, system.control_shape
    require(basis in ("weight", "neuron"), "control.basis", "is not known", basis)
    control = cmp.knot_control(cfg, shape if basis == "weight" else (shape[1][0],))
    if basis == "neuron":
        control = lc.controls.NeuronBasis(control, shape, leaf=1, axis=0)
    return cmp.setup(cfg, system, control, lc.costs.ExpQuadratic(beta=cfg.cost.beta))


def layers(results, run: str, field: str, flat: bool = False) -> list:
    """A run's two layers of `field` (`"w"` or `"g"`), or their rows, over time."""
    x = [results[f"{run}_{field}{i}"] for i in (0, 1)]
    return [a.reshape(a.shape[0], -1) for a in x] if flat else x


def weight_norms(layers: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    r"""$\sum_i\lVert W_i\rVert_1$ and $(\sum_i\lVert W_i\rVert_F^2)^{1/2}$
    over the layers, each flattened along its last axis (leading axes kept)."""
    l1 = sum(np.abs(w).sum(-1) for w in layers)
    return l1, np.sqrt(sum((w**2).sum(-1) for w in layers))


def measure(results, cfg) -> tuple[dict, dict]:
    r"""Derived arrays (weight norms $\sum_i\lVert W_i\rVert_1$ and
    $(\sum_i\lVert W_i\rVert_F^2)^{1/2}$, mean $|G|$ per layer, effort
    $\sum_i\lVert G_i\rVert_F^2$) and the findings' summary entries."""
    arrays, summary, ts = {}, {}, results["ts"]
    for run in RUNS:
        W = layers(results, run, "w", flat=True)
        arrays[f"{run}_l1"], arrays[f"{run}_l2"] = weight_norms(W)
    G = layers(results, "control", "g", flat=True)
    for i, g in enumerate(G):
        arrays[f"control_mean_abs_g{i}"] = np.abs(g).mean(1)
    effort = arrays["control_effort"] = _effort(results)
    lb, quarter = results["baseline_loss"], findings.fraction_in_first_quarter
    target = lb[0] - cfg.outputs.threshold_fraction * (lb[0] - lb[-1])
    summary["control_fraction_first_quarter"] = quarter(ts, effort)
    summary["t_peak_control"] = float(ts[int(np.argmax(effort))])
    summary["loss_threshold"] = float(target)
    arrays["loss_threshold"] = np.asarray(target)
    for run in RUNS:
        loss, l1, l2 = results[f"{run}_loss"], arrays[f"{run}_l1"], arrays[f"{run}_l2"]
        summary |= {
            f"t_steepest_drop_{run}": findings.steepest_drop_time(ts, loss),
            f"t_threshold_{run}": findings.crossing_time(ts, loss, target),
            f"cumulative_loss_{run}": findings.integral(ts, loss),
            f"final_loss_{run}": float(loss[-1]),
            f"final_l1_{run}": float(l1[-1]),
            f"final_l2_{run}": float(l2[-1]),
            f"final_l1_over_l2_{run}": float(l1[-1] / l2[-1]),
        }
    return arrays, summary


def replay(cfg, s, c, *, data=None, loss=None) -> tuple[dict, dict]:
    r"""Minibatch SGD (`lc.simulate` on `data`, default the task) with $G = 0$
    and with the optimised gains, same seeds, recorded at the ODE's times.

    `loss(w, g)` (over the records) measures the SGD weights instead of the
    system's loss, in entries `sgd_real_*`. Arrays: `sgd_ts`, seed-mean loss and
    its standard error per run; summary per run: $V$ (trapezoid of
    $\gamma^t[-\eta L - C(G)]$), final and integrated loss, largest gap to the ODE.
    """
    o, ob, tag = cfg.outputs, cfg.objective, "" if loss is None else "real_"
    key = jax.random.fold_in(jax.random.key(cfg.seed), 1)
    kw = dict(alpha=ob.alpha, steps=ob.steps, batch_size=o.replay_batch, data=data)
    kw |= dict(seeds=jax.random.split(key, o.replay_seeds), record_every=o.record_every)
    arrays, summary = {}, {"sgd_batch": o.replay_batch, "sgd_seeds": o.replay_seeds}
    thetas, odes = (c.theta_baseline, c.result.theta), (c.baseline, c.controlled)
    for run, theta, ode in zip(RUNS, thetas, odes):
        sim = lc.simulate(s.problem, theta, **kw)
        per_seed = sim.loss if loss is None else jax.vmap(loss, (0, None))(sim.w, sim.g)
        per_seed, ts = np.asarray(per_seed), np.asarray(sim.ts)
        # The first seed's weights, and the seed-mean weight norms.
        leaves = jax.tree.leaves(sim.w)
        for i, w in enumerate(leaves):
            arrays[f"sgd_{run}_w{i}"] = np.asarray(w[0])
        flat = [np.asarray(w).reshape(w.shape[0], w.shape[1], -1) for w in leaves]
        l1, l2 = weight_norms(flat)
        arrays[f"sgd_{run}_l1"], arrays[f"sgd_{run}_l2"] = l1.mean(0), l2.mean(0)
        mean, n = per_seed.mean(0), per_seed.shape[0]
        err = per_seed.std(0, ddof=1) / np.sqrt(n) if n > 1 else 0 * mean
        arrays |= {"sgd_ts": ts, f"sgd_{run}_{tag}loss_mean": mean}
        arrays[f"sgd_{run}_{tag}loss_stderr"] = err
        v = ob.gamma**ts * (-ob.eta * mean - np.asarray(jax.vmap(s.cost)(sim.g)))
        summary |= {
            f"sgd_{tag}V_{run}": findings.integral(ts, v),
            f"sgd_{tag}final_loss_{run}": float(mean[-1]),
            f"sgd_{tag}cumulative_loss_{run}": findings.integral(ts, mean),
            f"sgd_{tag}max_gap_to_ode_{run}": float(np.max(np.abs(mean - ode.loss))),
        }
    return arrays, summary


def run_on(cfg, system, progress, checkpoints, *, data=None, loss=None) -> RunOutput:
    """Baseline vs optimised gains on `system`, the findings, and (with
    `outputs.replay`) the SGD `replay` on `data` measured by `loss`."""
    s = setup(cfg, system)
    ts = cmp.record_times(cfg, cfg.outputs.record_every)
    c = cmp.compare(s, cfg, ts=ts, progress=progress, checkpoints=checkpoints)
    results = cmp.comparison_arrays(c)
    arrays, found = measure(results, cfg)
    extra = dict(control_lr_theta=cmp.control_lr(cfg), T=cmp.horizon(cfg))
    out = RunOutput(results | arrays, cmp.comparison_summary(c, **extra) | found)
    if cfg.outputs.replay:
        arrays, found = replay(cfg, s, c, data=data, loss=loss)
        out.results.update(arrays)
        out.summary.update(found)
    return out


# ---------------------------------------------------------------------- figures

PAIR = fig.pair("baseline (G = 0)")
plotting = fig.plotting


def pair_lines(results, key: str, prefix: str = "", **text):
    """`{run}_{key}` of the baseline and of the control over time."""
    series = {f"{prefix}{k}": results[f"{r}_{key}"] for k, r in zip(PAIR, RUNS)}
    styles = {f"{prefix}{k}": style for k, style in PAIR.items()}
    return plotting.plot_lines(results["ts"], series, styles=styles, **text)


def heatmap(results, cfg):
    """Every gain over time: rows are weights (G1 then G2), colour the gain."""
    ts = plotting.check_plottable("ts", results["ts"])
    rows = [g.T for g in layers(results, "control", "g", flat=True)]
    image = plotting.check_plottable("gains", np.concatenate(rows))
    c = cfg.control
    lim = max(abs(c.lower), abs(c.upper), float(np.abs(image).max()), 1e-12)
    figure, ax = plt.subplots(figsize=(7.2, 4.2), layout="constrained")
    rows_at = np.arange(image.shape[0] + 1)
    kw = dict(vmin=-lim, vmax=lim, cmap="RdBu_r", shading="nearest")
    mesh = ax.pcolormesh(ts, rows_at[:-1] + 0.5, image, **kw)
    ax.axhline(rows[0].shape[0], color="k", linewidth=0.8)
    ylabel = f"weight index (G1: 0–{rows[0].shape[0] - 1}, then G2)"
    title = "Optimal gains G(t), one row per weight"
    ax.set(title=title, xlabel=plotting.TIME_LABEL, ylabel=ylabel)
    plotting.time_axis(ax, lines=[(ts, image.T)])
    figure.colorbar(mesh, ax=ax, label="gain G")
    return figure


def norms_figure(results):
    """$L_1$ and $L_2$ norms of the raw weights, baseline vs control."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    titles = {"l1": "L1 norm Σ|W|", "l2": "L2 norm (Σ W²)^½"}
    ylabels = {"l1": "Σ|W| over both layers", "l2": "(Σ W²)^½ over both layers"}
    for ax, (norm, title) in zip(axes, titles.items()):
        for (label, style), run in zip(PAIR.items(), RUNS):
            y = plotting.check_plottable(norm, results[f"{run}_{norm}"])
            ax.plot(results["ts"], y, label=label, **style)
        ax.set(title=title, xlabel=plotting.TIME_LABEL, ylabel=ylabels[norm])
        ax.grid(True, alpha=0.3)
        plotting.time_axis(ax)
        ax.legend(loc="best")
    return figure


def replay_figure(results, tag: str = "", title="SGD replay of the optimised control"):
    """ODE expected loss vs the seed-mean loss of real SGD (± 2 standard errors),
    from the arrays `sgd_{run}_{tag}loss_mean` and `_stderr`."""
    text = dict(title=title, ylabel="expected loss ⟨L⟩")
    figure = pair_lines(results, "loss", "ODE, ", **text)
    ax, ts = figure.axes[0], results["sgd_ts"]
    for label, run, colour in zip(PAIR, RUNS, ("0.35", "C0")):
        mean = plotting.check_plottable("SGD", results[f"sgd_{run}_{tag}loss_mean"])
        err = 2 * results[f"sgd_{run}_{tag}loss_stderr"]
        style = dict(color=colour, linewidth=0.9, alpha=0.8)
        ax.plot(ts, mean, label=f"SGD mean, {label}", **style)
        ax.fill_between(ts, mean - err, mean + err, color=colour, alpha=0.2)
    ax.legend(loc="best")
    return figure


def level_figure(results):
    """Each level's loss (`effort-semantic`), one colour per level."""
    series, styles = {}, {}
    for (label, style), run in zip(PAIR.items(), RUNS):
        for k, loss in enumerate(results[f"{run}_level_loss"].T):
            series[f"level {k}, {label}"] = loss
            styles[f"level {k}, {label}"] = dict(style, color=f"C{k}")
    text = dict(title="Loss of each level of the hierarchy", ylabel="loss")
    return plotting.plot_lines(results["ts"], series, styles=styles, **text)


def real_figure(results):
    """The Taylor loss vs the real tanh network's at the ODE weights (`nonlinear`)."""
    title = "Taylor approximation vs the real tanh network"
    figure = pair_lines(results, "loss", "Taylor ODE, ", title=title, ylabel="loss")
    for label, run, c in zip(PAIR, RUNS, ("0.6", "C3")):
        label, y = f"real tanh net at ODE weights, {label}", results[f"{run}_real_loss"]
        figure.axes[0].plot(results["ts"], y, color=c, linestyle=":", label=label)
    figure.axes[0].legend(loc="best")
    return figure


def loss_rate_figure(results, early: float = 0.2):
    r"""Normalised $|d\langle L\rangle/dt|$ of the controlled run and
    normalised $\lVert G_1(t)\rVert_F$, $\lVert G_2(t)\rVert_F$ (Figs. 5d, 10d,
    11d, 15d): over the whole horizon, and over its first `early` share."""
    ts = plotting.check_plottable("ts", results["ts"])
    rate = loss_rate(results)
    norms = [np.sqrt((g**2).sum(1)) for g in layers(results, "control", "g", True)]
    series = {"|dL/dt| (control)": (rate, dict(color="k", linewidth=2.0))}
    for i, (n, c) in enumerate(zip(norms, ("C1", "C0")), start=1):
        series[f"‖G{i}(t)‖ (Frobenius)"] = (n, dict(color=c, linewidth=1.6))
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for ax, end in zip(axes, (ts[-1], ts[0] + early * (ts[-1] - ts[0]))):
        for label, (y, style) in series.items():
            y = plotting.check_plottable(label, y)
            top = float(np.max(np.abs(y)))
            ax.plot(ts, y / top if top > 0 else y, label=label, **style)
        ax.set_xlim(ts[0], end)
        ax.set(xlabel=plotting.TIME_LABEL, ylabel="normalised (÷ max over t)")
        ax.grid(True, alpha=0.3)
    axes[0].set_title("Control vs the loss's rate of change")
    axes[1].set_title(f"The first {100 * early:.0f}% of the horizon")
    axes[1].legend(loc="best", fontsize="small")
    return figure


def _mark(figure, vlines):
    """Mark the times `vlines` (task switches) on every panel over time."""
    for ax in figure.axes if len(vlines) else ():
        if ax.get_xlabel() == plotting.TIME_LABEL:
            for j, x in enumerate(vlines):
                label = None if j else "task switch"
                ax.axvline(x, color="tab:purple", alpha=0.35, lw=0.9, label=label)
            if ax.get_legend() is not None:
                ax.legend(loc="best")
    return figure


def plot(results, cfg, out_dir) -> list:
    """The family's figures, and those of the arrays some experiments add
    (`level_loss`, `test_loss`, `real_loss`; SGD measured on the real network),
    with the task switches (`switch_times`) marked on every panel over time."""
    r, vlines = results, results.get("switch_times", ())
    label = "mean |G{}| (layer {})"
    mean = {label.format(i, i): r[f"control_mean_abs_g{i - 1}"] for i in (1, 2)}
    styles = {k: dict(color=c, linewidth=2.0) for k, c in zip(mean, ("C1", "C0"))}
    text = dict(title="Size of the optimal gains per layer", styles=styles)
    test = dict(title="Loss on the held-out test images", ylabel="test loss")

    def control(ax=None):
        ylabel = "mean |G| over the layer's weights"
        return plotting.plot_lines(r["ts"], mean, ylabel=ylabel, ax=ax, **text)

    def norms(ax):
        text = dict(title="L2 norm of the weights", ylabel="(Σ W²)^½, both layers")
        return pair_lines(r, "l2", ax=ax, **text)

    panels = [
        lambda ax: fig.loss(r, PAIR, ax=ax),
        control,
        lambda ax: fig.net_reward_difference(r, "G", ax=ax),
        norms,
    ]
    figures = {
        "overview.png": fig.overview(panels, "Optimal gains G(t) vs G = 0"),
        "loss.png": lambda: fig.loss(r, PAIR),
        "control.png": control,
        "control_heatmap.png": lambda: heatmap(r, cfg),
        "net_reward_difference.png": lambda: fig.net_reward_difference(r, "G"),
        "weight_norms.png": lambda: norms_figure(r),
        "loss_rate.png": lambda: loss_rate_figure(r),
        "weights.png": lambda: weights.figure(r),
    }
    if "sgd_ts" in r:
        tag = "real_" if "sgd_baseline_real_loss_mean" in r else ""
        title = "Control found on the Taylor ODE, replayed on SGD of the tanh net"
        title = title if tag else "SGD replay of the optimised control"
        figures["sgd_replay.png"] = lambda: replay_figure(r, tag, title)
    if "sgd_baseline_w0" in r:
        figures["ode_vs_sgd.png"] = lambda: weights.ode_vs_sgd(r)
    extra = {
        "level_loss": lambda: level_figure(r),
        "test_loss": lambda: pair_lines(r, "test_loss", **test),
        "real_loss": lambda: real_figure(r),
    }
    figures |= {f"{k}.png": d for k, d in extra.items() if f"baseline_{k}" in r}
    figures |= fig.optimisation(r)
    marked = {name: lambda d=d: _mark(d(), vlines) for name, d in figures.items()}
    return fig.save(marked, out_dir)
