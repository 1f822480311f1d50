"""What an experiment is, and how its configuration is built and checked.

An experiment is a module that defines one `Experiment` value:

- `config`: a frozen dataclass subclassing `ExperimentConfig`, whose defaults
  are the paper's parameters (the paper's Tables 1-5, App. L; docs/systems/). Field annotations are the types
  that `--set key=value` and TOML files are parsed to (`float`, `int`, `bool`,
  `str`, `tuple[float, ...]`, `tuple[int, ...]`, or `X | None`).
- `quick`: overrides giving a small run that finishes in seconds.
- `build(config)`: the library objects of the problem (a `Setup`). Their
  constructors validate the values, so the CLI builds once before running to
  report bad configurations early.
- `run(config, out_dir, progress, checkpoints)`: compute the baseline and the
  controlled run and return a `RunOutput` (numeric arrays and a summary with
  at least `SUMMARY_KEYS`). `out_dir` is for any extra files the experiment
  writes; `checkpoints` is the run's `lecontrol.checkpoint.CheckpointFolder`
  (or None), whose `next()` checkpointer each optimisation takes
  (`experiments.common.next_checkpoint`).
- `plot(results, config, out_dir)`: draw the figures from the saved arrays, so
  `lecontrol plot DIR` redraws them without recomputing; returns their paths.

`execute` writes the standard files (`config.json`, `results.npz`, figures,
`summary.json`), so experiments contain no file handling of their own.

Configurations are assembled in the order defaults → quick → TOML file →
`--set` overrides → `--seed`; each step checks keys and types.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import time
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import lecontrol as lc

__all__ = [
    "ConfigError",
    "Experiment",
    "ExperimentConfig",
    "RunOutput",
    "Setup",
    "execute",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_toml",
    "parse_assignments",
]


class ConfigError(ValueError):
    """A configuration key, type or value is wrong. The message names the key."""


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Fields shared by every experiment's configuration.

    - `seed`: seed of every random draw of the run (recorded in `config.json`).
    - `checkpoint_every`: save the optimisation's progress every this many
      iterations (0: never), so that `lecontrol run NAME --resume DIR` can
      continue an interrupted run. It does not change the results.
    """

    seed: int = 0
    checkpoint_every: int = 0

    def __post_init__(self):
        require_finite_values(self)
        require_int(self, "seed", minimum=0)
        require_int(self, "checkpoint_every", minimum=0)
        self.check()

    def check(self) -> None:
        """Raise `ConfigError` naming the key if a value is out of range.

        Experiments override this (with the `require*` helpers of this module)
        for values that no library constructor checks, e.g. iteration counts.
        """


# --------------------------------------------------------------- value checks


def require(ok: bool, key: str, what: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"`{key}` {what}; got {value!r}.")


def require_finite_values(cfg) -> None:
    """Every float of the configuration (also inside tuples) must be finite:
    `config.json` is strict JSON, which has no nan or inf."""
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        items = value if isinstance(value, (tuple, list)) else (value,)
        for v in items:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(
                    f"`{field.name}` must be a finite number; got {value!r}. "
                    "Configuration values cannot be nan or inf (they are saved in "
                    "config.json, which is strict JSON); set a finite value."
                )


def require_int(cfg, key: str, *, minimum: int | None = None) -> None:
    v = getattr(cfg, key)
    require(isinstance(v, int) and not isinstance(v, bool), key, "must be an int", v)
    if minimum is not None:
        require(v >= minimum, key, f"must be >= {minimum}", v)


def require_float(
    cfg,
    key: str,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    at_most: float | None = None,
) -> None:
    v = getattr(cfg, key)
    require(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        key,
        "must be a finite number",
        v,
    )
    if positive:
        require(v > 0, key, "must be > 0", v)
    if nonnegative:
        require(v >= 0, key, "must be >= 0", v)
    if at_most is not None:
        require(v <= at_most, key, f"must be <= {at_most}", v)


