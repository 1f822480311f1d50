r"""Single neuron with a gain control (the paper's Sec. 2.1, Table 1).

**Builds:** a neuron $\hat y = x\,w\,(1 + g)$ learning the two-Gaussian task
by gradient flow (`lc.systems.SingleNeuronGain` on `lc.tasks.TwoGaussians`),
a piecewise-linear gain $g(t) \in [0, 0.5]$ at the cost $\beta g^2$
(`lc.costs.Quadratic`), optimised until the projected gradient of $V$ is at
most `optimiser.gtol` by L-BFGS-B (`optimiser.method = "lbfgsb"`; `"pga"`:
the paper's Algorithm 1, projected gradient ascent at the rate
`optimiser.lr`, for a faithful replay), compared with the baseline $g = 0$.

**Figures:** the optimal control, the expected loss and the weight of both
runs, the net-reward difference (each alone and together, lettered, in
`overview.png`), and the optimisation's progress (Fig. 2).

**Findings** (checked, with the baseline and a time-reversed control as
negative controls): `control_early` ($g$ is largest early and decays),
`net_reward_early_loss_late_gain` (the controlled run gives up net reward early
to gain it later) and `value_gain` ($V_\text{control} > V_\text{baseline}$ by
more than 1%).
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

import lecontrol as lc

from ..findings import Finding
from ..runner import Experiment, RunOutput, Setup, config
from .shared import comparison as cmp, figures as fig

DEFAULT = config(
    task=dict(mu=2.0, sigma=1.0),
    system=dict(lam=0.1, tau=1.0, w0=0.0),
    control=dict(knots=61, lower=0.0, upper=0.5, init=0.0),
    cost=dict(beta=0.3),
    objective=dict(alpha=1e-3, steps=600, gamma=0.99, eta=1.0),
    optimiser=dict(method="lbfgsb", gtol=1e-9, iterations=700, lr=10.0),
    solver=dict(rtol=1e-7, atol=1e-9, max_steps=4096),
)


def build(cfg) -> Setup:
    """Task → system → control → cost → objective, and the starting coefficients."""
    task = lc.tasks.TwoGaussians(mu=cfg.task.mu, sigma=cfg.task.sigma)
    s = cfg.system
    system = lc.systems.SingleNeuronGain(task, lam=s.lam, tau=s.tau, w0=s.w0)
    control = cmp.knot_control(cfg, system.control_shape)
    return cmp.setup(cfg, system, control, lc.costs.Quadratic(beta=cfg.cost.beta))


def run(cfg, out_dir: Path, progress: bool, checkpoints=None) -> RunOutput:
    """Solve the baseline, optimise the control, solve the controlled run."""
    s = build(cfg)
    ts = jnp.linspace(0.0, cmp.horizon(cfg), cfg.objective.steps + 1)  # per SGD step
    c = cmp.compare(s, cfg, ts=ts, progress=progress, checkpoints=checkpoints)
    results = cmp.comparison_arrays(c)
    summary = cmp.comparison_summary(c, control_lr_theta=cmp.control_lr(cfg))
    return RunOutput(results, summary)


def plot(results, cfg, out_dir: Path) -> list[Path]:
    """The paper's single-neuron panels (Fig. 2), each on its own and together
    in `overview.png`, from the saved arrays."""
    ts = results["ts"]
    pair = fig.pair("baseline (g = 0)")
    base, ctrl = list(pair)
    c = cfg.control

    def control(ax=None):
        return fig.plotting.plot_lines(
            ts,
            {ctrl: results["control_g"]},
            title="Optimal gain control g(t)",
            ylabel="control g(t)",
            styles=pair,
            hlines=fig.plotting.bounds(c.lower, c.upper),
            ax=ax,
        )

    def weights(ax=None):
        return fig.plotting.plot_lines(
            ts,
            {base: results["baseline_w"], ctrl: results["control_w"]},
            title="Weight w(t)",
            ylabel="weight w",
            styles=pair,
            ax=ax,
        )

    def loss(ax=None):
        return fig.loss(results, pair, ax)

    def net_reward(ax=None):
        return fig.net_reward_difference(results, "g", ax)

    figures = {
        "overview.png": fig.overview(
            [net_reward, loss, control, weights],  # a, c: Fig. 2a, 2c
            "Single neuron with gain control: optimal g(t) vs g = 0",
        ),
        "control.png": control,
        "loss.png": loss,
        "net_reward_difference.png": net_reward,
        "weights.png": weights,
    }
    return fig.save(figures | fig.optimisation(results), out_dir)


def control_early(r) -> tuple[float, str]:
    r"""($\bar g$ over the first quarter $-$ $\bar g$ over the last) / $\max g$."""
    ts, g = r["ts"], np.asarray(r["control_g"], dtype=float)
    quarter = (ts[-1] - ts[0]) / 4
    first, last = g[ts <= ts[0] + quarter].mean(), g[ts >= ts[-1] - quarter].mean()
    peak = float(g.max())
    effect = (first - last) / peak if peak > 0 else float("nan")
    return effect, (
        f"mean g over the first quarter {first:.4g}, over the last {last:.4g}, "
        f"peak {peak:.4g} at t = {ts[int(np.argmax(g))]:.4g} of T = {ts[-1]:.4g}"
    )


def net_reward_trade(r) -> tuple[float, str]:
    r"""With $d = v_\text{control} - v_\text{baseline}$ and $t^*$ where
    $\int_0^t d$ is lowest: $\min(-\min_{t \le t^*} d, \max_{t \ge t^*} d) /
    \max|d|$, the depth of the early loss and the height of the later gain."""
    ts, d = r["ts"], r["control_v"] - r["baseline_v"]
    D = np.concatenate([[0.0], np.cumsum(0.5 * (d[1:] + d[:-1]) * np.diff(ts))])
    k, scale = int(np.argmin(D)), float(np.abs(d).max())
    loss, gain = -d[: k + 1].min(), d[k:].max()
    effect = min(loss, gain) / scale if scale > 0 else float("nan")
    return effect, (
        f"v_control − v_baseline falls to {-loss:.3g} before t* = {ts[k]:.4g} "
        f"({100 * ts[k] / ts[-1]:.0f}% of T), where its integral is lowest "
        f"({D[k]:.3g}), and rises to {gain:.3g} after it"
    )


def value_gain(r) -> tuple[float, str]:
    r"""$(V_\text{control} - V_\text{baseline}) / |V_\text{baseline}|$."""
    vb, vc = float(r["baseline_V"][-1]), float(r["control_V"][-1])
    return (vc - vb) / abs(vb), f"V_baseline = {vb:.6g}, V_control = {vc:.6g}"


FINDINGS = (
    Finding(
        "control_early",
        "The optimal gain is largest early and decays (Fig. 2c).",
        control_early,
        margin=0.25,
        criterion="mean g over the first quarter exceeds that over the last "
        "quarter by more than 25% of its peak",
        negative_controls=("baseline", "reversed"),
    ),
    Finding(
        "net_reward_early_loss_late_gain",
        "The controlled run gives up net reward early to gain it later (Fig. 2a).",
        net_reward_trade,
        margin=0.1,
        criterion="the net reward difference first dips below zero, then rises "
        "above it, each by more than 10% of its largest size",
    ),
    Finding(
        "value_gain",
        "Control raises the value: V_control > V_baseline (Fig. 2).",
        value_gain,
        margin=0.01,
        criterion="V_control exceeds V_baseline by more than 1% of |V_baseline|",
    ),
)


EXPERIMENT = Experiment(
    name="single-neuron",
    description="Single neuron with gain control on two Gaussians: optimal g(t) vs g = 0.",
    default=DEFAULT,
    quick={"optimiser.iterations": 60, "control.knots": 31},
    build=build,
    run=run,
    plot=plot,
    figures=(
        "overview.png",
        "control.png",
        "loss.png",
        "net_reward_difference.png",
        "weights.png",
        "optimisation.png?",
    ),
    findings=FINDINGS,
    check=cmp.check_optimiser,
)
