r"""Category engagement through gains in a neuron basis (the paper's App. H.1.1
and K.5, Fig. 18).

**Builds:** the gain family's two-layer linear network (`shared.gains`) on a
classification task, `task.data`: the 10 MNIST digits (`"digits"`, one output
per class, `task.classes`, read as `effort-digits` reads them; scikit-learn's
digits in the quick variant) or the semantic hierarchy (`"semantic"`,
`task.levels`, one output per feature). The control is restricted to a
neuron basis on the output layer: $G_1 = 0$ and $G_2(t)$ has row $c$ equal to
one coefficient $\nu_c(t)$ (`control.basis = "neuron"`), so $\nu_c$ scales
output neuron $c$, both its response and its error signal, at the cost
$C = \exp(\beta\lVert G_2\rVert_F^2) - 1$; vs $G = 0$.

**Figures:** the family's, and $\nu_c(t)$ per class or per level of the
hierarchy (`category_gains.png`).

**Findings:** the paper's: the order in which the categories are engaged is
similar to category engagement's (Fig. 18c,d), and the control improves the
loss, less than engagement does (Fig. 18a,b). Checked on digits:
`easier_first` (centres of $\nu_c$ in the order of linear separability, App.
K.5) and `papers_order` (in the order the paper's category engagement found,
Sec. 5); on Semantic: `higher_levels_earlier`; on both the family's
`control_early` and `learns_faster`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import lecontrol as lc

from ..runner import RunOutput, require
from .shared import digits, engagement as eng, figures as fig, gains

DATA = ("digits", "semantic")

DEFAULT = gains.defaults(
    dict(data="digits", classes=tuple(range(10)), levels=4) | digits.TASK,
    system=dict(hidden=50),
    control=dict(basis="neuron"),
)


def _is_digits(cfg) -> bool:
    return cfg.task.data == "digits"


def check(cfg) -> None:
    gains.check(cfg)
    t = cfg.task
    require(t.data in DATA, "task.data", f"must be one of {list(DATA)}", t.data)
    basis = cfg.control.basis
    require(basis == "neuron", "control.basis", "must be 'neuron' (Fig. 18)", basis)
    if _is_digits(cfg):
        c = t.classes
        require(len(c) >= 3, "task.classes", "needs three digits (one output each)", c)


def data(cfg):
    """The digit task with its images (None on Semantic)."""
    return digits.load(cfg, cfg.task.classes) if _is_digits(cfg) else None


def system(cfg, loaded=None):
    """The network on the task's statistics (the images stay out of it)."""
    if _is_digits(cfg):
        d = data(cfg) if loaded is None else loaded
        task = lc.tasks.Digits(d.train, d.test, d.classes)
    else:
        task = lc.tasks.SemanticHierarchy(cfg.task.levels)
    return gains.network(lc.systems.TwoLayerGain, cfg, task)


def labels(cfg) -> list[str]:
    if _is_digits(cfg):
        return [str(c) for c in cfg.task.classes]
    return [f"L{k}.{i}" for k in range(cfg.task.levels) for i in range(2**k)]


def rank_in(order, classes) -> np.ndarray:
    """Each class's rank in `order` (`nan` for a digit not in it)."""
    return np.asarray([order.index(c) if c in order else np.nan for c in classes])


def run(cfg, out_dir, progress, checkpoints=None) -> RunOutput:
    """Baseline vs optimal neuron-basis gains, and each output's $\\nu_c(t)$."""
    loaded = data(cfg)
    s = system(cfg, loaded)
    out = gains.run_on(cfg, s, progress, checkpoints, data=loaded)
    r = out.results
    # Row c of G2 is nu_c (every column alike): the coefficient per output.
    nu = np.asarray(r["control_g1"])[:, :, 0]
    r["control_g"], r["baseline_g"] = nu, np.zeros_like(nu)
    t = eng.timing(r["ts"], nu)
    names = labels(cfg)
    summary = {
        "outputs": names,
        "nu_centre_time": dict(zip(names, map(float, t["centre"]))),
        "nu_mean": dict(zip(names, map(float, t["mean"]))),
        "order_by_nu_centre": eng.order(names, t["centre"]),
    }
    if _is_digits(cfg):
        classes = cfg.task.classes
        r["separability_rank"] = rank_in(eng.SEPARABILITY_ORDER, classes)
        r["paper_rank"] = rank_in(eng.PAPER_DIGIT_ORDER, classes)
        summary["dataset"] = digits.describe(cfg)
    else:
        levels = lc.tasks.SemanticHierarchy(cfg.task.levels).level_of_output()
        r["level_rank"] = np.asarray(levels, dtype=float)
        summary["dataset"] = f"semantic hierarchy, {cfg.task.levels} levels"
    return RunOutput(r, summary | out.summary)


def nu_figure(results, cfg):
    """$\\nu_c(t)$, one line per output (digits) or one colour per level."""
    p, ts, nu = fig.plotting, results["ts"], results["control_g"]
    names = labels(cfg)
    if "level_rank" in results:
        levels = results["level_rank"].astype(int)
        series = {f"level {k}": nu[:, levels == k] for k in np.unique(levels)}
    else:
        series = {f"digit {n}": nu[:, i] for i, n in enumerate(names)}
    return p.plot_lines(
        ts,
        series,
        title="Optimal output-neuron gain ν_c(t) per category (G1 = 0)",
        ylabel="gain ν_c of the output neuron",
        hlines=[(0.0, "baseline (G = 0)", p.BASELINE_STYLE)],
    )


def plot_more(results, cfg, out_dir):
    note = digits.label(cfg) if _is_digits(cfg) else "semantic hierarchy"
    with fig.footnote(f"data: {note}"):
        return fig.save(
            {"category_gains.png": lambda: nu_figure(results, cfg)}, out_dir
        )


def _only(finding, key: str):
    """`finding`, measured only on runs that saved `key` (the task it is about)."""
    return dataclasses.replace(finding, applies=lambda r: key in r)


EXPERIMENT = gains.experiment(
    name="category-gains",
    description="Category engagement through output-neuron gains (neuron basis, "
    "G1 = 0) on 10 digits or on Semantic.",
    default=DEFAULT,
    quick={"system.hidden": 10, "objective.steps": 4000, "control.knots": 31}
    | {"optimiser.iterations": 30}
    | digits.QUICK,
    system=system,
    run=run,
    plot_more=plot_more,
    figures=("category_gains.png",),
    findings=(
        "order_by_nu_centre",
        "nu_centre_time",
        "nu_mean",
        _only(
            eng.engaged_in_order(
                "easier_first",
                "Through output gains too, easier digits are engaged first "
                "(Fig. 18c; easier: linearly more separable, App. K.5).",
                rank="separability_rank",
                order="the order of linear separability",
            ),
            "separability_rank",
        ),
        _only(
            eng.engaged_in_order(
                "papers_order",
                "The digits are engaged in an order similar to category "
                "engagement's (Fig. 18c vs Fig. 4i).",
            ),
            "paper_rank",
        ),
        _only(
            eng.engaged_in_order(
                "higher_levels_earlier",
                "On Semantic, output gains engage the higher levels of the "
                "hierarchy earlier (Fig. 18d).",
                rank="level_rank",
                order="the order of the levels (0 = root)",
            ),
            "level_rank",
        ),
    ),
    checks=("control_early", "learns_faster"),
)
EXPERIMENT = dataclasses.replace(EXPERIMENT, check=check)
