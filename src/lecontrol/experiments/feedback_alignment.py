r"""Optimal gain control of learners that do not backpropagate: feedback
alignment against backprop (companion work; docs/feedback-alignment.md).

**Builds:** for each experiment of `task.experiments` (the gain family's
`effort-gaussians` and `effort-semantic`, at full size or, with `task.quick`,
their quick variants, with this run's seed), its two-layer linear network
with gains on every weight twice, from the same initial weights: learning by
backprop (`lc.systems.TwoLayerGain`) and by feedback alignment
(`lc.systems.FeedbackAlignment`, the hidden layer's error sent through a fixed
random $B$ with entries of standard deviation `system.feedback_scale`, 0: the
default $1/\sqrt{H}$). Each learner's gains are optimised as in the base
experiment (L-BFGS-B to its `optimiser.gtol`, cost $e^{\beta\sum\lVert
G_i\rVert^2} - 1$) and compared with $G = 0$. The SGD replay of the base
experiments is off (`tests/test_feedback_alignment.py` checks feedback
alignment's ODE against real SGD).

**Figures:** `losses.png` (the loss of each learner with and without control,
per task), `control.png` (the control's size $\lVert G(t)\rVert$ per learner
and task), `levels.png` (each level of the semantic hierarchy under both
learners, with control), `value.png` (V with and without control per learner
and task).

**Findings:** checked, for feedback alignment, with the criteria and negative
controls of the gain family: `fa_control_early_gaussians`,
`fa_control_early_semantic` (over half the effort in the first quarter),
`fa_learns_faster_gaussians` (the loss threshold reached more than 5% sooner
with control), `fa_every_level_sooner` (every level of the hierarchy learned
more than 10% sooner with control); the same four for backprop
(`bp_...`), as the reference; measured: `V` per task and learner, with and
without control, and the effort's share in the first quarter.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import lecontrol as lc

from ..findings import NEGATIVE_CONTROLS, Finding
from ..runner import Experiment, RunOutput, config, require
from . import get as experiment_named
from .shared import findings as fnd, gains

DEFAULT = config(
    task=dict(experiments=("effort-gaussians", "effort-semantic"), quick=False),
    system=dict(feedback_scale=0.0),
)

LEARNERS = {"bp": lc.systems.TwoLayerGain, "fa": lc.systems.FeedbackAlignment}
LEARNER_NAMES = {"bp": "backprop", "fa": "feedback alignment"}
TASKS = {"effort-gaussians": "gaussians", "effort-semantic": "semantic"}
_KEEP = ("loss", "g0", "g1", "level_loss", "V")


def check(cfg) -> None:
    names = cfg.task.experiments
    ok = len(names) > 0 and set(names) <= set(TASKS)
    require(ok, "task.experiments", f"must name some of {sorted(TASKS)}", names)
    fs = cfg.system.feedback_scale
    require(fs >= 0, "system.feedback_scale", "must be >= 0 (0: 1/sqrt(H))", fs)


def base(cfg, name: str):
    """The base experiment's configuration (seed and no SGD replay)."""
    experiment = experiment_named(name)
    changes = {"seed": cfg.seed, "outputs.replay": False}
    return experiment.default_config(quick=cfg.task.quick).replace(
        changes, source="feedback-alignment"
    )


def task(base_cfg, name: str):
    """The base experiment's task."""
    if name == "effort-gaussians":
        return lc.tasks.CorrelatedGaussians(**base_cfg.task)
    return lc.tasks.SemanticHierarchy(base_cfg.task.levels)


def learners(cfg, name: str) -> dict:
    """Backprop (the base experiment's network) and feedback alignment from
    the same initial weights."""
    base_cfg = base(cfg, name)
    bp = gains.network(lc.systems.TwoLayerGain, base_cfg, task(base_cfg, name))
    scale = cfg.system.feedback_scale or None
    fa = lc.systems.FeedbackAlignment(
        bp.task,
        lam=bp.lam,
        tau=bp.tau,
        W1_0=bp.W1_0,
        W2_0=bp.W2_0,
        seed=base_cfg.seed,
        feedback_scale=scale,
    )
    return base_cfg, {"bp": bp, "fa": fa}


def build(cfg):
    for name in cfg.task.experiments:
        base_cfg, systems = learners(cfg, name)
        setup = gains.setup(base_cfg, systems["fa"])
    return setup


