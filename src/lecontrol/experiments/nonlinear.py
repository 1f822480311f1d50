r"""Gain modulation of a tanh network (the paper's App. I; Table 5, column "Non-linear").

**Builds:** the network $\hat y = \tilde W_2\tanh(\tilde W_1 x)$ ($H = 8$, no
regularisation) learning correlated Gaussians over $T = 10000 \times 0.001 =
10$. Its expected loss is not a function of second moments, so the gains
(`shared.gains`) are optimised on the first-order Taylor expansion of the
hidden layer around $\langle x\rangle$ (`lc.systems.TanhTaylor`); the control
found there is then applied to real minibatch SGD of the actual tanh network.

**Figures:** the family's, with the SGD replay measured on the real network,
and the Taylor loss against the real network's along the ODE
(`real_loss.png`).

**Findings:** the family's, and whether the control found on the
approximation also helps the network it approximates: the real network's
loss along the ODE (`final_real_loss_ode_*`, `max_taylor_error_*`) and, from
the SGD runs, its value and loss with and without the control
(`sgd_real_V_*`, `sgd_real_final_loss_*`, ...). `outputs.eval_samples` fresh
samples measure the real network's loss.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lecontrol as lc

from .base import RunOutput, Setup
from .shared import gains
from .shared.figures import plotting

DEFAULT = gains.defaults(
    gains.GAUSSIANS,
    system=dict(hidden=8, lam=0.0),
    control=dict(knots=101),
    objective=dict(alpha=1e-3, steps=10000),
    optimiser=dict(iterations=500),
    outputs=dict(record_every=10, eval_samples=4096),
)


def system(cfg) -> lc.systems.TanhTaylor:
    t = gains.gaussians(cfg.task)
    # mean_y exact (zero), not TanhTaylor's Monte-Carlo default
    extra = dict(mean_x=t.mean_x(), mean_y=t.mean_y())
    return gains.network(lc.systems.TanhTaylor, cfg, t, **extra)


def build(cfg) -> Setup:
    """Task → Taylor-expanded tanh system → gains → cost → objective, start θ."""
    return gains.setup(cfg, system(cfg))


def real_loss(s: lc.systems.TanhTaylor, w, g, x, y) -> jax.Array:
    r"""The real tanh network's loss on the sample `(x, y)`:
    $\tfrac12\langle\lVert y - \tilde W_2\tanh(\tilde W_1 x)\rVert^2\rangle
    + \tfrac\lambda2\sum_i\lVert W_i\rVert_F^2$."""
    W1, W2 = w
    fit = 0.5 * jnp.mean(jnp.sum((y - s.predict(w, g, x)) ** 2, axis=-1))
    return fit + 0.5 * s.lam * (jnp.sum(W1**2) + jnp.sum(W2**2))


def run(cfg, out_dir: Path, progress: bool, checkpoints=None) -> RunOutput:
    """Optimise on the approximation; measure both controls on the real network."""
    s = system(cfg)
    key = jax.random.fold_in(jax.random.key(cfg.seed), 2)
    x, y = s.task.sample(key, cfg.outputs.eval_samples)
    along = jax.jit(jax.vmap(lambda w, g: real_loss(s, w, g, x, y)))
    # The replay measures the SGD weights on the real network: the Taylor
    # loss is not valid away from the ODE's weights.
    out = gains.run(cfg, s, progress, checkpoints, loss=along)
    for run in gains.RUNS:
        w, g = (gains.layers(out.results, run, field) for field in ("w", "g"))
        loss = out.results[f"{run}_real_loss"] = np.asarray(along(w, g))
        out.summary[f"final_real_loss_ode_{run}"] = float(loss[-1])
        error = np.max(np.abs(loss - out.results[f"{run}_loss"]))
        out.summary[f"max_taylor_error_{run}"] = float(error)
    return out


def plot(results, cfg, out_dir: Path) -> list[Path]:
    """The family's panels, and the control replayed on the real tanh network."""
    series, styles = {}, {}
    for (label, style), run, colour in zip(
        gains.PAIR.items(), gains.RUNS, ("0.6", "C3")
    ):
        series[f"Taylor ODE, {label}"] = results[f"{run}_loss"]
        styles[f"Taylor ODE, {label}"] = style
        series[f"real tanh net at ODE weights, {label}"] = results[f"{run}_real_loss"]
        styles[f"real tanh net at ODE weights, {label}"] = dict(
            color=colour, linestyle=":"
        )
    extra = {
        "real_loss.png": lambda: plotting.plot_lines(
            results["ts"],
            series,
            title="Taylor approximation vs the real tanh network",
            ylabel="loss",
            styles=styles,
        )
    }
    if "sgd_ts" in results:
        extra["sgd_replay.png"] = lambda: gains.replay_figure(
            results,
            tag="real_",
            title="Control found on the Taylor ODE, replayed on SGD of the tanh net",
        )
    return gains.plot(results, cfg, out_dir, extra)


EXPERIMENT = gains.experiment(
    name="nonlinear",
    description=(
        "Gain modulation of a tanh network (Taylor approximation), replayed on real SGD."
    ),
    default=DEFAULT,
    quick={
        "objective.steps": 3000,
        "control.knots": 31,
        "optimiser.iterations": 40,
        "outputs.record_every": 10,
        "outputs.replay_seeds": 2,
        "outputs.eval_samples": 1024,
    },
    build=build,
    run=run,
    plot=plot,
    figures=("real_loss.png",),
    findings=tuple(
        f"{key}_{run}"
        for key in ("final_real_loss_ode", "max_taylor_error")
        for run in gains.RUNS
    ),
)
