r"""Memory precision as a resource: dynamic allocation in a tabular learner
(companion work; Patel, Acerbi & Pouget 2020; docs/precision.md).

**Builds:** `lc.precision.PrecisionAgent` (Table B.1 of the paper: $\alpha_1 =
\alpha_2 = 0.1$, $\beta = 10$, $\gamma = 1$, $\lambda = 0.2$, $\sigma_\text{base}
= 5$, $\sigma_0 = 3$, $N_\text{traj} = 10$) on `lc.precision.GridWorld` (the
6 × 9 Dyna maze: start (2, 0), goal (0, 8), $-1$ a step, $+10$ at the goal,
500 steps at most), trained for `objective.trials` trials in
`objective.restarts` independent restarts (vmapped): Thompson sampling on the
memories $\tilde q_{sa} \sim \mathcal N(\bar q_{sa}, \sigma_{sa}^2)$, expected
SARSA for $\bar q$, and between trials the policy-gradient step of $\sigma$
against the price $\lambda\,\mathrm{KL}$ (`lc.costs.KLPrecision`). Then the same
for each price $\lambda$ of `cost.lams`.

**Figures:** `learning.png` (return and price per trial, mean ± sd over the
restarts, and the exact expected return), `allocation.png`
(discriminability against impact with the fitted line, the precision of each
cell's best memory on the maze, and the expected return of the learnt, equal
and shuffled allocations), `lambda.png` (expected return, price and mean
$\sigma$ against $\lambda$).

**Findings:** checked: `precision_follows_impact` (the slope of
discriminability on impact, pooled over the restarts, has its 95% confidence
interval above 0; negative control: impact shuffled among the memories of each
restart), `allocation_beats_equal_precision` (the learnt allocation's expected
return exceeds that of equal precision at the same price by more than 1, in
every restart; negative control: the learnt $\sigma$ shuffled among the
memories, same price), `less_precision_when_costlier` (the total KL falls as
$\lambda$ rises: Spearman $\rho < -0.8$; negative control: $\lambda$
reversed); measured: the per-restart slopes, returns and the $\lambda$ sweep.
"""

from __future__ import annotations

import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import lecontrol as lc

from ..findings import Finding
from ..runner import Experiment, RunOutput, config, require
from .shared import figures as fig, findings as fnd

P = lc.precision

DEFAULT = config(
    control=dict(sigma0=3.0),
    cost=dict(lam=0.2, sigma_base=5.0, lams=(0.05, 0.1, 0.2, 0.5, 1.0)),
    objective=dict(trials=1000, restarts=5, beta=10.0, gamma=1.0),
    optimiser=dict(alpha_q=0.1, alpha_sigma=0.1, n_traj=10),
    outputs=dict(records=50),
)

# The allocation needs about 1000 trials to settle (after 300 it beats equal
# precision by only 0.2-0.8): the quick variant keeps them and has fewer
# restarts and prices.
QUICK = {
    "objective.restarts": 3,
    "cost.lams": (0.05, 0.2, 1.0),
    "outputs.records": 10,
}


def check(cfg) -> None:
    o = cfg.objective
    require(o.trials >= 2, "objective.trials", "must be >= 2", o.trials)
    require(o.restarts >= 2, "objective.restarts", "must be >= 2", o.restarts)
    lams = cfg.cost.lams
    require(len(lams) >= 3, "cost.lams", "needs at least 3 prices", lams)
    require(all(x >= 0 for x in lams), "cost.lams", "must be >= 0", lams)
    require(cfg.outputs.records >= 2, "outputs.records", "must be >= 2", 0)


def agent(cfg, lam=None) -> P.PrecisionAgent:
    c, o, op = cfg.cost, cfg.objective, cfg.optimiser
    return P.PrecisionAgent(
        alpha_q=op.alpha_q,
        alpha_sigma=op.alpha_sigma,
        beta=o.beta,
        gamma=o.gamma,
        lam=c.lam if lam is None else lam,
        sigma_base=c.sigma_base,
        sigma0=cfg.control.sigma0,
        n_traj=op.n_traj,
    )


def build(cfg):
    for lam in cfg.cost.lams:
        agent(cfg, lam)
    return P.GridWorld(), agent(cfg)


