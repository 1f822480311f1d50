r"""Gain modulation on a task that switches (the paper's Sec. 6; Table 5, column "Task Switch").

A two-layer linear network ($H = 8$) learns a schedule that alternates between
two correlated-Gaussians tasks, $\mu = (3, 1), p = 0.8$ and
$\mu = (-2, 2), p = 0.2$, every $T_s = 1800\alpha = 9$, over
$T = 23000\alpha = 115$ (`lc.systems.TwoLayerGain` on an
`lc.tasks.SwitchingTasks`; the solver steps onto every switch). Gains
$G \in [-0.5, 0.5]$ on every weight cost $\exp(\beta\sum_i\lVert G_i\rVert_F^2) - 1$. The paper finds the controlled
loss below the baseline's at almost every time, and the control starting to
act before each switch; the summary measures both
(`fraction_below_baseline`, `anticipation`) next to the findings of every
gain experiment.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

import lecontrol as lc

from ..checkpoint import CheckpointFolder
from .base import Experiment, RunOutput, Setup, require, require_int
from .gain_modulation import (
    GainConfig,
    check_gain,
    gain_figures,
    gain_setup,
    run_gain,
    save_figures,
)

NAME = "task-switch"
DESCRIPTION = (
    "Gain modulation on two correlated-Gaussian tasks that switch every 1800 steps."
)


@dataclasses.dataclass(frozen=True)
class TaskSwitchConfig(GainConfig):
    r"""Parameters of `task-switch` (defaults: the paper's Table 5, "Task Switch").

    All `GainConfig` fields (here $H = 8$, $\lambda = 10^{-3}$, control learning
    rate 1, $N = 23000$ and 231 knots, i.e. one every 0.5 time units so that
    knots fall on the switches), and

    - `switch_every`: SGD steps between task switches ($T_s$ = this × `alpha`).
    - `mu`, `sigma`, `p`: the first task (as `effort-gaussians`).
    - `mu_b`, `sigma_b`, `p_b`: the second task.
    """

    steps: int = 23000
    hidden: int = 8
    lam: float = 0.001
    lr: float = 1.0
    knots: int = 231
    switch_every: int = 1800
    mu: tuple[float, ...] = (3.0, 1.0)
    sigma: tuple[float, ...] = (1.0, 1.0)
    p: float = 0.8
    mu_b: tuple[float, ...] = (-2.0, 2.0)
    sigma_b: tuple[float, ...] = (1.0, 1.0)
    p_b: float = 0.2

    def check(self) -> None:
        check_gain(self)
        require_int(self, "switch_every", minimum=1)
        for key in ("mu", "sigma", "mu_b", "sigma_b"):
            v = getattr(self, key)
            require(len(v) == 2, key, "must hold two numbers", v)

    @property
    def period(self) -> float:
        """Time between switches, $T_s$."""
        return self.switch_every * self.alpha


# Quick: two switches (T = 27) and 40 iterations. With the paper's control
# learning rate of 1, 40 iterations barely move the gains, so the quick variant
# uses the other gain experiments' rate of 10 to show the findings in seconds.
QUICK = {
    "steps": 5400,
    "switch_every": 1800,
    "knots": 55,
    "iterations": 40,
    "lr": 10.0,
    "record_every": 20,
    "replay_seeds": 2,
}


def switching(config: TaskSwitchConfig) -> lc.tasks.SwitchingTasks:
    a = lc.tasks.CorrelatedGaussians(mu=config.mu, sigma=config.sigma, p=config.p)
    b = lc.tasks.CorrelatedGaussians(mu=config.mu_b, sigma=config.sigma_b, p=config.p_b)
    return lc.tasks.SwitchingTasks([a, b], config.period, config.T)


def system(config: TaskSwitchConfig) -> lc.systems.TwoLayerGain:
    return lc.systems.TwoLayerGain(
        switching(config),
        hidden=config.hidden,
        lam=config.lam,
        tau=config.tau,
        seed=config.seed,
        scale=config.init_scale,
    )


def build(config: TaskSwitchConfig) -> Setup:
    """Switching tasks → system → per-weight gains → cost → objective, start θ."""
    return gain_setup(config, system(config))


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
        low = float(e[settled].min())
        pre = float(e[before].mean())
        i = np.flatnonzero(window)[int(np.argmin(e[window]))]
        out.append(
            {
                "switch": float(s),
                "effort_before": pre,
                "effort_settled_min": low,
                "rises": bool(pre > low),
                "t_rise": float(ts[i]),
            }
        )
    return out


def run(
    config: TaskSwitchConfig,
    out_dir: Path,
    progress: bool,
    checkpoints: CheckpointFolder | None = None,
) -> RunOutput:
    """Baseline vs optimal gains over the whole schedule, findings, SGD replay."""
    r = run_gain(config, system(config), progress, checkpoints=checkpoints)
    results, summary = r.results, r.summary
    switches = np.asarray(r.setup.system.jump_times())
    results["switch_times"] = switches
    summary["fraction_loss_below_baseline"] = fraction_below_baseline(
        results["baseline_loss"], results["control_loss"]
    )
    per_switch = anticipation(
        results["ts"], results["control_effort"], switches, config.period
    )
    summary["anticipation"] = per_switch
    summary["fraction_switches_anticipated"] = (
        float(np.mean([a["rises"] for a in per_switch])) if per_switch else None
    )
    return RunOutput(results, summary)


def plot(results, config: TaskSwitchConfig, out_dir: Path) -> list[Path]:
    """The gain panels with the switch times marked, from the saved arrays."""
    vlines = [float(s) for s in np.asarray(results["switch_times"])]
    return save_figures(gain_figures(results, config, vlines=vlines), out_dir)


EXPERIMENT = Experiment(
    name=NAME,
    description=DESCRIPTION,
    config=TaskSwitchConfig,
    quick=QUICK,
    build=build,
    run=run,
    plot=plot,
)

__all__ = [
    "EXPERIMENT",
    "TaskSwitchConfig",
    "anticipation",
    "build",
    "fraction_below_baseline",
    "plot",
    "run",
]
