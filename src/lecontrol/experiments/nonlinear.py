r"""Gain modulation of a tanh network (the paper's App. I; Table 5, column "Non-linear").

The network $\hat y = \tilde W_2\tanh(\tilde W_1 x)$ ($H = 8$, no
regularisation) learns the correlated-Gaussians task. Its expected loss is not
a function of second moments, so the control is optimised on the first-order
Taylor expansion of the hidden layer around $\langle x\rangle$
(`lc.systems.TanhTaylor`), with gains $G \in [-0.5, 0.5]$ on every weight at
the cost $\exp(\beta\sum_i\lVert G_i\rVert_F^2) - 1$, over
$T = 10000 \times 0.001 = 10$. The control found there is then applied to real
minibatch SGD of the actual tanh network (`lc.simulate`). The summary reports
the gain findings (`gain_modulation`) and, from the SGD runs, the real
network's loss and value with and without the control: whether the control
found on the approximation also helps the network it approximates.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lecontrol as lc

from ..checkpoint import CheckpointFolder
from .base import Experiment, RunOutput, Setup, require, require_int
from .gain_modulation import (
    GainConfig,
    check_gain,
    gain_figures,
    gain_setup,
    replay_figure,
    run_gain,
    save_figures,
)

NAME = "nonlinear"
DESCRIPTION = (
    "Gain modulation of a tanh network (Taylor approximation), replayed on real SGD."
)


@dataclasses.dataclass(frozen=True)
class NonlinearConfig(GainConfig):
    r"""Parameters of `nonlinear` (defaults: the paper's Table 5, "Non-linear").

    All `GainConfig` fields (here $\alpha = 10^{-3}$, $N = 10000$, $H = 8$,
    $\lambda = 0$, 500 iterations, 101 knots, a point saved every 10 steps),
    the task's `mu`, `sigma`, `p` (as `effort-gaussians`), and

    - `eval_samples`: fresh samples on which the real tanh network's loss is
      measured along the SGD runs and the ODE trajectories.
    """

    alpha: float = 1e-3
    steps: int = 10000
    hidden: int = 8
    lam: float = 0.0
    iterations: int = 500
    knots: int = 101
    record_every: int = 10
    mu: tuple[float, ...] = (3.0, 1.0)
    sigma: tuple[float, ...] = (1.0, 1.0)
    p: float = 0.8
    eval_samples: int = 4096

    def check(self) -> None:
        check_gain(self)
        for key in ("mu", "sigma"):
            v = getattr(self, key)
            require(len(v) == 2, key, "must hold two numbers", v)
        require_int(self, "eval_samples", minimum=1)


QUICK = {
    "steps": 3000,
    "knots": 31,
    "iterations": 40,
    "record_every": 10,
    "replay_seeds": 2,
    "eval_samples": 1024,
}


def task(config: NonlinearConfig) -> lc.tasks.CorrelatedGaussians:
    return lc.tasks.CorrelatedGaussians(mu=config.mu, sigma=config.sigma, p=config.p)


def system(config: NonlinearConfig) -> lc.systems.TanhTaylor:
    t = task(config)
    return lc.systems.TanhTaylor(
        t,
        hidden=config.hidden,
        lam=config.lam,
        tau=config.tau,
        seed=config.seed,
        scale=config.init_scale,
        mean_x=t.mean_x(),
        mean_y=t.mean_y(),  # exact (zero), not TanhTaylor's Monte-Carlo default
    )


def build(config: NonlinearConfig) -> Setup:
    """Task → Taylor-expanded tanh system → gains → cost → objective, start θ."""
    return gain_setup(config, system(config))


def real_loss(s: lc.systems.TanhTaylor, w, g, x, y) -> jax.Array:
    r"""The real tanh network's loss on the sample `(x, y)`:
    $\tfrac12\langle\lVert y - \tilde W_2\tanh(\tilde W_1 x)\rVert^2\rangle
    + \tfrac\lambda2\sum_i\lVert W_i\rVert_F^2$."""
    W1, W2 = w
    fit = 0.5 * jnp.mean(jnp.sum((y - s.predict(w, g, x)) ** 2, axis=-1))
    return fit + 0.5 * s.lam * (jnp.sum(W1**2) + jnp.sum(W2**2))


def run(
    config: NonlinearConfig,
    out_dir: Path,
    progress: bool,
    checkpoints: CheckpointFolder | None = None,
) -> RunOutput:
    """Optimise on the approximation; measure both controls on the real network."""
    r = run_gain(config, system(config), progress, checkpoints=checkpoints)
    results, summary = r.results, r.summary
    s = r.setup.system
    x, y = task(config).sample(
        jax.random.fold_in(jax.random.key(config.seed), 2), config.eval_samples
    )
    along = jax.jit(jax.vmap(lambda w, g: real_loss(s, w, g, x, y)))
    for prefix, tr in (
        ("baseline", r.comparison.baseline),
        ("control", r.comparison.controlled),
    ):
        loss = np.asarray(along(tr.w, tr.g))
        results[f"{prefix}_real_loss"] = loss
        summary[f"final_real_loss_ode_{prefix}"] = float(loss[-1])
        summary[f"max_taylor_error_{prefix}"] = float(
            np.max(np.abs(loss - results[f"{prefix}_loss"]))
        )
    if r.replay is not None:
        # `run_gain`'s replay entries evaluate the Taylor loss at the SGD
        # weights, outside the approximation's validity; the real network's
        # loss replaces them.
        for prefix in ("baseline", "control"):
            for key in ("sgd_V_", "sgd_final_loss_", "sgd_max_gap_to_ode_"):
                del summary[key + prefix]
            for key in ("mean", "stderr"):
                del results[f"sgd_{prefix}_loss_{key}"]
        for prefix, sim in (
            ("baseline", r.replay.baseline),
            ("control", r.replay.control),
        ):
            per_seed = np.asarray(jax.vmap(along, in_axes=(0, None))(sim.w, sim.g))
            mean = per_seed.mean(0)
            n = per_seed.shape[0]
            err = per_seed.std(0, ddof=1) / np.sqrt(n) if n > 1 else 0 * mean
            results[f"sgd_{prefix}_real_loss_mean"] = mean
            results[f"sgd_{prefix}_real_loss_stderr"] = err
            cost = np.asarray(jax.vmap(r.setup.cost)(sim.g))
            sgd_ts = np.asarray(sim.ts)
            v = config.gamma**sgd_ts * (-config.eta * mean - cost)
            summary[f"sgd_real_V_{prefix}"] = float(np.trapezoid(v, sgd_ts))
            summary[f"sgd_real_final_loss_{prefix}"] = float(mean[-1])
            summary[f"sgd_real_cumulative_loss_{prefix}"] = float(
                np.trapezoid(mean, sgd_ts)
            )
            summary[f"sgd_real_max_gap_to_ode_{prefix}"] = float(
                np.max(np.abs(mean - results[f"{prefix}_loss"]))
            )
    return RunOutput(results, summary)


def plot(results, config: NonlinearConfig, out_dir: Path) -> list[Path]:
    """The gain panels, and the control replayed on the real tanh network."""
    from .. import plotting
    from .gain_modulation import BASE, CTRL, PAIR

    figures = gain_figures(results, config)
    figures["real_loss.png"] = lambda: plotting.plot_lines(
        results["ts"],
        {
            f"Taylor ODE, {BASE}": results["baseline_loss"],
            f"Taylor ODE, {CTRL}": results["control_loss"],
            f"real tanh net at ODE weights, {BASE}": results["baseline_real_loss"],
            f"real tanh net at ODE weights, {CTRL}": results["control_real_loss"],
        },
        title="Taylor approximation vs the real tanh network",
        ylabel="loss",
        styles={
            f"Taylor ODE, {BASE}": PAIR[BASE],
            f"Taylor ODE, {CTRL}": PAIR[CTRL],
            f"real tanh net at ODE weights, {BASE}": {"color": "0.6", "linestyle": ":"},
            f"real tanh net at ODE weights, {CTRL}": {"color": "C3", "linestyle": ":"},
        },
    )
    if "sgd_ts" in results:
        figures["sgd_replay.png"] = lambda: replay_figure(
            results,
            loss_key="real_loss",
            title="Control found on the Taylor ODE, replayed on SGD of the tanh net",
        )
    return save_figures(figures, out_dir)


EXPERIMENT = Experiment(
    name=NAME,
    description=DESCRIPTION,
    config=NonlinearConfig,
    quick=QUICK,
    build=build,
    run=run,
    plot=plot,
)

__all__ = ["EXPERIMENT", "NonlinearConfig", "build", "plot", "real_loss", "run"]