def slope_ci(x, y) -> tuple[float, float]:
    """Least-squares slope of `y` on `x` and its 95% half-width (normal
    approximation: hundreds of memories)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    xc = x - x.mean()
    slope = np.sum(xc * (y - y.mean())) / np.sum(xc**2)
    resid = y - y.mean() - slope * xc
    se = np.sqrt(np.sum(resid**2) / (len(x) - 2) / np.sum(xc**2))
    return float(slope), float(1.96 * se)


def _returns_at(grid, a, q, sigma):
    """Exact expected return of each state (q, sigma: leading axes)."""
    flat_q = q.reshape(-1, *q.shape[-2:])
    flat_s = sigma.reshape(-1, *sigma.shape[-2:])
    j = jax.lax.map(
        lambda qs: P.expected_return(grid, a, P.AgentState(*qs)), (flat_q, flat_s)
    )
    return np.asarray(j).reshape(q.shape[:-2])


def allocation(grid, a, state, rng) -> dict:
    """Impact, discriminability, their regression (and with impact shuffled),
    and the expected return of the learnt, equal and shuffled allocations."""
    mask = np.asarray(P.memory_mask(grid))
    imp = np.asarray(P.impact(grid, a, state))[mask]
    d = np.asarray(P.discriminability(state))[mask]
    perm = rng.permutation(imp.size)
    sigma = np.asarray(state.sigma).copy()
    sigma[mask] = sigma[mask][perm]
    equal = P.equal_precision(grid, a, state.sigma)
    J = [
        float(P.expected_return(grid, a, P.AgentState(state.q, s)))
        for s in (state.sigma, equal, jnp.asarray(sigma))
    ]
    return dict(impact=imp, disc=d, impact_shuffled=imp[perm], J=np.asarray(J))


def run(cfg, out_dir: Path, progress: bool, checkpoints=None) -> RunOutput:
    start = time.perf_counter()
    grid, a = build(cfg)
    o = cfg.objective
    key = jr.fold_in(jr.PRNGKey(cfg.seed), 0)
    h = P.train_restarts(grid, a, key, o.trials, o.restarts)
    rows = np.linspace(0, o.trials - 1, cfg.outputs.records).astype(int)
    results = {
        "returns": np.asarray(h.returns),
        "cost": np.asarray(h.cost),
        "record_trials": rows + 1,
        "expected_return": _returns_at(grid, a, h.q[:, rows], h.sigma[:, rows]),
    }
    rng = np.random.default_rng(cfg.seed)
    per = [
        allocation(grid, a, P.AgentState(h.q[r, -1], h.sigma[r, -1]), rng)
        for r in range(o.restarts)
    ]
    for k in ("impact", "disc", "impact_shuffled"):
        results[k] = np.concatenate([p[k] for p in per])
    results["restart_of_memory"] = np.concatenate(
        [np.full(p["impact"].size, r) for r, p in enumerate(per)]
    )
    results["J_allocations"] = np.stack(
        [p["J"] for p in per]
    )  # learnt, equal, shuffled
    final_sigma = np.asarray(h.sigma[:, -1])
    results["final_sigma"], results["final_q"] = final_sigma, np.asarray(h.q[:, -1])

    # The price sweep: every lambda, every restart.
    lams = np.asarray(cfg.cost.lams, float)
    agents = eqx.filter_vmap(lambda lam: agent(cfg, lam))(jnp.asarray(lams))
    sweep = eqx.filter_vmap(
        lambda ag: P.train_restarts(grid, ag, key, o.trials, o.restarts)
    )(agents)
    mask = np.asarray(P.memory_mask(grid))
    kl = lc.costs.KLPrecision(cfg.cost.sigma_base)
    sig = np.asarray(sweep.sigma[:, :, -1])  # lams × restarts × s × a
    results |= {
        "lams": lams,
        "lam_J": np.stack(
            [
                _returns_at(
                    grid, agent(cfg, lam), sweep.q[i, :, -1], sweep.sigma[i, :, -1]
                )
                for i, lam in enumerate(lams)
            ]
        ),
        "lam_kl": np.asarray([[float(kl(s[mask])) for s in row] for row in sig]),
        "lam_mean_sigma": sig[..., mask].mean(axis=-1),
    }
    slopes = [slope_ci(p["impact"], p["disc"]) for p in per]
    summary = {
        "slope_per_restart": [s for s, _ in slopes],
        "slope_ci_per_restart": [c for _, c in slopes],
        "J_learnt_equal_shuffled": results["J_allocations"].tolist(),
        "lam_J": results["lam_J"].mean(axis=1).tolist(),
        "lam_kl": results["lam_kl"].mean(axis=1).tolist(),
        "final_expected_return": results["expected_return"][:, -1].tolist(),
        "V_baseline": float(results["J_allocations"][:, 1].mean()),
        "V_control": float(results["J_allocations"][:, 0].mean()),
        "iterations": int(o.trials),
        "wall_time_s": time.perf_counter() - start,
        "solver_steps": None,
        "status": "completed",
        "message": f"{o.trials} trials × {o.restarts} restarts, and per λ",
    }
    return RunOutput(results, summary)


# ------------------------------------------------------------------ findings


def precision_follows_impact(r):
    """Lower end of the 95% interval of the slope of discriminability on
    impact, pooled over restarts, in units of the slope (> 0: the interval
    lies above 0)."""
    slope, ci = slope_ci(r["impact"], r["disc"])
    text = f"slope {slope:.3g} ± {ci:.3g} (95%) over {len(r['impact'])} memories"
    return (slope - ci) / max(abs(slope), 1e-300), text


def beats_equal(r):
    """The smallest gap, over restarts, between the learnt allocation's
    expected return and equal precision's at the same price."""
    J = np.asarray(r["J_allocations"])
    gap = J[:, 0] - J[:, 1]
    text = "learnt − equal precision: " + ", ".join(f"{g:.3g}" for g in gap)
    return float(gap.min()), text


