"""What `lecontrol run` runs, and the files it writes (docs/experiments.md).

An `Experiment` is the unit of the command line: its default `Config` (the
`SECTIONS`), the `quick` overrides, `build` (the `Setup`: problem and starting
coefficients), `run` (a `RunOutput`), `plot` (figures from the saved arrays
only), and the `figures` and `findings` it states. `execute` writes
`config.json`, `results.npz`, the figures and `summary.json`, so an experiment
does no file handling of its own. The paper's experiments
(`lecontrol.experiments`) are instances; a study of one's own is another.
"""

from __future__ import annotations

import dataclasses
import re
import time
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import lecontrol as lc

from .config import (
    Config,
    ConfigError,
    load_toml,
    parse_assignments,
    require,
    to_toml,
)
from .findings import Finding, check_all

__all__ = [
    "SECTIONS",
    "Config",
    "ConfigError",
    "Experiment",
    "RunOutput",
    "Setup",
    "execute",
    "load_toml",
    "parse_assignments",
    "require",
    "to_toml",
    "config",
]

SECTIONS = (
    "task",
    "system",
    "control",
    "cost",
    "objective",
    "optimiser",
    "solver",
    "outputs",
)
"""The sections every experiment's configuration has, in this order."""


def config(**sections: Mapping[str, Any]) -> Config:
    """An experiment's default configuration: the `SECTIONS` (each a table,
    empty if left out), then `seed = 0` and `checkpoint_every = 0`.

    - `seed`: seed of every random draw of the run (recorded in `config.json`).
    - `checkpoint_every`: save the optimisation's progress every this many
      iterations (0: never), so that `lecontrol run NAME --resume DIR` can
      continue an interrupted run. It does not change the results.
    """
    unknown = set(sections) - set(SECTIONS) - {"seed", "checkpoint_every"}
    if unknown:
        raise ConfigError(f"unknown sections {sorted(unknown)}; use {SECTIONS}.")
    data: dict[str, Any] = {"seed": 0, "checkpoint_every": 0}
    data |= {k: sections[k] for k in ("seed", "checkpoint_every") if k in sections}
    data |= {name: sections.get(name, {}) for name in SECTIONS}
    return Config(data)


# ------------------------------------------------------------- the experiment


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One reproducible experiment: defaults, quick variant, build, run, plot.

    `figures` are the files `plot` draws (a name ending in `?` is drawn only
    when its data was saved, e.g. `optimisation.png` after zero iterations).
    `findings` are the paper's findings: a `lecontrol.findings.Finding`, which
    `execute` checks on the saved arrays (against its negative controls too),
    or the summary key of a measure that `run` reports. `execute` checks that
    every figure is drawn and every summary key reported.
    """

    name: str
    description: str
    default: Config
    quick: Mapping[str, Any]
    build: Callable[[Config], Any]
    run: Callable[..., RunOutput]  # (config, out_dir, progress, checkpoints)
    plot: Callable[[Mapping[str, np.ndarray], Config, Path], list[Path]]
    figures: tuple[str, ...] = ()
    findings: tuple[str | Finding, ...] = ()
    check: Callable[[Config], None] | None = None

    def default_config(self, *, quick: bool = False) -> Config:
        """The paper's configuration, or its quick variant."""
        if not quick:
            return self.default
        return self.default.replace(self.quick, source="quick variant")

    def read_config(self, data: Mapping[str, Any], *, source: str) -> Config:
        """A configuration saved by `Config.to_dict` (keys and types checked)."""
        return self.default.replace(data, source=source, parse_strings=False)

    def validate(self, config: Config) -> None:
        """Check integer keys (>= 0), `optimiser.lr` (> 0) and the `solver`
        section (the arguments of `lc.SolverOptions`), run `check`, and build
        the problem once; report constructor errors as `ConfigError`."""
        for key, value in config.flat().items():
            if isinstance(value, int) and not isinstance(value, bool):
                require(value >= 0, key, "must be >= 0", value)
        lr = config.get("optimiser", {}).get("lr", 1.0)
        require(lr > 0, "optimiser.lr", "must be > 0", lr)
        try:
            lc.SolverOptions(**config.get("solver", {}))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"[solver]: {e}") from None
        try:
            if self.check is not None:
                self.check(config)
            self.build(config)
        except (ValueError, TypeError, OSError) as e:
            if isinstance(e, ConfigError):
                raise
            named = set(re.findall(r"`(\w+)`", str(e)))
            keys = [k for k in config.flat() if k.rsplit(".", 1)[-1] in named]
            where = f" (config: {', '.join(keys)})" if keys else ""
            raise ConfigError(
                f"invalid configuration for {self.name}: {e}{where}"
            ) from e


