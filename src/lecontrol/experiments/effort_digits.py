r"""Gain modulation on handwritten digits 1 vs 3 (the paper's Sec. 6; Table 5, column "MNIST").

A two-layer linear network ($H = 50$) learns to tell two digit classes apart
from $5\times5$ images plus a bias input (`lc.tasks.Digits`; by default the
8×8 digits that ship inside scikit-learn, or MNIST idx files from
`mnist_folder`). A control scales every weight, $\tilde W_i = (1 + G_i)\circ
W_i$, $G \in [-0.5, 0.5]$, at the cost $\exp(\beta\sum_i\lVert G_i\rVert_F^2) -
1$. The summary reports the findings of every gain experiment
(`gain_modulation`) and the loss on the held-out test images.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

import lecontrol as lc

from ..checkpoint import CheckpointFolder
from .base import Experiment, RunOutput, Setup, require, require_float, require_int
from .gain_modulation import (
    GainConfig,
    check_gain,
    gain_figures,
    gain_setup,
    run_gain,
    save_figures,
)

NAME = "effort-digits"
DESCRIPTION = "Gain modulation of a two-layer network on digits 1 vs 3 (H = 50)."


@dataclasses.dataclass(frozen=True)
class EffortDigitsConfig(GainConfig):
    r"""Parameters of `effort-digits` (defaults: the paper's Table 5, "MNIST").

    All `GainConfig` fields (here $H = 50$), and the data's:

    - `classes`: the two digits (output $+1$ for the first, $-1$ for the second).
    - `mnist_folder`: a folder of MNIST idx files to read instead of
      scikit-learn's digits (`none`: scikit-learn's); `mnist_split`: which
      files (`"t10k"` or `"train"`).
    - `image_size`: side of the resized images (inputs: its square plus a bias).
    - `test_fraction`: share of the images held out as the test set (split
      with `seed`).
    """

    hidden: int = 50
    classes: tuple[int, ...] = (1, 3)
    mnist_folder: str | None = None
    mnist_split: str = "t10k"
    image_size: int = 5
    test_fraction: float = 0.2

    def check(self) -> None:
        check_gain(self)
        require(len(self.classes) == 2, "classes", "must hold two digits", self.classes)
        require_int(self, "image_size", minimum=1)
        require_float(self, "test_fraction", positive=True, at_most=0.9)


QUICK = {
    "hidden": 10,
    "steps": 4000,
    "knots": 31,
    "iterations": 30,
    "record_every": 20,
    "replay_seeds": 2,
}


def task(config: EffortDigitsConfig) -> lc.tasks.Digits:
    """The digit task with its images (for SGD) and statistics."""
    return lc.tasks.Digits.load(
        classes=config.classes,
        mnist_folder=config.mnist_folder,
        mnist_split=config.mnist_split,
        size=config.image_size,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )


def _statistics_only(t: lc.tasks.Digits) -> lc.tasks.Digits:
    # The ODE needs the statistics only; keeping the images (and their integer
    # labels) out of the system keeps them out of the optimiser's pytree.
    return lc.tasks.Digits(t.train, t.test, t.classes)


def system(config: EffortDigitsConfig, data: lc.tasks.Digits | None = None):
    data = task(config) if data is None else data
    return lc.systems.TwoLayerGain(
        _statistics_only(data),
        hidden=config.hidden,
        lam=config.lam,
        tau=config.tau,
        seed=config.seed,
        scale=config.init_scale,
    )


def build(config: EffortDigitsConfig) -> Setup:
    """Task → system → per-weight gains → cost → objective, and the start θ."""
    return gain_setup(config, system(config))


def run(
    config: EffortDigitsConfig,
    out_dir: Path,
    progress: bool,
    checkpoints: CheckpointFolder | None = None,
) -> RunOutput:
    """Baseline vs optimal gains, test loss, and the SGD replay on the images."""
    data = task(config)
    r = run_gain(
        config,
        system(config, data),
        progress,
        replay_data=data,
        checkpoints=checkpoints,
    )
    results, summary = r.results, r.summary
    s = r.setup.system
    test = lc.systems.TwoLayerGain(
        _statistics_only(data).test_task(),
        lam=s.lam,
        tau=s.tau,
        W1_0=s.W1_0,
        W2_0=s.W2_0,
    )
    ts = results["ts"]
    for prefix, tr in (
        ("baseline", r.comparison.baseline),
        ("control", r.comparison.controlled),
    ):
        loss = np.asarray(jax.vmap(test.loss)(tr.ts, tr.w, tr.g))
        results[f"{prefix}_test_loss"] = loss
        summary[f"final_test_loss_{prefix}"] = float(loss[-1])
        summary[f"cumulative_test_loss_{prefix}"] = float(np.trapezoid(loss, ts))
    summary["train_images"] = int(data.x_train.shape[0])
    summary["test_images"] = int(data.x_test.shape[0])
    return RunOutput(results, summary)


def plot(results, config: EffortDigitsConfig, out_dir: Path) -> list[Path]:
    """The gain-modulation panels and the test loss, from the saved arrays."""
    from .. import plotting
    from .gain_modulation import BASE, CTRL, PAIR

    figures = gain_figures(results, config)
    figures["test_loss.png"] = lambda: plotting.plot_lines(
        results["ts"],
        {BASE: results["baseline_test_loss"], CTRL: results["control_test_loss"]},
        title="Expected loss on the held-out test images",
        ylabel="test loss",
        styles=PAIR,
    )
    return save_figures(figures, out_dir)


EXPERIMENT = Experiment(
    name=NAME,
    description=DESCRIPTION,
    config=EffortDigitsConfig,
    quick=QUICK,
    build=build,
    run=run,
    plot=plot,
)

__all__ = ["EXPERIMENT", "EffortDigitsConfig", "build", "plot", "run"]
