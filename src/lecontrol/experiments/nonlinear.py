r"""Gain modulation of a tanh network (App. I; Table 5, column "Non-linear").

**Builds:** $\hat y = \tilde W_2\tanh(\tilde W_1 x)$ ($H = 8$, $\lambda = 0$) on
correlated Gaussians, $T = 10$. Gains are optimised on the Taylor expansion of
the hidden layer around $\langle x\rangle$ (`lc.systems.TanhTaylor`), then
applied to minibatch SGD of the actual tanh network.
**Figures:** the family's (`shared.gains`), the real loss along the ODE, and
the weights and their norms along the ODE against SGD (`ode_vs_sgd.png`, Fig.
19c–h).
**Findings:** the family's, and whether the control helps the real network:
its loss (on `outputs.eval_samples` fresh samples) along the ODE
(`final_real_loss_ode_*`, `max_taylor_error_*`) and along SGD (`sgd_real_*`);
checked: the family's, `taylor_tracks_sgd_early` (the SGD weights within
20% of the ODE's over the first quarter) and `control_helps_real_network` (the
real network's cumulative SGD loss over 2% lower with the control).
"""

import jax
import numpy as np

import lecontrol as lc

from ..findings import Finding
from .shared import gains


def system(cfg):
    task = lc.tasks.CorrelatedGaussians(**cfg.task)
    means = dict(mean_x=task.mean_x(), mean_y=task.mean_y())  # exact, not sampled
    return gains.network(lc.systems.TanhTaylor, cfg, task, **means)


def run(cfg, out_dir, progress, checkpoints=None):
    """Optimise on the approximation; measure both controls on the real network
    along the ODE and along SGD (where the Taylor loss does not hold)."""
    s = system(cfg)
    key = jax.random.fold_in(jax.random.key(cfg.seed), 2)
    x, y = s.task.sample(key, cfg.outputs.eval_samples)
    real = jax.jit(jax.vmap(lambda w, g: s.tau * s.batch_loss(0.0, w, g, x, y)))
    (results, summary) = out = gains.run_on(cfg, s, progress, checkpoints, loss=real)
    for which in gains.RUNS:
        w, g = (gains.layers(results, which, field) for field in "wg")
        loss = results[f"{which}_real_loss"] = np.asarray(real(w, g))
        summary[f"final_real_loss_ode_{which}"] = float(loss[-1])
        error = np.max(np.abs(loss - results[f"{which}_loss"]))
        summary[f"max_taylor_error_{which}"] = float(error)
    return out


def _gap(r, run: str) -> np.ndarray:
    r"""$\lVert W_\text{SGD}(t) - W_\text{ODE}(t)\rVert / \lVert
    W_\text{ODE}(t)\rVert$ over both layers (the first SGD seed)."""
    n = len(r["ts"])
    ode = np.concatenate([r[f"{run}_w{i}"].reshape(n, -1) for i in (0, 1)], 1)
    sgd = np.concatenate([r[f"sgd_{run}_w{i}"].reshape(n, -1) for i in (0, 1)], 1)
    return np.linalg.norm(sgd - ode, axis=1) / np.linalg.norm(ode, axis=1)


def tracks_early(r) -> tuple[float, str]:
    r"""1 − the larger (baseline, control) mean relative gap over $t \le T/4$."""
    ts = r["ts"]
    early = ts <= ts[-1] / 4
    gaps = {run: float(np.mean(_gap(r, run)[early])) for run in gains.RUNS}
    late = {run: float(np.mean(_gap(r, run)[~early])) for run in gains.RUNS}
    words = ", ".join(
        f"{run} {gaps[run]:.1%} (later {late[run]:.1%})" for run in gains.RUNS
    )
    return 1 - max(gaps.values()), f"mean ‖W_SGD − W_ODE‖/‖W_ODE‖ over t ≤ T/4: {words}"


def sgd_reversed(r):
    """The SGD weights in reverse time order (a negative control)."""
    flip = {k: r[k][::-1] for k in r if k.startswith("sgd_") and "_w" in k}
    return r | flip


TRACKS_EARLY = Finding(
    "taylor_tracks_sgd_early",
    "Early in training (small weights) the Taylor-approximated dynamics follow "
    "the weights of the real tanh network trained by SGD (Fig. 19c,d,g,h), "
    "where most of the control is exerted.",
    tracks_early,
    margin=0.8,
    criterion="the SGD weights (first seed) within 20% of the ODE's, relative "
    "norm of the difference averaged over t ≤ T/4, for the baseline and the control",
    negative_controls=(("SGD weights time-reversed", sgd_reversed),),
    applies=lambda r: "sgd_baseline_w0" in r,
)


def helps_real(r) -> tuple[float, str]:
    """1 − the real network's cumulative SGD loss with control over without
    (seed means, trapezoid over the records)."""
    ts = r["sgd_ts"]
    cum = {
        run: float(np.trapezoid(r[f"sgd_{run}_real_loss_mean"], ts))
        for run in gains.RUNS
    }
    words = f"∫⟨L⟩dt of the real tanh network under SGD: {cum['baseline']:.4g} "
    words += f"without control, {cum['control']:.4g} with it"
    return 1 - cum["control"] / cum["baseline"], words


def sgd_baseline(r):
    """The SGD replay of the baseline in place of the controlled one."""
    keys = [k for k in r if k.startswith("sgd_control_")]
    return r | {k: r["sgd_baseline_" + k[len("sgd_control_") :]] for k in keys}


HELPS_REAL = Finding(
    "control_helps_real_network",
    "The control found on the approximated dynamics lowers the loss of the real "
    "tanh network trained by SGD with it (Fig. 19a,b).",
    helps_real,
    margin=0.02,
    criterion="the real network's cumulative loss under SGD (mean over seeds) "
    "over 2% below that without control",
    negative_controls=(("SGD without control", sgd_baseline),),
    applies=lambda r: "sgd_control_real_loss_mean" in r,
)


EXPERIMENT = gains.experiment(
    name="nonlinear",
    description="Gain modulation of a tanh network (Taylor approximation), replayed on real SGD.",
    default=gains.defaults(
        gains.GAUSSIANS,
        system=dict(hidden=8, lam=0.0),
        control=dict(knots=101),
        objective=dict(alpha=1e-3, steps=10000),
        optimiser=dict(iterations=500),
        outputs=dict(record_every=10, eval_samples=4096),
    ),
    quick={"objective.steps": 3000, "control.knots": 31, "optimiser.iterations": 40}
    | {"outputs.eval_samples": 1024},
    system=system,
    run=run,
    figures=("real_loss.png",),
    findings=tuple(
        f"{k}_{r}"
        for k in ("final_real_loss_ode", "max_taylor_error")
        for r in gains.RUNS
    )
    + (TRACKS_EARLY, HELPS_REAL),
)