# ------------------------------------------------------------- the experiment


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One reproducible experiment: defaults, quick variant, build, run, plot."""

    name: str
    description: str
    config: type[ExperimentConfig]
    quick: Mapping[str, Any]
    build: Callable[[Any], Any]
    run: Callable[..., RunOutput]  # (config, out_dir, progress, checkpoints)
    plot: Callable[[Mapping[str, np.ndarray], Any, Path], list[Path]]

    def default_config(self, *, quick: bool = False) -> ExperimentConfig:
        """The paper's configuration, or its quick variant."""
        cfg = self.config()
        return (
            apply_overrides(cfg, self.quick, source="quick variant") if quick else cfg
        )

    def validate(self, config: ExperimentConfig) -> None:
        """Build the problem once; report constructor errors as `ConfigError`."""
        try:
            self.build(config)
        except (ValueError, TypeError, OSError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"invalid configuration for {self.name}: {e}") from e


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
    config: ExperimentConfig,
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

    **Returns:** the summary (also in `summary.json`), with the figure names.
    """
    import warnings

    from .. import checkpoint, io

    out_dir = Path(out_dir)
    if not resume:
        io.write_json(
            out_dir / "config.json",
            {
                "experiment": experiment.name,
                "seed": config.seed,
                "config": config_to_dict(config),
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
    missing = [k for k in SUMMARY_KEYS if k not in output.summary]
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
    figures = experiment.plot(output.results, config, out_dir)
    summary = {
        "experiment": experiment.name,
        **output.summary,
        "total_wall_time_s": time.perf_counter() - start,
        "figures": [Path(f).name for f in figures],
    }
    io.write_json(out_dir / "summary.json", summary)
    if checkpoints is not None:
        checkpoints.clear()
    return summary


# ----------------------------------------------------------- types and values


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _unknown_key(key: str, known: list[str], source: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(
        f"unknown config key {key!r} (from {source}).{hint} "
        f"Known keys: {', '.join(sorted(known))}."
    )


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _from_string(text: str, tp: Any, key: str) -> Any:
    """Parse the text of `--set key=text` to the field type `tp`."""
    text = text.strip()
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if type(None) in args and text.lower() in ("none", "null", ""):
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _from_string(text, inner[0], key)
    if origin is tuple:
        parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
        return tuple(_from_string(p, args[0], key) for p in parts)
    try:
        if tp is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
        if tp is str:
            return text
    except ValueError:
        pass
    else:
        raise ConfigError(f"config key {key!r} has unsupported type {_type_name(tp)}.")
    raise ConfigError(
        f"config key {key!r} expects {_type_name(tp)}; cannot parse {text!r}."
    )


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check (and widen int → float) a value read from TOML or JSON."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(value, inner[0], key, source)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(_coerce(v, args[0], key, source) for v in value)
    is_bool = isinstance(value, bool)
    if tp is float and isinstance(value, (int, float)) and not is_bool:
        return float(value)
    if tp is int and isinstance(value, int) and not is_bool:
        return value
    if tp in (bool, str) and isinstance(value, tp):
        return value
    raise ConfigError(
        f"config key {key!r} (from {source}) expects {_type_name(tp)}; "
        f"got {value!r} ({type(value).__name__})."
    )


def _is_none_text(value: str, tp: Any) -> bool:
    """`"none"` for an optional field (how `lecontrol show` writes `None`)."""
    optional = typing.get_origin(tp) in (
        types.UnionType,
        typing.Union,
    ) and type(None) in typing.get_args(tp)
    return optional and value.strip().lower() in ("none", "null")


def apply_overrides(
    config: ExperimentConfig,
    values: Mapping[str, Any],
    *,
    source: str,
    parse_strings: bool = True,
) -> Any:
    """A copy of `config` with `values` replaced, keys and types checked.

    With `parse_strings` (for `--set` text), values that are strings are parsed
    to the field type when the field is not a string. Without it (for TOML and
    JSON files, whose values are typed), a string for a non-string field is a
    type error, except `"none"` for an optional field.

    **Raises:** `ConfigError` naming an unknown key (with close matches), a
    value of the wrong type, or a value out of range.
    """
    types_ = _field_types(type(config))
    known = list(types_)
    changes = {}
    for key, value in values.items():
        if key not in types_:
            raise _unknown_key(key, known, source)
        tp = types_[key]
        if (
            isinstance(value, str)
            and tp is not str
            and (parse_strings or _is_none_text(value, tp))
        ):
            changes[key] = _from_string(value, tp, key)
        else:
            changes[key] = _coerce(value, tp, key, source)
    return dataclasses.replace(config, **changes)


def parse_assignments(items: list[str]) -> dict[str, str]:
    """`["a=1", "b=x"]` → `{"a": "1", "b": "x"}`; raise on a missing `=`."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(
                f"--set expects key=value (e.g. --set gamma=0.9); got {item!r}."
            )
        out[key.strip()] = value
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a flat TOML table of config keys (`gamma = 0.9`)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist.") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}.") from None
    for key, value in data.items():
        if isinstance(value, dict):
            raise ConfigError(
                f"config file {path}: key {key!r} is a table; the file must be a "
                "flat list of `key = value` lines."
            )
    return data


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """Plain-JSON form of a configuration (tuples become lists)."""
    return dataclasses.asdict(config)


def config_from_dict(
    cls: type[ExperimentConfig], data: Mapping[str, Any], *, source: str
) -> Any:
    """Rebuild a configuration from `config_to_dict` output (keys and types
    checked)."""
    return apply_overrides(cls(), data, source=source, parse_strings=False)
