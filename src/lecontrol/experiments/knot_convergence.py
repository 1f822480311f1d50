r"""Knot convergence: the piecewise-linear optimum as its knots are refined.

The paper optimises one control value per SGD step; the experiments optimise
a piecewise-linear $g(t)$ on `control.knots` evenly spaced knots (e.g. 61
knots for single-neuron's $N = 600$ steps). This study shows that the
piecewise-linear optimum converges to the per-step control as the knots are
refined (docs/experiments.md, "Knot convergence").

**Builds:** the experiment `task.experiment` (its default configuration, or
its quick variant with `task.quick`, changed by `task.overrides`: `"key=value;
key=value"` in that experiment's keys), once per knot count of
`control.knots` (empty: the experiment's ladder, `LADDERS`; the base
experiment's own count is added if missing). Each count is optimised by the
base's configured optimiser (`configured_optimizer`: L-BFGS-B by default)
until the projected-gradient norm is at most the base's `optimiser.gtol`
scaled by $\sqrt{h_K / h_\text{base}}$ ($h$: knot spacing), the same
tolerance on $\delta V/\delta g$ in $L^2$ at every count, in at most this
study's `optimiser.iterations` (not the base's: quick variants stop short of
their tolerance). Each refinement starts from the previous optimum
interpolated onto its knots (which saves iterations; on nested knots it
starts at the coarser optimum's $V$).

Affordable (measured on 2 CPU cores shared with other jobs; numbers in
docs/experiments.md): the single-neuron ladder reaches one knot per SGD step
(601 knots for $N = 600$, 6 minutes); quick effort-gaussians and quick
engagement-attentive (to 81 knots, one per 50 and per 25 SGD steps) take 3-5
minutes; full effort-gaussians from 51 to 401 knots (one per 40 SGD steps)
about 13 minutes, most of it the cold start at 51 knots, which stops at 1000
iterations short of the tolerance. One knot per SGD step (16001 and 13001 knots) is out of reach for
the gain and engagement families: every gradient is a solve over all $N$
steps, and finer knots need more solver steps. The full engagement ladder
(`LADDERS`, to 1301 knots, one per 10 SGD steps, on MNIST) was not measured.

**Figures:** `convergence.png`: (a) $V$ against the knot count and
$|V_K - V_\text{finest}|$ on log axes, (b) the optimal $g(t)$ of every count
on a symlog time axis, (c) the sup-norm and $L^2$ distances of $g_K$ to the
finest $g$ against the knot spacing, with the observed orders.

**Findings** (checked; negative controls: the counts below the finest
refined backwards, or left unrefined, and the coarsest count in place of the
base's): `value_converges` ($|V_K -
V_\text{finest}|$ shrinks by more than a factor 2 at every refinement),
`base_knots_resolve_value` (the base experiment's own knot count loses less
than $10^{-4}$ of the value the control gains over its constant start) and
`control_converges` (the $L^2$ distance of $g_K$ to the finest $g$ falls
with an observed order above 0.5 in the knot spacing).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lecontrol as lc

from ..findings import Finding
from ..runner import (
    Config,
    ConfigError,
    Experiment,
    RunOutput,
    config,
    parse_assignments,
    require,
)
from . import get as experiment_named
from .shared import comparison as cmp, digits as dg, figures as fig

DEFAULT = config(
    task=dict(experiment="single-neuron", quick=False, overrides=""),
    control=dict(knots=()),
    optimiser=dict(iterations=1000),
    outputs=dict(min_times=2001),
)

LADDERS = {  # experiment: (full ladder, quick ladder); nested (each spacing divides)
    "single-neuron": ((4, 7, 13, 61, 301, 601), (4, 7, 31, 61)),
    "effort-gaussians": ((51, 101, 201, 401), (6, 11, 21, 41, 81)),
    "engagement-attentive": ((14, 66, 131, 651, 1301), (11, 21, 41, 81)),
    "engagement-active": ((14, 66, 131, 651, 1301), (11, 21, 41, 81)),
}
"""Default knot counts per experiment: nested, so each coarser control is one
of the finer ones and the optimal $V$ can only rise with the count. Full:
single-neuron to one knot per SGD step; the others as far as affordable."""

BASE_MARGIN = 1e-4
"""`base_knots_resolve_value`: the base's $V$ within this fraction of the
control's gain (finest $V$ minus $V$ of the constant start) of the finest."""


