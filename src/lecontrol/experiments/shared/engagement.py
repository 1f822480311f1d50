r"""Task and category engagement (the paper's Sec. 5; docs/systems/engagement.md).

A linear network learns several tasks, task $\tau$'s loss weighted by
$\psi_\tau(t)$ (`lc.systems.TaskEngagement`), or one task, output $c$'s error
weighted by $\varphi_c(t)^2$ (`lc.systems.CategoryEngagement`). `experiment`
compares the optimum with $g = 1$, replays both on SGD, measures `findings`.

Family keys: `task.pairs` (digit pairs, flattened: `0, 1, 7, 1` is 0v1, 7v1),
`task.classes` (digits, one output each), `task.levels` (of the semantic
hierarchy), the digit data `task.dataset`, `task.mnist_folder`,
`task.mnist_split`, `task.size` (`shared.digits`: MNIST by default, the quick
variants on scikit-learn's 8×8 digits); `system.init_scale` (std of the initial
weights); `optimiser.gradient` (`"checkpoint"` or `"continuous"`: which is
faster depends on the problem; per value and gradient at the defaults,
measured 2026-12-03 under load, 0.36 s vs 0.46 s on engagement-vector, 0.69 s
vs 0.48 s on category-digits, 0.11 s vs 0.055 s on category-semantic);
`optimiser.metric` (where present,
`comparison.METRICS`); `outputs.samples` (saved times, also SGD records: `samples -
1` divides `objective.steps`), `outputs.sgd_seeds` (SGD replays per schedule,
seeds `seed, seed + 1, ...`; 0: none), `outputs.batch_size` (per task, step).
Category engagement's `optimiser.lr` is $1/(8\alpha\beta C)$, not 1 (docs).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lecontrol as lc

from ...findings import Finding
from ...runner import Experiment, RunOutput, config, require
from . import comparison as cmp, digits as dg, figures as fig, seeds as spread
from .findings import crossing_time, rank_correlation

DISENGAGED = 1e-2  # a coefficient below this counts as fully disengaged
GRADIENTS = {"checkpoint": lc.CheckpointAdjoint, "continuous": lc.ContinuousAdjoint}
FINDINGS = ("findings", "engagement_min", "order_by_engagement_release")
FINDINGS += ("order_by_difficulty", "rank_correlation_centre_vs_difficulty")

# Table 4, "engagement attentive/active/vector"; knots 0.1 apart on [0, 65].
TASK_DEFAULT = config(
    task=dict(pairs=(0, 1, 7, 1, 8, 9)) | dg.TASK,
    system=dict(hidden=20, lam=0.0, tau=1.0, init_scale=0.01),
    control=dict(knots=651, lower=0.0, upper=2.0, init=1.0),
    cost=dict(beta=0.1),
    objective=dict(alpha=5e-3, steps=13000, gamma=0.99, eta=1.0),
    # `batch_size` 1: the further seeds of `control_seeds` one after another
    # (on engagement-vector 65 s against 173 s vmapped, the same optima; the
    # seeds stop after different numbers of L-BFGS-B iterations).
    optimiser=dict(
        method="lbfgsb",
        gtol=1e-8,
        iterations=800,
        lr=1.0,
        gradient="checkpoint",
        batch_size=1,
    ),
    solver=dict(rtol=1e-7, atol=1e-9, max_steps=4096),
    outputs=dict(samples=521, sgd_seeds=4, batch_size=32, control_seeds=5),
)
QUICK = {"optimiser.iterations": 8, "outputs.samples": 101, "outputs.sgd_seeds": 2}


def check(cfg) -> None:
    """Saved times are SGD steps; `optimiser.gradient` is known."""
    n, g = cfg.outputs.samples, cfg.optimiser.gradient
    ok = n >= 2 and cfg.objective.steps % (n - 1) == 0
    require(ok, "outputs.samples", "minus one must divide objective.steps", n)
    require(g in GRADIENTS, "optimiser.gradient", f"is one of {list(GRADIENTS)}", g)
    cmp.check_optimiser(cfg)


def digits(cfg, classes) -> tuple[lc.tasks.Digits, lc.tasks.Digits]:
    """A digit task without samples (labels have no gradient) and with them."""
    data = dg.load(cfg, classes)
    return lc.tasks.Digits(data.train, data.test, data.classes), data


def task_experiment(name, description, default, cost) -> Experiment:
    """Task engagement on the digit pairs `task.pairs` (one ±1 task each)."""

    def pairs(cfg) -> list[tuple[int, int]]:
        p = cfg.task.pairs
        ok = len(p) > 0 and len(p) % 2 == 0
        require(ok, "task.pairs", "must list digit pairs (e.g. 0,1,7,1,8,9)", p)
        return [(p[i], p[i + 1]) for i in range(0, len(p), 2)]

    def tasks(cfg):
        both = zip(*(digits(cfg, pair) for pair in pairs(cfg)))
        return tuple(lc.tasks.ConcatenatedTasks(list(t)) for t in both)

    def labels(cfg) -> list[str]:
        return [f"{a}v{b}" for a, b in pairs(cfg)]

    def paper_rank(cfg) -> list[float]:
        order = PAPER_TASK_ORDER
        return [order.index(x) if x in order else np.nan for x in labels(cfg)]

    quick = QUICK | {"objective.steps": 2000, "control.knots": 11}
    quick |= {"outputs.control_seeds": 2}
    args = (name, description, default, quick, "task", tasks, labels, cost)
    easier = engaged_in_order(
        "easier_first",
        "Easier tasks are engaged first: 0v1, then 7v1, then 8v9 (Fig. 4b,d,f).",
    )
    checks = (easier, NEVER_DISENGAGED)
    ranks = {"paper_rank": paper_rank}
    return dg.on_digits(experiment(*args, ranks=ranks, checks=checks))


def _time_below(ts, x, level: float) -> float:
    t = crossing_time(ts, x, level)
    return float("nan") if t is None else t


def half_loss_time(ts, loss) -> float:
    r"""First time the loss has covered half its way from $L(0)$ to $L(T)$."""
    return _time_below(ts, loss, loss[-1] + 0.5 * (loss[0] - loss[-1]))


def timing(ts, g) -> dict[str, np.ndarray]:
    r"""When each column of $g(t)$ (times × parts) is engaged: `peak` (first
    maximum), `centre` ($\int t e\,dt / \int e\,dt$, $e = g - \min g$), `release`
    (half way down from the peak to the later low), `min`, `min_time`, `mean`."""
    ts, g = np.asarray(ts, float), np.asarray(g, float)
    peak = np.argmax(g, axis=0)
    release = np.full(g.shape[1], np.nan)
    for j, k in enumerate(peak):
        after = g[k:, j]
        if after[0] > after.min():
            release[j] = _time_below(ts[k:], after, 0.5 * (after[0] + after.min()))
    e = g - g.min(axis=0)
    area = np.trapezoid(e, ts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = np.trapezoid(ts[:, None] * e, ts, axis=0) / area
    return {
        "peak": ts[peak],
        "centre": np.where(area > 1e-12, centre, np.nan),
        "release": release,
        "min": g.min(axis=0),
        "min_time": ts[np.argmin(g, axis=0)],
        "mean": np.trapezoid(g, ts, axis=0) / (ts[-1] - ts[0]),
    }


def order(labels, times) -> list[str]:
    """`labels` sorted by `times` (stable; `nan` last)."""
    key = np.where(np.isfinite(times), times, np.inf)
    return [labels[i] for i in np.argsort(key, kind="stable")]


PAPER_TASK_ORDER = ("0v1", "7v1", "8v9")
"""The paper's task pairs, easiest first (Sec. 5.1)."""
PAPER_DIGIT_ORDER = (0, 1, 7, 6, 4, 2, 3, 9, 8, 5)
"""The order in which the paper's optimal category engagement assimilates the
digits (Sec. 5, Fig. 4i)."""
SEPARABILITY_ORDER = (0, 6, 1, 4, 7, 9, 2, 3, 8, 5)
"""The digits from easier to harder by linear separability, as the paper's
App. K.5 states them (Fig. 17b; `digit-separability` measures the same order on
MNIST)."""


