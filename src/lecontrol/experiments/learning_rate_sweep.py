r"""Learning-rate control swept over the discount γ and the cost scale β
(the paper's Table 3, "learning rate (Semantic)"; Fig. 3c,d; Fig. 8).

**Builds:** the `learning-rate` problem (the default point), with
$\gamma \in [0.6, 1]$ (`objective.gammas`) at $\beta = 1$ and
$\beta \in [10^{-3}, 2]$ (`cost.betas`) at $\gamma = 1$; every problem is
optimised in one sharded computation (`lc.sweep.optimize_batch`, one after
another on each device: `optimiser.batch_size` = 1) by L-BFGS-B, each
until its own projected-gradient norm is at most `optimiser.gtol` (the
summary reports the largest; `optimiser.method = "adam"`: the paper's Adam,
as in `learning-rate`). `cost.offset = -1` makes
all learning cost effort (the paper's Fig. 8c,d,g,h).

**Figures:** total control $\int_0^T\rho\,dt$ and value gain against $\gamma$
and $\beta$; $\rho(t)$ and the loss coloured by each value; the default
point's optimisation; the Hamiltonian along each optimum of the $\beta$
sweep, at $\gamma = 1$ (`hamiltonians`).

**Findings:** checked (`shared.sweeps.trend`): more control for larger
$\gamma$ and smaller $\beta$; with costly control (`cost.offset` < 0; on other
runs `not applicable`), `first_levels_only`: as $\beta$ grows fewer levels
of the hierarchy are learned, always the first ones, and some $\beta$ learns
some but not all (App. F.2); measured: `trends`, `gamma_levels_learned`,
`beta_levels_learned` (with the saved per-level losses `beta_level_loss`):
how many levels are learned (final loss at most `LEARNED` = 0.1 of the
initial).
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np

import lecontrol as lc

from ..findings import Finding
from ..runner import Experiment, RunOutput, Setup
from .shared import comparison as cmp, figures as fig, sweeps as sw

DEFAULT = sw.learning_rate_config(
    objective=dict(gammas=sw.grid(np.linspace(0.6, 1.0, 10))),
    cost=dict(betas=sw.grid(np.linspace(1e-3, 2.0, 10))),
    outputs=dict(num_times=201),
    # The 21 points' solves run batched, each storing its dense solution for
    # `max_steps` steps: 4096 took 17 GB and two sweeps side by side ran out of
    # the machine's 24 GB; the default point's solves take 151 steps (baseline)
    # and 156 (optimum).
    solver=dict(max_steps=1024),
    # The points one after another: 28 s against 33 s vmapped, the same optima.
    optimiser=dict(batch_size=1),
)

SWEEPS = (  # (sweep, axis label, log axis)
    ("gamma", "discount γ (per unit time)", False),
    ("beta", "cost scale β", False),
)


def points(cfg):
    """The batch: the default point, then the γ sweep, then the β sweep."""
    default = {"gamma": cfg.objective.gamma, "beta": cfg.cost.beta}
    return lc.sweep.one_at_a_time(
        default, {"gamma": cfg.objective.gammas, "beta": cfg.cost.betas}
    )


def build(cfg) -> Setup:
    """The default point's problem; every sweep point is built once to check it."""
    return sw.build_all(sw.learning_rate_problem(cfg), points(cfg)[0])[0]


def run(cfg, out_dir: Path, progress: bool, checkpoints=None) -> RunOutput:
    """Optimise every point of both sweeps at once; solve baseline and optimum;
    measure the levels' losses of each optimum and of the default baseline."""
    batch, make = points(cfg), sw.learning_rate_problem(cfg)
    opt = cmp.configured_optimizer(cfg, cmp.ADAM_METHODS)
    results, summary, traj = sw.run_sweep(cfg, make, batch, opt, progress, checkpoints)
    task, (W1, W2) = lc.tasks.SemanticHierarchy(cfg.task.levels), traj.w
    n = len(W1) // 2  # rows n: are the optima
    levels = task.level_losses(np.asarray(W2[n:]) @ np.asarray(W1[n:]))
    results |= lc.sweep.split(batch[1], {"level_loss": levels})
    results["default_baseline_level_loss"] = task.level_losses(W2[0] @ W1[0])
    results["cost_offset"] = np.asarray(float(cfg.cost.offset))
    for name in ("gamma", "beta"):
        learned = levels_learned(results[f"{name}_level_loss"]).sum(axis=1)
        summary[f"{name}_levels_learned"] = learned.tolist()
    if cfg.objective.gamma == 1.0:  # the beta sweep is at gamma = 1
        arrays, spread = hamiltonians(cfg, make, results)
        results |= arrays
        summary |= spread
    return RunOutput(results, summary)