def run(cfg, out_dir: Path, progress: bool, checkpoints=None) -> RunOutput:
    """Both learners on each task: baseline, optimised gains, level losses."""
    start = time.perf_counter()
    results, summary, statuses, iterations, pgn = {}, {}, [], 0, 0.0
    for name in cfg.task.experiments:
        base_cfg, systems = learners(cfg, name)
        key = TASKS[name]
        for learner, system in systems.items():
            out = gains.run_on(base_cfg, system, progress, None)
            r, s = out.results, out.summary
            if key == "semantic":  # each level's fit loss at W~2 W~1
                for which in gains.RUNS:
                    (W1, W2), (G1, G2) = (gains.layers(r, which, f) for f in "wg")
                    We = ((1.0 + G2) * W2) @ ((1.0 + G1) * W1)
                    r[f"{which}_level_loss"] = np.asarray(system.task.level_losses(We))
            prefix = f"{key}_{learner}"
            results[f"{prefix}_ts"] = r["ts"]
            results[f"{prefix}_loss_threshold"] = r["loss_threshold"]
            for which in gains.RUNS:
                for field in _KEEP:
                    if f"{which}_{field}" in r:
                        results[f"{prefix}_{which}_{field}"] = r[f"{which}_{field}"]
            results[f"{prefix}_control_norm"] = gains.control_norm(r)
            summary[f"{prefix}_V_baseline"] = s["V_baseline"]
            summary[f"{prefix}_V_control"] = s["V_control"]
            summary[f"{prefix}_effort_first_quarter"] = s[
                "control_fraction_first_quarter"
            ]
            summary[f"{prefix}_final_loss"] = {
                run: s[f"final_loss_{run}"] for run in gains.RUNS
            }
            statuses.append(s["status"])
            iterations += s["iterations"]
            pgn = max(pgn, s["projected_grad_norm"])
            gtol = s["gtol"]
    first = TASKS[cfg.task.experiments[0]]
    summary |= {
        "V_baseline": summary[f"{first}_fa_V_baseline"],
        "V_control": summary[f"{first}_fa_V_control"],
        "iterations": iterations,
        "wall_time_s": time.perf_counter() - start,
        "solver_steps": None,
        "status": next((x for x in statuses if x != "converged"), "converged"),
        "statuses": statuses,
        "message": "gains by L-BFGS-B: " + ", ".join(statuses),
        "projected_grad_norm": pgn,
        "gtol": gtol,
        "optimiser": repr(lc.optimizers.LBFGSB()),
    }
    return RunOutput(results, summary)


# ------------------------------------------------------------------ findings


def _scoped(finding: Finding, prefix: str, name: str, claim: str) -> Finding:
    """`finding` on the arrays of one learner and task (`{prefix}_...`), with
    its own criterion, margin and negative controls; `not applicable` when
    that task was not run."""

    def view(r):
        n = len(prefix) + 1
        return {k[n:]: v for k, v in r.items() if k.startswith(prefix + "_")}

    def scoped(transform):
        return lambda r: r | {f"{prefix}_{k}": v for k, v in transform(view(r)).items()}

    controls = tuple(
        (c, scoped(NEGATIVE_CONTROLS[c]))
        if isinstance(c, str)
        else (c[0], scoped(c[1]))
        for c in finding.negative_controls
    )
    return Finding(
        name,
        claim,
        lambda r: finding.measure(view(r)),
        finding.margin,
        finding.criterion,
        controls,
        applies=lambda r: f"{prefix}_ts" in r,
    )


LEVELS_SOONER = Finding(
    "every_level_sooner",
    "",
    fnd.levels_sooner,
    margin=0.1,
    criterion="each level's loss halves more than 10% sooner",
)


def _findings(learner: str) -> tuple[Finding, ...]:
    who = LEARNER_NAMES[learner]
    return (
        _scoped(
            gains.CHECKS["control_early"],
            f"gaussians_{learner}",
            f"{learner}_control_early_gaussians",
            f"With {who}, control is concentrated early (Gaussians).",
        ),
        _scoped(
            gains.CHECKS["control_early"],
            f"semantic_{learner}",
            f"{learner}_control_early_semantic",
            f"With {who}, control is concentrated early (semantic hierarchy).",
        ),
        _scoped(
            gains.CHECKS["learns_faster"],
            f"gaussians_{learner}",
            f"{learner}_learns_faster_gaussians",
            f"With {who}, the loss falls faster with control (Gaussians).",
        ),
        _scoped(
            LEVELS_SOONER,
            f"semantic_{learner}",
            f"{learner}_every_level_sooner",
            f"With {who}, every level of the hierarchy is learned sooner with control.",
        ),
    )


