r"""The closed-loop optimal learning rate against the open-loop optimum (the
learning-rate companion work; docs/closed-loop.md derives the law).

**Builds:** two learners whose rate $\alpha = 1 + \rho(t)$ scales their whole
learning field (`lc.systems.LearningRate`, $\rho \in [-1, 1]$, initial
weights of standard deviation $10^{-4}$, $H = 40$):

- *one-mode learners*: the one-dimensional `lc.tasks.TwoGaussians`
  ($x \sim \mathcal N(\pm\mu, \sigma^2)$, one mode of strength $\mu$) for each
  $\mu$ of `task.mus`, over $T_1$ = `objective.one_mode_steps` $\times\,\alpha$,
  open loop on `control.one_mode_knots` knots;
- *the paper's learning-rate problem*: the 4-level semantic hierarchy over
  $T$ = `objective.steps` $\times\,\alpha$, on `control.knots` knots,

with the cost $\beta(\rho - \text{offset})^2$ and $\gamma = 1$. The closed loop
is `lc.controllers.ClosedLoopLearningRate`, which sets $\rho$ from the current
performance $P(t)$ and an expected final performance $\hat P_T$:
$(1 + \rho)^2 = (1 + o)^2 + [\eta(\hat P_T - P(t)) - C_\text{min}]/\beta$,
clipped to the bounds.

**Five cases:**

1. *One mode, $\gamma = 1$:* the self-consistent loop (its $\hat P_T$ is the
   final performance it reaches, by bisection) against the open-loop optimum
   of `lc.optimize` (L-BFGS-B to `optimiser.gtol`).
2. *Semantic hierarchy, $\gamma = 1$:* the same comparison.
3. *Over- and under-confidence:* on the one-mode learner $\mu$ =
   `task.confidence_mu` with all learning costly ($C = \beta\alpha^2$,
   `cost.confidence_offset` $= -1$, $\beta$ = `cost.confidence_beta` $= 0.1$:
   the self-consistent rate then starts inside its bounds, at $\alpha = 1.58$,
   while at $\beta = 1$ this mode is not worth learning), so the law is $\alpha =
   \sqrt{\eta(\hat P_T - P)/\beta}$ and learning stops, $\alpha = 0$, once
   $P$ reaches $\hat P_T$), the loop expecting $\hat P_T = P(0) + c\,(P^*_T -
   P(0))$ for each confidence $c$ of `control.confidences` ($c = 1$:
   self-consistent; $c > 1$ over-confident, $c < 1$ under-confident). Measured:
   the effort $\int_0^T C\,dt$, the persistence (the first time $\alpha \le$
   `PERSISTENCE_RATE`, else $T$), the final loss and $V$.
4. *Episodic memory:* one-mode tasks with $\mu$ drawn uniformly from
   [`task.mu_low`, `task.mu_high`]; each past run stores its $\mu$ and its
   self-consistent final performance. For memories of $k$ runs (`task.memory_sizes`,
   `task.draws` random memories each), the loop expecting the memory's recall
   (`lc.controllers.EpisodicMemory`, `task.neighbours` nearest runs) runs the
   tasks $\mu$ = `task.queries`; its regret is $(V^* - V)/\lvert V^*\rvert$
   against the self-consistent loop (the optimum: case 1). The negative
   control is the same memories with their performances shuffled among the
   runs.
5. *Discounting:* the semantic problem at each $\gamma$ of `objective.gammas`
   (and 1): the self-consistent loop's shortfall $(V_\text{open} -
   V_\text{closed})/\lvert V_\text{open}\rvert$ from the open-loop optimum. The law
   assumes $\gamma = 1$.

**Figures:** `one_mode.png` and `semantic.png` (the schedules overlaid, and
the losses), `confidence.png` (the schedules, effort, persistence and $V$
against $c$), `memory.png` (regret against $k$), `discount.png` (shortfall
against $\gamma$, and the schedules), `hamiltonian.png` ($H(t)$ along each
open-loop optimum, `lc.hamiltonian`: constant at $\gamma = 1$, the summary's
`hamiltonian_relative_spread` its spread over the net reward's).

**Findings:** checked: `one_mode_matches_open_loop`,
`semantic_matches_open_loop`, `overconfidence_spends_more`,
`underconfidence_gives_up_early`, `memory_approaches_optimum`,
`memory_close_to_optimal`, `discount_breaks_the_law`; measured: the gaps,
schedule differences, and the numbers behind each figure.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lecontrol as lc

from ..findings import Finding
from ..runner import Experiment, RunOutput, Setup, require
from .shared import comparison as cmp, figures as fig, sweeps as sw

DEFAULT = sw.learning_rate_config(
    task=dict(
        mus=(0.5, 1.0, 2.0),
        sigma=1.0,
        confidence_mu=1.0,
        mu_low=0.5,
        mu_high=2.5,
        memory_sizes=(1, 2, 4, 8, 16),
        draws=8,
        queries=(0.7, 1.1, 1.5, 1.9, 2.3),
        neighbours=1,
    ),
    control=dict(
        one_mode_knots=41,
        confidences=(0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0),
    ),
    cost=dict(confidence_offset=-1.0, confidence_beta=0.1),
    objective=dict(one_mode_steps=4000, gammas=(0.99, 0.95, 0.9)),
    optimiser=dict(gtol=1e-7, iterations=300),
    solver=dict(rtol=1e-9, atol=1e-11, max_steps=16384),
    outputs=dict(num_times=361),
)

QUICK = {
    "control.knots": 61,
    "objective.gammas": (0.95,),
    "task.mus": (0.5, 2.0),
    "task.memory_sizes": (1, 4, 16),
    "task.draws": 4,
    "task.queries": (0.9, 1.7),
    "control.confidences": (0.5, 1.0, 1.5),
    "outputs.num_times": 181,
}
"""Fewer points of each sweep; 61 knots are the fewest at which the open loop
resolves the semantic optimum to the finding's $10^{-4}$."""