# ------------------------------------------------------------ configuration


def base(cfg) -> tuple[Experiment, Config]:
    """The experiment `task.experiment` and its configuration (default or
    quick, with `task.overrides` and this run's `seed`)."""
    experiment = experiment_named(cfg.task.experiment)
    base_cfg = experiment.default_config(quick=cfg.task.quick)
    items = [s for s in cfg.task.overrides.split(";") if s.strip()]
    changes = parse_assignments(items) | {"seed": str(cfg.seed)}
    base_cfg = base_cfg.replace(changes, source="task.overrides")
    flat = base_cfg.flat()
    ok = isinstance(flat.get("control.knots"), int) and "optimiser.method" in flat
    require(
        ok,
        "task.experiment",
        "must have a piecewise-linear control on `control.knots` knots and a "
        "configurable optimiser (`optimiser.method`)",
        cfg.task.experiment,
    )
    return experiment, base_cfg


def ladder(cfg, base_cfg) -> list[int]:
    """The knot counts, increasing: `control.knots` (empty: the `LADDERS`
    entry), with the base experiment's own count added."""
    knots = cfg.control.knots
    if not knots:
        name = cfg.task.experiment
        if name not in LADDERS:
            raise ConfigError(
                f"`control.knots` is empty and {name!r} has no default ladder "
                f"(only {sorted(LADDERS)}); set e.g. --set control.knots=6,11,21."
            )
        knots = LADDERS[name][int(cfg.task.quick)]
    ok = all(float(k).is_integer() and k >= 2 for k in knots)
    require(ok, "control.knots", "must be whole numbers >= 2", knots)
    counts = sorted({int(k) for k in knots} | {base_cfg.control.knots})
    require(len(counts) >= 3, "control.knots", "needs at least 3 counts", counts)
    return counts


def check(cfg) -> None:
    """The base experiment, its configuration and the ladder are valid."""
    experiment, base_cfg = base(cfg)
    if experiment.check is not None:
        experiment.check(base_cfg)
    ladder(cfg, base_cfg)
    n = cfg.outputs.min_times
    require(n >= 2, "outputs.min_times", "must be >= 2", n)


def build(cfg):
    """The base experiment's problem at its own knot count."""
    experiment, base_cfg = base(cfg)
    return experiment.build(base_cfg)


def fine_times(T: float, counts, min_times: int) -> np.ndarray:
    """A grid on $[0, T]$ holding every knot of every count (the least common
    multiple of the interval counts, refined to at least `min_times` points),
    or `min_times` points if that would exceed 100 000."""
    n = math.lcm(*(k - 1 for k in counts))
    n = n * max(1, math.ceil((min_times - 1) / n)) if n <= 100_000 else min_times - 1
    return np.linspace(0.0, T, n + 1)


# -------------------------------------------------------------------- the run


def _knot_control(control):
    return getattr(control, "inner", control)  # NeuronBasis wraps the knots


def refine(theta, old_knots, new_knots, control):
    """`theta` on `old_knots` interpolated linearly onto `new_knots` (the same
    piecewise-linear $g$ where the new knots include the old ones), projected
    into the control's bounds."""
    old, new = jnp.asarray(old_knots), jnp.asarray(new_knots)

    def leaf(c):
        flat = c.reshape(c.shape[0], -1)
        cols = jax.vmap(lambda y: jnp.interp(new, old, y), in_axes=1, out_axes=1)
        return cols(flat).reshape(new.shape[0], *c.shape[1:])

    return control.project(jax.tree.map(leaf, theta))