def engaged_in_order(
    name: str, claim: str, rank: str = "paper_rank", order: str = "the paper's order"
) -> Finding:
    r"""The claim that the parts are engaged in an order: Spearman's $\rho$
    between each part's centre of engagement (`timing`) and its rank in that
    `order` (the array `rank`, saved by the run) above 0.5. Negative controls:
    the baseline ($g \equiv 1$: no centre) and $g$ reversed in time."""

    def measure(r):
        ranks, centre = r[rank], timing(r["ts"], r["control_g"])["centre"]
        if not np.all(np.isfinite(ranks)):
            return float("nan"), f"a part is not in {order}"
        if not np.all(np.isfinite(centre)):
            return float("nan"), "a part's engagement does not change in time"
        rho = rank_correlation(centre, ranks)
        times = ", ".join(f"{c:.3g}" for c in centre[np.argsort(ranks)])
        return rho, f"centres of engagement in {order}: {times}"

    return Finding(
        name,
        claim,
        measure,
        margin=0.5,
        criterion="Spearman ρ between each part's centre of engagement in time "
        f"and its rank in {order} > 0.5",
        negative_controls=("baseline", "reversed"),
    )


def _dropped_after_peak(r):
    g = np.array(r["control_g"], dtype=float)
    for j, k in enumerate(np.argmax(g, axis=0)):
        g[k + 1 :, j] = 0.0
    return r | {"control_g": g}


