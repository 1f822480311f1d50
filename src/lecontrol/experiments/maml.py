r"""MAML as value maximisation: the initial weights are the control (the paper's Sec. 4, App. F.1).

Five binary digit tasks (0-vs-1, 7-vs-1, 8-vs-9, 3-vs-8, 5-vs-3; images
resized to $5\times5$ plus a bias input) share one initialisation
$(W_1(0), W_2(0))$ of a two-layer linear network ($H = 40$). From it, each
task runs its own inner loop of gradient flow; the control (`lc.systems.MAML`
with a `lc.controls.Constant` control) is that initialisation, and
$V = -\int_0^T \frac1K\sum_k L_k\,dt$ ($\gamma = 1$, $\beta = 0$): the average
loss accumulated over the inner loop. The number of inner SGD steps
considered sets the horizon $T = n\alpha$; one-step MAML is $T = \alpha$.

The run optimises the initialisation for a handful of horizons $n$ (Adam,
the paper's Table 2) in one vmapped, sharded computation
(`lc.sweep.optimize_batch`), all from the same random initialisation (the
baseline). Each optimised initialisation is then evaluated on the same window
of `eval_steps` inner steps: its cumulative loss $\int_0^{T_\text{eval}}
\langle L\rangle dt$ and its one-step-ahead loss $\langle L\rangle(\alpha)$. The
paper finds that one-step MAML under-performs multi-step MAML, and that beyond
~180 steps the one-step-ahead loss rises while the cumulative loss keeps
falling.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

import lecontrol as lc

from .. import io, plotting
from ..checkpoint import CheckpointFolder
from .base import (
    Experiment,
    ExperimentConfig,
    RunOutput,
    Setup,
    require,
    require_float,
    require_int,
)
from .common import next_checkpoint
from .single_neuron_sweep import announce, check_values, plot_curves_by_value

NAME = "maml"
DESCRIPTION = (
    "MAML on 5 digit pairs: the initial weights as the control, one-step vs "
    "multi-step horizons."
)


@dataclasses.dataclass(frozen=True)
class MAMLConfig(ExperimentConfig):
    r"""Parameters of `maml` (defaults: the paper's Table 2).

    - `alpha`: inner-loop SGD learning rate $\alpha$; $n$ inner steps span
      $T = n\alpha$ (time in units of $\tau_w = 1$).
    - `pairs`: the binary digit tasks, as consecutive pairs of classes
      (`0, 1, 7, 1` is 0-vs-1 and 7-vs-1).
    - `image_size`: side of the resized images (inputs: its square plus a bias).
    - `mnist_folder`: a folder of MNIST idx files to use instead of the 8×8
      digits that ship with scikit-learn (default `None`: scikit-learn).
    - `hidden`: hidden units $H$; `lam`: L2 regularisation; `tau`: time constant.
    - `init_scale`: standard deviation of the random initialisation every
      optimisation starts from (the baseline), drawn from `seed`.
    - `gamma`, `beta`, `eta`: discount, cost scale (of $\lVert g\rVert^2$)
      and weight of performance of the training objective.
    - `lr`: Adam's learning rate on the initial weights.
    - `iterations`: optimisation iterations (every horizon).
    - `horizons`: the numbers of inner steps considered, one optimisation each;
      1 is one-step MAML.
    - `eval_steps`: inner steps of the window every initialisation is
      evaluated on (0: the largest horizon).
    - `quadrature_intervals`: sub-intervals of $[0, T]$ on which the continuous
      adjoint integrates $\delta V/\delta g$ (the control has no knots).
    - `rtol`, `atol`, `max_steps`: ODE solver tolerances and step budget (the
      inner loops take a few dozen steps).
    - `seed`: the random initialisation and the train/test split of the images.
    """

    alpha: float = 5e-3
    pairs: tuple[int, ...] = (0, 1, 7, 1, 8, 9, 3, 8, 5, 3)
    image_size: int = 5
    mnist_folder: str | None = None
    hidden: int = 40
    lam: float = 0.0
    tau: float = 1.0
    init_scale: float = 0.01
    gamma: float = 1.0
    beta: float = 0.0
    eta: float = 1.0
    lr: float = 5e-3
    iterations: int = 2000
    horizons: tuple[int, ...] = (1, 20, 60, 120, 180, 260, 340)
    eval_steps: int = 0
    quadrature_intervals: int = 16
    rtol: float = 1e-7
    atol: float = 1e-9
    max_steps: int = 4096

    def check(self) -> None:
        require_float(self, "alpha", positive=True)
        require(
            isinstance(self.pairs, tuple)
            and len(self.pairs) >= 2
            and len(self.pairs) % 2 == 0,
            "pairs",
            "must list the classes of each binary task in consecutive pairs",
            self.pairs,
        )
        check_values(self, "pairs", lambda v: v in range(10), "in 0–9")
        for a, b in zip(self.pairs[::2], self.pairs[1::2]):
            require(a != b, "pairs", f"pairs {a}-vs-{b} repeats a class", self.pairs)
        require_int(self, "image_size", minimum=1)
        require_int(self, "hidden", minimum=1)
        require_float(self, "init_scale", positive=True)
        require_float(self, "lr", positive=True)
        require_int(self, "iterations", minimum=1)
        check_values(
            self, "horizons", lambda v: isinstance(v, int) and v >= 1, "(ints) >= 1"
        )
        require_int(self, "eval_steps", minimum=0)
        require_int(self, "quadrature_intervals", minimum=1)
        require_float(self, "rtol", positive=True)
        require_float(self, "atol", nonnegative=True)
        require_int(self, "max_steps", minimum=1)

    @property
    def window(self) -> int:
        """Inner steps of the evaluation window."""
        return self.eval_steps or max(self.horizons)


QUICK = {"iterations": 40, "lr": 0.02, "horizons": (1, 10, 40), "hidden": 20}


def tasks(config: MAMLConfig) -> list[lc.tasks.Digits]:
    """The binary digit tasks of `pairs` (nothing is downloaded)."""
    return [
        lc.tasks.Digits.load(
            classes=(a, b),
            mnist_folder=config.mnist_folder,
            size=config.image_size,
            seed=config.seed,
        )
        for a, b in zip(config.pairs[::2], config.pairs[1::2])
    ]


def system(config: MAMLConfig) -> lc.systems.MAML:
    return lc.systems.MAML(
        tasks(config), hidden=config.hidden, lam=config.lam, tau=config.tau
    )


def problem(config: MAMLConfig, net: lc.systems.MAML, *, evaluation: bool = False):
    """The function `T -> Setup` of one horizon (`lc.sweep`'s `build`).

    With `evaluation`, the objective is the plain cumulative loss
    ($\\gamma = \\eta = 1$, no cost), so that $-V = \\int_0^T\\langle L\\rangle dt$.
    """
    control = lc.controls.Constant(
        shape=net.control_shape, quadrature_intervals=config.quadrature_intervals
    )
    theta0 = net.gaussian_init(config.seed, config.init_scale)
    gamma, beta, eta = (
        (1.0, 0.0, 1.0)
        if evaluation
        else (
            config.gamma,
            config.beta,
            config.eta,
        )
    )

    def build_horizon(T) -> Setup:
        return Setup(
            lc.Problem(
                net,
                control,
                lc.costs.Quadratic(beta=beta),
                lc.Objective(T=T, gamma=gamma, eta=eta),
            ),
            theta0,
        )

    return build_horizon


def build(config: MAMLConfig) -> Setup:
    """The problem of the largest horizon."""
    return problem(config, system(config))(max(config.horizons) * config.alpha)


def _numerics(config: MAMLConfig) -> lc.SolverOptions:
    return lc.SolverOptions(
        rtol=config.rtol, atol=config.atol, max_steps=config.max_steps
    )


def run(
    config: MAMLConfig,
    out_dir: Path,
    progress: bool,
    checkpoints: CheckpointFolder | None = None,
) -> RunOutput:
    """Optimise the initialisation per horizon, then evaluate each on one window."""
    net = system(config)
    horizons = np.asarray(config.horizons, dtype=int)
    announce(progress, len(horizons), config.iterations)
    res = lc.sweep.optimize_batch(
        problem(config, net),
        horizons * config.alpha,
        optimizer=lc.optimizers.Adam(lr=config.lr),
        steps=config.iterations,
        # The configured intervals, not ContinuousAdjoint's default minimum.
        adjoint=lc.ContinuousAdjoint(min_intervals=config.quadrature_intervals),
        options=_numerics(config),
        checkpoint=next_checkpoint(checkpoints),
        progress=progress,
    )
    # Row 0: the random initialisation (baseline); then one row per horizon.
    theta0 = net.gaussian_init(config.seed, config.init_scale)
    inits = tuple(
        np.concatenate([np.asarray(a)[None], b]) for a, b in zip(theta0, res.theta)
    )
    window = config.window
    evaluation = lc.sweep.solve_batch(
        problem(config, net, evaluation=True),
        np.full(len(horizons) + 1, window * config.alpha),
        inits,
        num_times=window + 1,  # one sample per inner step
        options=_numerics(config),
    )
    cumulative = -evaluation.V[:, -1]
    one_step = evaluation.loss[:, 1]
    main = int(np.argmax(horizons))
    results = {
        "horizons": horizons.astype(float),
        "steps": np.arange(window + 1, dtype=float),
        "eval_loss": evaluation.loss,
        "cumulative_loss": cumulative,
        "one_step_loss": one_step,
        "values": res.values,
        "best_value": res.best_value,
        "init_W1": inits[0],
        "init_W2": inits[1],
    }
    summary = {
        "V_baseline": float(res.values[main, 0]),
        "V_control": float(res.best_value[main]),
        "V_gain": float(res.best_value[main] - res.values[main, 0]),
        "iterations": int(config.iterations),
        "wall_time_s": float(res.wall_time),
        "solver_steps": {
            "baseline": int(evaluation.num_steps[0]),
            "control": int(evaluation.num_steps[main + 1]),
        },
        "status": "completed"
        if np.all(res.completed)
        else str(res.status[~res.completed][0]),
        "message": (
            f"optimised the initialisation for {len(horizons)} horizons "
            f"({config.iterations} iterations each) on {res.num_devices} device(s)"
        ),
        "horizon_of_V": int(horizons[main]),
        "eval_steps": int(window),
        "cumulative_loss_baseline": float(cumulative[0]),
        "cumulative_loss": {int(h): float(c) for h, c in zip(horizons, cumulative[1:])},
        "one_step_loss_baseline": float(one_step[0]),
        "one_step_loss": {int(h): float(c) for h, c in zip(horizons, one_step[1:])},
        **maml_findings(horizons, cumulative[1:], one_step[1:]),
    }
    return RunOutput(results, summary)


def maml_findings(horizons, cumulative, one_step) -> dict:
    """The paper's MAML findings (App. F.1, Figs. 3a,b, 6-7), measured (`None` where a horizon is missing).

    - `one_step_underperforms_multi_step`: the one-step initialisation's
      cumulative loss exceeds the best multi-step one's.
    - `best_horizon_cumulative`: the horizon with the lowest cumulative loss.
    - `best_horizon_one_step_ahead`: the horizon with the lowest one-step-ahead
      loss; `one_step_ahead_rises_after`: the largest horizon after which it
      only rises (`None` if it still falls at the last horizon).
    """
    horizons = np.asarray(horizons)
    order = np.argsort(horizons)
    h, cum, one = (
        horizons[order],
        np.asarray(cumulative)[order],
        np.asarray(one_step)[order],
    )
    multi = h > 1
    under = None
    if h[0] == 1 and multi.any():
        under = bool(cum[0] > cum[multi].min())
    rises_after = None
    if one.size >= 2 and one[-1] > one[-2]:
        k = one.size - 1
        while k > 0 and one[k] > one[k - 1]:
            k -= 1
        rises_after = int(h[k])
    return {
        "one_step_underperforms_multi_step": under,
        "best_horizon_cumulative": int(h[int(np.argmin(cum))]),
        "best_horizon_one_step_ahead": int(h[int(np.argmin(one))]),
        "one_step_ahead_rises_after": rises_after,
    }


def plot(results, config: MAMLConfig, out_dir: Path) -> list[Path]:
    """Cumulative and one-step-ahead loss vs steps considered; loss curves."""
    out_dir = Path(out_dir)
    h = results["horizons"]
    xlabel = "inner steps considered when optimising (horizon n)"
    window = int(results["steps"][-1])

    def vs_horizon(field, title, ylabel):
        y = plotting.check_plottable(field, results[field])
        fig = plotting.plot_lines(
            h,
            {"MAML initialisation": y[1:]},
            title=title,
            ylabel=ylabel,
            xlabel=xlabel,
            styles={"MAML initialisation": {**plotting.CONTROL_STYLE, "marker": "o"}},
            hlines=[(float(y[0]), "random initialisation (baseline)")],
        )
        return fig

    figures = {
        "cumulative_loss.png": lambda: vs_horizon(
            "cumulative_loss",
            f"Cumulative loss over {window} inner steps vs steps considered",
            "∫ ⟨L⟩ dt over the evaluation window",
        ),
        "one_step_loss.png": lambda: vs_horizon(
            "one_step_loss",
            "One-step-ahead loss vs steps considered",
            "⟨L⟩ after one inner step",
        ),
        "loss_curves.png": lambda: plot_curves_by_value(
            results["steps"],
            results["eval_loss"][1:],
            h,
            title="Inner-loop loss from each MAML initialisation",
            ylabel="average loss ⟨L⟩ over tasks",
            label="steps considered n",
            log=True,
            xlabel="inner SGD steps",
        ),
        "optimisation.png": lambda: plotting.plot_optimisation(
            results["values"][int(np.argmax(h))],
            baseline=float(results["values"][int(np.argmax(h)), 0]),
        ),
    }
    return [io.save_figure(draw(), out_dir / name) for name, draw in figures.items()]


EXPERIMENT = Experiment(
    name=NAME,
    description=DESCRIPTION,
    config=MAMLConfig,
    quick=QUICK,
    build=build,
    run=run,
    plot=plot,
)

__all__ = ["EXPERIMENT", "MAMLConfig", "build", "maml_findings", "plot", "run"]