def _flat_g(control, theta, ts) -> np.ndarray:
    """$g(t)$ at `ts`, every leaf flattened: (times, components)."""
    g = jax.vmap(lambda t: control(theta, t))(jnp.asarray(ts))
    leaves = [np.asarray(x).reshape(len(ts), -1) for x in jax.tree.leaves(g)]
    return np.concatenate(leaves, axis=1)


def _adjoint(base_cfg):
    """The gradient strategy the base experiment uses (`optimiser.gradient` of
    the engagement family; the default otherwise)."""
    from .shared.engagement import GRADIENTS

    gradient = base_cfg.optimiser.get("gradient")
    return {} if gradient is None else {"adjoint": GRADIENTS[gradient]()}


def run(cfg, out_dir: Path, progress: bool, checkpoints=None) -> RunOutput:
    """Optimise at every knot count, coarse to fine, each warm-started from the
    previous optimum; $g$ of each on a common fine grid."""
    experiment, base_cfg = base(cfg)
    counts = ladder(cfg, base_cfg)
    T, own = cmp.horizon(base_cfg), base_cfg.control.knots
    ts = fine_times(T, counts, cfg.outputs.min_times)
    opts, gtol, kw = cmp.options(base_cfg), base_cfg.optimiser.gtol, _adjoint(base_cfg)
    rows, g, theta, knots = [], [], None, None
    start = time.perf_counter()
    for K in counts:
        k_cfg = base_cfg.replace({"control.knots": K}, source="knot ladder")
        s, optimizer = experiment.build(k_cfg), cmp.configured_optimizer(k_cfg)
        control = _knot_control(s.control)
        theta0 = (
            s.theta0
            if theta is None
            else refine(theta, knots, control.knots, s.control)
        )
        k_gtol = gtol * math.sqrt((own - 1) / (K - 1))  # same L2 tolerance on dV/dg
        res = lc.optimize(
            s.problem,
            theta0,
            optimizer=optimizer,
            steps=cfg.optimiser.iterations,
            gtol=k_gtol,
            progress=progress,
            checkpoint=cmp.next_checkpoint(checkpoints),
            options=opts,
            **kw,
        )
        if theta is None:  # V of the constant start `control.init`, the baseline
            start_value = float(
                res.values[0]
                if res.values.size
                else lc.value(s.problem, s.theta0, options=opts, **kw)
            )
        theta, knots = res.theta, control.knots
        g.append(_flat_g(s.control, theta, ts))
        rows.append(
            dict(
                V=float(res.best_value),
                projected_grad_norm=float(res.projected_grad_norm),
                gtol=k_gtol,
                iterations=int(res.iterations),
                wall_time_s=float(res.wall_time),
                status=lc.result_name(res.result),
                message=res.message,
            )
        )
    # one solve of the finest optimum, for its solver steps (each count's V
    # is its optimisation's own evaluation at the optimum)
    steps = lc.solve(s.problem, theta, ts=jnp.array([0.0, T]), options=opts).num_steps
    results = {
        "knot_counts": np.array(counts),
        "base_knots": np.array(own),
        "ts": ts,
        "control_g": np.stack(g),
        "bounds": np.array([base_cfg.control.lower, base_cfg.control.upper]),
        "V_start": np.asarray(start_value),
    }
    for key in ("V", "projected_grad_norm", "gtol", "iterations", "wall_time_s"):
        results[key] = np.array([r[key] for r in rows])
    out = summary(cfg, base_cfg, optimizer, rows, results, start)
    return RunOutput(results, out | {"solver_steps": {"finest": int(steps)}})