def _least_engagement(r) -> tuple[float, str]:
    g = np.asarray(r["control_g"])
    i, j = np.unravel_index(np.argmin(g), g.shape)
    return float(
        g.min()
    ), f"least engagement {g.min():.4g}, part {j}, t = {r['ts'][i]:.4g}"


NEVER_DISENGAGED = Finding(
    "never_disengaged",
    "No task is ever fully disengaged (Fig. 4b,d,f).",
    _least_engagement,
    margin=DISENGAGED,
    criterion=f"every task's engagement stays above {DISENGAGED:g} (its lower "
    "bound is 0)",
    negative_controls=(("dropped after its peak", _dropped_after_peak),),
)


def findings(labels, results) -> dict:
    """When each task (class) is engaged (`timing`) against its difficulty, the
    time the baseline needs to halve its loss (`release` shows the order best)."""
    ts, t = results["ts"], timing(results["ts"], results["control_g"])
    for p in ("baseline", "control"):
        half = [half_loss_time(ts, x) for x in results[f"{p}_parts"].T]
        t[f"{p}_half_loss"] = np.array(half)
    difficulty, times = t["baseline_half_loss"], ("peak", "centre", "release")
    out = {f"engagement_{k}": t[k] for k in ("mean", "min", "min_time")}
    out |= {f"engagement_{k}_time": t[k] for k in times}
    out |= {f"{p}_half_loss_time": t[f"{p}_half_loss"] for p in ("baseline", "control")}
    out = {k: {lab: float(v) for lab, v in zip(labels, x)} for k, x in out.items()}
    out |= {f"order_by_engagement_{k}": order(labels, t[k]) for k in times}
    out["order_by_difficulty"] = easier = order(labels, difficulty)
    peaks = t["peak"][np.argsort(difficulty)]
    rho = rank_correlation(t["centre"], difficulty, constant=float("nan"))
    return out | {
        "rank_correlation_centre_vs_difficulty": rho,
        "disengaged_below": DISENGAGED,
        "findings": {
            "easier_peaked_first": bool(np.all(np.diff(peaks) > 0)),
            "easier_released_first": out["order_by_engagement_release"] == easier,
            "easier_centred_earlier": out["order_by_engagement_centre"] == easier,
            "no_part_fully_disengaged": bool(np.all(t["min"] > DISENGAGED)),
        },
    }


