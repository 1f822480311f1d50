"""The `lecontrol` command line, end to end, and configuration handling."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from lecontrol import cli, io
from lecontrol.experiments import get, names
from lecontrol.runner import ConfigError, load_toml, parse_assignments

DEFAULT = get("single-neuron").default

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = {"control.png", "loss.png", "net_reward_difference.png", "weights.png"}


def _lecontrol(*args, cwd=None, timeout=600):
    """Run the command line in a fresh interpreter, as a user would."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "lecontrol.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def _main(capsys, *args):
    """Run the command line in this process; returns (status, stdout, stderr)."""
    status = cli.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


# ------------------------------------------------------------------------ list


def test_console_script_lists_experiments():
    script = Path(sysconfig.get_path("scripts")) / "lecontrol"
    exe = str(script) if script.exists() else shutil.which("lecontrol")
    assert exe, "the `lecontrol` console script is not installed (pip install -e .)"
    proc = subprocess.run([exe, "list"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("single-neuron"))
    assert "Single neuron" in line  # one-line description


def test_list_in_process(capsys):
    status, out, _ = _main(capsys, "list")
    assert status == 0
    listed = [ln.split()[0] for ln in out.splitlines()]
    assert listed == names()
    assert "single-neuron" in listed


def test_show_prints_loadable_toml(capsys, tmp_path):
    status, out, _ = _main(capsys, "show", "single-neuron", "--quick")
    assert status == 0
    path = tmp_path / "c.toml"
    path.write_text(out)
    quick = get("single-neuron").default_config(quick=True)
    assert "[objective]" in out and "gamma = 0.99" in out
    rebuilt = DEFAULT.replace(load_toml(path), source="t", parse_strings=False)
    assert rebuilt == quick and rebuilt != DEFAULT


# ------------------------------------------------------------- the quick run


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    proc = _lecontrol("run", "single-neuron", "--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc


def test_quick_run_writes_every_file(quick_run):
    out, proc = quick_run
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "results.npz", "summary.json"} <= files
    assert FIGURES <= files
    assert not [f for f in files if f.startswith(".")], "temporary files left behind"
    for name in files & (FIGURES | {"optimisation.png"}):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    assert "optimising V" in proc.stderr  # the progress bar


def test_quick_run_config_is_complete(quick_run):
    out, _ = quick_run
    meta = json.loads((out / "config.json").read_text())
    assert meta["experiment"] == "single-neuron"
    assert meta["quick"] is True
    assert meta["seed"] == 0
    quick = get("single-neuron").default_config(quick=True)
    assert meta["config"] == json.loads(json.dumps(quick.to_dict()))
    assert meta["config"]["objective"]["gamma"] == 0.99
    for pkg in (
        "lecontrol",
        "jax",
        "diffrax",
        "equinox",
        "optax",
        "optimistix",
        "numpy",
        "python",
    ):
        assert meta["versions"][pkg], pkg


def test_quick_run_summary_and_results(quick_run):
    out, _ = quick_run
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "V_baseline",
        "V_control",
        "iterations",
        "wall_time_s",
        "solver_steps",
        "status",
    ):
        assert key in summary, key
    # L-BFGS-B runs to its tolerance on the projected gradient, well within
    # the iterations allowed.
    cfg = get("single-neuron").default_config(quick=True)
    assert summary["status"] == "converged" and summary["optimiser"] == "LBFGSB()"
    assert summary["projected_grad_norm"] <= summary["gtol"] == cfg.optimiser.gtol
    assert np.isfinite(summary["V_baseline"]) and np.isfinite(summary["V_control"])
    assert 0 < summary["iterations"] < cfg.optimiser.iterations
    assert summary["solver_steps"]["baseline"] > 0
    assert summary["solver_steps"]["control"] > 0

    with np.load(out / "results.npz", allow_pickle=False) as data:
        results = {k: data[k] for k in data.files}
    for name, arr in results.items():
        assert arr.dtype.kind in "biuf", name
        assert np.all(np.isfinite(arr)), name
    n = cfg.objective.steps + 1
    assert results["ts"].shape == (n,)
    assert results["ts"][-1] == pytest.approx((n - 1) * cfg.objective.alpha)
    for prefix in ("baseline", "control"):
        for field in ("w", "loss", "g", "v", "V"):
            assert results[f"{prefix}_{field}"].shape == (n,)
    assert results["values"].shape == (summary["iterations"],)
    assert results["theta"].shape == (cfg.control.knots,)
    # The baseline is g = 0; the optimised control respects its bounds.
    np.testing.assert_array_equal(results["baseline_g"], 0.0)
    assert results["control_g"].min() >= cfg.control.lower
    assert results["control_g"].max() <= cfg.control.upper
    # Summary values are the final cumulative values of the saved trajectories.
    assert summary["V_baseline"] == pytest.approx(results["baseline_V"][-1], rel=1e-12)
    assert summary["V_control"] == pytest.approx(results["control_V"][-1], rel=1e-12)