def summary(cfg, base_cfg, optimizer, rows, results, start) -> dict:
    """The study's `summary.json` entries: `V_baseline` is $V$ at the base
    experiment's own knot count, `V_control` at the finest; per count: $V$,
    the projected-gradient norm, its tolerance, iterations and status; the
    projected-gradient norm and tolerance of the count farthest from its
    own tolerance (`projected_grad_norm`, `gtol`); the observed orders of the
    distances of $g$ to the finest (`distances`)."""
    counts, finest = list(results["knot_counts"]), len(rows) - 1
    own = counts.index(base_cfg.control.knots)
    bad = [r for r in rows if r["status"] != "converged"]
    dist = distances(results)
    worst = int(np.argmax([r["projected_grad_norm"] / r["gtol"] for r in rows]))
    out = {
        "base_experiment": cfg.task.experiment,
        "base_quick": cfg.task.quick,
        "base_overrides": cfg.task.overrides,
        "horizon_T": cmp.horizon(base_cfg),
        "sgd_steps": base_cfg.objective.steps,
        "V_baseline": rows[own]["V"],
        "V_control": rows[finest]["V"],
        "iterations": sum(r["iterations"] for r in rows),
        "wall_time_s": time.perf_counter() - start,
        "status": bad[0]["status"] if bad else "converged",
        "message": "; ".join(
            f"{k} knots: {r['message']}" for k, r in zip(counts, rows)
        ),
        "optimiser": repr(optimizer),  # the finest count's
        # The count farthest from its own tolerance (the tolerance scales
        # with the knot spacing), with that tolerance: within it iff every
        # count is within its own.
        "projected_grad_norm": rows[worst]["projected_grad_norm"],
        "gtol": rows[worst]["gtol"],
        "per_count": {
            str(k): {key: r[key] for key in r if key != "message"}
            for k, r in zip(counts, rows)
        },
        "observed_order_l2": dist["order_l2"],
        "observed_order_sup": dist["order_sup"],
    }
    if "dataset" in base_cfg.task:
        out["dataset"] = dg.describe(base_cfg)
    return out


# ------------------------------------------------------------------- measures


def distances(r) -> dict:
    r"""Knot spacings $h_K = T/(K-1)$, the distances of each $g_K$ to the finest
    $g$ on the saved grid (sup norm over times and components;
    $L^2 = (\frac1T\int_0^T\lVert g_K - g_\text{finest}\rVert^2dt)^{1/2}$), and
    the observed orders: least-squares slopes of $\log$ distance against
    $\log h$ over the counts below the finest (nan where a distance is 0)."""
    ts, g = np.asarray(r["ts"], float), np.asarray(r["control_g"], float)
    counts = np.asarray(r["knot_counts"], float)
    h, diff = (ts[-1] - ts[0]) / (counts - 1), g - g[-1]
    sup = np.abs(diff).max(axis=(1, 2))
    l2 = np.sqrt(np.trapezoid((diff**2).sum(2), ts, axis=1) / (ts[-1] - ts[0]))

    def order(e):
        e, hh = e[:-1], h[:-1]
        if len(e) < 2 or not np.all(e > 0):
            return float("nan")
        return float(np.polyfit(np.log(hh), np.log(e), 1)[0])

    return dict(h=h, sup=sup, l2=l2, order_sup=order(sup), order_l2=order(l2))


def value_converges(r) -> tuple[float, str]:
    r"""The least ratio $d_K / d_{K'}$ of successive gaps $d_K = |V_K -
    V_\text{finest}|$ over the counts below the finest."""
    counts, V = np.asarray(r["knot_counts"]), np.asarray(r["V"], float)
    d = np.abs(V[:-1] - V[-1])
    gaps = ", ".join(f"{k}: {x:.3g}" for k, x in zip(counts, d))
    if len(d) < 2:
        return float("nan"), "fewer than three knot counts"
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = d[:-1] / d[1:]
    text = f"|V_K − V_finest| by knot count K: {gaps}; V_finest = {V[-1]:.10g}"
    return float(np.min(ratios)) if np.all(np.isfinite(ratios)) else np.nan, text


