"""The repository stands alone: no tracked file refers to the internal design note.

The equations and parameters the code implements are cited from the paper
(Carrasco-Davis, Masís & Saxe, "Meta-Learning Strategies through Value
Maximization in Neural Networks") or from the project's own docs pages
(`docs/systems/`), never from a design document the repository does not hold.
"""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Built from parts so that this file does not match its own search.
NAME = "PAPER" + ".md"


def test_no_tracked_file_mentions_the_design_note():
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "grep", "-l", "-F", NAME],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("git is not installed")
    if out.returncode not in (0, 1):  # 1: no match; anything else: not a checkout
        pytest.skip(f"not a git checkout: {out.stderr.strip()}")
    hits = [p for p in out.stdout.splitlines() if p != "tests/test_standalone.py"]
    assert hits == [], f"tracked files that mention {NAME}: {hits}"
