r"""How linearly separable each pair of digits is (the paper's App. K.4–K.5, Fig. 17).

The paper calls a digit task *easier* when a linear map tells its classes
apart with a smaller loss, and chooses the engagement experiments' pairs
(0 vs 1, 7 vs 1, 8 vs 9) and reads category engagement's order of digits by
this measure.

**Builds:** for every pair $(a, b)$ of digits, the $\pm1$ pair task of
`lc.tasks.Digits` (images resized to $5\times5$, standardised, plus a bias;
the training split of `task.test_fraction`, as the digit experiments use it),
and its loss floor $L^*_{ab} = \tfrac12\operatorname{tr}(\Sigma_y -
\Sigma_{xy}^\top\Sigma_x^{+}\Sigma_{xy})$ (`AbstractTask.linear_loss_floor`: the
least loss any linear map, hence any deep linear network, reaches). A digit's
difficulty is its mean floor against the nine others, $\bar L_a = \frac19
\sum_{b \ne a} L^*_{ab}$; the easier-to-harder order sorts $\bar L$. Nothing is
optimised: the run takes seconds.

**Figures:** `separability.png`: the matrix $L^*_{ab}$ and each digit's
$\bar L_a$ (Fig. 17a,b).

**Findings:** checked: `engagement_pairs_ordered` (the floors of 0 vs 1,
7 vs 1 and 8 vs 9 rise, each by more than 10%; the paper: 0.020, 0.036,
0.055) and `paper_order` (Spearman's $\rho$ between $\bar L$ and the paper's
order 0, 6, 1, 4, 7, 9, 2, 3, 8, 5 exceeds 0.8); measured: the order, the
floors, and the floors of the engagement pairs.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np

import lecontrol as lc

from ..findings import Finding
from ..runner import Experiment, RunOutput, config
from .shared import digits, engagement, figures as fig, findings

PAPER_ORDER = engagement.SEPARABILITY_ORDER
ENGAGEMENT_PAIRS = ((0, 1), (7, 1), (8, 9))
"""The engagement experiments' tasks, easier to harder in the paper (App. K.4)."""

DEFAULT = config(task=dict(test_fraction=0.2) | digits.TASK)


def images(cfg):
    """The raw images, their labels and the largest pixel value of `task.dataset`."""
    folder = digits.mnist_folder(cfg)
    if folder is None:
        from sklearn.datasets import load_digits

        data = load_digits()
        return data.images, data.target, 16.0
    return (*lc.tasks.load_mnist(folder, cfg.task.mnist_split), 255.0)


def floors(cfg, data=None) -> np.ndarray:
    """The $10\\times10$ matrix of pair loss floors $L^*_{ab}$ (zero diagonal)."""
    imgs, labels, top = images(cfg) if data is None else data
    t, out = cfg.task, np.zeros((10, 10))
    kw = dict(max_value=top, size=t.size, test_fraction=t.test_fraction, seed=cfg.seed)
    for a, b in itertools.combinations(range(10), 2):
        task = lc.tasks.Digits.from_images(imgs, labels, (a, b), **kw)
        out[a, b] = out[b, a] = float(task.linear_loss_floor())
    return out


def build(cfg):
    """Check that the data can be read (the run reads it again)."""
    digits.mnist_folder(cfg)


def run(cfg, out_dir, progress, checkpoints=None) -> RunOutput:
    start = time.perf_counter()
    pair = floors(cfg)
    digit = pair.sum(1) / 9
    order = np.argsort(digit, kind="stable")
    engaged = np.array([pair[a, b] for a, b in ENGAGEMENT_PAIRS])
    results = {
        "pair_floor": pair,
        "digit_floor": digit,
        "order": order,
        "engagement_pair_floor": engaged,
        "paper_rank": np.argsort(PAPER_ORDER),
    }
    summary = {
        "V_baseline": None,
        "V_control": None,
        "iterations": 0,
        "wall_time_s": time.perf_counter() - start,
        "solver_steps": 0,
        "status": "completed",
        "message": "loss floors of the 45 digit pairs (nothing to optimise)",
        "order": [int(d) for d in order],
        "paper_order": list(PAPER_ORDER),
        "digit_floor": [float(x) for x in digit],
        "engagement_pair_floor": {
            f"{a}v{b}": float(x) for (a, b), x in zip(ENGAGEMENT_PAIRS, engaged)
        },
    }
    return RunOutput(results, summary)


