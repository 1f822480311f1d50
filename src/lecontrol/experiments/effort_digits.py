r"""Gain modulation on handwritten digits 1 vs 3 (the paper's Sec. 6; Table 5, column "MNIST").

**Builds:** a two-layer linear network ($H = 50$) learning to tell two digit
classes apart from $5\times5$ images plus a bias input (`lc.tasks.Digits`; by
default the 8×8 digits that ship inside scikit-learn, or MNIST idx files from
`task.mnist_folder`), with gains on every weight (`shared.gains`), compared
with $G = 0$; the SGD replay samples the training images.

**Figures:** the family's, and the loss on the held-out test images
(`test_loss.png`).

**Findings:** the family's, and the test loss of both runs
(`final_test_loss_*`, `cumulative_test_loss_*`).
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

import lecontrol as lc

from .base import RunOutput, Setup
from .shared import findings, gains
from .shared.figures import plotting

DEFAULT = gains.defaults(
    dict(
        classes=(1, 3), mnist_folder="", mnist_split="t10k", size=5, test_fraction=0.2
    ),
    system=dict(hidden=50),
)


def task(cfg) -> lc.tasks.Digits:
    """The digit task with its images (for SGD) and statistics."""
    t = cfg.task
    return lc.tasks.Digits.load(
        classes=t.classes,
        mnist_folder=t.mnist_folder or None,
        mnist_split=t.mnist_split,
        size=t.size,
        test_fraction=t.test_fraction,
        seed=cfg.seed,
    )


def system(cfg, data: lc.tasks.Digits, test: bool = False) -> lc.systems.TwoLayerGain:
    # The ODE needs the statistics only; keeping the images (and their integer
    # labels) out of the system keeps them out of the optimiser's pytree.
    stats = lc.tasks.Digits(data.train, data.test, data.classes)
    return gains.network(
        lc.systems.TwoLayerGain, cfg, stats.test_task() if test else stats
    )


def build(cfg) -> Setup:
    """Task → system → per-weight gains → cost → objective, and the start θ."""
    return gains.setup(cfg, system(cfg, task(cfg)))


def run(cfg, out_dir: Path, progress: bool, checkpoints=None) -> RunOutput:
    """Baseline vs optimal gains, test loss, and the SGD replay on the images."""
    data = task(cfg)
    out = gains.run(cfg, system(cfg, data), progress, checkpoints, data=data)
    (results, summary), ts = out, out.results["ts"]
    test_loss = jax.vmap(system(cfg, data, test=True).loss)
    for run in gains.RUNS:
        w, g = (gains.layers(results, run, field) for field in ("w", "g"))
        loss = results[f"{run}_test_loss"] = np.asarray(test_loss(ts, w, g))
        summary[f"final_test_loss_{run}"] = float(loss[-1])
        summary[f"cumulative_test_loss_{run}"] = findings.integral(ts, loss)
    summary["train_images"] = int(data.x_train.shape[0])
    summary["test_images"] = int(data.x_test.shape[0])
    return out


def plot(results, cfg, out_dir: Path) -> list[Path]:
    """The family's panels and the test loss, from the saved arrays."""
    test_loss = lambda: plotting.plot_lines(  # noqa: E731
        results["ts"],
        {
            label: results[f"{run}_test_loss"]
            for label, run in zip(gains.PAIR, gains.RUNS)
        },
        title="Expected loss on the held-out test images",
        ylabel="test loss",
        styles=gains.PAIR,
    )
    return gains.plot(results, cfg, out_dir, {"test_loss.png": test_loss})


EXPERIMENT = gains.experiment(
    name="effort-digits",
    description="Gain modulation of a two-layer network on digits 1 vs 3 (H = 50).",
    default=DEFAULT,
    quick={
        "system.hidden": 10,
        "objective.steps": 4000,
        "control.knots": 31,
        "optimiser.iterations": 30,
        "outputs.record_every": 20,
        "outputs.replay_seeds": 2,
    },
    build=build,
    run=run,
    plot=plot,
    figures=("test_loss.png",),
    findings=tuple(
        f"{k}_test_loss_{r}" for k in ("final", "cumulative") for r in gains.RUNS
    ),
)