def less_precision_when_costlier(r):
    """Minus the rank correlation of the price λ with the total KL kept."""
    kl = np.asarray(r["lam_kl"]).mean(axis=1)
    rho = fnd.rank_correlation(r["lams"], kl)
    text = "KL " + ", ".join(f"{k:.3g} (λ = {x:g})" for x, k in zip(r["lams"], kl))
    return -float(rho), text


FINDINGS = (
    Finding(
        "precision_follows_impact",
        "Memories that matter more for cumulative reward are kept more "
        "precise: discriminability rises with impact (Patel et al. 2020).",
        precision_follows_impact,
        margin=0.0,
        criterion="95% interval of the slope above 0 (pooled over restarts)",
        negative_controls=(
            ("impact shuffled", lambda r: r | {"impact": r["impact_shuffled"]}),
        ),
    ),
    Finding(
        "allocation_beats_equal_precision",
        "The learnt allocation beats equal precision at the same total cost.",
        beats_equal,
        margin=1.0,
        criterion="expected return above equal precision's by more than 1 "
        "(one step) in every restart",
        negative_controls=(
            (
                "allocation shuffled",
                lambda r: (
                    r | {"J_allocations": np.asarray(r["J_allocations"])[:, [2, 1, 0]]}
                ),
            ),
        ),
    ),
    Finding(
        "less_precision_when_costlier",
        "The dearer precision, the less of it is kept.",
        less_precision_when_costlier,
        margin=0.8,
        criterion="Spearman ρ(λ, total KL) < −0.8",
        negative_controls=(
            ("λ reversed", lambda r: r | {"lams": np.asarray(r["lams"])[::-1]}),
        ),
    ),
)


# ------------------------------------------------------------------- figures


def _band(ax, x, runs, label, **style):
    fig.plotting.seed_band(ax, x, runs, label=label, **style)


def _smooth(x, k: int = 20):
    x = np.asarray(x, float)
    kernel = np.ones(k) / k
    return np.stack([np.convolve(row, kernel, mode="valid") for row in x])


