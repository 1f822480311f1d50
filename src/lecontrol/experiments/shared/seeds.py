r"""The optimal control over several trainings: mean ± sd across seeds.

The paper shows the engagement experiments' optimal $\psi(t)$ as the mean and
standard deviation over 5 independent trainings (its Fig. 4b,d,f): the same
problem from 5 draws of the initial weights. `spread` optimises the control
for the further seeds `cfg.seed + 1, …` (the run's own optimum is the first)
as one `lc.sweep.optimize_batch`: the problems differ only in their initial
weights, passed as array data, so they share one compiled computation. Each
seed's optimum is then solved at the run's saved times.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import lecontrol as lc

from . import comparison as cmp, figures as fig


def spread(c, cfg, make, ts, *, adjoint, progress, checkpoints) -> dict:
    """Arrays `seeds_control_g` (seeds × times × parts), `seeds_control_loss`,
    `seeds_baseline_loss` (seeds × times) and `seeds_projected_grad_norm`
    (seeds), with the run's own comparison `c` first, for
    `outputs.control_seeds` seeds; `make(seed, init)` builds the `Setup` whose
    initial weights are `init` (drawn from `seed` when `init` is None)."""
    n = cfg.outputs.get("control_seeds", 1)
    opts = cmp.options(cfg)
    out = {
        "seeds_control_g": [np.asarray(c.controlled.g)],
        "seeds_control_loss": [np.asarray(c.controlled.loss)],
        "seeds_baseline_loss": [np.asarray(c.baseline.loss)],
        "seeds_projected_grad_norm": [float(c.result.projected_grad_norm)],
    }
    if n > 1:
        seeds = range(cfg.seed + 1, cfg.seed + n)
        inits = [make(s, None).system.init_state() for s in seeds]
        stacked = jax.tree.map(lambda *a: jnp.stack(a), *inits)
        res = lc.sweep.optimize_batch(
            lambda init: make(None, init),
            stacked,
            optimizer=cmp.configured_optimizer(cfg),
            steps=cfg.optimiser.iterations,
            gtol=cfg.optimiser.get("gtol"),
            adjoint=adjoint,
            options=opts,
            checkpoint=cmp.next_checkpoint(checkpoints),
            progress=progress,
            batch_size=cmp.batch_size(cfg),
        )
        for i, init in enumerate(inits):
            s = make(None, init)
            theta = jax.tree.map(lambda a, i=i: jnp.asarray(a[i]), res.theta)
            base = s.control.init(1.0)
            for key, th in (("control", theta), ("baseline", base)):
                tr = lc.solve(s.problem, th, ts=ts, options=opts)
                out[f"seeds_{key}_loss"].append(np.asarray(tr.loss))
                if key == "control":
                    out["seeds_control_g"].append(np.asarray(tr.g))
            out["seeds_projected_grad_norm"].append(float(res.projected_grad_norm[i]))
    return {k: np.asarray(v) for k, v in out.items()}


def summary(results, gtol) -> dict:
    """The seeds' count and their largest projected-gradient norm."""
    norms = results["seeds_projected_grad_norm"]
    worst = float(np.max(norms))
    return {
        "control_seeds": int(len(norms)),
        "control_seeds_projected_grad_norm": worst,
        "control_seeds_converged": bool(gtol is None or worst <= gtol),
    }


def figure(results, labels, symbol: str, bounds):
    """The optimal control per part and the loss, mean ± sd over the seeds."""
    import matplotlib.pyplot as plt

    p = fig.plotting
    ts, g = results["ts"], results["seeds_control_g"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    for j, lab in enumerate(labels):
        p.seed_band(left, ts, g[:, :, j], label=lab, color=f"C{j % 10}")
    for value, text in bounds:
        left.axhline(value, **p.BOUND_STYLE)
        kw = dict(fontsize="x-small", ha="right", va="bottom")
        left.annotate(text, (ts[-1], value), **kw)
    left.set(xlabel=p.TIME_LABEL, ylabel=f"engagement {symbol}(t)")
    left.set_title(f"Optimal {symbol}(t) over {len(g)} trainings")
    styles = {"baseline": p.BASELINE_STYLE, "control": p.CONTROL_STYLE}
    for key, style in styles.items():
        p.seed_band(right, ts, results[f"seeds_{key}_loss"], label=key, **style)
    right.set(xlabel=p.TIME_LABEL, ylabel="expected loss ⟨L⟩")
    right.set_title("Loss over the trainings")
    for ax in (left, right):
        p.time_axis(ax)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return figure
