"""Figures the experiments share, drawn from a run's saved arrays.

Each function returns a matplotlib figure (or, for `optimisation`, a
name → drawing function entry); `save` writes a name → drawing function
table into the run's folder (with a `footnote` under each figure when one is
set). Experiments combine these with their own panels.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from ... import io, plotting

__all__ = [
    "footnote",
    "loss",
    "net_reward_difference",
    "optimisation",
    "overview",
    "pair",
    "plotting",
    "save",
]

CONTROL_LABEL = "optimal control"
_FOOTNOTE = contextvars.ContextVar("footnote", default="")


def pair(baseline_label: str) -> dict[str, dict]:
    """Line styles of the baseline and of the optimised control, by label."""
    return {
        baseline_label: plotting.BASELINE_STYLE,
        CONTROL_LABEL: plotting.CONTROL_STYLE,
    }


def loss(results: Mapping[str, np.ndarray], styles: Mapping[str, dict], ax=None):
    """Expected loss $\\langle L\\rangle(t)$ of the baseline and of the control
    (into `ax`, a panel, if given)."""
    base, ctrl = list(styles)
    return plotting.plot_lines(
        results["ts"],
        {base: results["baseline_loss"], ctrl: results["control_loss"]},
        title="Expected loss ⟨L⟩(t)",
        ylabel="expected loss ⟨L⟩",
        styles=styles,
        ax=ax,
    )


def net_reward_difference(results: Mapping[str, np.ndarray], symbol: str, ax=None):
    """$v_\\text{control}(t) - v_\\text{baseline}(t)$, the discounted net reward's
    gap (into `ax`, a panel, if given)."""
    return plotting.plot_difference(
        results["ts"],
        results["control_v"] - results["baseline_v"],
        title="Net reward: control minus baseline",
        ylabel="v_control(t) − v_baseline(t)",
        label=f"γ^t [η P − C({symbol})] difference",
        ax=ax,
    )


def overview(panels: Sequence[Callable], title: str) -> Callable:
    """A drawing function of one multi-panel figure (lettered a, b, c, … when
    saved): `panels` draw into the axes they are given, in reading order, each
    choosing its own time axis (`plotting.time_axis`)."""

    def draw():
        figure, axes = plotting.panel_grid(len(panels), title=title)
        for panel, ax in zip(panels, axes):
            panel(ax)
        return figure

    return draw


def optimisation(results: Mapping[str, np.ndarray]) -> dict[str, Callable]:
    """`optimisation.png` (V per iteration) when the run optimised at all."""
    if not results["values"].size:
        return {}
    baseline = float(results["baseline_V"][-1])
    return {
        "optimisation.png": lambda: plotting.plot_optimisation(
            results["values"], baseline=baseline
        )
    }


@contextlib.contextmanager
def footnote(text: str) -> Iterator[None]:
    """Within this block, `save` writes `text` in small print under every
    figure (e.g. the data set a run used)."""
    token = _FOOTNOTE.set(text)
    try:
        yield
    finally:
        _FOOTNOTE.reset(token)


def save(figures: Mapping[str, Callable], out_dir: Path) -> list[Path]:
    """Draw and save each figure of a name → drawing function table."""
    out_dir, note = Path(out_dir), _FOOTNOTE.get()

    def drawn(draw):
        figure = draw()
        if note:
            kw = dict(ha="center", va="top", fontsize="small", color="0.3")
            figure.text(0.5, 0.0, note, **kw)
        return figure

    return [io.save_figure(drawn(d), out_dir / name) for name, d in figures.items()]