def hamiltonians(cfg, make, results) -> tuple[dict, dict]:
    r"""$H(t)$ (`lc.hamiltonian`) along each optimum of the $\beta$ sweep (at
    $\gamma = 1$, where $H$ is constant at an optimum) and along each optimum
    reversed in time (not optimal: the reference), at the saved times:
    `beta_hamiltonian`, `beta_reversed_hamiltonian`, and the summary's
    `hamiltonian_relative_spread` per $\beta$ (the spread of $H$ over that of
    the loss along the optimum, the scale on which $H$ would vary) and
    `reversed_hamiltonian_relative_spread`."""
    ts, opts = results["beta_ts"][0], cmp.options(cfg)
    # Compiled once for every point (called eagerly, each call compiled its
    # solves anew: 82 s of the run's 120 s).
    hamiltonian = eqx.filter_jit(
        lambda problem, theta: lc.hamiltonian(problem, theta, ts=ts, options=opts)
    )
    H, H_reversed = [], []
    for beta, theta in zip(results["beta_values"], results["beta_theta"]):
        problem = make({"gamma": 1.0, "beta": float(beta)}).problem
        H.append(hamiltonian(problem, jnp.asarray(theta)))
        H_reversed.append(hamiltonian(problem, jnp.asarray(theta)[::-1]))
    H, H_reversed = np.asarray(H), np.asarray(H_reversed)
    scale = np.ptp(results["beta_control_loss"], axis=1)
    arrays = {"beta_hamiltonian": H, "beta_reversed_hamiltonian": H_reversed}
    return arrays, {
        "hamiltonian_relative_spread": (np.ptp(H, axis=1) / scale).tolist(),
        "reversed_hamiltonian_relative_spread": (
            np.ptp(H_reversed, axis=1) / scale
        ).tolist(),
    }


LEARNED = 0.1
"""A level is learned if its final loss is at most this fraction of its
initial one. (With costly control a level the optimum gives up stalls part
way: at quick size, `cost.offset = -1`, $\beta = 0.5$, the last level's loss
stays at 0.49 of its start from $t \approx 45$ on, while the learned ones end
below 0.002; a learned level's loss is gone.)"""


def levels_learned(level_loss) -> np.ndarray:
    """Which levels each run learns (`level_loss`: runs × times × levels): those
    whose final loss is at most `LEARNED` times the initial (runs × levels,
    bool)."""
    level_loss = np.asarray(level_loss)
    return level_loss[:, -1] <= LEARNED * level_loss[:, 0]


def costly(r) -> bool:
    """Whether all learning costs effort (`cost.offset` < 0, saved as
    `cost_offset`): the variant `first_levels_only` is about."""
    return float(r["cost_offset"]) < 0


def first_levels_only(r) -> tuple[float, str]:
    r"""The levels given up as control gets costlier: the number of levels
    learned at the smallest $\beta$ minus at the largest, if at every $\beta$
    the learned levels are the first ones, their number never rises with
    $\beta$, and some $\beta$ learns some but not all levels; else 0."""
    order = np.argsort(r["beta_values"])
    betas, learned = r["beta_values"][order], levels_learned(r["beta_level_loss"])
    learned = learned[order]
    counts, levels = learned.sum(axis=1), learned.shape[1]
    first = all(
        np.array_equal(row, np.arange(levels) < n) for row, n in zip(learned, counts)
    )
    fewer = bool(np.all(np.diff(counts) <= 0))
    some = bool(np.any((counts > 0) & (counts < levels)))
    effect = float(counts[0] - counts[-1]) if first and fewer and some else 0.0
    pairs = ", ".join(f"{n} at β = {b:.3g}" for b, n in zip(betas, counts))
    text = (
        f"levels learned (of {levels}): {pairs}; the first levels: {first}, never "
        f"more as β rises: {fewer}, some but not all at some β: {some}"
    )
    return effect, text