def base_knots_resolve_value(r) -> tuple[float, str]:
    r"""$-\log_{10}(|V_\text{base} - V_\text{finest}| / (V_\text{finest} -
    V_\text{start}))$: the value the base experiment's own count loses, as a
    fraction of what the control gains over its constant start (the
    experiment's baseline); nan if the base's count is the finest."""
    counts, V = list(np.asarray(r["knot_counts"])), np.asarray(r["V"], float)
    own = counts.index(int(r["base_knots"])) if int(r["base_knots"]) in counts else -1
    if own in (-1, len(counts) - 1):
        return float("nan"), "the base experiment's knot count is not below the finest"
    gain = V[-1] - float(r["V_start"])
    if not gain > 0:
        return float("nan"), f"the control gains nothing over its start ({gain:.3g})"
    rel = abs(V[own] - V[-1]) / gain
    text = (
        f"V with the base's {counts[own]} knots {V[own]:.10g}, with "
        f"{counts[-1]} knots {V[-1]:.10g}: they differ by {rel:.3g} of the "
        f"control's gain over its start, {gain:.4g}"
    )
    return (-math.log10(rel) if rel > 0 else math.inf), text


def control_converges(r) -> tuple[float, str]:
    r"""The observed order $p$ of the $L^2$ distance $\lVert g_K -
    g_\text{finest}\rVert \approx C h_K^p$ (`distances`)."""
    d = distances(r)
    pairs = ", ".join(
        f"{k}: {e:.3g}" for k, e in zip(np.asarray(r["knot_counts"]), d["l2"][:-1])
    )
    text = (
        f"L2 distance to the finest g by knot count: {pairs}; observed order "
        f"{d['order_l2']:.3g} (sup norm: {d['order_sup']:.3g})"
    )
    return d["order_l2"], text


# ----------------------------------------------------------- negative controls

PER_COUNT = ("V", "control_g", "projected_grad_norm", "iterations")


def refined_backwards(r) -> dict:
    """The counts below the finest in reverse order (each result labelled
    with another count): refinement moves away from the finest result."""
    out = dict(r)
    for k in PER_COUNT:
        x = np.array(r[k])
        x[:-1] = x[:-1][::-1]
        out[k] = x
    return out


def unrefined(r) -> dict:
    """Every count below the finest with the coarsest count's result: a
    ladder whose refinements change nothing."""
    out = dict(r)
    for k in PER_COUNT:
        x = np.array(r[k])
        x[1:-1] = x[0]
        out[k] = x
    return out


def coarsest_as_base(r) -> dict:
    """The coarsest count's results in place of the base experiment's count."""
    counts = list(np.asarray(r["knot_counts"]))
    own = counts.index(int(r["base_knots"])) if int(r["base_knots"]) in counts else 0
    out = dict(r)
    for k in PER_COUNT:
        x = np.array(r[k])
        x[own] = x[0]
        out[k] = x
    return out


BACKWARDS = ("refined backwards", refined_backwards)
UNREFINED = ("unrefined", unrefined)
COARSEST = ("coarsest as base", coarsest_as_base)

FINDINGS = (
    Finding(
        "value_converges",
        "The optimal V converges as the knots are refined towards one per SGD step "
        "(the paper's per-step control).",
        value_converges,
        margin=2.0,
        criterion="|V_K − V_finest| shrinks by more than a factor 2 at every "
        "refinement (each at least halves the knot spacing)",
        negative_controls=(BACKWARDS, UNREFINED),
    ),
    Finding(
        "base_knots_resolve_value",
        "The experiment's own knot count gives the finest count's V.",
        base_knots_resolve_value,
        margin=-math.log10(BASE_MARGIN),
        criterion=f"|V_base − V_finest| < {BASE_MARGIN:g} × (V_finest − V_start), "
        "V_start: the constant starting control, the experiment's baseline "
        "(effect: −log10 of the fraction)",
        negative_controls=(COARSEST, BACKWARDS),
    ),
    Finding(
        "control_converges",
        "The optimal g converges as the knots are refined.",
        control_converges,
        margin=0.5,
        criterion="L2 distance of g_K to the finest g ≈ C h_K^p with observed "
        "order p > 0.5 in the knot spacing h_K",
        negative_controls=(BACKWARDS, UNREFINED),
    ),
)


