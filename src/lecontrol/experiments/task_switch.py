r"""Gain modulation on a task that switches (the paper's Sec. 6; Table 5, column "Task Switch").

**Builds:** a two-layer linear network ($H = 8$) learning a schedule that
alternates between two correlated-Gaussians tasks, $\mu = (3, 1), p = 0.8$
(`task.mu`, `task.sigma`, `task.p`) and $\mu = (-2, 2), p = 0.2$ (`task.mu_b`,
`task.sigma_b`, `task.p_b`), every $T_s = 1800\alpha = 9$
(`task.switch_every` SGD steps), over $T = 23000\alpha = 115$
(`lc.systems.TwoLayerGain` on `lc.tasks.SwitchingTasks`; the solver steps
onto every switch), with gains on every weight (`shared.gains`). The 231
knots fall every 0.5 time units, so on the switches.

**Figures:** the family's, with the switches marked.

**Findings:** the family's, and that the controlled loss is below the
baseline's at almost every time (`fraction_loss_below_baseline`) and the
control starts to act before each switch (`anticipation`,
`fraction_switches_anticipated`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import lecontrol as lc

from .base import RunOutput, Setup
from .shared import gains

DEFAULT = gains.defaults(
    dict(
        gains.GAUSSIANS,
        mu_b=(-2.0, 2.0),
        sigma_b=(1.0, 1.0),
        p_b=0.2,
        switch_every=1800,
    ),
    system=dict(hidden=8, lam=0.001),
    control=dict(knots=231),
    objective=dict(steps=23000),
    optimiser=dict(lr=1.0),
)


def period(cfg) -> float:
    """Time between switches, $T_s$ = `task.switch_every` × `objective.alpha`."""
    return cfg.task.switch_every * cfg.objective.alpha


def system(cfg) -> lc.systems.TwoLayerGain:
    tasks = [gains.gaussians(cfg.task), gains.gaussians(cfg.task, "_b")]
    switching = lc.tasks.SwitchingTasks(tasks, period(cfg), gains.cmp.horizon(cfg))
    return gains.network(lc.systems.TwoLayerGain, cfg, switching)


def build(cfg) -> Setup:
    """Switching tasks → system → per-weight gains → cost → objective, start θ."""
    return gains.setup(cfg, system(cfg))


def fraction_below_baseline(loss_baseline, loss_control) -> float:
    """Share of the saved times (after $t = 0$) where the controlled loss is lower."""
    lb, lc_ = np.asarray(loss_baseline)[1:], np.asarray(loss_control)[1:]
    return float(np.mean(lc_ < lb))


def anticipation(ts, effort, switch_times, period: float) -> list[dict]:
    r"""Does the control rise before each switch?

    For each switch at $s$, the control effort $e(t) = \sum_i\lVert
    G_i(t)\rVert_F^2$ on the last quarter period before it, $[s - T_s/4, s)$,
    is compared with the least effort over the period's second and third
    quarters, $[s - 3T_s/4, s - T_s/4]$ (where learning the current task has
    settled). `rises` is true when the mean effort just before the switch
    exceeds that minimum; `t_rise` is where $e$ is smallest in
    $[s - 3T_s/4, s)$: the control grows from there up to the switch.
    """
    ts, e = np.asarray(ts, dtype=float), np.asarray(effort, dtype=float)
    out = []
    for s in np.asarray(switch_times, dtype=float):
        before = (ts >= s - 0.25 * period) & (ts < s)
        settled = (ts >= s - 0.75 * period) & (ts <= s - 0.25 * period)
        window = (ts >= s - 0.75 * period) & (ts < s)
        if not before.any() or not settled.any():
            continue
        low, pre = float(e[settled].min()), float(e[before].mean())
        i = np.flatnonzero(window)[int(np.argmin(e[window]))]
        out.append(
            dict(
                switch=float(s),
                effort_before=pre,
                effort_settled_min=low,
                rises=bool(pre > low),
                t_rise=float(ts[i]),
            )
        )
    return out


def run(cfg, out_dir: Path, progress: bool, checkpoints=None) -> RunOutput:
    """Baseline vs optimal gains over the whole schedule, findings, SGD replay."""
    s = system(cfg)
    results, summary = out = gains.run(cfg, s, progress, checkpoints)
    switches = results["switch_times"] = np.asarray(s.jump_times())
    summary["fraction_loss_below_baseline"] = fraction_below_baseline(
        results["baseline_loss"], results["control_loss"]
    )
    per_switch = anticipation(
        results["ts"], results["control_effort"], switches, period(cfg)
    )
    summary["anticipation"] = per_switch
    summary["fraction_switches_anticipated"] = (
        float(np.mean([a["rises"] for a in per_switch])) if per_switch else None
    )
    return out


def plot(results, cfg, out_dir: Path) -> list[Path]:
    """The family's panels with the switch times marked."""
    vlines = [float(s) for s in np.asarray(results["switch_times"])]
    return gains.plot(results, cfg, out_dir, vlines=vlines)


EXPERIMENT = gains.experiment(
    name="task-switch",
    description=(
        "Gain modulation on two correlated-Gaussian tasks that switch every 1800 steps."
    ),
    default=DEFAULT,
    # Two switches (T = 27) and 40 iterations. With the paper's control learning
    # rate of 1, 40 iterations barely move the gains, so the quick variant uses
    # the other gain experiments' rate of 10 to show the findings in seconds.
    quick={
        "objective.steps": 5400,
        "task.switch_every": 1800,
        "control.knots": 55,
        "optimiser.iterations": 40,
        "optimiser.lr": 10.0,
        "outputs.record_every": 20,
        "outputs.replay_seeds": 2,
    },
    build=build,
    run=run,
    plot=plot,
    findings=(
        "fraction_loss_below_baseline",
        "anticipation",
        "fraction_switches_anticipated",
    ),
)