def test_quick_run_control_beats_baseline(quick_run):
    out, _ = quick_run
    summary = json.loads((out / "summary.json").read_text())
    results = io.read_npz(out / "results.npz")
    assert summary["V_control"] > summary["V_baseline"]
    # A real optimisation happened: V rose over the iterations, g is not zero.
    assert results["values"][-1] > results["values"][0]
    assert results["control_g"].max() > 0.01
    # The control speeds learning up: the loss ends below the baseline's.
    assert results["control_loss"][-1] < results["baseline_loss"][-1]


def test_refuses_existing_output_folder(quick_run, capsys):
    out, _ = quick_run
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    status, _, err = _main(capsys, "run", "single-neuron", "--quick", "--out", str(out))
    assert status == 2
    assert "--overwrite" in err and str(out) in err
    assert "Traceback" not in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_plot_regenerates_figures(quick_run, tmp_path, capsys):
    src, _ = quick_run
    run = tmp_path / "copy"
    shutil.copytree(src, run)
    for png in run.glob("*.png"):
        png.unlink()
    status, out, err = _main(capsys, "plot", str(run))
    assert status == 0, err
    regenerated = {p.name for p in run.glob("*.png")}
    assert FIGURES <= regenerated
    for name in regenerated:
        assert (run / name).read_bytes()[:8] == PNG_MAGIC
        assert str(run / name) in out


def test_plot_refuses_non_finite_results(quick_run, tmp_path, capsys):
    src, _ = quick_run
    run = tmp_path / "broken"
    shutil.copytree(src, run)
    results = io.read_npz(run / "results.npz")
    results["control_loss"][5] = np.nan
    io.write_npz(run / "results.npz", results)
    status, _, err = _main(capsys, "plot", str(run))
    assert status == 1
    assert "not finite" in err and "Traceback" not in err


def test_plot_needs_a_run_folder(tmp_path, capsys):
    status, _, err = _main(capsys, "plot", str(tmp_path))
    assert status == 2
    assert "config.json" in err


# ------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "assignment, names_",
    [
        ("objective.gamma=7", ["gamma"]),
        ("objective.gamma=0", ["gamma"]),
        ("objective.gamam=0.9", ["gamam", "objective.gamma"]),  # close match
        ("gamma=0.9", ["gamma", "objective.gamma"]),  # the section left out
        ("optimiser.iterations=1.5", ["optimiser.iterations", "int"]),
        ("optimiser.iterations=-1", ["optimiser.iterations"]),
        ("control.knots=1", ["knots"]),
        ("cost.beta=-1", ["beta"]),
        ("task.sigma=abc", ["task.sigma", "float"]),
        ("control.lower=0.6", ["lower", "upper"]),
        ("control.init=0.9", ["init"]),
        ("objective.alpha=0", ["T"]),
        ("objective.gamma", ["key=value"]),
    ],
)
def test_bad_set_fails_naming_the_key(assignment, names_, tmp_path, capsys):
    out = tmp_path / "run"
    status, _, err = _main(
        capsys,
        "run",
        "single-neuron",
        "--quick",
        "--out",
        str(out),
        "--set",
        assignment,
    )
    assert status == 2
    assert err.startswith("lecontrol: error:")
    assert "Traceback" not in err
    for name in names_:
        assert name in err, (name, err)
    assert not out.exists(), "nothing is written for a bad configuration"


def test_bad_set_through_the_console(tmp_path):
    proc = _lecontrol(
        "run",
        "single-neuron",
        "--out",
        str(tmp_path / "r"),
        "--set",
        "objective.gamma=7",
    )
    assert proc.returncode == 2
    assert "gamma" in proc.stderr and "Traceback" not in proc.stderr


def test_devices_shard_a_sweep_across_cpu_devices(tmp_path):
    """`--devices 2` makes two CPU devices before JAX starts, and the sweep's
    batch is sharded across them (its summary says on how many)."""
    out = tmp_path / "r"
    args = ["run", "single-neuron-sweep", "--quick", "--no-progress", "--out"]
    proc = _lecontrol(*args, str(out), "--devices", "2")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["devices"] == 2 and "on 2 device(s)" in summary["message"]
    proc = _lecontrol(*args, str(tmp_path / "bad"), "--devices", "0")
    assert proc.returncode == 2 and "--devices must be >= 1" in proc.stderr