PERSISTENCE_RATE = 1e-3
"""The rate $\\alpha$ below which a learner counts as having stopped."""

MATCH = 1e-4
"""Closed and open loop agree when their values differ by less than this,
relative."""


def check(cfg) -> None:
    t = cfg.task
    require(len(t.mus) > 0, "task.mus", "must list at least one mean", t.mus)
    require(t.mu_low < t.mu_high, "task.mu_high", "must exceed task.mu_low", t.mu_high)
    require(
        len(t.memory_sizes) > 1, "task.memory_sizes", "needs two sizes", t.memory_sizes
    )
    require(t.draws > 0, "task.draws", "must be > 0", t.draws)
    require(t.neighbours > 0, "task.neighbours", "must be > 0", t.neighbours)
    require(len(t.queries) > 0, "task.queries", "must list a task", t.queries)
    c = cfg.control.confidences
    require(1.0 in c, "control.confidences", "must include 1 (self-consistent)", c)
    require(
        min(c) < 1.0 < max(c), "control.confidences", "must include c < 1 and c > 1", c
    )
    gammas = cfg.objective.gammas
    require(
        all(0 < g < 1 for g in gammas), "objective.gammas", "must be in (0, 1)", gammas
    )
    require(
        cfg.objective.gamma == 1.0,
        "objective.gamma",
        "must be 1 (the law's)",
        cfg.objective.gamma,
    )


def _system(cfg, task):
    s = cfg.system
    return lc.systems.LearningRate(
        task, hidden=s.hidden, lam=s.lam, tau=s.tau, seed=cfg.seed, scale=s.init_scale
    )


def _control(T: float, knots: int, cfg):
    c = cfg.control
    return lc.controls.PiecewiseLinear(
        jnp.linspace(0.0, T, knots), shape=(), lower=c.lower, upper=c.upper
    )


def one_mode_horizon(cfg) -> float:
    return cfg.objective.one_mode_steps * cfg.objective.alpha


def one_mode(cfg, mu, *, offset=None, beta=None) -> Setup:
    """The one-mode learner of mean `mu` (traceable)."""
    T = one_mode_horizon(cfg)
    system = _system(cfg, lc.tasks.TwoGaussians(mu, cfg.task.sigma))
    control = _control(T, cfg.control.one_mode_knots, cfg)
    offset = cfg.cost.offset if offset is None else offset
    beta = cfg.cost.beta if beta is None else beta
    cost = lc.costs.Quadratic(beta=beta, offset=offset)
    objective = lc.Objective(T=T, gamma=1.0, eta=cfg.objective.eta)
    problem = lc.Problem(system, control, cost, objective)
    return Setup(problem, control.init(cfg.control.init))


def semantic(cfg, gamma=1.0) -> Setup:
    """The paper's learning-rate problem at discount `gamma`."""
    return sw.learning_rate_problem(cfg)(dict(gamma=gamma, beta=cfg.cost.beta))


def build(cfg) -> Setup:
    """The semantic problem (the one-mode problems are built in `run`)."""
    for mu in (
        cfg.task.mus + cfg.task.queries + (cfg.task.mu_low, cfg.task.confidence_mu)
    ):
        one_mode(cfg, mu)
    return semantic(cfg)


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def _loop(target):
    return lc.controllers.ClosedLoopLearningRate(target)