def figures(results, cfg, groups, what: str, symbol: str) -> dict:
    """The family's figures (name → draw); `groups` maps a legend label to
    the columns (tasks or classes) drawn in one colour."""
    ts, g, c = results["ts"], results["control_g"], cfg.control
    pair = fig.pair(f"baseline ({symbol} = 1)")
    loss = {k: results[f"{p}_loss"] for k, p in zip(pair, ("baseline", "control"))}
    parts, engagement, styles = {}, {}, dict(pair)
    for i, (lab, idx) in enumerate(groups.items()):
        engagement[lab], styles[lab] = g[:, idx], {"color": f"C{i % 10}"}
        for p, dash in (("baseline", "--"), ("control", "-")):
            parts[f"{lab} {p}"] = results[f"{p}_parts"][:, idx]
            styles[f"{lab} {p}"] = styles[lab] | {"linestyle": dash}
    for i, p in enumerate(("baseline", "control") if "sgd_ts" in results else ()):
        runs, key = results[f"sgd_{p}_loss"], f"SGD, {p}"
        loss[key] = fig.plotting.SeedRuns(runs)  # sgd_ts are ts
        styles[key] = {"color": f"C{2 * i + 1}", "linestyle": ":"}

    def lines(series, title, ylabel, hlines=()):
        def draw(t_max=None, ax=None):  # t_max: zoom on [0, t_max], linear time
            zoom = f", t ≤ {t_max:.3g}" if t_max else ""
            kw = dict(ylabel=ylabel, styles=styles, hlines=hlines, ax=ax)
            kw["time_scale"] = "linear" if t_max else "auto"
            figure = fig.plotting.plot_lines(ts, series, title=title + zoom, **kw)
            if t_max:
                (ax or figure.axes[0]).set_xlim(0.0, t_max)
            return figure

        return draw

    lower, upper = fig.plotting.bounds(c.lower, c.upper)
    bounds = [lower, (1.0, f"baseline ({symbol} = 1)", fig.plotting.BASELINE_STYLE)]
    bounds += [upper]
    title = f"Optimal engagement {symbol}(t) per {what}"
    drawn = {
        "loss.png": lambda ax=None: fig.loss(results, pair, ax),
        f"{what}_losses.png": lines(
            parts, f"Loss per {what}, dashed: baseline", "loss"
        ),
        "engagement.png": lines(engagement, title, f"engagement {symbol}(t)", bounds),
        "net_reward_difference.png": lambda ax=None: fig.net_reward_difference(
            results, symbol, ax
        ),
    }
    panels = ("engagement.png", f"{what}_losses.png", "loss.png")
    panels += ("net_reward_difference.png",)
    overview = [lambda ax, d=drawn[k]: d(ax=ax) for k in panels]
    title = f"Optimal {what} engagement {symbol}(t) vs {symbol} = 1"
    drawn = {"overview.png": fig.overview(overview, title)} | drawn
    # When learning ends early, zoom on it: up to twice the time the baseline
    # needs for 99% of its progress, if that is under half the run.
    base = results["baseline_loss"]
    t99 = _time_below(ts, base, base[-1] + 0.01 * (base[0] - base[-1]))
    if 0 < 4 * t99 < ts[-1] - ts[0]:
        for name in (f"{what}_losses.png", "engagement.png"):
            early = name.replace(".png", "_early.png")
            drawn[early] = lambda draw=drawn[name]: draw(2 * t99)
    if "sgd_ts" in results:
        title = (
            f"SGD replay (dotted, mean ± sd over {len(runs)} seeds) vs gradient flow"
        )
        drawn["sgd_replay.png"] = lines(loss, title, "expected loss ⟨L⟩")
    return drawn | fig.optimisation(results)