def test_devices_after_jax_started_are_refused(capsys, tmp_path):
    import jax.numpy as jnp

    jnp.ones(1).block_until_ready()  # JAX has started in this process
    status, _, err = _main(capsys, "run", "single-neuron", "--devices", "3")
    assert status == 2 and "before JAX starts" in err


def test_unknown_experiment(capsys):
    status, _, err = _main(capsys, "run", "single-nueron")
    assert status == 2
    assert "single-nueron" in err and "single-neuron" in err


def test_bad_config_files(tmp_path, capsys):
    cases = {
        "unknown.toml": ("[objective]\ngamam = 0.9\n", ["gamam", "objective.gamma"]),
        "flat.toml": ("gamma = 0.9\n", ["gamma", "objective.gamma"]),
        "type.toml": ('[objective]\ngamma = "high"\n', ["objective.gamma", "float"]),
        "range.toml": ("[objective]\ngamma = 1.5\n", ["gamma"]),
        "syntax.toml": ("gamma = = 1\n", ["TOML"]),
        "table.toml": ("[single-neuron]\ngamma = 0.9\n", ["single-neuron.gamma"]),
        "section.toml": ("objective = 0.9\n", ["objective"]),
    }
    for name, (text, expected) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        status, _, err = _main(
            capsys,
            "run",
            "single-neuron",
            "--config",
            str(path),
            "--out",
            str(tmp_path / "o"),
        )
        assert status == 2, name
        for word in expected:
            assert word in err, (name, word, err)
    status, _, err = _main(
        capsys, "run", "single-neuron", "--config", str(tmp_path / "none.toml")
    )
    assert status == 2 and "does not exist" in err


# ------------------------------------------------------- config assembly


def test_overrides_parse_to_field_types():
    sets = ["objective.gamma=0.5", "optimiser.iterations=12", "optimiser.lr=1e-2"]
    cfg = DEFAULT.replace(parse_assignments([*sets, "seed=3"]), source="--set")
    o = cfg.optimiser
    assert (cfg.objective.gamma, o.iterations, o.lr, cfg.seed) == (0.5, 12, 0.01, 3)
    assert isinstance(o.iterations, int) and isinstance(cfg.objective.gamma, float)
    assert cfg.objective.eta == DEFAULT.objective.eta and DEFAULT.seed == 0