def compare_loops(s: Setup, cfg, ts, progress: bool, what: str) -> dict:
    """Open-loop optimum and self-consistent closed loop of one problem, and
    two references: the base rate ($\\rho = 0$) and a loop expecting a quarter
    of the initial loss less improvement than it reaches (the negative
    controls of the agreement)."""
    opts = cmp.options(cfg)
    _say(progress, f"optimising the open loop ({what})...")
    res = lc.optimize(
        s.problem,
        s.theta0,
        optimizer=lc.optimizers.LBFGSB(),
        steps=cfg.optimiser.iterations,
        gtol=cfg.optimiser.gtol,
        options=opts,
    )
    loop = _loop(0.0).self_consistent(s.problem, options=opts)
    closed = lc.solve(s.problem, loop, ts=ts, options=opts)
    opened = lc.solve(s.problem, res.theta, ts=ts, options=opts)
    base = lc.solve(s.problem, s.problem.control.init(0.0), ts=ts, options=opts)
    P0 = float(-closed.loss[0])
    biased = lc.solve(s.problem, _loop(loop.target + 0.25 * P0), ts=ts, options=opts)
    # H along the open-loop optimum: constant when gamma = 1 (an optimality
    # diagnostic; the controller itself has no costate: lc.hamiltonian refuses it).
    H = lc.hamiltonian(s.problem, res.theta, ts=ts, options=opts)
    return dict(
        open_hamiltonian=H,
        open_relative_spread=jnp.ptp(H) / jnp.ptp(opened.v),
        closed_g=closed.g,
        open_g=opened.g,
        closed_loss=closed.loss,
        open_loss=opened.loss,
        V_closed=closed.V[-1],
        V_open=opened.V[-1],
        V_base=base.V[-1],
        V_biased=biased.V[-1],
        target=loop.target,
        projected_grad_norm=res.projected_grad_norm,
        iterations=res.iterations,
        status=lc.result_name(res.result),
    )


def _stack(rows: list[dict], prefix: str) -> dict[str, np.ndarray]:
    return {
        f"{prefix}_{k}": np.asarray([np.asarray(r[k]) for r in rows])
        for k in rows[0]
        if k != "status"
    }


def confidence(cfg, ts) -> dict[str, np.ndarray]:
    """Case 3: loops expecting $P(0) + c(P^*_T - P(0))$ on the costly one-mode
    learner."""
    c = cfg.cost
    s = one_mode(
        cfg, cfg.task.confidence_mu, offset=c.confidence_offset, beta=c.confidence_beta
    )
    opts, p = cmp.options(cfg), s.problem
    star = _loop(0.0).self_consistent(p, options=opts).target
    P0 = -p.system.loss(0.0, p.system.init_state(), jnp.zeros(()))
    cs = jnp.asarray(cfg.control.confidences)

    def one(c):
        tr = lc.solve(p, _loop(P0 + c * (star - P0)), ts=ts, options=opts)
        cost = jax.vmap(p.cost)(tr.g)
        return tr.g, tr.loss, tr.V[-1], jnp.trapezoid(cost, ts)

    g, loss, V, effort = jax.vmap(one)(cs)
    alpha = 1.0 + np.asarray(g)
    stopped = alpha <= PERSISTENCE_RATE
    first = np.where(stopped.any(axis=1), stopped.argmax(axis=1), len(ts) - 1)
    return dict(
        confidences=np.asarray(cs),
        confidence_g=np.asarray(g),
        confidence_loss=np.asarray(loss),
        confidence_V=np.asarray(V),
        confidence_effort=np.asarray(effort),
        confidence_persistence=np.asarray(ts)[first],
        confidence_T=np.asarray(ts[-1]),
        confidence_target=np.asarray(star),
        confidence_P0=np.asarray(P0),
    )