# -------------------------------------------------------------------- figures


def plot(results, cfg, out_dir: Path) -> list[Path]:
    """`convergence.png`, panels (a)-(c) (module docstring)."""
    draw = lambda: convergence_figure(results, cfg)  # noqa: E731
    if "dataset" in base(cfg)[1].task:
        with fig.footnote(f"data: {dg.label(base(cfg)[1])}"):
            return fig.save({"convergence.png": draw}, out_dir)
    return fig.save({"convergence.png": draw}, out_dir)


def convergence_figure(r, cfg):
    """(a) V and its gap to the finest, (b) g(t) per count, (c) distances of g."""
    import matplotlib.pyplot as plt

    counts, V = np.asarray(r["knot_counts"]), np.asarray(r["V"], float)
    ts, g, d = np.asarray(r["ts"]), np.asarray(r["control_g"]), distances(r)
    own = int(r["base_knots"])
    figure, (a, b, c) = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
    figure.suptitle(f"Knot convergence of {cfg.task.experiment}")
    a.plot(counts, V, "o-", color="C0", label="V_K")
    a.set(xscale="log", xlabel="knots K", ylabel="V (value, net reward)")
    a.set_xticks(counts, [str(k) for k in counts], minor=False)
    a.xaxis.set_minor_locator(plt.NullLocator())
    a.axvline(own, color="0.5", linestyle=":", label=f"base ({own} knots)")
    a2 = a.twinx()
    gap = np.abs(V[:-1] - V[-1])
    a2.plot(counts[:-1], np.where(gap > 0, gap, np.nan), "s--", color="C3")
    a2.set(yscale="log", ylabel="|V_K − V_finest|")
    a2.yaxis.label.set_color("C3")
    a.legend(loc="center right")
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(counts)))
    many = g.shape[2] > 4  # many components: their root mean square
    for k, gk, col in zip(counts, g, colours):
        lw = 2.2 if k == counts[-1] else 1.2
        y = np.sqrt((gk**2).mean(1)) if many else gk
        lines = b.plot(ts, y, color=col, linewidth=lw)
        lines[0].set_label(f"K = {k}")
    lo, hi = np.asarray(r["bounds"], float)
    for y in () if many else (lo, hi):
        b.axhline(y, color="0.6", linestyle=":", linewidth=1.0)
    b.set_xscale("symlog", linthresh=ts[-1] / 100)
    b.set(xlim=(0, ts[-1]), xlabel=fig.plotting.TIME_LABEL + " (symlog)")
    several = f" (all {g.shape[2]} components)" if g.shape[2] > 1 else ""
    b.set(ylabel=f"RMS of the {g.shape[2]} components of g(t)" if many else "")
    b.set(ylabel=b.get_ylabel() or f"control g(t){several}")
    b.legend(loc="best", fontsize="small")
    h = d["h"][:-1]
    c.loglog(h, d["l2"][:-1], "o-", label=f"L2 (order {d['order_l2']:.2f})")
    c.loglog(h, d["sup"][:-1], "s--", label=f"sup (order {d['order_sup']:.2f})")
    c.set(xlabel="knot spacing h = T/(K−1) (time units)", ylabel="‖g_K − g_finest‖")
    c.legend(loc="best")
    for ax, letter in zip((a, b, c), "abc"):
        ax.set_title(f"({letter})", loc="left", fontweight="bold")
        ax.grid(True, alpha=0.3)
    return figure


EXPERIMENT = Experiment(
    name="knot-convergence",
    description="Knot convergence: V and the optimal g(t) of an experiment as its "
    "piecewise-linear control's knots are refined (to one per SGD step).",
    default=DEFAULT,
    quick={"task.quick": True},
    build=build,
    run=run,
    plot=plot,
    figures=("convergence.png",),
    findings=FINDINGS,
    check=check,
)