def test_toml_ints_widen_to_float_but_not_the_reverse(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[objective]\ngamma = 1\n[control]\nknots = 11\n")
    cfg = DEFAULT.replace(load_toml(path), source="file", parse_strings=False)
    gamma = cfg.objective.gamma
    assert gamma == 1.0 and isinstance(gamma, float) and cfg.control.knots == 11
    bad = ({"control.knots": 11.0}, {"control.knots": True}, {"objective.gamma": True})
    for case in (*bad, {"objective.gamma": "0.9"}):
        with pytest.raises(ConfigError, match=next(iter(case))):
            DEFAULT.replace(case, source="file", parse_strings=False)


def test_precedence_defaults_quick_file_set_seed(tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    path.write_text("[optimiser]\niterations = 5\n[cost]\nbeta = 0.7\n")
    experiment = get("single-neuron")
    args = cli._parser().parse_args(
        [
            "run",
            "single-neuron",
            "--quick",
            "--config",
            str(path),
            "--set",
            "cost.beta=0.2",
            "--seed",
            "9",
        ]
    )
    cfg = cli._build_config(experiment, args)
    assert cfg.control.knots == experiment.quick["control.knots"]  # quick
    assert cfg.optimiser.iterations == 5  # file over quick
    assert cfg.cost.beta == 0.2  # --set over file
    assert cfg.seed == 9  # --seed last


def test_solver_failure_is_reported_with_advice(tmp_path, capsys):
    out = tmp_path / "run"
    status, _, err = _main(
        capsys,
        "run",
        "single-neuron",
        "--quick",
        "--no-progress",
        "--out",
        str(out),
        "--set",
        "solver.max_steps=5",
    )
    assert status == 1
    assert "max steps reached" in err.replace("_", " ") and "max_steps" in err
    assert "Traceback" not in err
    assert (out / "config.json").is_file()
    assert not (out / "summary.json").exists()  # no summary: the run did not finish


# ------------------------------------------- damaged folders, resume and locks


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize(
    "name, damage",
    [
        ("results.npz", "missing"),
        ("results.npz", "truncated"),
        ("results.npz", "corrupt"),
        ("summary.json", "missing"),
        ("summary.json", "truncated"),
        ("config.json", "missing"),
        ("config.json", "truncated"),
    ],
)
def test_plot_names_a_missing_or_damaged_file(
    quick_run, tmp_path, capsys, name, damage
):
    src, _ = quick_run
    run = tmp_path / "copy"
    shutil.copytree(src, run)
    path = run / name
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        _truncate(path, len(path.read_bytes()) // 2)
    else:  # the middle of the compressed data overwritten
        data = bytearray(path.read_bytes())
        mid = len(data) // 2
        data[mid : mid + 64] = bytes(64)
        path.write_bytes(bytes(data))
    status, _, err = _main(capsys, "plot", str(run))
    assert status == 2, err
    assert err.startswith("lecontrol: error:") and "Traceback" not in err
    assert name in err, err
    assert ("no " + name if damage == "missing" else "damaged") in err, err


def test_plot_of_something_that_is_not_a_folder(tmp_path, capsys):
    status, _, err = _main(capsys, "plot", str(tmp_path / "nope"))
    assert status == 2 and "nope" in err and "not a folder" in err


def _run_folder(folder: Path, **overrides) -> Path:
    """A folder as `lecontrol run` leaves it before the first checkpoint."""
    config = (
        get("single-neuron")
        .default_config(quick=True)
        .replace(overrides, source="test")
    )
    folder.mkdir(parents=True)
    io.write_json(
        folder / "config.json",
        {"experiment": "single-neuron", "seed": 0, "config": config.to_dict()},
    )
    return folder


def test_resume_without_a_checkpoint_is_refused(tmp_path, capsys):
    """Resuming a folder with no checkpoint used to start again from iteration
    0 silently; it is a usage error that names the folder and the fix."""
    run = _run_folder(tmp_path / "run", checkpoint_every=10)
    before = (run / "config.json").read_bytes()
    status, _, err = _main(capsys, "run", "single-neuron", "--resume", str(run))
    assert status == 2, err
    assert err.startswith("lecontrol: error:") and "Traceback" not in err
    assert f"--resume {run}" in err and "no checkpoint" in err
    assert "checkpoint_every" in err and "--overwrite" in err
    # Nothing was written or left behind (config.json, no lock file).
    assert (run / "config.json").read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]


def test_second_run_on_a_locked_folder_is_refused(tmp_path):
    """A run holds an OS lock on its folder: another process asking for the
    same folder (even with --overwrite) is refused, naming the folder."""
    out = tmp_path / "run"
    out.mkdir()
    with io.lock_out_dir(out):
        for extra in ((), ("--overwrite",)):
            proc = _lecontrol(
                "run", "single-neuron", "--quick", "--no-progress", "--out", str(out),
                *extra,
            )  # fmt: skip
            assert proc.returncode == 2, proc.stderr
            assert "Traceback" not in proc.stderr
            assert str(out) in proc.stderr and "in use" in proc.stderr
            assert f"process {os.getpid()}" in proc.stderr
    # The lock file goes with the lock; the refused runs wrote nothing.
    assert list(out.iterdir()) == []


def test_resume_of_a_locked_folder_is_refused(tmp_path, capsys):
    run = _run_folder(tmp_path / "run", checkpoint_every=10)
    (run / "checkpoint-0.npz").write_bytes(b"")  # resume gets as far as the lock
    before = (run / "config.json").read_bytes()
    with io.lock_out_dir(run):
        status, _, err = _main(capsys, "run", "single-neuron", "--resume", str(run))
    assert status == 2 and str(run) in err and "in use" in err, err
    assert (run / "config.json").read_bytes() == before


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    """flock dies with its process: after a SIGKILL the folder can be locked
    again at once, although the lock file is still there."""
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import sys, time; from lecontrol import io\n"
            f"with io.lock_out_dir({str(out)!r}):\n"
            "    print('locked', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(io.OutputDirError, match="in use"):
            with io.lock_out_dir(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert (out / io.LOCK_NAME).exists()  # left behind by the killed process
    with io.lock_out_dir(out):
        pass
    assert not (out / io.LOCK_NAME).exists()


def test_quick_run_checks_its_findings_against_negative_controls(quick_run):
    """Every finding is checked on the run and fails on each negative control."""
    out, _ = quick_run
    verdicts = json.loads((out / "summary.json").read_text())["verdicts"]
    assert set(verdicts) == {f.name for f in get("single-neuron").findings}
    for name, v in verdicts.items():
        assert v["negative_controls"], name
        assert not any(n["holds"] for n in v["negative_controls"].values()), name
    # The quick run converges (31 knots): every finding holds.
    assert all(v["status"] == "holds" for v in verdicts.values()), verdicts
    assert verdicts["value_gain"]["effect"] > verdicts["value_gain"]["margin"]