def memory(cfg, progress: bool) -> dict[str, np.ndarray]:
    """Case 4: regret of memory-driven loops against the self-consistent one."""
    t, opts = cfg.task, cmp.options(cfg)
    sizes, draws = np.asarray(t.memory_sizes), t.draws
    rng = np.random.default_rng(cfg.seed)
    pool = rng.uniform(t.mu_low, t.mu_high, size=(draws, sizes.max()))
    queries = jnp.asarray(t.queries)

    def reached(mu):  # the self-consistent final performance of task mu
        return (
            _loop(0.0).self_consistent(one_mode(cfg, mu).problem, options=opts).target
        )

    def value(mu, target):
        return lc.value(one_mode(cfg, mu).problem, _loop(target), options=opts)

    values = jax.jit(jax.vmap(value))
    _say(progress, f"self-consistent runs of {pool.size + len(t.queries)} tasks...")
    stored = np.asarray(jax.vmap(jax.vmap(reached))(jnp.asarray(pool)))
    best = jax.vmap(reached)(queries)
    V_best = values(queries, best)
    shuffled = np.stack([rng.permutation(row) for row in stored])

    def regret(performances):
        out = np.empty((draws, len(sizes)))
        for i in range(draws):
            for j, k in enumerate(sizes):
                m = lc.controllers.EpisodicMemory(
                    pool[i, :k], performances[i, :k], neighbours=t.neighbours
                )
                targets = jax.vmap(m.recall)(queries)
                V = values(queries, targets)
                out[i, j] = float(jnp.mean((V_best - V) / jnp.abs(V_best)))
        return out

    _say(progress, "memory-driven runs...")
    return dict(
        memory_sizes=sizes,
        memory_pool=pool,
        memory_performances=stored,
        memory_queries=np.asarray(queries),
        memory_query_targets=np.asarray(best),
        memory_regret=regret(stored),
        memory_shuffled_regret=regret(shuffled),
    )


def discount(cfg, ts, progress: bool, at_one: dict) -> dict[str, np.ndarray]:
    """Case 5: the semantic problem at each $\\gamma$ < 1 (and the $\\gamma = 1$
    comparison of case 2)."""
    rows = [at_one]
    for gamma in cfg.objective.gammas:
        rows.append(
            compare_loops(semantic(cfg, gamma), cfg, ts, progress, f"γ = {gamma}")
        )
    out = _stack(rows, "gamma") | {"gamma_status": [r["status"] for r in rows]}
    out["gammas"] = np.asarray((1.0, *cfg.objective.gammas))
    V_open, V_closed = out["gamma_V_open"], out["gamma_V_closed"]
    out["gamma_shortfall"] = (V_open - V_closed) / np.abs(V_open)
    return out


def run(cfg, out_dir: Path, progress: bool, checkpoints=None) -> RunOutput:
    """The five cases (module docstring)."""
    start, n = time.perf_counter(), cfg.outputs.num_times
    ts1 = jnp.linspace(0.0, one_mode_horizon(cfg), n)
    ts = jnp.linspace(0.0, cmp.horizon(cfg), n)
    results: dict[str, np.ndarray] = {
        "one_mode_ts": np.asarray(ts1),
        "ts": np.asarray(ts),
    }
    rows = [
        compare_loops(one_mode(cfg, mu), cfg, ts1, progress, f"one mode, μ = {mu}")
        for mu in cfg.task.mus
    ]
    results |= _stack(rows, "one_mode") | {"mus": np.asarray(cfg.task.mus)}
    at_one = compare_loops(semantic(cfg), cfg, ts, progress, "semantic, γ = 1")
    results |= _stack([at_one], "semantic")
    results |= discount(cfg, ts, progress, at_one)
    gamma_rows = [{"status": x} for x in results.pop("gamma_status")]
    results |= confidence(cfg, ts1)
    results |= memory(cfg, progress)
    statuses = [r["status"] for r in rows] + [x["status"] for x in gamma_rows]
    summary = {
        "one_mode_gap": _gaps(results, "one_mode").tolist(),
        "semantic_gap": float(_gaps(results, "semantic")[0]),
        "one_mode_max_rho_difference": _rho_gaps(results, "one_mode").tolist(),
        "semantic_max_rho_difference": float(_rho_gaps(results, "semantic")[0]),
        "hamiltonian_relative_spread": {
            "one_mode": results["one_mode_open_relative_spread"].tolist(),
            "gamma": dict(
                zip(
                    map(str, results["gammas"]),
                    results["gamma_open_relative_spread"].tolist(),
                )
            ),
        },
        "gamma_shortfall": dict(
            zip(map(str, results["gammas"]), results["gamma_shortfall"].tolist())
        ),
        "confidence_effort": results["confidence_effort"].tolist(),
        "confidence_persistence": results["confidence_persistence"].tolist(),
        "memory_regret": results["memory_regret"].mean(axis=0).tolist(),
        "memory_shuffled_regret": results["memory_shuffled_regret"]
        .mean(axis=0)
        .tolist(),
        "projected_grad_norm": float(
            max(
                results["one_mode_projected_grad_norm"].max(),
                results["gamma_projected_grad_norm"].max(),
            )
        ),
        "gtol": cfg.optimiser.gtol,
        "optimiser": repr(lc.optimizers.LBFGSB()),
        "statuses": statuses,
        "status": next((x for x in statuses if x != "converged"), "converged"),
        "V_baseline": float(results["semantic_V_base"][0]),
        "V_control": float(results["semantic_V_closed"][0]),
        "iterations": int(
            results["one_mode_iterations"].sum() + results["gamma_iterations"].sum()
        ),
        "wall_time_s": time.perf_counter() - start,
        "solver_steps": None,
        "message": "open-loop optima by L-BFGS-B: " + ", ".join(statuses),
    }
    return RunOutput(results, summary)


