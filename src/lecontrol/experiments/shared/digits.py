"""The digit experiments' data: MNIST, or scikit-learn's digits as a stand-in
(docs/systems/two-layer.md, "Handwritten digits").

`effort-digits`, `engagement-attentive`, `engagement-active`,
`engagement-vector`, `category-digits` and `maml` learn from digit images.
Their `task` section holds `TASK`'s keys: `task.dataset` (`"mnist"`: the idx
files of `task.mnist_split` in `task.mnist_folder`, a relative folder looked up
from the current directory, then from the checkout's root,
`lc.tasks.find_mnist`; `"sklearn-digits"`: the 1797 8×8 digits inside
scikit-learn, an offline stand-in that is not MNIST) and `task.size` (the side
of the resized images). `on_digits` runs an experiment's quick variant on the
stand-in and names the data in its summary (`dataset`) and under its figures.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lecontrol as lc

from ...runner import Experiment, RunOutput, require
from . import figures as fig

DATASETS = ("mnist", "sklearn-digits")
TASK = dict(
    dataset="mnist", mnist_folder="../shared/data/mnist", mnist_split="t10k", size=5
)
"""The data keys of a digit experiment's `task` section, with their defaults:
MNIST's 10 000 test-set images from the shared data folder beside the checkout
(the paper estimated its statistics on the 60 000 training images)."""
QUICK = {"task.dataset": "sklearn-digits"}
"""What `on_digits` adds to a quick variant: offline and fast."""
_SETS = {"t10k": "test-set", "train": "training-set"}


def mnist_folder(cfg) -> Path | None:
    """The folder of the MNIST idx files, `None` for the stand-in; the error
    when it is not found says how to fix `task.mnist_folder` or go offline."""
    t = cfg.task
    ok = t.dataset in DATASETS
    require(ok, "task.dataset", f"must be one of {list(DATASETS)}", t.dataset)
    if t.dataset != "mnist":
        return None
    ok = t.mnist_split in lc.tasks.mnist.SPLITS
    require(ok, "task.mnist_split", 'must be "t10k" or "train"', t.mnist_split)
    try:
        return lc.tasks.find_mnist(t.mnist_folder, t.mnist_split)
    except ValueError as e:
        raise ValueError(
            f"`mnist_folder`: {e} Or run on scikit-learn's 8×8 digits, the offline "
            "stand-in for MNIST, with `--set task.dataset=sklearn-digits`."
        ) from None


def load(cfg, classes, **kwargs) -> lc.tasks.Digits:
    """The digit task of `classes` on `task.dataset`, split with `seed`
    (`kwargs`: more arguments of `lc.tasks.Digits.load`)."""
    t = cfg.task
    kwargs |= dict(mnist_split=t.mnist_split, size=t.size, seed=cfg.seed)
    return lc.tasks.Digits.load(classes, mnist_folder=mnist_folder(cfg), **kwargs)


def label(cfg) -> str:
    """The data set in a few words (from the configuration alone)."""
    t, size = cfg.task, f"{cfg.task.size}×{cfg.task.size}"
    if t.dataset == "mnist":
        n = lc.tasks.mnist.SPLITS.get(t.mnist_split, 0)
        where = _SETS.get(t.mnist_split, "")
        return f"MNIST {t.mnist_split} ({n:,} {where} images), resized to {size}"
    if t.dataset == "sklearn-digits":
        stand_in = "1,797 images; offline stand-in, not MNIST"
        return f"scikit-learn 8×8 digits ({stand_in}), resized to {size}"
    return f"{t.dataset}, resized to {size}"


def describe(cfg) -> str:
    """`label`, with where the MNIST files were read and which set the paper used."""
    if cfg.task.dataset != "mnist":
        return label(cfg)
    train = cfg.task.mnist_split == "train"
    paper = "as in the paper" if train else "the paper used the 60,000 training images"
    return f"{label(cfg)}; idx files at {mnist_folder(cfg)}; {paper}"


def on_digits(experiment: Experiment) -> Experiment:
    """`experiment` (whose `task` section holds `TASK`'s keys) with its quick
    variant on the offline stand-in (`QUICK`), the data set in its summary
    (`dataset`, `describe`) and under each of its figures (`label`)."""

    def run(cfg, out_dir, progress, checkpoints=None) -> RunOutput:
        out = experiment.run(cfg, out_dir, progress, checkpoints)
        return RunOutput(out.results, {"dataset": describe(cfg)} | out.summary)

    def plot(results, cfg, out_dir) -> list[Path]:
        with fig.footnote(f"data: {label(cfg)}"):
            return experiment.plot(results, cfg, out_dir)

    quick = {**experiment.quick, **QUICK}
    return dataclasses.replace(experiment, quick=quick, run=run, plot=plot)