def every_level_learned(r):
    """Every run's levels learned (final loss 0)."""
    losses = np.array(r["beta_level_loss"])
    losses[:, -1] = 0.0
    return r | {"beta_level_loss": losses}


FIRST_LEVELS_ONLY = Finding(
    "first_levels_only",
    "With costly control (cost.offset = -1), only the first levels of the "
    "hierarchy are worth learning, and fewer as control costs more (App. F.2, "
    "Fig. 8, last column).",
    first_levels_only,
    margin=0.5,
    criterion="at least one level fewer learned at the largest β than at the "
    "smallest, the learned ones the first, never more as β rises, and some but "
    "not all at some β",
    negative_controls=(
        ("values reversed", lambda r: r | {"beta_values": r["beta_values"][::-1]}),
        ("every level learned", every_level_learned),
    ),
    applies=costly,
)


def plot(results, cfg, out_dir: Path) -> list[Path]:
    """Total control and value gain vs γ and β; ρ(t) and loss coloured by value."""
    curves = [
        ("control", "g", "Optimal learning-rate control ρ(t)", "control ρ(t)"),
        ("loss", "control_loss", "Loss under the optimal ρ(t)", "expected loss ⟨L⟩"),
    ]
    figures = sw.sweep_figures(results, SWEEPS, "ρ", curves)
    if "beta_hamiltonian" in results:
        figures["hamiltonian.png"] = lambda: hamiltonian_figure(results)
    return fig.save(figures, out_dir)


def hamiltonian_figure(results):
    r"""$H(t) - H(0)$ along each optimum of the $\beta$ sweep ($\gamma = 1$),
    and along the optimum reversed in time at the largest $\beta$."""
    from matplotlib import colormaps

    betas, ts = results["beta_values"], results["beta_ts"][0]
    figure, (ax,) = fig.plotting.panel_grid(1, columns=1)
    cmap = colormaps["viridis"]
    for i, (beta, H) in enumerate(zip(betas, results["beta_hamiltonian"])):
        colour = cmap(i / max(len(betas) - 1, 1))
        ax.plot(ts, H - H[0], color=colour, label=f"optimum, β = {beta:.3g}")
    H = results["beta_reversed_hamiltonian"][-1]
    ax.plot(
        ts,
        H - H[0],
        label=f"optimum reversed in time, β = {betas[-1]:.3g} (not optimal)",
        **fig.plotting.REFERENCE_STYLE,
    )
    ax.set(
        title="Hamiltonian along the optima (γ = 1): constant at an optimum",
        xlabel=fig.plotting.TIME_LABEL,
        ylabel="H(t) − H(0)",
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", ncols=2)
    fig.plotting.time_axis(ax)
    return figure


EXPERIMENT = Experiment(
    name="learning-rate-sweep",
    description="Learning-rate control on the semantic hierarchy swept over gamma "
    "and beta, as one vmapped, sharded optimisation.",
    default=DEFAULT,
    # 300 iterations: at the quick size the problem at gamma = 0.8 converges
    # slowly (projected gradient 3.6e-6 after 300, below gtol = 1e-5; more
    # than 60 needed); the others stop within 30.
    quick=sw.LEARNING_RATE_QUICK
    | {
        "optimiser.iterations": 300,
        "objective.gammas": (0.6, 0.8, 1.0),
        "cost.betas": (0.01, 0.5, 2.0),
        "outputs.num_times": 101,
    },
    build=build,
    run=run,
    plot=plot,
    figures=(
        "total_control.png",
        "value_gain.png",
        "optimisation.png",
        "control_gamma.png",
        "loss_gamma.png",
        "control_beta.png",
        "loss_beta.png",
        "hamiltonian.png?",
    ),
    findings=(
        "trends",
        "beta_levels_learned",
        sw.trend(
            "more_control_for_larger_gamma",
            "gamma",
            1,
            "More control for larger γ (Figs. 3c, 8a-d).",
        ),
        sw.trend(
            "less_control_for_larger_beta",
            "beta",
            -1,
            "Less control when it costs more, larger β (Figs. 3d, 8e-h).",
        ),
        FIRST_LEVELS_ONLY,
    ),
    check=lambda cfg: cmp.check_optimiser(cfg, cmp.ADAM_METHODS),
)