def _gaps(r, prefix: str) -> np.ndarray:
    """$(V_\\text{closed} - V_\\text{open})/\\lvert V_\\text{open}\\rvert$."""
    V_open = np.asarray(r[f"{prefix}_V_open"])
    return (np.asarray(r[f"{prefix}_V_closed"]) - V_open) / np.abs(V_open)


def _rho_gaps(r, prefix: str) -> np.ndarray:
    diff = np.abs(
        np.asarray(r[f"{prefix}_closed_g"]) - np.asarray(r[f"{prefix}_open_g"])
    )
    return diff.reshape(diff.shape[0], -1).max(axis=1)


# ------------------------------------------------------------------ findings


def _swap(r, into: str, source: str) -> dict:
    out = dict(r)
    out[into] = r[source]
    return out


def _agreement(prefix: str):
    """Orders of magnitude by which the worst relative gap in V between the
    closed and the open loop lies below 1 (the claim: above 4, i.e. below
    `MATCH`)."""

    def measure(r):
        gaps = _gaps(r, prefix)
        worst = float(np.max(np.abs(gaps)))
        rho = _rho_gaps(r, prefix)
        text = (
            "(V_closed − V_open)/|V_open| = "
            + ", ".join(f"{g:.2g}" for g in gaps)
            + "; max |ρ_closed − ρ_open| = "
            + ", ".join(f"{x:.2g}" for x in rho)
        )
        return -np.log10(max(worst, 1e-300)), text

    return measure


def _as_closed(source: str, prefix: str):
    return (source, lambda r: _swap(r, f"{prefix}_V_closed", f"{prefix}_V_{source}"))


def _at(r, c: float, key: str) -> float:
    cs = np.asarray(r["confidences"])
    return float(np.asarray(r[key])[np.argmin(np.abs(cs - c))])


def overconfidence_spends_more(r):
    """Relative rise of the effort $\\int C\\,dt$ from $c = 1$ to the most
    over-confident loop; 0 unless that loop also persists at least as long."""
    cs = np.asarray(r["confidences"])
    top = float(cs.max())
    e1, e2 = _at(r, 1.0, "confidence_effort"), _at(r, top, "confidence_effort")
    p1, p2 = (
        _at(r, 1.0, "confidence_persistence"),
        _at(r, top, "confidence_persistence"),
    )
    rise = e2 / e1 - 1.0 if p2 >= p1 else 0.0
    text = (
        f"effort {e1:.4g} at c = 1, {e2:.4g} at c = {top:g}; learning until "
        f"t = {p1:.4g} and {p2:.4g} (T = {float(r['confidence_T']):.4g})"
    )
    return rise, text


def underconfidence_gives_up_early(r):
    """How much earlier, as a fraction of $T$, the most under-confident loop
    stops learning than the self-consistent one."""
    cs = np.asarray(r["confidences"])
    low = float(cs.min())
    p1, p2 = (
        _at(r, 1.0, "confidence_persistence"),
        _at(r, low, "confidence_persistence"),
    )
    L = np.asarray(r["confidence_loss"])[:, -1]
    T = float(r["confidence_T"])
    text = (
        f"α falls to {PERSISTENCE_RATE:g} at t = {p2:.4g} for c = {low:g} and at "
        f"t = {p1:.4g} for c = 1 (T = {T:.4g}); final loss "
        f"{L[np.argmin(np.abs(cs - low))]:.3g} against {L[np.argmin(np.abs(cs - 1))]:.3g}"
    )
    return (p1 - p2) / T, text


def _confidence_reversed(r):
    """The confidences' runs in the opposite order: over- and under-confident
    loops swapped."""
    out = dict(r)
    for key in ("confidence_effort", "confidence_persistence", "confidence_loss"):
        out[key] = np.asarray(r[key])[::-1]
    return out


