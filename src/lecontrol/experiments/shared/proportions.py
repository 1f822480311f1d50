r"""Category engagement as a curriculum of class proportions (the paper's
Fig. 4l,m and App. H.3, Eq. 77).

The optimal engagement $\varphi_c(t)$ of category engagement weights class
$c$'s error. A plain network (no control, only SGD) can follow it as a
*curriculum*: the batch of step $i$ holds $n_c$ samples of class $c$ with
$\mathbb E\,n_c = \varphi_c(t_i)B/C$ (`lc.simulate(..., class_proportions=True)`),
so in expectation it descends $\sum_c\frac{\varphi_c}{C}L_c$. `replay` trains
the same network from the same start with the same seeds three ways:

- `uniform`: every class equally often ($\varphi \equiv 1$, the baseline);
- `curriculum`: the proportions of the optimal $\varphi(t)$;
- `reversed`: the proportions of $\varphi(T - t)$, the curriculum run
  backwards (hard classes first), a negative control of the ordering.

Each run is scored on the unweighted loss of the whole task (every class as
often as in the data: the "balanced" loss of Fig. 4l). `CURRICULUM` checks
that the curriculum beats uniform batches.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import lecontrol as lc

from ...findings import Finding
from . import figures as fig
from .findings import integral

RUNS = ("uniform", "curriculum", "reversed")


def replay(s, c, cfg, data, parts, every: int) -> dict[str, np.ndarray]:
    """SGD with class-proportion batches for `RUNS` (`s`: the setup, `c`: the
    comparison, `parts`: output losses of a weight pytree, vmapped over records);
    arrays `proportions_ts`, `proportions_{run}_loss` (seeds × records) and
    `proportions_{run}_parts` (records × classes, mean over seeds)."""
    o, steps = cfg.outputs, cfg.objective.steps
    seeds = range(cfg.seed, cfg.seed + max(o.sgd_seeds, 2))
    kw = dict(alpha=cfg.objective.alpha, steps=steps, batch_size=o.batch_size)
    kw |= dict(seeds=seeds, record_every=every, data=data, class_proportions=True)
    theta = c.result.theta
    thetas = dict(uniform=c.theta_baseline, curriculum=theta, reversed=theta[::-1])
    out = {}
    for run, th in thetas.items():
        sim = lc.simulate(s.problem, jnp.asarray(th), **kw)
        out["proportions_ts"] = np.asarray(sim.ts)
        out[f"proportions_{run}_loss"] = np.asarray(sim.loss)
        mean_parts = jnp.mean(jax.vmap(parts)(sim.w), 0)
        out[f"proportions_{run}_parts"] = np.asarray(mean_parts)
    return out


def _gain(r, run="curriculum") -> tuple[float, np.ndarray]:
    ts = r["proportions_ts"]
    uniform = np.array([integral(ts, x) for x in r["proportions_uniform_loss"]])
    other = np.array([integral(ts, x) for x in r[f"proportions_{run}_loss"]])
    return 1 - other.mean() / uniform.mean(), 1 - other / uniform


def beats_uniform(r) -> tuple[float, str]:
    r"""$1 - \int\bar L_\text{curriculum}\,dt / \int\bar L_\text{uniform}\,dt$,
    $\bar L$ the seed mean of the balanced loss."""
    effect, per_seed = _gain(r)
    reverse, _ = _gain(r, "reversed")
    seeds = ", ".join(f"{x:+.2%}" for x in per_seed)
    return effect, (
        f"cumulative balanced loss {effect:+.2%} below uniform batches (per seed "
        f"{seeds}); the reversed curriculum: {reverse:+.2%}"
    )


def _uniform_as_curriculum(r):
    return dict(r) | {"proportions_curriculum_loss": r["proportions_uniform_loss"]}


def _reversed_curriculum(r):
    return dict(r) | {"proportions_curriculum_loss": r["proportions_reversed_loss"]}


CURRICULUM = Finding(
    "curriculum_beats_uniform",
    "Class proportions that follow the optimal engagement train a plain network "
    "faster than uniform batches (Fig. 4l).",
    beats_uniform,
    margin=0.01,
    criterion="the curriculum's cumulative balanced loss (mean over seeds) is more "
    "than 1% below that of uniform batches",
    negative_controls=(
        ("uniform batches", _uniform_as_curriculum),
        ("the curriculum reversed in time", _reversed_curriculum),
    ),
)


def figure(results, cfg):
    """Fig. 4l,m: the balanced loss of each run (mean ± sd over seeds), and the
    loss per class of the curriculum (solid) and of uniform batches (dashed)."""
    import matplotlib.pyplot as plt

    p, ts = fig.plotting, results["proportions_ts"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    styles = {
        "uniform": p.BASELINE_STYLE,
        "curriculum": p.CONTROL_STYLE,
        "reversed": {"color": "C3", "linestyle": ":", "linewidth": 1.6},
    }
    for run in RUNS:
        p.seed_band(
            left, ts, results[f"proportions_{run}_loss"], label=run, **styles[run]
        )
    left.set(xlabel=p.TIME_LABEL, ylabel="balanced loss ⟨L⟩")
    left.set_title("SGD with class proportions from φ(t)")
    parts_c = results["proportions_curriculum_parts"]
    parts_u = results["proportions_uniform_parts"]
    for i, lab in enumerate(str(x) for x in cfg.task.classes):
        right.plot(ts, parts_c[:, i], color=f"C{i % 10}", label=lab)
        right.plot(ts, parts_u[:, i], color=f"C{i % 10}", linestyle="--")
    right.set(xlabel=p.TIME_LABEL, ylabel="loss of output c")
    right.set_title("Loss per class: curriculum (solid), uniform (dashed)")
    for ax in (left, right):
        p.time_axis(ax)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", ncol=2 if ax is right else 1)
    return figure
