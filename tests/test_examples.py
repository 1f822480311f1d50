"""The scripts in examples/ run, in quick mode, and the documentation builds.

Every `examples/*.py` must accept `--quick` (a small variant that finishes in
seconds) and exit with status 0. The docs build (`mkdocs build --strict`) runs
only where the `docs` extra is installed; CI installs the `test` extra only.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("MPLBACKEND", "Agg")  # examples may plot; never open a window
    return env


def test_examples_folder_has_scripts():
    assert EXAMPLES, f"no example scripts found in {ROOT / 'examples'}"


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_in_quick_mode(script: Path, tmp_path: Path):
    # Run from a scratch folder so that an example writing output files leaves
    # nothing behind in the checkout.
    proc = subprocess.run(
        [sys.executable, str(script), "--quick"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, (
        f"{script.name} --quick exited with status {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    )


@pytest.mark.slow
def test_docs_build_strict(tmp_path: Path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    if importlib.util.find_spec("mkdocstrings") is None:
        pytest.skip("mkdocstrings is not installed (pip install -e '.[docs]')")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, (
        f"mkdocs build --strict failed (status {proc.returncode})\n{proc.stderr[-6000:]}"
    )
    assert (tmp_path / "site" / "index.html").is_file()