def memory_approaches_optimum(r):
    """$\\log_{10}$ of the mean regret with the smallest memory over that with
    the largest."""
    regret = np.asarray(r["memory_regret"]).mean(axis=0)
    sizes = np.asarray(r["memory_sizes"])
    text = "mean regret " + ", ".join(
        f"{x:.2g} (k = {k})" for k, x in zip(sizes, regret)
    )
    return float(np.log10(regret[0] / max(regret[-1], 1e-300))), text


def memory_close_to_optimal(r):
    """Orders of magnitude by which the largest memory's mean regret lies
    below 1."""
    regret = np.asarray(r["memory_regret"]).mean(axis=0)
    worst = np.asarray(r["memory_regret"])[:, -1].max()
    text = (
        f"with k = {int(np.asarray(r['memory_sizes'])[-1])} past runs: mean "
        f"regret {regret[-1]:.2g}, worst memory {worst:.2g}"
    )
    return float(-np.log10(max(regret[-1], 1e-300))), text


SHUFFLED = ("shuffled", lambda r: _swap(r, "memory_regret", "memory_shuffled_regret"))


def discount_breaks_the_law(r):
    """The shortfall at the smallest $\\gamma$ (relative), 0 unless it grows
    as $\\gamma$ falls and exceeds the shortfall at $\\gamma = 1$."""
    order = np.argsort(np.asarray(r["gammas"]))[::-1]  # gamma = 1 first
    short = np.asarray(r["gamma_shortfall"])[order]
    gammas = np.asarray(r["gammas"])[order]
    grows = bool(np.all(np.diff(short) > 0))
    text = "shortfall " + ", ".join(
        f"{x:.2g} (γ = {g:g})" for g, x in zip(gammas, short)
    )
    return float(short[-1]) if grows else 0.0, text


def _gamma_reversed(r):
    out = dict(r)
    out["gamma_shortfall"] = np.asarray(r["gamma_shortfall"])[::-1]
    return out


FINDINGS = (
    Finding(
        "one_mode_matches_open_loop",
        "For one-mode learners with γ = 1, the closed-loop schedule reaches the "
        "value of the numerically optimised open-loop schedule (companion work).",
        _agreement("one_mode"),
        margin=4.0,
        criterion="|V_closed − V_open|/|V_open| < 1e-4 for every μ (effect: "
        "−log10 of the worst gap)",
        negative_controls=(
            _as_closed("base", "one_mode"),
            _as_closed("biased", "one_mode"),
        ),
    ),
    Finding(
        "semantic_matches_open_loop",
        "On the paper's learning-rate problem (semantic hierarchy, γ = 1) the "
        "closed-loop schedule reaches the open-loop optimum's value.",
        _agreement("semantic"),
        margin=4.0,
        criterion="|V_closed − V_open|/|V_open| < 1e-4 (effect: −log10 of the gap)",
        negative_controls=(
            _as_closed("base", "semantic"),
            _as_closed("biased", "semantic"),
        ),
    ),
    Finding(
        "overconfidence_spends_more",
        "Over-confidence (expecting more than can be reached) makes the learner "
        "spend more effort and persist at least as long.",
        overconfidence_spends_more,
        margin=0.1,
        criterion="effort at the largest c > 1.1 × effort at c = 1, persisting as long",
        negative_controls=(("reversed confidences", _confidence_reversed),),
    ),
    Finding(
        "underconfidence_gives_up_early",
        "Under-confidence makes the learner give up early: α reaches 0 when "
        "P(t) reaches the expected final performance.",
        underconfidence_gives_up_early,
        margin=0.1,
        criterion="the least confident loop stops learning more than 0.1 T "
        "before the self-consistent one",
        negative_controls=(("reversed confidences", _confidence_reversed),),
    ),
    Finding(
        "memory_approaches_optimum",
        "An episodic memory of past runs on related tasks brings the "
        "closed-loop learner closer to the optimum as it grows.",
        memory_approaches_optimum,
        margin=1.0,
        criterion="mean regret with the largest memory 10× below the smallest's",
        negative_controls=(SHUFFLED,),
    ),
    Finding(
        "memory_close_to_optimal",
        "An episodic memory of a few past runs comes close to optimal.",
        memory_close_to_optimal,
        margin=3.0,
        criterion="mean regret with the largest memory below 1e-3 of |V*|",
        negative_controls=(SHUFFLED,),
    ),
    Finding(
        "discount_breaks_the_law",
        "With γ < 1 the law is an approximation: the closed loop falls short of "
        "the open-loop optimum, more so the stronger the discount.",
        discount_breaks_the_law,
        margin=1e-3,
        criterion="shortfall grows as γ falls and exceeds 1e-3 of |V| at the "
        "smallest γ",
        negative_controls=(("reversed discounts", _gamma_reversed),),
    ),
)


