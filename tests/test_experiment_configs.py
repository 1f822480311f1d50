"""Experiments as configurations of the same parts (nested configs, shared
modules), checked for every registered experiment without running any."""

import ast
import importlib
import math
from pathlib import Path

import pytest

from lecontrol import cli
from lecontrol.experiments import _MODULES, get, names
from lecontrol.runner import SECTIONS, Config, ConfigError, load_toml

EXPERIMENTS_DIR = Path(importlib.import_module("lecontrol.experiments").__file__).parent
EXPERIMENT_MODULES = {m.rsplit(".", 1)[-1] for m in _MODULES.values()}


def _imported_modules(path: Path) -> set[str]:
    """Names of the `lecontrol.experiments` modules that `path` imports."""
    return _imported_modules_of(path.read_text())


def _imported_modules_of(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 1:  # from .x import ...  /  from . import x
                parts = [module] if module else [a.name for a in node.names]
                found |= {p.split(".")[0] for p in parts}
            elif module.startswith("lecontrol.experiments."):
                found.add(module.split(".")[2])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lecontrol.experiments."):
                    found.add(alias.name.split(".")[2])
    return found


@pytest.mark.parametrize("module", sorted(EXPERIMENT_MODULES))
def test_an_experiment_imports_no_other_experiment(module):
    imported = _imported_modules(EXPERIMENTS_DIR / f"{module}.py")
    assert not imported & (EXPERIMENT_MODULES - {module}), imported


def test_the_import_scan_sees_imports():
    """Guard for the test above: it finds relative and absolute imports."""
    path = EXPERIMENTS_DIR / "single_neuron.py"
    assert "shared" in _imported_modules(path)
    source = "from . import maml\nimport lecontrol.experiments.maml.x as m\n"
    source += "from lecontrol.experiments.nonlinear import EXPERIMENT\n"
    assert _imported_modules_of(source) == {"maml", "nonlinear"}


def test_shared_modules_import_no_experiment():
    for path in (EXPERIMENTS_DIR / "shared").glob("*.py"):
        assert not _imported_modules(path) & EXPERIMENT_MODULES, path.name


@pytest.mark.parametrize("name", names())
def test_each_experiment_states_what_it_builds_draws_and_finds(name):
    experiment = get(name)
    doc = importlib.import_module(_MODULES[name]).__doc__ or ""
    for heading in ("**Builds:**", "**Figures:**", "**Findings"):
        assert heading in doc, (name, heading)
    assert experiment.figures and experiment.findings, name
    assert all(f.rstrip("?").endswith(".png") for f in experiment.figures)


@pytest.mark.parametrize("name", names())
def test_configs_are_nested_and_show_round_trips(name, capsys, tmp_path):
    experiment = get(name)
    for quick in (False, True):
        cfg = experiment.default_config(quick=quick)
        assert list(cfg) == ["seed", "checkpoint_every", *SECTIONS], name
        assert all(isinstance(cfg[s], Config) for s in SECTIONS)
        assert cli.main(["show", name, *(["--quick"] if quick else [])]) == 0
        path = tmp_path / f"{name}-{quick}.toml"
        path.write_text(capsys.readouterr().out)
        read = experiment.default.replace(
            load_toml(path), source=str(path), parse_strings=False
        )
        assert read == cfg, name
    quick = experiment.default_config(quick=True)
    assert quick != experiment.default, f"{name}: the quick variant changes nothing"


@pytest.mark.parametrize("name", names())
def test_quick_configs_validate(name):
    experiment = get(name)
    experiment.validate(experiment.default_config(quick=True))


def test_config_is_immutable_and_typed():
    cfg = Config(seed=0, objective={"gamma": 0.9, "steps": 10}, grid=(1.0, 2.0))
    with pytest.raises(AttributeError, match="immutable"):
        cfg.seed = 1
    new = cfg.replace({"objective": {"gamma": 1}, "grid": "3,4"}, source="t")
    assert new.objective.gamma == 1.0 and isinstance(new.objective.gamma, float)
    assert new.grid == (3.0, 4.0) and cfg.objective.gamma == 0.9
    assert new.flat() == {
        "seed": 0,
        "objective.gamma": 1.0,
        "objective.steps": 10,
        "grid": (3.0, 4.0),
    }
    assert new.to_dict()["grid"] == [3.0, 4.0]
    with pytest.raises(ConfigError, match="'objective.steps' expects int"):
        cfg.replace({"objective.steps": "1.5"}, source="t")
    with pytest.raises(ConfigError, match="`grid` must be a finite"):
        cfg.replace({"grid": (1.0, math.nan)}, source="t")
    with pytest.raises(ConfigError, match="'objective.gama'.*'objective.gamma'"):
        cfg.replace({"objective.gama": 1.0}, source="t")
