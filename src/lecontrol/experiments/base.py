"""What an experiment is, and how its configuration is built and checked.

An experiment is a module that defines one `Experiment` value:

- `default`: its `Config`, a nested table of values whose defaults are the
  paper's parameters (docs/systems/). The sections are always the same:
  `task`, `system`, `control`, `cost`, `objective`, `optimiser`, `solver` and
  `outputs`, plus the top-level `seed` and `checkpoint_every`. Each key's type
  is the type of its default (`float`, `int`, `bool`, `str`, or a tuple of
  them), and is what `--set section.key=value` and TOML files are parsed to.
- `quick`: dotted overrides giving a small run that finishes in seconds.
- `build(config)`: the library objects of the problem (a `Setup`). Their
  constructors validate the values, so the CLI builds once before running to
  report bad configurations early; `check(config)` checks what no
  constructor sees (e.g. that a record interval divides the step count).
- `run(config, out_dir, progress, checkpoints)`: compute the baseline and the
  controlled run and return a `RunOutput` (numeric arrays and a summary with
  at least `SUMMARY_KEYS` and the experiment's `findings`). `checkpoints` is
  the run's `lecontrol.checkpoint.CheckpointFolder` (or None), whose
  `next()` checkpointer each optimisation takes.
- `plot(results, config, out_dir)`: draw the `figures` from the saved arrays,
  so `lecontrol plot DIR` redraws them without recomputing.

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
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import lecontrol as lc

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


class ConfigError(ValueError):
    """A configuration key, type or value is wrong. The message names the key."""


def require(ok: bool, key: str, what: str, value: Any) -> None:
    """Raise `ConfigError` "`key` what; got value" unless `ok`."""
    if not ok:
        raise ConfigError(f"`{key}` {what}; got {value!r}.")


# ---------------------------------------------------------------- the config

_SCALARS = (bool, int, float, str)


def _kind(value: Any) -> str:
    return "bool" if isinstance(value, bool) else type(value).__name__


class Config(Mapping[str, Any]):
    """An immutable nested table of configuration values.

    Values are `bool`, `int`, `float`, `str`, tuples of these, or `Config`
    sections; read them as attributes (`config.objective.gamma`) or items.
    `replace` is the only way to change one, and it keeps each key's type.

    ```python
    cfg = Config(seed=0, objective=dict(gamma=0.99, eta=1.0))
    cfg.replace({"objective.gamma": "0.9"}, source="--set").objective.gamma  # 0.9
    ```
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None, /, **more: Any):
        data: dict[str, Any] = {}
        for key, value in {**dict(values or {}), **more}.items():
            if not (isinstance(key, str) and key.isidentifier()):
                raise ConfigError(f"config key {key!r} is not a name.")
            if isinstance(value, Mapping):
                value = value if isinstance(value, Config) else Config(value)
            elif isinstance(value, (list, tuple)):
                value = tuple(value)
                if not all(isinstance(v, _SCALARS) for v in value):
                    raise ConfigError(f"config key {key!r}: a list holds plain values.")
            elif not isinstance(value, _SCALARS):
                raise ConfigError(
                    f"config key {key!r}: {value!r} is not a bool, int, float, str, "
                    "list or table."
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(
                    f"`{key}` must be a finite number; got {value!r}. Configuration "
                    "values cannot be nan or inf (they are saved in config.json, "
                    "which is strict JSON); set a finite value."
                )
            data[key] = value
        object.__setattr__(self, "_values", data)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"the configuration has no key {key!r}") from None

    def __setattr__(self, key, value):
        raise AttributeError("a Config is immutable; use `replace`.")

    def __repr__(self) -> str:
        return f"Config({self._values!r})"

    def flat(self, prefix: str = "") -> dict[str, Any]:
        """Every value by its dotted key (`{"objective.gamma": 0.99, ...}`)."""
        out: dict[str, Any] = {}
        for key, value in self._values.items():
            if isinstance(value, Config):
                out |= value.flat(f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts and lists (for JSON)."""
        return {
            k: v.to_dict() if isinstance(v, Config) else list(v) if isinstance(v, tuple) else v
            for k, v in self._values.items()
        }

    def replace(
        self, values: Mapping[str, Any], *, source: str, parse_strings: bool = True
    ) -> Config:
        """A copy with `values` (dotted keys, or nested tables) replaced.

        Keys must exist and values keep each key's type (an int is widened to
        a float). With `parse_strings` (for `--set` text), a string for a
        non-string key is parsed; without it (for TOML and JSON, whose values
        are typed) it is a type error.

        **Raises:** `ConfigError` naming an unknown key (with close matches) or
        a value of the wrong type.
        """
        known = self.flat()
        flat = Config._flatten(values)
        changes: dict[str, Any] = {}
        for key, value in flat.items():
            if key not in known:
                raise _unknown_key(key, list(known), source)
            old = known[key]
            if isinstance(value, str) and not isinstance(old, str) and parse_strings:
                changes[key] = _parse(value, old, key)
            else:
                changes[key] = _coerce(value, old, key, source)
        data = self.to_dict()
        for key, value in changes.items():
            *path, last = key.split(".")
            table = data
            for part in path:
                table = table[part]
            table[last] = value
        return Config(data)

    @staticmethod
    def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(value, Mapping):
                out |= Config._flatten(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value
        return out


def _unknown_key(key: str, known: list[str], source: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    close += [k for k in known if k.rsplit(".", 1)[-1] == key and k not in close]
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(
        f"unknown config key {key!r} (from {source}).{hint} "
        f"Known keys: {', '.join(sorted(known))}."
    )


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _parse(text: str, like: Any, key: str) -> Any:
    """Parse `--set key=text` to the type of the current value `like`."""
    text = text.strip()
    if isinstance(like, tuple):
        item = like[0] if like else 0.0
        parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
        return tuple(_parse(p, item, key) for p in parts)
    try:
        if isinstance(like, bool):
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError
        return type(like)(text)
    except ValueError:
        raise ConfigError(
            f"config key {key!r} expects {_kind(like)}; cannot parse {text!r}."
        ) from None


def _coerce(value: Any, like: Any, key: str, source: str) -> Any:
    """Check (and widen int → float) a typed value from TOML or JSON."""
    if isinstance(like, tuple) and isinstance(value, (list, tuple)):
        item = like[0] if like else 0.0
        return tuple(_coerce(v, item, key, source) for v in value)
    if isinstance(like, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is type(like):
        return value
    raise ConfigError(
        f"config key {key!r} (from {source}) expects "
        f"{'list' if isinstance(like, tuple) else _kind(like)}; got {value!r}."
    )


def parse_assignments(items: list[str]) -> dict[str, str]:
    """`["a.b=1", "c=x"]` → `{"a.b": "1", "c": "x"}`; raise on a missing `=`."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(
                "--set expects section.key=value (e.g. --set objective.gamma=0.9); "
                f"got {item!r}."
            )
        out[key.strip()] = value
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file of config values (tables are sections)."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist.") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}.") from None


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def to_toml(config: Config, header: str = "") -> str:
    """`config` as TOML (top-level values, then one table per section), which
    `load_toml` and `--config` read back to the same configuration."""
    lines = [f"# {line}" for line in header.splitlines()]
    tables = []
    for key, value in config.items():
        if isinstance(value, Config):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")

    def table(name: str, section: Config):
        lines.extend(["", f"[{name}]"])
        subtables = []
        for key, value in section.items():
            if isinstance(value, Config):
                subtables.append((f"{name}.{key}", value))
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        for sub in subtables:
            table(*sub)

    for name, section in tables:
        table(name, section)
    return "\n".join(lines) + "\n"


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
    when its data was saved, e.g. `optimisation.png` after zero iterations);
    `findings` are the summary keys of the paper's findings that `run`
    reports. `execute` checks both.
    """

    name: str
    description: str
    default: Config
    quick: Mapping[str, Any]
    build: Callable[[Config], Any]
    run: Callable[..., RunOutput]  # (config, out_dir, progress, checkpoints)
    plot: Callable[[Mapping[str, np.ndarray], Config, Path], list[Path]]
    figures: tuple[str, ...] = ()
    findings: tuple[str, ...] = ()
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
        """Check integer keys, run `check`, and build the problem once;
        report constructor errors as `ConfigError`."""
        for key, value in config.flat().items():
            if isinstance(value, int) and not isinstance(value, bool):
                require(value >= 0, key, "must be >= 0", value)
        try:
            if self.check is not None:
                self.check(config)
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
    missing = [k for k in (*SUMMARY_KEYS, *experiment.findings) if k not in output.summary]
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
    _check_figures(experiment, [Path(f).name for f in figures])
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
