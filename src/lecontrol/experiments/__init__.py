"""The paper's experiments, by the names the command line uses.

Each experiment is a module defining `EXPERIMENT`, an
`lecontrol.runner.Experiment` (defaults, quick variant, build, run, plot).
Register a new one by adding its CLI name to `_NAMES` (and to `COMPANIONS`
if it belongs to a companion work, not to the paper); modules are imported
only when asked for.
"""

from __future__ import annotations

import difflib
import importlib

from ..runner import ConfigError, Experiment, execute

__all__ = [
    "COMPANIONS",
    "ConfigError",
    "Experiment",
    "execute",
    "get",
    "names",
    "paper",
]

# The CLI name of each experiment is its module's name with "-" for "_".
_NAMES = """single-neuron effort-gaussians effort-semantic effort-digits task-switch
nonlinear engagement-attentive engagement-active engagement-vector category-digits
category-semantic learning-rate maml single-neuron-sweep learning-rate-sweep
digit-separability knot-convergence category-gains lr-closed-loop feedback-alignment
precision-allocation"""
_MODULES = {n: f"{__name__}.{n.replace('-', '_')}" for n in _NAMES.split()}

COMPANIONS = ("lr-closed-loop", "feedback-alignment", "precision-allocation")
"""Experiments of the companion works (the closed-loop learning rate,
learners that do not backpropagate, memory precision as a resource), not of
the learning-effort paper: `lecontrol run` runs them, `lecontrol reproduce`
(the paper) does not."""


def names() -> list[str]:
    """CLI names of every registered experiment."""
    return list(_MODULES)


def paper() -> list[str]:
    """CLI names of the learning-effort paper's experiments (`names()` without
    the `COMPANIONS`)."""
    return [n for n in _MODULES if n not in COMPANIONS]


def get(name: str) -> Experiment:
    """The experiment registered under `name` (raise `ConfigError` naming close matches)."""
    if name not in _MODULES:
        close = difflib.get_close_matches(name, list(_MODULES), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown experiment {name!r}.{hint} Run `lecontrol list` to see them all."
        )
    experiment = importlib.import_module(_MODULES[name]).EXPERIMENT
    if experiment.name != name:
        raise RuntimeError(
            f"module {_MODULES[name]} defines experiment {experiment.name!r}, "
            f"registered as {name!r}."
        )
    return experiment
