r"""Gain modulation on handwritten digits 1 vs 3 (Sec. 6; Table 5, column "MNIST").

**Builds:** a two-layer linear network ($H = 50$) telling two digit classes
apart from $5\times5$ images plus a bias (`lc.tasks.Digits.load` on
`task.dataset`: MNIST's 10 000 test-set images by default, scikit-learn's 8×8
digits in the quick variant, `shared.digits`), with gains on every weight vs
$G = 0$; the SGD replay samples the training images.
**Figures:** the family's (`shared.gains`) and the test loss.
**Findings:** the family's, and the loss on the held-out test images
(`final_test_loss_*`, `cumulative_test_loss_*`).
"""

import jax
import numpy as np

import lecontrol as lc

from .shared import digits, findings, gains


def task(cfg):
    """The digit task with its images (for SGD) and statistics."""
    t = cfg.task
    return digits.load(cfg, t.classes, test_fraction=t.test_fraction)


def system(cfg, data=None, test=False):
    # Statistics only: the images (and their integer labels) stay out of the
    # system, so out of the optimiser's pytree.
    data = task(cfg) if data is None else data
    stats = lc.tasks.Digits(data.train, data.test, data.classes)
    stats = stats.test_task() if test else stats
    return gains.network(lc.systems.TwoLayerGain, cfg, stats)


def run(cfg, out_dir, progress, checkpoints=None):
    """Baseline vs optimal gains, test loss, and the SGD replay on the images."""
    data = task(cfg)
    out = gains.run_on(cfg, system(cfg, data), progress, checkpoints, data=data)
    test_loss, ts = jax.vmap(system(cfg, data, test=True).loss), out.results["ts"]
    for which in gains.RUNS:
        w, g = (gains.layers(out.results, which, field) for field in "wg")
        loss = out.results[f"{which}_test_loss"] = np.asarray(test_loss(ts, w, g))
        out.summary[f"final_test_loss_{which}"] = float(loss[-1])
        out.summary[f"cumulative_test_loss_{which}"] = findings.integral(ts, loss)
    out.summary["train_images"] = int(data.x_train.shape[0])
    out.summary["test_images"] = int(data.x_test.shape[0])
    return out


EXPERIMENT = digits.on_digits(
    gains.experiment(
        name="effort-digits",
        description="Gain modulation of a two-layer network on digits 1 vs 3 (H = 50).",
        default=gains.defaults(
            dict(classes=(1, 3), test_fraction=0.2) | digits.TASK,
            system=dict(hidden=50),
        ),
        quick={"system.hidden": 10, "objective.steps": 4000, "control.knots": 31}
        | {"optimiser.iterations": 30},
        system=system,
        run=run,
        figures=("test_loss.png",),
        findings=tuple(
            f"{k}_test_loss_{r}" for k in ("final", "cumulative") for r in gains.RUNS
        ),
    )
)