def _learning(r):
    def draw():
        figure, (a, b) = fig.plotting.panel_grid(2, title="Learning on the maze")
        trials = np.arange(1, r["returns"].shape[1] + 1)
        sm = _smooth(r["returns"])
        _band(a, trials[: sm.shape[1]] + 10, sm, "return per trial (20-trial mean)")
        _band(
            a,
            r["record_trials"],
            r["expected_return"],
            "exact expected return",
            color="C3",
        )
        a.axhline(-3.0, **fig.plotting.BOUND_STYLE, label="best return (−3)")
        a.set(xscale="log", xlabel="trial", ylabel="return", title="Return")
        _band(b, trials, r["cost"], "price λ Σ KL")
        b.set(xscale="log", xlabel="trial", ylabel="λ Σ KL", title="Price of precision")
        for ax in (a, b):
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize="small")
        return figure

    return draw


def _allocation(r, cfg):
    def draw():
        figure, axes = fig.plotting.panel_grid(3, columns=3, title="The allocation")
        a, b, c = axes
        imp, d = r["impact"], r["disc"]
        a.scatter(imp, d, s=8, c=r["restart_of_memory"], cmap="viridis", alpha=0.7)
        slope, ci = slope_ci(imp, d)
        xs = np.linspace(imp.min(), imp.max(), 2)
        fit = np.polyfit(imp, d, 1)
        a.plot(
            xs,
            np.polyval(fit, xs),
            color="C3",
            label=f"slope {slope:.3g} ± {ci:.3g} (95%)",
        )
        a.set(
            xlabel="impact: return lost if this memory were imprecise",
            ylabel="discriminability",
            title="Precision follows impact",
        )
        a.legend(fontsize="small")
        grid = P.GridWorld()
        sigma = r["final_sigma"][0]
        best = np.take_along_axis(sigma, r["final_q"][0].argmax(1)[:, None], 1)[:, 0]
        im = b.imshow(grid.as_grid(best), cmap="magma_r")
        figure.colorbar(im, ax=b, label="σ of the best action's memory")
        for label, cell in (("S", grid.cells[grid.start]), ("G", (0, 8))):
            b.text(
                cell[1],
                cell[0],
                label,
                ha="center",
                va="center",
                color="C0",
                fontweight="bold",
            )
        b.set(title="Precision on the maze (restart 1)", xticks=[], yticks=[])
        J = np.asarray(r["J_allocations"])
        x = np.arange(len(J))
        for k, (name, colour) in enumerate(
            (("learnt", "C0"), ("equal precision", "0.6"), ("learnt, shuffled", "C3"))
        ):
            c.bar(x + (k - 1) * 0.27, J[:, k], 0.27, label=name, color=colour)
        c.set(
            xticks=x,
            xticklabels=[str(i + 1) for i in x],
            xlabel="restart",
            ylabel="expected return",
            title="Same price, three allocations",
        )
        c.legend(fontsize="small")
        for ax in (a, c):
            ax.grid(True, alpha=0.3)
        return figure

    return draw


def _lambda(r):
    def draw():
        figure, axes = fig.plotting.panel_grid(
            3, columns=3, title="The price of precision λ"
        )
        lams = r["lams"]
        for ax, key, ylabel in zip(
            axes,
            ("lam_J", "lam_kl", "lam_mean_sigma"),
            ("expected return", "total KL kept", "mean σ of the memories"),
        ):
            x = np.asarray(r[key])
            ax.errorbar(lams, x.mean(1), yerr=x.std(1, ddof=1), marker="o", capsize=3)
            ax.set(xscale="log", xlabel="λ", ylabel=ylabel, title=ylabel)
            ax.grid(True, which="both", alpha=0.3)
        return figure

    return draw


def plot(results, cfg, out_dir: Path) -> list[Path]:
    figures = {
        "learning.png": _learning(results),
        "allocation.png": _allocation(results, cfg),
        "lambda.png": _lambda(results),
    }
    return fig.save(figures, out_dir)


EXPERIMENT = Experiment(
    name="precision-allocation",
    description="Memory precision as a resource (companion work): a tabular agent "
    "allocates the precision of its memories on a grid maze; the price λ swept.",
    default=DEFAULT,
    quick=QUICK,
    build=build,
    run=run,
    plot=plot,
    figures=("learning.png", "allocation.png", "lambda.png"),
    findings=FINDINGS,
    check=check,
)
