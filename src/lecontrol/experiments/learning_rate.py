r"""Learning-rate control on the semantic hierarchy (the paper's App. F.2).

**Builds:** a two-layer linear network ($H = 40$, initial weights of standard
deviation $10^{-4}$: one loss drop per level) learning the 4-level
`lc.tasks.SemanticHierarchy` at the rate $\alpha(1 + \rho(t))$,
$\rho \in [-1, 1]$ (`lc.systems.LearningRate`), at the cost
$\beta(\rho - \text{offset})^2$, compared with the base rate $\rho = 0$.
L-BFGS-B (`lc.optimizers.LBFGSB`) maximises $V$ until the projected-gradient
norm is at most `optimiser.gtol` $= 10^{-5}$ (at the quick size it falls from
about 4 to that in ~15 iterations, where $V$ has settled to $10^{-12}$);
`optimiser.method = "adam"` replays the paper's Adam (Table 3: lr
$5\cdot10^{-3}$, `optimiser.iterations` = 800), which stops far from the
optimum (30 iterations at the quick size, lr 0.05: projected gradient 1.7,
$V$ 0.2 below the optimum's). Table 3's problem: $N = 18000$, $\alpha = 5\cdot10^{-3}$,
$\gamma = \beta = 1$.

**Figures:** $\rho(t)$, the loss of both runs, the net-reward difference, each
level's loss, and the optimisation (Fig. 8).

**Findings:** checked: `every_level_sooner` (with the base rate free, the loss
of every level halves sooner under the optimal rate); measured:
`total_control` $\int_0^T\rho\,dt$, and per level the time its loss has
halved (`level_times_baseline`, `level_times_control`). (With costly control
only the first levels are worth learning: `learning-rate-sweep` with
`cost.offset = -1`, `first_levels_only`.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..findings import Finding
from ..runner import Experiment, RunOutput, Setup, require
from .shared import comparison as cmp, figures as fig, findings, sweeps as sw

DEFAULT = sw.learning_rate_config(outputs=dict(record_every=20))


def check(cfg) -> None:
    cmp.check_optimiser(cfg, cmp.ADAM_METHODS)
    every, steps = cfg.outputs.record_every, cfg.objective.steps
    what = f"must divide objective.steps = {steps}"
    require(every > 0 and steps % every == 0, "outputs.record_every", what, every)


def build(cfg) -> Setup:
    """Task → system → control → cost → objective, and the starting coefficients."""
    return sw.learning_rate_problem(cfg)(
        dict(gamma=cfg.objective.gamma, beta=cfg.cost.beta)
    )


def run(cfg, out_dir: Path, progress: bool, checkpoints=None) -> RunOutput:
    """Solve the base rate, optimise $\\rho(t)$ (`optimiser.method`), solve the
    optimum."""
    s, opt = build(cfg), cmp.configured_optimizer(cfg, cmp.ADAM_METHODS)
    ts = cmp.record_times(cfg, cfg.outputs.record_every)
    c = cmp.compare(
        s, cfg, ts=ts, progress=progress, checkpoints=checkpoints, optimizer=opt
    )
    results = cmp.comparison_arrays(c)
    summary = cmp.comparison_summary(c)
    arrays, spread = cmp.hamiltonian_results(c, cfg)  # gamma = 1: H is constant
    results |= arrays
    summary |= spread
    for run in ("baseline", "control"):
        W = results[f"{run}_w1"] @ results[f"{run}_w0"]
        losses = s.system.task.level_losses(W)
        results[f"{run}_level_loss"] = losses
        halved = [findings.crossing_time(ts, x, 0.5 * x[0]) for x in losses.T]
        summary[f"level_times_{run}"] = halved
        summary[f"level_final_loss_{run}"] = [float(x) for x in losses[-1]]
    summary["total_control"] = float(np.trapezoid(results["theta"], results["knots"]))
    summary["mean_rho"] = summary["total_control"] / cmp.horizon(cfg)
    summary["max_rho"] = float(results["control_g"].max())
    return RunOutput(results, summary)


def plot(results, cfg, out_dir: Path) -> list[Path]:
    """The paper's panels: ρ(t), loss, net-reward difference, levels, optimisation."""
    pair = fig.pair("base rate (ρ = 0)")
    c, series, styles = cfg.control, {}, {}
    for run, name, linestyle in (
        ("baseline", "base", "--"),
        ("control", "optimal", "-"),
    ):
        for k, loss in enumerate(results[f"{run}_level_loss"].T):
            series[f"level {k}, {name} rate"] = loss
            styles[f"level {k}, {name} rate"] = dict(color=f"C{k}", linestyle=linestyle)
    figures = {
        "control.png": lambda: fig.plotting.plot_lines(
            results["ts"],
            {fig.CONTROL_LABEL: results["control_g"]},
            title="Optimal learning-rate control: α(t) = α (1 + ρ(t))",
            ylabel="control ρ(t)",
            styles=pair,
            hlines=[
                (c.lower, "lower bound"),
                (c.upper, "upper bound"),
                (cfg.cost.offset, "cost offset"),
            ],
        ),
        "loss.png": lambda: fig.loss(results, pair),
        "net_reward_difference.png": lambda: fig.net_reward_difference(results, "ρ"),
        "level_loss.png": lambda: fig.plotting.plot_lines(
            results["ts"],
            series,
            title="Loss of each level of the hierarchy",
            ylabel="level's share of ⟨L⟩ (without regulariser)",
            styles=styles,
        ),
    }
    if "control_hamiltonian" in results:
        figures["hamiltonian.png"] = lambda: hamiltonian_figure(results, cfg)
    return fig.save(figures | fig.optimisation(results), out_dir)


def hamiltonian_figure(results, cfg):
    """$H(t) - H(0)$ along the optimum, the base rate and the optimum reversed
    in time (`cmp.hamiltonian_results`)."""
    series, styles = {}, {}
    for key, label, style in (
        ("control", fig.CONTROL_LABEL, fig.plotting.CONTROL_STYLE),
        (
            "baseline",
            "base rate (ρ = 0): constant, so H is too",
            fig.plotting.BASELINE_STYLE,
        ),
        (
            "reversed",
            "optimum reversed in time (not optimal)",
            fig.plotting.REFERENCE_STYLE,
        ),
    ):
        H = results[f"{key}_hamiltonian"]
        series[label], styles[label] = H - H[0], style
    gamma = cfg.objective.gamma
    return fig.plotting.plot_lines(
        results["ts"],
        series,
        title=f"Hamiltonian along the solution (γ = {gamma:g}): constant at an "
        "optimum when γ = 1",
        ylabel="H(t) − H(0)",
        styles=styles,
    )


EXPERIMENT = Experiment(
    name="learning-rate",
    description="Learning-rate schedule (1 + rho(t)) of a two-layer network on a "
    "4-level semantic hierarchy (H = 40).",
    default=DEFAULT,
    quick=sw.LEARNING_RATE_QUICK | {"outputs.record_every": 100},
    build=build,
    run=run,
    plot=plot,
    figures=(
        "control.png",
        "loss.png",
        "net_reward_difference.png",
        "level_loss.png",
        "hamiltonian.png",
        "optimisation.png?",
    ),
    findings=(
        "total_control",
        "level_times_baseline",
        "level_times_control",
        "hamiltonian_spread",
        "hamiltonian_relative_spread",
        Finding(
            "every_level_sooner",
            "The optimal learning rate speeds up the learning of every level of "
            "the hierarchy (Fig. 8b).",
            findings.levels_sooner,
            margin=0.1,
            criterion="each level's loss halves more than 10% sooner",
        ),
    ),
    check=check,
)
