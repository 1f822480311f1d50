"""`scripts/reproduce.py`: a quick single-neuron run gives a report with verdicts."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "reproduce.py"


def load_script():
    spec = importlib.util.spec_from_file_location("reproduce", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reproduce():
    return load_script()


@pytest.mark.slow
def test_quick_single_neuron_report(tmp_path, reproduce):
    report = tmp_path / "report.md"
    runs = tmp_path / "runs"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--only", "single-neuron"]
    cmd += ["--runs-dir", str(runs), "--report", str(report)]
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True)

    meta = json.loads((runs / "single-neuron-quick" / "reproduce.json").read_text())
    assert meta["quick"] and meta["returncode"] == 0 and meta["wall_time_s"] > 0
    text = report.read_text()
    assert "Generated file" in text and "quick" in text
    verdicts = (reproduce.REPRODUCED, reproduce.NOT_REPRODUCED, reproduce.NOT_EVALUATED)
    single = [f for f in reproduce.FINDINGS if f.experiment == "single-neuron"]
    assert len(single) == 3
    for f in single:
        rows = [line for line in text.splitlines() if f.claim in line]
        assert rows, f"finding {f.claim!r} missing from the report"
        assert any(f"**{v}**" in row for row in rows for v in verdicts)
        assert any("quick run only" in row for row in rows)
    # The quick run still shows V(control) > V(baseline): the library's contract.
    assert (
        "| V(control) > V(baseline) | `single-neuron` | quick | **reproduced**" in text
    )
    # Findings of experiments that were not selected are not listed.
    assert "single-neuron-sweep" not in text
    # Figures are copied next to the report and linked relative to it.
    figures = sorted((tmp_path / "figures" / "reproduction").glob("*.png"))
    assert figures and all(f"figures/reproduction/{p.name}" in text for p in figures)


def test_reuse_rebuilds_without_running(tmp_path, reproduce):
    """`--reuse` reads run folders only; a missing run is "not evaluated"."""
    report = tmp_path / "report.md"
    reproduce.main(
        [
            "--reuse",
            "--only",
            "maml",
            "--runs-dir",
            str(tmp_path),
            "--report",
            str(report),
        ]
    )
    text = report.read_text()
    assert not (tmp_path / "maml").exists()
    for f in (f for f in reproduce.FINDINGS if f.experiment == "maml"):
        assert f"| {f.claim} | `maml` | – | **not evaluated** |" in text


def fake_run(reproduce, results: dict, summary: dict | None = None):
    run = reproduce.Run("x", Path("."), False, {}, summary or {})
    run._results = results
    return run


def test_net_reward_check_reads_the_sign_change(reproduce):
    ts = np.linspace(0.0, 1.0, 101)
    base = np.zeros_like(ts)
    loses_then_gains = fake_run(
        reproduce,
        {"ts": ts, "baseline_v": base, "control_v": np.sin(np.pi * (ts - 0.2))},
    )
    always_ahead = fake_run(
        reproduce, {"ts": ts, "baseline_v": base, "control_v": 0.1 + ts}
    )
    check = reproduce.sn_net_reward_early_loss_late_gain
    assert check(loses_then_gains).verdict == reproduce.REPRODUCED
    assert check(always_ahead).verdict == reproduce.NOT_REPRODUCED


def test_missing_summary_entry_is_not_evaluated(reproduce):
    out = reproduce.switch_loss_below(fake_run(reproduce, {}, {}))
    assert out.verdict == reproduce.NOT_EVALUATED and "fraction" in out.evidence