class Setup(typing.NamedTuple):
    """An experiment's problem and starting coefficients, as `Experiment.build`
    returns them (and as `lc.sweep`'s `build` functions return them)."""

    problem: lc.Problem
    theta0: Any

    @property
    def system(self):
        return self.problem.system

    @property
    def control(self):
        return self.problem.control

    @property
    def cost(self):
        return self.problem.cost

    @property
    def objective(self):
        return self.problem.objective


class RunOutput(typing.NamedTuple):
    """What `Experiment.run` returns: arrays for `results.npz` and the summary.

    `summary` must hold at least the keys in `SUMMARY_KEYS`.
    """

    results: dict[str, np.ndarray]
    summary: dict[str, Any]


SUMMARY_KEYS = (
    "V_baseline",
    "V_control",
    "iterations",
    "wall_time_s",
    "solver_steps",
    "status",
    "message",
)


def execute(
    experiment: Experiment,
    config: Config,
    out_dir: Path,
    *,
    progress: bool = False,
    metadata: Mapping[str, Any] | None = None,
    resume: bool = False,
    log: Callable[[str], object] | None = None,
) -> dict[str, Any]:
    """Run an experiment and write its files into `out_dir` (which must exist).

    Files, each written atomically: `config.json` first (the complete
    configuration, seed, package versions and `metadata`), then
    `results.npz`, the figures, and `summary.json` last, so a folder with a
    `summary.json` holds a finished run. With `config.checkpoint_every > 0`
    the optimisations save `checkpoint-N.npz` files while they run (removed
    once `summary.json` is written).

    **Arguments:**

    - `resume`: continue an interrupted run in `out_dir` from its checkpoints.
      Its `config.json` is kept; the caller checks that `config` matches it.
    - `log`: receives one-line progress notes (e.g. which checkpoint resumed).

    **Returns:** the summary (also in `summary.json`), with the figure names,
    the seconds from `run` to the summary (`total_wall_time_s`) and spent
    drawing the figures (`figures_wall_time_s`) and, under `verdicts`, each
    `Finding` checked on the saved arrays.
    """
    import warnings

    from . import checkpoint, io

    out_dir = Path(out_dir)
    if not resume:
        io.write_json(
            out_dir / "config.json",
            {
                "experiment": experiment.name,
                "seed": config.seed,
                "config": config.to_dict(),
                **dict(metadata or {}),
                "versions": io.package_versions(),
            },
        )
    checkpoints = None
    if config.checkpoint_every > 0 or resume:
        checkpoints = checkpoint.CheckpointFolder(
            out_dir, config.checkpoint_every, resume=resume, log=log
        )
    start = time.perf_counter()
    output = experiment.run(config, out_dir, progress, checkpoints)
    if checkpoints is not None and checkpoints.handed_out == 0:
        warnings.warn(
            f"experiment {experiment.name!r} does not checkpoint its optimisation "
            "(its run does not pass `checkpoints.next()` to its optimisations); "
            "`checkpoint_every` had no "
            "effect and a resumed run starts over.",
            stacklevel=2,
        )
    keys = [k for k in experiment.findings if isinstance(k, str)]
    missing = [k for k in (*SUMMARY_KEYS, *keys) if k not in output.summary]
    if missing:
        raise RuntimeError(
            f"experiment {experiment.name!r} returned a summary without {missing}."
        )
    bad = [
        name
        for name, value in output.results.items()
        if np.asarray(value).dtype.kind in "fc" and not np.all(np.isfinite(value))
    ]
    if bad:
        raise FloatingPointError(
            f"experiment {experiment.name!r} produced non-finite values (nan or inf) "
            f"in {bad}; results.npz and the figures were not written."
        )
    io.write_npz(out_dir / "results.npz", output.results)
    plot_start = time.perf_counter()
    figures = experiment.plot(output.results, config, out_dir)
    plot_time = time.perf_counter() - plot_start
    _check_figures(experiment, [Path(f).name for f in figures])
    checked = [f for f in experiment.findings if isinstance(f, Finding)]
    summary = {
        "experiment": experiment.name,
        **output.summary,
        **({"verdicts": check_all(checked, output.results)} if checked else {}),
        "total_wall_time_s": time.perf_counter() - start,
        "figures_wall_time_s": plot_time,
        "figures": [Path(f).name for f in figures],
    }
    io.write_json(out_dir / "summary.json", summary)
    if checkpoints is not None:
        checkpoints.clear()
    return summary


def _check_figures(experiment: Experiment, drawn: list[str]) -> None:
    """`plot` drew every figure the experiment states (those ending in `?`
    only when their data is there), and no other."""
    stated = [f.rstrip("?") for f in experiment.figures]
    required = [f for f in experiment.figures if not f.endswith("?")]
    unstated = sorted(set(drawn) - set(stated))
    missing = sorted(set(required) - set(drawn))
    if unstated or missing:
        raise RuntimeError(
            f"experiment {experiment.name!r} states the figures {stated} but drew "
            f"{drawn} (not stated: {unstated}; not drawn: {missing})."
        )
