r"""MAML as value maximisation: the initial weights are the control (the
paper's Sec. 4, App. F.1).

**Builds:** five binary digit tasks (`task.pairs`; $5\times5$ images plus a
bias) sharing one initialisation $(W_1(0), W_2(0))$ of a two-layer linear
network ($H = 40$), from which each task learns by gradient flow
(`lc.systems.MAML`, `lc.controls.Constant`); $V = -\int_0^T \frac1K\sum_k
L_k\,dt$ over $T = n\alpha$, $n$ inner steps (one-step MAML: $n = 1$). The
initialisation is optimised for every $n$ in `objective.horizons` in one
compiled computation (`lc.sweep.optimize_batch`; the horizons one after
another, `optimiser.batch_size` = 1, since vmapped they were six times slower
on two CPU cores; `lecontrol run maml --devices 2` splits them over two CPU
devices, as `lecontrol reproduce` does) from the same random initialisation (the
baseline), by the paper's Adam (Table 2: lr $5\cdot10^{-3}$,
`optimiser.iterations` = 2000); the summary reports the gradient norm
reached (the projected gradient's: the initial weights are unbounded). The
runs have no tolerance (`optimiser.gtol` = 0; a positive one stops a horizon
early) because there is no optimum to converge to: with $\lambda = 0$ and no
cost, $V$ is bounded by the tasks' least-squares floor,
$V < -\eta\langle L\rangle^* T$ (`lc.systems.MAML.loss_floor`), and
initial weights with a zero product and a growing norm approach that bound
(`MAML.zero_product_init`: their inner loops learn at a rate growing as the
square of the norm), so $V$ has no finite maximiser. The summary reports the
bound (`V_supremum`, `V_gap_to_supremum`), $V$ from those initialisations at
`SCALES` (`V_zero_product_init`) and why there is no tolerance
(`tolerance_note`). The paper's result is thus the iterate of its
optimiser's budget, and MAML keeps the paper's Adam and budget rather than
L-BFGS-B, which (`optimiser.method = "lbfgsb"`, `lc.optimizers.LBFGSB` with
infinite bounds) drives the initial weights off towards that bound until the
inner loops grow stiff (docs/experiments.md, "Converged optima"). The
horizons are the paper's 18 (1, 20, 40, …, 340).
The optimisation saves checkpoints every `checkpoint_every` = 200
iterations and after its last (removed when the run completes), so a run
that fails after it, in the evaluation, resumes from its end with
`lecontrol run maml --resume DIR`.
Each optimum is then evaluated (forward solves of at most
`outputs.eval_max_steps` steps) over `outputs.eval_steps` inner steps (the
paper's 8000) on the tasks' training images and on their held-out images
(the 20% that `lc.tasks.Digits.load` holds out).

**Figures:** the window's cumulative loss and the one-step-ahead loss
$\langle L\rangle(\alpha)$ against $n$, on training and held-out images, the
inner loops' losses, and the largest horizon's optimisation (Figs. 3a,b, 6f,
7a,b); per task (`per_task.png`, Fig. 6a-l), each task's inner loop from
every initialisation and its one-step-ahead loss against $n$. No
Hamiltonian is drawn although $\gamma = 1$: the control (the initial
weights) does not vary in time, so $H$ is constant along every solution and
tells nothing about optimality (`lc.hamiltonian`).

**Findings:** checked: `one_step_worse` (one-step MAML's cumulative loss is
over 5% above the best multi-step one's) and `one_step_ahead_rises` (from
`RISES_FROM` = 180 inner steps on, the one-step-ahead loss rises with the
horizon while the cumulative loss falls), on the training images; measured:
`cumulative_loss` and `one_step_loss` per horizon (and `_test_` on the
held-out images), `one_step_underperforms_multi_step`,
`one_step_ahead_rises_after`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import lecontrol as lc

from ..findings import Finding
from ..runner import Experiment, RunOutput, Setup, config, require
from .shared import comparison as cmp, digits, figures as fig, sweeps as sw
from .shared.findings import rank_correlation

DEFAULT = config(
    task=dict(pairs=(0, 1, 7, 1, 8, 9, 3, 8, 5, 3)) | digits.TASK,
    system=dict(hidden=40, lam=0.0, tau=1.0, init_scale=0.01),
    control=dict(quadrature_intervals=16),
    cost=dict(beta=0.0),
    objective=dict(alpha=5e-3, gamma=1.0, eta=1.0, horizons=(1, *range(20, 341, 20))),
    # gtol 0: no tolerance, the paper's fixed budget (V has no finite maximiser).
    optimiser=dict(method="adam", gtol=0.0, iterations=2000, lr=5e-3, batch_size=1),
    solver=dict(rtol=1e-7, atol=1e-9, max_steps=4096),
    # The evaluation's solves (forward only) take up to `eval_max_steps`: over
    # the 8000-step window the optimised weights make the inner loops stiff
    # (5458 steps for weights 100x the initial ones, 21745 for 200x).
    outputs=dict(eval_steps=8000, eval_max_steps=131072),
    # The optimisation takes half an hour at full size: keep it (and its end)
    # in checkpoints, so that a failed evaluation or an interruption resumes
    # with `lecontrol run maml --resume DIR` instead of starting again.
    checkpoint_every=200,
)


def check(cfg) -> None:
    cmp.check_optimiser(cfg, cmp.ADAM_METHODS)
    pairs = cfg.task.pairs
    what = "must list the classes of each binary task in consecutive pairs"
    require(len(pairs) >= 2 and len(pairs) % 2 == 0, "task.pairs", what, pairs)
    h = cfg.objective.horizons
    require(len(h) > 0 and min(h) > 0, "objective.horizons", "must be >= 1", h)


def tasks(cfg) -> list[lc.tasks.Digits]:
    """The digit tasks of `task.pairs` (nothing is downloaded)."""
    return [digits.load(cfg, pair) for pair in pairs(cfg)]


def pairs(cfg) -> list[tuple[int, int]]:
    """The digit pairs of the binary tasks, in `task.pairs` order."""
    p = cfg.task.pairs
    return list(zip(p[::2], p[1::2]))


def task_name(pair) -> str:
    return f"{pair[0]} vs {pair[1]}"


def system(cfg, loaded=None, *, test: bool = False) -> lc.systems.MAML:
    """The network on `loaded` (default: `tasks(cfg)`): on their training
    images, or with `test` on their held-out ones (the same split)."""
    s, loaded = cfg.system, tasks(cfg) if loaded is None else loaded
    loaded = [task.test_task() for task in loaded] if test else loaded
    return lc.systems.MAML(loaded, hidden=s.hidden, lam=s.lam, tau=s.tau)


def problem(cfg, net: lc.systems.MAML, *, evaluation: bool = False):
    """The function `T -> Setup` of one horizon (`lc.sweep`'s `build`). With
    `evaluation`, the objective is the plain cumulative loss ($\\gamma = \\eta
    = 1$, no cost): $-V = \\int_0^T\\langle L\\rangle dt$."""
    o, q = cfg.objective, cfg.control.quadrature_intervals
    control = lc.controls.Constant(shape=net.control_shape, quadrature_intervals=q)
    theta0 = net.gaussian_init(cfg.seed, cfg.system.init_scale)
    cost = lc.costs.Quadratic(beta=0.0 if evaluation else cfg.cost.beta)
    gamma, eta = (1.0, 1.0) if evaluation else (o.gamma, o.eta)

    def build_horizon(T) -> Setup:
        objective = lc.Objective(T=T, gamma=gamma, eta=eta)
        return Setup(lc.Problem(net, control, cost, objective), theta0)

    return build_horizon


def evaluation_options(cfg) -> lc.SolverOptions:
    """The `solver` section's options with `outputs.eval_max_steps` steps at
    most, for the solves that are not differentiated (the evaluation window
    and `supremum`)."""
    s = cfg.solver
    steps = max(s.max_steps, cfg.outputs.eval_max_steps)
    return lc.SolverOptions(rtol=s.rtol, atol=s.atol, max_steps=steps)


def build(cfg) -> Setup:
    """The problem of the largest horizon."""
    return problem(cfg, system(cfg))(max(cfg.objective.horizons) * cfg.objective.alpha)


def run(cfg, out_dir: Path, progress: bool, checkpoints=None) -> RunOutput:
    """Optimise the initialisation per horizon, then evaluate each on one window."""
    loaded, alpha = tasks(cfg), cfg.objective.alpha
    net = system(cfg, loaded)
    horizons = np.asarray(cfg.objective.horizons, dtype=int)
    opt = cmp.configured_optimizer(cfg, cmp.ADAM_METHODS)
    res = sw.optimize(
        problem(cfg, net),
        horizons * alpha,
        cfg,
        opt,
        progress,
        checkpoints,
        # The discrete adjoint is the cheaper here (measured 2026-12-03, the
        # 18 horizons one at a time: 0.43 s per value and gradient against
        # 0.68 s for ContinuousAdjoint(min_intervals=16)).
        adjoint=lc.CheckpointAdjoint(),
    )
    # Row 0: the random initialisation (baseline); then one row per horizon.
    theta0 = net.gaussian_init(cfg.seed, cfg.system.init_scale)
    inits = [
        np.concatenate([np.asarray(a)[None], b]) for a, b in zip(theta0, res.theta)
    ]
    window = cfg.outputs.eval_steps or int(horizons.max())

    def evaluate(network):
        return lc.sweep.solve_batch(
            problem(cfg, network, evaluation=True),
            np.full(len(horizons) + 1, window * alpha),
            tuple(inits),
            num_times=window + 1,  # one sample per inner step
            options=evaluation_options(cfg),
            batch_size=cmp.batch_size(cfg),
            # Losses only: w and g at 8001 times would be 0.35 GB each per
            # initialisation, and writing them took two thirds of the time.
            weights=False,
        )

    evaluation = evaluate(net)
    held_out = evaluate(system(cfg, loaded, test=True))
    # Each task's own inner loop (Fig. 6a-e): the tasks learn independently
    # from the shared initialisation, so one task's network is MAML on it alone.
    per_task = np.stack([evaluate(system(cfg, [task])).loss for task in loaded])
    cumulative, one_step = -evaluation.V[:, -1], evaluation.loss[:, 1]
    results = dict(
        horizons=horizons.astype(float),
        steps=np.arange(window + 1, dtype=float),
        eval_loss=evaluation.loss,
        cumulative_loss=cumulative,
        one_step_loss=one_step,
        eval_test_loss=held_out.loss,
        eval_task_loss=per_task,
        one_step_task_loss=per_task[:, :, 1],
        cumulative_test_loss=-held_out.V[:, -1],
        one_step_test_loss=held_out.loss[:, 1],
        values=res.values,
        best_value=res.best_value,
        init_W1=inits[0],
        init_W2=inits[1],
    )
    main, steps = int(np.argmax(horizons)), evaluation.num_steps
    V_b, V_c = float(res.values[main, 0]), float(res.best_value[main])
    summary = {"V_baseline": V_b, "V_control": V_c, "V_gain": V_c - V_b}
    summary |= sw.batch_summary(res, repr(opt), cfg.optimiser.gtol or None)
    summary |= supremum(cfg, net, horizons[main] * alpha, V_c)
    summary["horizon_of_V"] = int(horizons[main])
    summary["solver_steps"] = {
        "baseline": int(steps[0]),
        "control": int(steps[main + 1]),
    }
    for name in ("cumulative", "one_step", "cumulative_test", "one_step_test"):
        name, y = f"{name}_loss", results[f"{name}_loss"]
        summary[f"{name}_baseline"] = float(y[0])
        summary[name] = {int(h): float(c) for h, c in zip(horizons, y[1:])}
    summary["one_step_task_loss"] = {
        task_name(pair): {int(h): float(c) for h, c in zip(horizons, y[1:])}
        for pair, y in zip(pairs(cfg), per_task[:, :, 1])
    }
    summary["eval_steps"] = window
    summary |= findings(horizons, cumulative[1:], one_step[1:])
    return RunOutput(results, summary)


SCALES = (1.0, 3.0, 10.0)
"""Scales $s$ of `lc.systems.MAML.zero_product_init` at which the summary
reports $V$ (`V_zero_product_init`)."""


def supremum(cfg, net: lc.systems.MAML, T: float, V_control: float) -> dict:
    r"""Why MAML has no tolerance: the supremum of $V$ over the initialisation
    at horizon `T`, $-\eta\langle L\rangle^*\int_0^T\gamma^t dt$
    (`MAML.loss_floor`), how far the optimised `V_control` is below it, and $V$
    from the initialisations `MAML.zero_product_init` at the `SCALES`, which
    approach it as the scale grows. Only with $\lambda = 0$ and no cost (the
    paper's MAML); otherwise `V_supremum` is `None` and a maximiser can exist.
    With `optimiser.gtol` = 0 (the default) the summary states the reason in
    `tolerance_note`."""
    o = cfg.objective
    if cfg.system.lam != 0 or cfg.cost.beta != 0:
        return {"V_supremum": None}
    discount = T if o.gamma == 1 else (o.gamma**T - 1) / np.log(o.gamma)
    sup = -o.eta * float(net.loss_floor()) * discount
    setup = problem(cfg, net)(T)
    ray = {
        str(s): float(
            lc.value(
                setup.problem,
                net.zero_product_init(s, cfg.seed),
                options=evaluation_options(cfg),
            )
        )
        for s in SCALES
    }
    out = {
        "V_supremum": sup,
        "V_gap_to_supremum": sup - V_control,
        "V_zero_product_init": ray,
    }
    if not cfg.optimiser.gtol:
        out["tolerance_note"] = (
            f"none: V has no finite maximiser (supremum {sup:.6g}, not attained; "
            f"{ray[str(SCALES[-1])]:.6g} from zero_product_init at scale "
            f"{SCALES[-1]:g}, {V_control:.6g} optimised); the paper's budget "
            f"of {cfg.optimiser.iterations} Adam iterations"
        )
    return out


def findings(horizons, cumulative, one_step) -> dict:
    """The paper's MAML findings, measured (`None` where a horizon is missing):
    whether the one-step initialisation's cumulative loss exceeds the best
    multi-step one's; the horizons with the lowest cumulative and one-step-ahead
    loss; the largest horizon after which the one-step-ahead loss only rises
    (`None` if it still falls at the last horizon)."""
    order = np.argsort(horizons)
    h, cum, one = (np.asarray(x)[order] for x in (horizons, cumulative, one_step))
    under = bool(cum[0] > cum[h > 1].min()) if h[0] == 1 and (h > 1).any() else None
    rises_after = None
    if one.size >= 2 and one[-1] > one[-2]:
        k = one.size - 1
        while k > 0 and one[k] > one[k - 1]:
            k -= 1
        rises_after = int(h[k])
    return {
        "one_step_underperforms_multi_step": under,
        "best_horizon_cumulative": int(h[int(np.argmin(cum))]),
        "best_horizon_one_step_ahead": int(h[int(np.argmin(one))]),
        "one_step_ahead_rises_after": rises_after,
    }


RISES_FROM = 180
"""The horizon (inner steps) beyond which the paper finds the one-step-ahead
loss rising while the cumulative loss keeps falling (Fig. 3a, 6-7)."""


def one_step_worse(r) -> tuple[float, str]:
    r"""$(c_1 - \min_{n > 1} c_n) / c_1$, $c_n$ the cumulative loss of the
    initialisation optimised over $n$ inner steps."""
    h, cum = r["horizons"], r["cumulative_loss"][1:]
    if not (h == 1).any() or not (h > 1).any():
        return float("nan"), "needs the horizon 1 and a longer one"
    one, best = float(cum[h == 1][0]), float(cum[h > 1].min())
    best_h = int(h[h > 1][np.argmin(cum[h > 1])])
    text = f"cumulative loss {one:.4g} after one-step MAML, {best:.4g} at n = {best_h}"
    return (one - best) / one, text


def one_step_ahead_rises(r) -> tuple[float, str]:
    r"""$\min(\rho_1, -\rho_c)$: Spearman's $\rho$ of the horizon with the
    one-step-ahead loss and with the cumulative loss, over horizons $\ge$
    `RISES_FROM`."""
    late = r["horizons"] >= RISES_FROM
    if late.sum() < 3:
        return float("nan"), f"fewer than 3 horizons from {RISES_FROM} steps on"
    h = r["horizons"][late]
    rho_one = rank_correlation(h, r["one_step_loss"][1:][late])
    rho_cum = rank_correlation(h, r["cumulative_loss"][1:][late])
    text = f"over n = {', '.join(str(int(x)) for x in h)}: Spearman ρ {rho_one:.2f}"
    return min(
        rho_one, -rho_cum
    ), f"{text} (one-step-ahead), {rho_cum:.2f} (cumulative)"


def horizons_reversed(r):
    return r | {"horizons": r["horizons"][::-1]}


def baseline_everywhere(r):
    """Every horizon's initialisation replaced by the random one (row 0)."""
    return r | {
        k: np.full_like(r[k], r[k][0]) for k in ("cumulative_loss", "one_step_loss")
    }


NEGATIVE = (("horizons reversed", horizons_reversed), ("baseline", baseline_everywhere))
FINDINGS = (
    Finding(
        "one_step_worse",
        "One-step MAML under-performs multi-step MAML (Fig. 3a, 7a).",
        one_step_worse,
        margin=0.05,
        criterion="the one-step initialisation's cumulative loss is over 5% above "
        "the best multi-step one's",
        negative_controls=NEGATIVE,
    ),
    Finding(
        "one_step_ahead_rises",
        f"Beyond ~{RISES_FROM} steps the one-step-ahead loss rises while the "
        "cumulative loss keeps falling (Figs. 3a, 6).",
        one_step_ahead_rises,
        margin=0.5,
        criterion=f"over the horizons from {RISES_FROM} steps, Spearman ρ with the "
        "one-step-ahead loss > 0.5 and with the cumulative loss < −0.5",
        negative_controls=NEGATIVE,
    ),
)


def per_task_figure(results, cfg):
    """Fig. 6: each task's inner-loop loss from every initialisation, coloured
    by the horizon it was optimised for (top row; the last panel is the
    average over tasks), and the one-step-ahead loss against the horizon
    (bottom row)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    h, steps = results["horizons"], results["steps"]
    curves = fig.plotting.check_plottable("eval_task_loss", results["eval_task_loss"])
    average = fig.plotting.check_plottable("eval_loss", results["eval_loss"])
    names = [f"task {task_name(p)}" for p in pairs(cfg)] + ["average over tasks"]
    losses = [*curves, average]
    figure, axes = fig.plotting.panel_grid(
        2 * len(losses),
        columns=len(losses),
        title="Inner loops from the MAML initialisations, per task (training images)",
    )
    norm, cmap = Normalize(float(h.min()), float(h.max())), plt.get_cmap("viridis")
    for ax, name, loss in zip(axes, names, losses):
        for n, curve in zip(h, loss[1:]):
            ax.plot(steps, curve, color=cmap(norm(n)), linewidth=1.0)
        ax.plot(
            steps, loss[0], label="random initialisation", **fig.plotting.BASELINE_STYLE
        )
        ax.set(title=name, xlabel="inner SGD steps", ylabel="loss ⟨L⟩")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        fig.plotting.time_axis(ax, "symlog")
    axes[0].legend(fontsize="small")
    figure.colorbar(
        plt.cm.ScalarMappable(norm=norm, cmap=cmap),
        ax=axes[: len(losses)],
        label="steps considered n",
    )
    for ax, name, loss in zip(axes[len(losses) :], names, losses):
        ax.plot(h, loss[1:, 1], **{**fig.plotting.CONTROL_STYLE, "marker": "o"})
        ax.axhline(
            float(loss[0, 1]),
            label="random initialisation",
            **fig.plotting.BASELINE_STYLE,
        )
        ax.set(
            title=f"{name}: one step ahead",
            xlabel="steps considered n",
            ylabel="⟨L⟩ after one inner step",
        )
        ax.grid(True, alpha=0.3)
    axes[len(losses)].legend(fontsize="small")
    return figure


def plot(results, cfg, out_dir: Path) -> list[Path]:
    """Cumulative and one-step-ahead loss vs steps considered; loss curves."""
    h, main = results["horizons"], int(np.argmax(results["horizons"]))
    window = f"Cumulative loss over {int(results['steps'][-1])} inner steps"
    label, style = "MAML initialisation", {**fig.plotting.CONTROL_STYLE, "marker": "o"}

    def vs_horizon(field, title, ylabel):
        y = fig.plotting.check_plottable(field, results[field])
        series, styles = {f"{label}, training images": y[1:]}, {}
        styles[f"{label}, training images"] = style
        held_out = field.replace("_loss", "_test_loss")
        base = [(float(y[0]), "random initialisation (baseline), training")]
        if held_out in results:
            t = fig.plotting.check_plottable(held_out, results[held_out])
            series[f"{label}, held-out images"] = t[1:]
            styles[f"{label}, held-out images"] = {
                **style,
                "linestyle": "--",
                "marker": "s",
                "color": "C1",
            }
            held = {**fig.plotting.REFERENCE_STYLE, "color": "C1"}
            base.append((float(t[0]), "random initialisation, held-out", held))
        return fig.plotting.plot_lines(
            h,
            series,
            title=title,
            ylabel=ylabel,
            xlabel="inner steps considered when optimising (horizon n)",
            styles=styles,
            hlines=base,
        )

    figures = {
        "cumulative_loss.png": lambda: vs_horizon(
            "cumulative_loss",
            f"{window} vs steps considered",
            "∫ ⟨L⟩ dt over the evaluation window",
        ),
        "one_step_loss.png": lambda: vs_horizon(
            "one_step_loss",
            "One-step-ahead loss vs steps considered",
            "⟨L⟩ after one inner step",
        ),
        "loss_curves.png": lambda: fig.plotting.plot_curves_by_value(
            results["steps"],
            results["eval_loss"][1:],
            h,
            title="Inner-loop loss from each MAML initialisation",
            ylabel="average loss ⟨L⟩ over tasks",
            label="steps considered n",
            log=True,
            xlabel="inner SGD steps",
        ),
        "optimisation.png": lambda: fig.plotting.plot_optimisation(
            results["values"][main], baseline=float(results["values"][main, 0])
        ),
        "per_task.png": lambda: per_task_figure(results, cfg),
    }
    return fig.save(figures, out_dir)


EXPERIMENT = digits.on_digits(
    Experiment(
        name="maml",
        description="MAML on 5 digit pairs: the initial weights as the control, "
        "one-step vs multi-step horizons.",
        default=DEFAULT,
        quick={
            "optimiser.iterations": 40,
            "optimiser.lr": 0.02,
            "objective.horizons": (1, 10, 40),
            "system.hidden": 20,
            "outputs.eval_steps": 400,
        },
        build=build,
        run=run,
        plot=plot,
        figures=(
            "cumulative_loss.png",
            "one_step_loss.png",
            "loss_curves.png",
            "optimisation.png",
            "per_task.png",
        ),
        findings=(
            "one_step_underperforms_multi_step",
            "one_step_ahead_rises_after",
            "cumulative_loss",
            "one_step_loss",
            "cumulative_test_loss",
            "one_step_test_loss",
            "one_step_task_loss",
            *FINDINGS,
        ),
        check=check,
    )
)
