"""The paper's experiments, by the names the command line uses.

Each experiment is a module defining `EXPERIMENT`, an
`lecontrol.experiments.base.Experiment` (defaults, quick variant, build, run,
plot). Register a new one by adding its CLI name and module to `_MODULES`;
modules are imported only when asked for.
"""

from __future__ import annotations

import difflib
import importlib

from .base import ConfigError, Experiment, execute

__all__ = ["ConfigError", "Experiment", "execute", "get", "names"]

_MODULES: dict[str, str] = {
    "single-neuron": "lecontrol.experiments.single_neuron",
    "effort-gaussians": "lecontrol.experiments.effort_gaussians",
    "effort-semantic": "lecontrol.experiments.effort_semantic",
    "effort-digits": "lecontrol.experiments.effort_digits",
    "task-switch": "lecontrol.experiments.task_switch",
    "nonlinear": "lecontrol.experiments.nonlinear",
    "engagement-attentive": "lecontrol.experiments.engagement_attentive",
    "engagement-active": "lecontrol.experiments.engagement_active",
    "engagement-vector": "lecontrol.experiments.engagement_vector",
    "category-digits": "lecontrol.experiments.category_digits",
    "category-semantic": "lecontrol.experiments.category_semantic",
    "learning-rate": "lecontrol.experiments.learning_rate",
    "maml": "lecontrol.experiments.maml",
    "single-neuron-sweep": "lecontrol.experiments.single_neuron_sweep",
    "learning-rate-sweep": "lecontrol.experiments.learning_rate_sweep",
}


def names() -> list[str]:
    """CLI names of every registered experiment."""
    return list(_MODULES)


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
