"""Nested configurations: typed tables of values, dotted overrides, TOML.

`Config` holds the values of an experiment's run (see
`lecontrol.runner`); the command line reads `--set section.key=value`
with `parse_assignments` and `--config FILE` with `load_toml`, and `lecontrol
show` writes `to_toml`.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "Config",
    "ConfigError",
    "load_toml",
    "parse_assignments",
    "require",
    "to_toml",
]


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
            _require_finite(key, value)
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
            k: v.to_dict()
            if isinstance(v, Config)
            else list(v)
            if isinstance(v, tuple)
            else v
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
            _require_finite(key, value)
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


def _require_finite(key: str, value: Any) -> None:
    for v in value if isinstance(value, tuple) else (value,):
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(
                f"`{key}` must be a finite number; got {value!r}. Configuration "
                "values cannot be nan or inf (they are saved in config.json, "
                "which is strict JSON); set a finite value."
            )


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
    if (
        isinstance(like, float)
        and isinstance(value, int)
        and not isinstance(value, bool)
    ):
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
        if section:  # an empty section is left out
            table(name, section)
    return "\n".join(lines) + "\n"