FINDINGS = _findings("fa") + _findings("bp")


# ------------------------------------------------------------------- figures


def _keys(results, learner: str) -> list[str]:
    return [k for k in TASKS.values() if f"{k}_{learner}_ts" in results]


def _panels(panels: list[tuple[str, object]], title: str, ylabel: str, curves):
    """One time panel per `(title, key)`: `curves(key)` yields `(ts, values,
    style)`; labelled axes, grid, legend, the early-time axis."""

    def draw():
        figure, axes = gains.plotting.panel_grid(len(panels), title=title)
        for ax, (name, key) in zip(axes, panels):
            for ts, values, style in curves(key):
                ax.plot(ts, values, **style)
            ax.set(title=name, xlabel=gains.plotting.TIME_LABEL, ylabel=ylabel)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize="small")
            gains.plotting.time_axis(ax)
        return figure

    return draw


COLOURS = {"bp": "C0", "fa": "C3"}


def _losses(results):
    def curves(key):
        for learner, colour in COLOURS.items():
            p, who = f"{key}_{learner}", LEARNER_NAMES[learner]
            ts = results[f"{p}_ts"]
            yield (
                ts,
                results[f"{p}_control_loss"],
                dict(color=colour, label=f"{who}, optimal gains"),
            )
            yield (
                ts,
                results[f"{p}_baseline_loss"],
                dict(color=colour, linestyle="--", label=f"{who}, G = 0"),
            )

    tasks = [(k, k) for k in _keys(results, "fa")]
    title = "Loss with and without the optimal gains"
    return _panels(tasks, title, "expected loss ⟨L⟩", curves)


def _control(results):
    def curves(key):
        for learner, colour in COLOURS.items():
            p = f"{key}_{learner}"
            style = dict(color=colour, label=LEARNER_NAMES[learner])
            yield results[f"{p}_ts"], results[f"{p}_control_norm"], style

    tasks = [(k, k) for k in _keys(results, "fa")]
    title = "Size of the optimal gains ‖G(t)‖"
    return _panels(tasks, title, "‖G(t)‖ = (Σ‖G_i‖²)^½", curves)


def _levels(results):
    def curves(learner):
        p = f"semantic_{learner}"
        ts = results[f"{p}_ts"]
        control = results[f"{p}_control_level_loss"].T
        baseline = results[f"{p}_baseline_level_loss"].T
        for k, (c, b) in enumerate(zip(control, baseline)):
            yield ts, c, dict(color=f"C{k}", label=f"level {k}")
            yield ts, b, dict(color=f"C{k}", linestyle="--")

    learners_ = [(LEARNER_NAMES[x], x) for x in COLOURS]
    title = "Each level of the semantic hierarchy (solid: optimal gains, dashed: G = 0)"
    return _panels(learners_, title, "level's share of ⟨L⟩", curves)


def _value(results):
    def draw():
        tasks = _keys(results, "fa")
        figure, axes = gains.plotting.panel_grid(len(tasks), title="Value V")
        for ax, key in zip(axes, tasks):
            labels = [LEARNER_NAMES[x] for x in COLOURS]
            base, ctrl = (
                [float(results[f"{key}_{x}_{run}_V"][-1]) for x in COLOURS]
                for run in gains.RUNS
            )
            x = np.arange(len(labels))
            ax.bar(x - 0.2, base, 0.4, label="G = 0", color="0.6")
            ax.bar(x + 0.2, ctrl, 0.4, label="optimal gains", color="C0")
            ax.set_xticks(x, labels)
            ax.set(title=key, ylabel="V")
            ax.grid(True, axis="y", alpha=0.3)
            ax.legend(fontsize="small")
        return figure

    return draw


def plot(results, cfg, out_dir: Path) -> list[Path]:
    figures = {
        "losses.png": _losses(results),
        "control.png": _control(results),
        "value.png": _value(results),
    }
    if "semantic_fa_ts" in results:
        figures["levels.png"] = _levels(results)
    return gains.fig.save(figures, out_dir)


EXPERIMENT = Experiment(
    name="feedback-alignment",
    description="Optimal gains for a learner that does not backpropagate: feedback "
    "alignment against backprop on Gaussians and the semantic hierarchy.",
    default=DEFAULT,
    quick={"task.quick": True},
    build=build,
    run=run,
    plot=plot,
    figures=("losses.png", "control.png", "value.png", "levels.png?"),
    findings=FINDINGS,
    check=check,
)