# ------------------------------------------------------------------- figures


def _overlay(ax, ts, closed, opened, labels, title, ylabel):
    """Closed loops (solid) and open-loop optima (dashed), one colour each."""
    for i, label in enumerate(labels):
        ax.plot(
            ts, closed[i], color=f"C{i}", linewidth=2.0, label=f"closed loop, {label}"
        )
        ax.plot(
            ts,
            opened[i],
            color="black",
            linestyle="--",
            linewidth=1.0,
            label="open-loop optimum (L-BFGS-B)" if i == 0 else None,
        )
    ax.set(title=title, xlabel=fig.plotting.TIME_LABEL, ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")


def _comparison_figure(r, prefix, ts, labels, title):
    def draw():
        figure, (a, b) = fig.plotting.panel_grid(2, title=title)
        _overlay(
            a,
            ts,
            r[f"{prefix}_closed_g"],
            r[f"{prefix}_open_g"],
            labels,
            "Learning-rate control ρ(t), α = 1 + ρ",
            "control ρ(t)",
        )
        _overlay(
            b,
            ts,
            r[f"{prefix}_closed_loss"],
            r[f"{prefix}_open_loss"],
            labels,
            "Expected loss ⟨L⟩(t)",
            "expected loss ⟨L⟩",
        )
        for ax in (a, b):
            fig.plotting.time_axis(ax)
        return figure

    return draw


def _confidence_figure(r, cfg):
    def draw():
        figure, axes = fig.plotting.panel_grid(
            4,
            title="Over- and under-confidence: the loop expects "
            "P̂_T = P(0) + c (P*_T − P(0)); c = 1 is self-consistent",
        )
        cs, ts = np.asarray(r["confidences"]), r["one_mode_ts"]
        cmap = fig.plotting.plt.get_cmap("coolwarm")
        norm = fig.plotting.plt.Normalize(cs.min(), cs.max())
        for c, g, L in zip(cs, r["confidence_g"], r["confidence_loss"]):
            colour = "black" if c == 1 else cmap(norm(c))  # self-consistent
            style = dict(color=colour, linewidth=2.2 if c == 1 else 1.3)
            axes[0].plot(ts, 1.0 + g, label=f"c = {c:g}", **style)
            axes[1].plot(ts, L, label=f"c = {c:g}", **style)
        axes[0].set(title="Rate α(t) = 1 + ρ(t)", ylabel="rate α(t)")
        axes[1].set(title="Expected loss ⟨L⟩(t)", ylabel="expected loss ⟨L⟩")
        for ax in axes[:2]:
            ax.set_xlabel(fig.plotting.TIME_LABEL)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize="small", ncols=2)
        T = float(r["confidence_T"])
        for ax, key, title, ylabel in (
            (axes[2], "confidence_effort", "Effort spent", "effort ∫ C(ρ) dt"),
            (
                axes[3],
                "confidence_persistence",
                "Persistence",
                f"time α falls to {PERSISTENCE_RATE:g}",
            ),
        ):
            ax.plot(cs, r[key], "o-", color="C0")
            ax.axvline(
                1.0, **fig.plotting.REFERENCE_STYLE, label="self-consistent (c = 1)"
            )
            if key == "confidence_persistence":
                ax.axhline(T, **fig.plotting.BOUND_STYLE, label="horizon T")
            ax.set(title=title, xlabel="confidence c", ylabel=ylabel)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize="small")
        return figure

    return draw


def _memory_figure(r):
    def draw():
        figure, (ax,) = fig.plotting.panel_grid(
            1, title="Episodic memory: regret of the recalled expectation"
        )
        k = np.asarray(r["memory_sizes"])
        for key, label, style in (
            ("memory_regret", "memory of past runs", fig.plotting.CONTROL_STYLE),
            (
                "memory_shuffled_regret",
                "performances shuffled (negative control)",
                fig.plotting.BASELINE_STYLE,
            ),
        ):
            x = np.maximum(np.asarray(r[key]), 1e-16)
            ax.plot(k, x.mean(axis=0), marker="o", label=f"{label}: mean", **style)
            for row in x:  # each random memory
                ax.plot(k, row, ".", color=style["color"], alpha=0.5)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="past runs k in the memory",
            ylabel="regret (V* − V)/|V*|",
            title=f"{len(r['memory_regret'])} random memories (dots); tasks μ = "
            + ", ".join(f"{m:g}" for m in r["memory_queries"]),
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small", loc="lower left")
        return figure

    return draw