def pairs_ordered(r) -> tuple[float, str]:
    """$\\min_k L^*_{k+1} / L^*_k - 1$ over the engagement pairs in the paper's order."""
    f = np.asarray(r["engagement_pair_floor"], dtype=float)
    text = ", ".join(f"{a}v{b}: {x:.4g}" for (a, b), x in zip(ENGAGEMENT_PAIRS, f))
    return float(np.min(f[1:] / f[:-1]) - 1), f"loss floors {text}"


def paper_order(r) -> tuple[float, str]:
    """Spearman's $\\rho$ between the digits' floors and their rank in the paper."""
    rho = findings.rank_correlation(r["digit_floor"], r["paper_rank"])
    order = ", ".join(str(int(d)) for d in r["order"])
    return rho, f"measured order {order}; ρ = {rho:.3f} against the paper's"


def _reversed(key):
    return lambda r: dict(r) | {key: np.asarray(r[key])[::-1]}


FINDINGS = (
    Finding(
        "engagement_pairs_ordered",
        "0 vs 1 is easier than 7 vs 1, which is easier than 8 vs 9 (App. K.4).",
        pairs_ordered,
        margin=0.1,
        criterion="each pair's loss floor exceeds the previous pair's by more than 10%",
        negative_controls=(("pairs reversed", _reversed("engagement_pair_floor")),),
    ),
    Finding(
        "paper_order",
        "Digits rank by separability as in the paper: 0, 6, 1, 4, 7, 9, 2, 3, 8, 5 "
        "(App. K.5, Fig. 17b).",
        paper_order,
        margin=0.8,
        criterion="Spearman's ρ between the mean loss floors and the paper's ranks "
        "exceeds 0.8",
        negative_controls=(("floors reversed", _reversed("digit_floor")),),
    ),
)


def plot(results, cfg, out_dir) -> list[Path]:
    return fig.save({"separability.png": lambda: _figure(results)}, out_dir)


def _figure(r):
    import matplotlib.pyplot as plt

    pair, digit = np.asarray(r["pair_floor"]), np.asarray(r["digit_floor"])
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(11, 4.4), layout="constrained", width_ratios=(1.1, 1)
    )
    shown = np.where(np.eye(10, dtype=bool), np.nan, pair)
    image = left.imshow(shown, cmap="viridis")
    middle = 0.5 * (np.nanmin(shown) + np.nanmax(shown))
    for a, b in itertools.product(range(10), repeat=2):
        if a != b:
            ink = "white" if pair[a, b] < middle else "black"
            kw = dict(ha="center", va="center", size=6.5, color=ink)
            left.text(b, a, f"{pair[a, b]:.2f}", **kw)
    figure.colorbar(image, ax=left, label="loss floor L*")
    left.set(xticks=range(10), yticks=range(10), xlabel="digit b", ylabel="digit a")
    left.set_title("Loss floor of a linear map, digit a vs digit b")
    order = np.asarray(r["order"], dtype=int)
    right.bar(range(10), digit[order] / digit.max(), color="C0")
    right.set_xticks(range(10), [str(d) for d in order])
    right.set(xlabel="digit, easier → harder", ylabel="mean loss floor / largest")
    right.set_title("Each digit's mean floor against the others")
    right.grid(True, axis="y", alpha=0.3)
    return figure


EXPERIMENT = digits.on_digits(
    Experiment(
        name="digit-separability",
        description="Linear separability of every pair of digits (Fig. 17): "
        "what makes a digit task easier.",
        default=DEFAULT,
        quick={},
        build=build,
        run=run,
        plot=plot,
        figures=("separability.png",),
        findings=FINDINGS,
    )
)