def experiment(
    name,
    description,
    default,
    quick,
    what,
    tasks,
    labels,
    cost=None,
    *,
    groups=None,
    extra=None,
    more_figures=None,
    more_findings=(),
    ranks=None,
    replay=None,
    checks=(),
    check=check,
) -> Experiment:
    r"""Task (`what == "task"`) or category engagement at `cost(cfg, n)` for `n`
    coefficients (default $\beta(\lVert g\rVert^2 - n)^2$) on `tasks(cfg)`: the
    task without and with samples; `labels(cfg)`: one per coefficient;
    `groups(cfg)`: legend label → columns drawn in one colour (default: one per
    label); `extra(cfg, results)`: more summary entries; `more_figures`: name →
    `draw(results, cfg)`; `more_findings`: their summary keys; `checks`: the
    `Finding`s checked; `ranks`: name → `rank(cfg)`, each coefficient's rank in
    an order (saved under that name, for `engaged_in_order`); `replay(setup,
    comparison, cfg, data, parts, every)`: more arrays from further runs (e.g.
    `shared.proportions.replay`)."""
    by_task = what == "task"
    system = lc.systems.TaskEngagement if by_task else lc.systems.CategoryEngagement
    symbol = "ψ" if by_task else "φ"
    groups = groups or (lambda cfg: {x: [i] for i, x in enumerate(labels(cfg))})
    more_figures = more_figures or {}
    cost = cost or (lambda cfg, n: lc.costs.FixedNorm(beta=cfg.cost.beta, norm2=n))

    def problem(cfg, *, seed=None, init=None, loaded=None):
        """The setup and the data; the initial weights drawn from `seed`
        (default `cfg.seed`), or `init` = (W1, W2)."""
        stats, data = tasks(cfg) if loaded is None else loaded
        s = cfg.system
        kw = dict(hidden=s.hidden, lam=s.lam, tau=s.tau, scale=s.init_scale)
        if init is None:
            kw["seed"] = cfg.seed if seed is None else seed
        else:
            kw |= dict(W1_0=init[0], W2_0=init[1])
        net = system(stats, **kw)
        control = cmp.knot_control(cfg, net.control_shape)
        return cmp.setup(cfg, net, control, cost(cfg, net.control_shape[0])), data

    def run(cfg, out_dir: Path, progress: bool, checkpoints=None) -> RunOutput:
        """Baseline ($g = 1$) vs optimised engagement, both replayed on SGD."""
        loaded = tasks(cfg)
        s, data = problem(cfg, loaded=loaded)
        o, steps = cfg.outputs, cfg.objective.steps
        every, gradient = steps // (o.samples - 1), GRADIENTS[cfg.optimiser.gradient]
        ts = cmp.record_times(cfg, every)
        kw = dict(progress=progress, checkpoints=checkpoints, adjoint=gradient())
        c = cmp.compare(s, cfg, ts=ts, baseline_value=1.0, **kw)
        parts = s.system.task_losses if by_task else s.system.class_losses
        many = jax.jit(jax.vmap(parts))
        results = cmp.comparison_arrays(c)
        for key, rank in (ranks or {}).items():
            results[key] = np.asarray(rank(cfg), dtype=float)
        for p, trajectory in (("baseline", c.baseline), ("control", c.controlled)):
            results[f"{p}_parts"] = np.asarray(many(trajectory.w))
        seeds = range(cfg.seed, cfg.seed + o.sgd_seeds)
        kw = dict(alpha=cfg.objective.alpha, steps=steps, batch_size=o.batch_size)
        kw |= dict(seeds=seeds, record_every=every, data=data)
        schedules = (("baseline", c.theta_baseline), ("control", c.result.theta))
        for p, theta in schedules if seeds else ():  # the same seeds for both
            sim = lc.simulate(s.problem, theta, **kw)
            results["sgd_ts"] = np.asarray(sim.ts)
            results[f"sgd_{p}_loss"] = np.asarray(sim.loss)
            results[f"sgd_{p}_parts"] = np.asarray(jnp.mean(jax.vmap(many)(sim.w), 0))
        if replay is not None:
            results |= replay(s, c, cfg, data, many, every)
        if o.get("control_seeds", 0) > 0:  # the optimum over several trainings

            def make(seed, init):
                return problem(cfg, seed=seed, init=init, loaded=loaded)[0]

            kw = dict(adjoint=gradient(), progress=progress, checkpoints=checkpoints)
            results |= spread.spread(c, cfg, make, ts, **kw)
        found = findings(labels(cfg), results)
        found["tasks" if by_task else "classes"] = labels(cfg)
        if by_task:
            listed = found["order_by_engagement_release"] == labels(cfg)
            found["findings"]["released_in_listed_order"] = listed
            found["variant"] = name.removeprefix("engagement-")
        found |= extra(cfg, results) if extra else {}
        if "seeds_control_g" in results:
            found |= spread.summary(results, cfg.optimiser.get("gtol"))
        summary = cmp.comparison_summary(c, control_lr_theta=cmp.control_lr(cfg))
        return RunOutput(results, summary | found)

    def plot(results, cfg, out_dir: Path) -> list[Path]:
        drawn = figures(results, cfg, groups(cfg), what, symbol)
        drawn |= {k: lambda d=d: d(results, cfg) for k, d in more_figures.items()}
        if "seeds_control_g" in results:
            c = cfg.control
            bounds = [(c.lower, "lower bound"), (c.upper, "upper bound")]
            args = (results, labels(cfg), symbol, bounds)
            drawn["engagement_seeds.png"] = lambda: spread.figure(*args)
        return fig.save(drawn, out_dir)

    names = ("overview.png", "loss.png", f"{what}_losses.png", "engagement.png")
    names += ("sgd_replay.png?",)
    names += ("net_reward_difference.png", f"{what}_losses_early.png?")
    names += ("engagement_early.png?", "optimisation.png?", *more_figures)
    names += ("engagement_seeds.png?",)
    return Experiment(
        name,
        description,
        default,
        quick,
        build=lambda cfg: problem(cfg)[0],
        run=run,
        plot=plot,
        figures=names,
        findings=FINDINGS + more_findings + checks,
        check=check,
    )