def _discount_figure(r):
    def draw():
        figure, (a, b) = fig.plotting.panel_grid(
            2, title="Discounting: the law assumes γ = 1"
        )
        g = np.asarray(r["gammas"])
        short = np.maximum(np.abs(np.asarray(r["gamma_shortfall"])), 1e-16)
        order = np.argsort(g)
        a.plot(g[order], short[order], "o-", color="C0")
        a.set(
            yscale="log",
            xlabel="discount γ (per unit time)",
            ylabel="|V_open − V_closed| / |V_open|",
            title="Shortfall of the closed loop from the open-loop optimum",
        )
        a.axhline(
            MATCH,
            **fig.plotting.BOUND_STYLE,
            label=f"{MATCH:g}: agreement criterion at γ = 1",
        )
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize="small")
        # The law does not depend on gamma: one closed loop for every gamma.
        ts = r["ts"]
        b.plot(
            ts,
            r["gamma_closed_g"][0],
            label="closed loop (every γ)",
            **fig.plotting.CONTROL_STYLE,
        )
        for i, x in enumerate(g):
            b.plot(
                ts,
                r["gamma_open_g"][i],
                color=f"C{i + 1}",
                linestyle="--",
                label=f"open-loop optimum, γ = {x:g}",
            )
        b.set(
            title="Control ρ(t)", xlabel=fig.plotting.TIME_LABEL, ylabel="control ρ(t)"
        )
        b.grid(True, alpha=0.3)
        b.legend(fontsize="small")
        fig.plotting.time_axis(b)
        return figure

    return draw


def _hamiltonian_figure(r):
    def draw():
        figure, (a, b) = fig.plotting.panel_grid(
            2, title="Hamiltonian along the open-loop optima: constant when γ = 1"
        )
        for ax, prefix, ts, labels in (
            (a, "one_mode", r["one_mode_ts"], [f"μ = {m:g}" for m in r["mus"]]),
            (b, "gamma", r["ts"], [f"semantic, γ = {g:g}" for g in r["gammas"]]),
        ):
            for i, (H, spread) in enumerate(
                zip(
                    r[f"{prefix}_open_hamiltonian"], r[f"{prefix}_open_relative_spread"]
                )
            ):
                ax.plot(
                    ts,
                    H - H[0],
                    color=f"C{i}",
                    label=f"{labels[i]} (spread {spread:.1e} of v's)",
                )
            ax.set(
                xlabel=fig.plotting.TIME_LABEL,
                ylabel="H(t) − H(0)",
                title="one-mode learners"
                if prefix == "one_mode"
                else "semantic hierarchy",
            )
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize="small")
            fig.plotting.time_axis(ax)
        return figure

    return draw


def plot(results, cfg, out_dir: Path) -> list[Path]:
    r = results
    mus = [f"μ = {m:g}" for m in r["mus"]]
    figures = {
        "one_mode.png": _comparison_figure(
            r,
            "one_mode",
            r["one_mode_ts"],
            mus,
            "One-mode learners (γ = 1): closed loop against open-loop optimum",
        ),
        "semantic.png": _comparison_figure(
            r,
            "semantic",
            r["ts"],
            ["semantic hierarchy"],
            "Semantic hierarchy (γ = 1): closed loop against open-loop optimum",
        ),
        "confidence.png": _confidence_figure(r, cfg),
        "memory.png": _memory_figure(r),
        "discount.png": _discount_figure(r),
        "hamiltonian.png": _hamiltonian_figure(r),
    }
    return fig.save(figures, out_dir)


EXPERIMENT = Experiment(
    name="lr-closed-loop",
    description="The closed-loop optimal learning rate (companion work) against "
    "the open-loop optimum: one-mode learners, the semantic hierarchy, "
    "confidence, episodic memory, discounting.",
    default=DEFAULT,
    quick=QUICK,
    build=build,
    run=run,
    plot=plot,
    figures=(
        "one_mode.png",
        "semantic.png",
        "confidence.png",
        "memory.png",
        "discount.png",
        "hamiltonian.png",
    ),
    findings=(
        "one_mode_gap",
        "semantic_gap",
        "one_mode_max_rho_difference",
        "semantic_max_rho_difference",
        "gamma_shortfall",
        "confidence_effort",
        "confidence_persistence",
        "memory_regret",
        "memory_shuffled_regret",
        "hamiltonian_relative_spread",
        *FINDINGS,
    ),
    check=check,
)
