"""The benchmark scripts run from a clean install (smallest problem, one repeat).

They are benchmarks, not tests: nothing here checks a time. What is checked is
that each script runs, prints its table, writes its figure, and that the
gradient errors it reports for the adaptive strategies are small while the
paper's Euler method's is not (the single neuron, N = 600).
"""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(*args):
    out = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_gradients_benchmark_runs():
    text = _run(
        "benchmarks/gradients.py",
        "--problems",
        "single-neuron",
        "--repeat",
        "1",
        "--rtol",
        "1e-6",
        "--no-memory",
    )
    errors = {
        m.group(1).strip(): float(m.group(2))
        for m in re.finditer(
            r"^(\S+)\s+[\d.]+\s+[\d.]+\s+\d+\s+[\d.-]+\s+(\S+)$", text, re.M
        )
    }
    assert set(errors) == {
        "ContinuousAdjoint",
        "ContinuousAdjoint(nodes=3)",
        "CheckpointAdjoint",
        "EulerUnrolled(dt=0.001)",
    }, text
    assert errors["ContinuousAdjoint"] < 1e-6
    assert errors["EulerUnrolled(dt=0.001)"] > 1e-3
    assert "faster" in text


def test_work_precision_benchmark_writes_a_figure(tmp_path):
    text = _run(
        "benchmarks/work_precision.py",
        "--problems",
        "single-neuron",
        "--repeat",
        "1",
        "--rtols",
        "1e-4",
        "--euler-factors",
        "1",
        "--zo-samples",
        "8",
        "--out",
        str(tmp_path),
    )
    assert (tmp_path / "work_precision_single-neuron.png").stat().st_size > 10_000
    assert "EulerUnrolled" in text
    # ZerothOrder with 8 pairs of directions for 61 coefficients: its error is
    # of order sqrt(62 / 8) = 2.8 (measured 4.2), far from the adjoints'.
    zo = re.search(r"^ZerothOrder\s+samples=8\s+[\d.]+ ms\s+error (\S+)$", text, re.M)
    assert zo is not None, text
    assert 0.3 < float(zo.group(1)) < 30


def test_forward_mode_benchmark_runs():
    text = _run(
        "benchmarks/forward_mode.py",
        "--problems",
        "single-neuron",
        "--repeat",
        "1",
        "--rtol",
        "1e-6",
    )
    diffs = {
        m.group(1).strip(): (int(m.group(2)), float(m.group(3)))
        for m in re.finditer(
            r"^(.+?)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+(\S+)\s+\w+ [\d.]+x faster$",
            text,
            re.M,
        )
    }
    assert diffs.keys() == {"lam, tau, eta, gamma", "theta (all knots)"}, text
    assert diffs["lam, tau, eta, gamma"][0] == 4
    assert diffs["theta (all knots)"][0] == 61
    # Forward and reverse mode converge to the same derivative at rtol = 1e-6.
    for _, diff in diffs.values():
        assert diff < 1e-5
    jvp = re.search(r"^one JVP in theta: .* rel diff (\S+)$", text, re.M)
    assert jvp is not None and float(jvp.group(1)) < 1e-5, text


def test_sweep_batching_benchmark_agrees_across_modes():
    """Vmapped and one at a time, the sweep reaches the same V (the benchmark
    compares times only where the results agree)."""
    text = _run(
        "benchmarks/sweep_batching.py",
        "--problems",
        "single-neuron-sweep",
        "--iterations",
        "1",
        "2",
    )
    rows = re.findall(r"^\s+(none|1)\s+[\d.-]+\s+(\S+)\s+(\S+)$", text, re.M)
    assert [r[0] for r in rows] == ["none", "1"], text
    (_, *vmapped), (_, *grouped) = rows
    assert all(float(a) < 0 for a in vmapped), text
    for a, b in zip(vmapped, grouped, strict=True):
        assert abs(float(a) - float(b)) <= 1e-9 * abs(float(a)), text
    assert "speed-up over the vmapped batch: batch_size=1:" in text


def test_sweep_devices_benchmark_agrees_across_devices():
    """On one device and on two, in blocks or round robin, the horizons reach
    the same V (the benchmark compares times of the same computation)."""
    text = _run("benchmarks/sweep_devices.py", "--quick", "--iterations", "3")
    rows = re.findall(
        r"^\s+(\d)\s+(blocks|round robin)\s+[\d.]+\s+[\d.]+x\s+(\S+)$", text, re.M
    )
    assert [(d, p) for d, p, _ in rows] == [
        ("1", "round robin"),
        ("2", "blocks"),
        ("2", "round robin"),
    ], text
    assert all(float(dV) <= 1e-12 for *_, dV in rows), text


def test_profile_benchmark_times_every_stage_and_its_own_loop_agrees():
    text = _run(
        "benchmarks/profile_adjoint.py",
        "--problem",
        "gain-gaussians",
        "--rtol",
        "1e-6",
        "--repeat",
        "1",
        "--rounds",
        "1",
        "--evaluations",
        "50",
    )
    for stage in ("forward solve, saving w", "costate solve", "minimal loop"):
        assert re.search(rf"^{stage} +[0-9.]+ ms", text, re.M), text
    for piece in ("forward field", "costate field", "interpolant", "control"):
        assert re.search(rf"^  {piece} +[0-9.]+ µs", text, re.M), text
    # The minimal loop solves the same problem as diffeqsolve, with its own
    # steps (gain-Gaussians rejects some: the step rule is exercised): V
    # agrees to the tolerance (4e-9 at rtol 1e-6 when measured).
    diff = float(re.search(r"relative difference ([0-9.e+-]+)\)", text).group(1))
    assert diff < 1e-6, text
