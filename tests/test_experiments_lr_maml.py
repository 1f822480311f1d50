"""`learning-rate`, `maml`, `single-neuron-sweep` and `learning-rate-sweep`
through the command line, end to end, with their findings where a quick run
can show them."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import lecontrol as lc
from lecontrol import cli, io
from lecontrol.experiments import get, learning_rate_sweep, maml
from lecontrol.experiments.shared import comparison as cmp
from lecontrol.runner import ConfigError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = {
    "learning-rate": {
        "control.png",
        "loss.png",
        "net_reward_difference.png",
        "level_loss.png",
        "hamiltonian.png",
        "optimisation.png",
    },
    "maml": {
        "cumulative_loss.png",
        "one_step_loss.png",
        "loss_curves.png",
        "optimisation.png",
        "per_task.png",
    },
    "single-neuron-sweep": {
        "total_control.png",
        "value_gain.png",
        "optimisation.png",
        *(f"control_{p}.png" for p in ("gamma", "sigma", "beta", "lam", "horizon")),
    },
    "learning-rate-sweep": {
        "total_control.png",
        "value_gain.png",
        "optimisation.png",
        *(f"{k}_{p}.png" for k in ("control", "loss") for p in ("gamma", "beta")),
    },
}


def _lecontrol(*args, timeout=900):
    """Run the command line in a fresh interpreter, as a user would."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "lecontrol.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.fixture(scope="module", params=list(FIGURES))
def quick_run(request, tmp_path_factory):
    name = request.param
    out = tmp_path_factory.mktemp(name) / "run"
    proc = _lecontrol("run", name, "--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    return name, out, summary, io.read_npz(out / "results.npz"), proc


def test_quick_run_files_and_value(quick_run):
    name, out, summary, results, _ = quick_run
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "results.npz", "summary.json"} <= files
    assert FIGURES[name] <= files, FIGURES[name] - files
    for figure in FIGURES[name]:
        assert (out / figure).read_bytes()[:8] == PNG_MAGIC, figure
    meta = json.loads((out / "config.json").read_text())
    assert meta["experiment"] == name and meta["quick"] is True
    quick = get(name).default_config(quick=True)
    assert meta["config"] == json.loads(json.dumps(quick.to_dict()))
    for key in ("V_baseline", "V_control", "iterations", "wall_time_s", "solver_steps"):
        assert key in summary, key
    assert summary["status"] in ("completed", "converged"), summary["message"]
    assert 0 < summary["iterations"] <= quick.optimiser.iterations
    default = "Adam(lr=0.02)" if name == "maml" else "LBFGSB()"  # see maml.py
    assert summary["optimiser"] == default
    assert np.isfinite(summary["projected_grad_norm"])
    if name != "maml":
        # Every optimum converged to the stated tolerance (a batch: all).
        assert summary["gtol"] == quick.optimiser.gtol > 0
        assert summary["status"] == "converged", summary["message"]
        assert summary["projected_grad_norm"] <= summary["gtol"]
    else:  # no maximiser, no tolerance: the paper's budget (see maml.py)
        assert quick.optimiser.gtol == 0 and summary["gtol"] is None
        assert summary["iterations"] == quick.optimiser.iterations
        assert "no finite maximiser" in summary["tolerance_note"]
    assert summary["solver_steps"]["baseline"] > 0
    assert summary["solver_steps"]["control"] > 0
    assert np.isfinite(summary["V_baseline"]) and np.isfinite(summary["V_control"])
    assert summary["V_control"] >= summary["V_baseline"]
    for key, arr in results.items():
        assert arr.dtype.kind in "biuf", key
        assert np.all(np.isfinite(arr)), key


def test_plot_redraws_the_figures(quick_run, tmp_path, capsys):
    name, src, _, _, _ = quick_run
    run = tmp_path / "copy"
    shutil.copytree(src, run)
    for png in run.glob("*.png"):
        png.unlink()
    status = cli.main(["plot", str(run)])
    _, err = capsys.readouterr()
    assert status == 0, err
    assert FIGURES[name] <= {p.name for p in run.glob("*.png")}


# ------------------------------------------------------------------ findings


def test_findings(quick_run):
    name, _, summary, results, proc = quick_run
    {
        "learning-rate": _learning_rate_findings,
        "maml": _maml_findings,
        "single-neuron-sweep": _single_neuron_sweep_findings,
        "learning-rate-sweep": _learning_rate_sweep_findings,
    }[name](summary, results, proc)


def _learning_rate_findings(summary, results, proc):
    cfg = get("learning-rate").default_config(quick=True)
    assert "optimising V" in proc.stderr  # the progress bar
    rho = results["control_g"]
    assert rho.min() >= cfg.control.lower and rho.max() <= cfg.control.upper
    np.testing.assert_array_equal(results["baseline_g"], 0.0)
    assert summary["V_control"] > summary["V_baseline"]
    assert summary["V_control"] == pytest.approx(results["control_V"][-1], rel=1e-12)
    # With the base rate free (offset 0), the optimum speeds learning up:
    # a higher rate early on, and every level of the hierarchy learned sooner.
    quarter = results["ts"] <= results["ts"][-1] / 4
    assert rho[quarter].mean() > 0.1
    base, ctrl = summary["level_times_baseline"], summary["level_times_control"]
    assert None not in base and None not in ctrl
    assert all(c < b for b, c in zip(base, ctrl))
    v = summary["verdicts"]["every_level_sooner"]
    assert v["status"] == "holds" and v["effect"] > v["margin"], v["evidence"]
    assert v["negative_controls"]["baseline"]["holds"] is False
    # The levels' losses add up to the loss (lambda = 0: no regulariser).
    np.testing.assert_allclose(
        results["control_level_loss"].sum(1), results["control_loss"], atol=1e-10
    )
    # gamma = 1: H is nearly constant along the optimum (quick run: 0.011 on a
    # net reward that spans 2.6), not along the optimum reversed in time (0.54);
    # along the constant base rate it is constant whatever the optimality.
    spread = summary["hamiltonian_spread"]
    assert spread["control"] < 0.02 * np.ptp(results["control_v"])
    assert summary["hamiltonian_relative_spread"] < 0.02
    assert spread["reversed"] > 20 * spread["control"]
    assert spread["baseline"] < 1e-4
    np.testing.assert_allclose(
        np.ptp(results["control_hamiltonian"]), spread["control"], rtol=1e-12
    )


def _maml_findings(summary, results, proc):
    cfg = get("maml").default_config(quick=True)
    assert "offline stand-in, not MNIST" in summary["dataset"]
    h = results["horizons"]
    assert list(h) == list(cfg.objective.horizons) and h[0] == 1
    cumulative = results["cumulative_loss"]
    # Every optimised initialisation beats the random one on the window.
    assert np.all(cumulative[1:] < cumulative[0])
    # The paper (Fig. 3a, App. F.1): one-step MAML under-performs multi-step MAML.
    assert summary["one_step_underperforms_multi_step"] is True
    assert cumulative[1] > cumulative[2:].min()
    verdicts = summary["verdicts"]
    for key, v in verdicts.items():
        controls = v["negative_controls"]
        assert set(controls) == {"horizons reversed", "baseline"}, key
        assert not any(c["holds"] for c in controls.values()), key
    # The quick horizons (1, 10, 40) do not reach 180 steps: not measurable.
    assert verdicts["one_step_ahead_rises"]["effect"] is None
    assert verdicts["one_step_ahead_rises"]["status"] == "fails"
    # The evaluation window: one sample per inner step, from every
    # initialisation (row 0: the random one), on training and held-out images.
    window = cfg.outputs.eval_steps
    assert summary["eval_steps"] == window and window > max(cfg.objective.horizons)
    for key in ("eval_loss", "eval_test_loss"):
        assert results[key].shape == (len(h) + 1, window + 1), key
    held_out = results["cumulative_test_loss"]
    assert np.all(held_out[1:] < held_out[0])  # optimised beats random there too
    assert not np.allclose(held_out, cumulative)  # other images, other losses
    # Fig. 6a-e: each task's own inner loop, solved separately; the tasks are
    # independent given the initialisation, so their mean is the average loss.
    per_task = results["eval_task_loss"]
    assert per_task.shape == (len(cfg.task.pairs) // 2, len(h) + 1, window + 1)
    np.testing.assert_allclose(per_task.mean(axis=0), results["eval_loss"], rtol=1e-5)
    assert np.ptp(per_task[:, :, -1], axis=0).min() > 1e-3  # the tasks differ
    np.testing.assert_array_equal(results["one_step_task_loss"], per_task[:, :, 1])
    # No finite maximiser: initialisations with a zero product and a growing
    # norm beat the optimised one and close in on the least-squares bound.
    sup, optimised = summary["V_supremum"], summary["V_control"]
    ray = [summary["V_zero_product_init"][str(s)] for s in maml.SCALES]
    assert summary["V_gap_to_supremum"] == pytest.approx(sup - optimised)
    assert all(a < b < sup for a, b in zip(ray, ray[1:]))
    assert ray[-1] > optimised and (sup - ray[-1]) < 0.2 * (sup - optimised)
    assert set(summary["one_step_task_loss"]) == {
        "0 vs 1",
        "7 vs 1",
        "8 vs 9",
        "3 vs 8",
        "5 vs 3",
    }
    # The window's cumulative loss is the integral of its loss curve.
    steps, alpha = results["steps"], cfg.objective.alpha
    np.testing.assert_allclose(
        cumulative, np.trapezoid(results["eval_loss"], steps * alpha, axis=1), rtol=1e-3
    )


def _monotone(values, y, sign):
    order = np.argsort(values)
    return np.all(sign * np.diff(np.asarray(y)[order]) > 0)


def _single_neuron_sweep_findings(summary, results, proc):
    cfg = get("single-neuron-sweep").default_config(quick=True)
    assert summary["problems"] == 1 + 3 * 5
    grids = cfg.flat()
    for name, key in (
        ("gamma", "objective.gammas"),
        ("sigma", "task.sigmas"),
        ("beta", "cost.betas"),
        ("lam", "system.lams"),
        ("horizon", "objective.horizons"),
    ):
        np.testing.assert_allclose(results[f"{name}_values"], grids[key])
        g = results[f"{name}_g"]
        assert g.min() >= cfg.control.lower and g.max() <= cfg.control.upper
        assert np.all(results[f"{name}_V_control"] >= results[f"{name}_V_baseline"])
    # The paper (Figs. 2g, 9a): less control for larger sigma and beta. (Its
    # "more control for larger gamma" does not hold at this size once the
    # optima converge: the total control is about 0.09 for every gamma, and
    # falls slightly as gamma grows; the check reports it as failing.)
    assert _monotone(cfg.task.sigmas, results["sigma_total_control"], -1)
    assert _monotone(cfg.cost.betas, results["beta_total_control"], -1)
    holding = {"less_control_for_larger_sigma", "less_control_for_larger_beta"}
    _trends_hold_and_fail_on_negative_controls(summary, 3, holding)
    assert summary["optimiser"] == "LBFGSB()" and summary["gtol"] == 1e-9
    # The default point of the sweep is the single-neuron problem, and the
    # sweep rows holding the default values solve the same problem.
    row = list(cfg.cost.betas).index(cfg.cost.beta)
    assert results["beta_V_control"][row] == pytest.approx(
        summary["V_control"], rel=1e-9
    )
    # g(t) is largest early and decays.
    g = results["default_g"]
    assert g[: len(g) // 4].mean() > g[-len(g) // 4 :].mean()


def _trends_hold_and_fail_on_negative_controls(summary, count, holding):
    verdicts = summary["verdicts"]
    assert len(verdicts) == count
    for name, v in verdicts.items():
        assert v["status"] == ("holds" if name in holding else "fails"), v
        controls = v["negative_controls"]
        assert set(controls) == {"values reversed", "no control"}
        if v["status"] == "holds":
            assert not any(c["holds"] for c in controls.values()), name


def _learning_rate_sweep_findings(summary, results, proc):
    cfg = get("learning-rate-sweep").default_config(quick=True)
    # The quick run's base rate is free (offset 0): every level is learned at
    # every β, so the costly-control finding is not about it, and on its
    # arrays (as if costly) it fails: the free-cost negative control.
    assert cfg.cost.offset == 0.0 and float(results["cost_offset"]) == 0.0
    assert summary["beta_levels_learned"] == [4] * len(cfg.cost.betas)
    verdicts = dict(summary["verdicts"])
    assert verdicts.pop("first_levels_only")["status"] == "not applicable"
    summary = summary | {"verdicts": verdicts}
    costly = dict(results) | {"cost_offset": np.asarray(-1.0)}
    v = learning_rate_sweep.FIRST_LEVELS_ONLY.check(costly)
    assert v.status == "fails" and v.effect == 0.0, v.evidence
    gammas, betas = cfg.objective.gammas, cfg.cost.betas
    assert summary["problems"] == 1 + len(gammas) + len(betas)
    # The paper (Fig. 3c,d; Fig. 8): more control for larger gamma and smaller beta.
    assert _monotone(gammas, results["gamma_total_control"], +1)
    assert _monotone(betas, results["beta_total_control"], -1)
    _trends_hold_and_fail_on_negative_controls(summary, 2, set(summary["verdicts"]))
    for name in ("gamma", "beta"):
        assert np.all(results[f"{name}_V_control"] >= results[f"{name}_V_baseline"])
        rho = results[f"{name}_g"]
        assert rho.min() >= cfg.control.lower and rho.max() <= cfg.control.upper
    # The default point is the learning-rate experiment's problem, solved to the
    # same tolerances (the sweep stores fewer dense steps: `solver.max_steps`).
    single = get("learning-rate").default_config(quick=True)
    for section in ("task", "system", "control", "cost", "objective", "solver"):
        mine = {k: cfg[section][k] for k in single[section] if k != "max_steps"}
        assert mine == {k: v for k, v in single[section].items() if k != "max_steps"}
    assert cfg.solver.max_steps == 1024 < single.solver.max_steps


# ---------------------------------------------------------- optimiser choice

ADAM_EXPERIMENTS = ("learning-rate", "learning-rate-sweep", "maml")


@pytest.mark.parametrize("name", ADAM_EXPERIMENTS)
def test_the_papers_adam_stays_selectable(name):
    """L-BFGS-B by default (MAML: Adam, see maml.py); `optimiser.method =
    "adam"` is the paper's Adam
    (Table 2-3) at `optimiser.lr`; other methods are refused by the check."""
    exp = get(name)
    cfg = exp.default_config()
    default = "adam" if name == "maml" else "lbfgsb"  # MAML: see its docstring
    assert cfg.optimiser.method == default
    assert cfg.optimiser.gtol == 0 if name == "maml" else cfg.optimiser.gtol > 0
    exp.check(cfg.replace({"optimiser.method": "lbfgsb"}, source="test"))
    adam = cfg.replace({"optimiser.method": "adam"}, source="test")
    exp.check(adam)
    opt = cmp.configured_optimizer(adam, cmp.ADAM_METHODS)
    assert opt == lc.optimizers.Adam(lr=5e-3)
    assert adam.optimiser.iterations == (2000 if name == "maml" else 800)
    for method in ("pga", "sgd"):
        bad = cfg.replace({"optimiser.method": method}, source="test")
        with pytest.raises(ConfigError, match="optimiser.method"):
            exp.check(bad)
    with pytest.raises(ConfigError, match="optimiser.gtol"):
        exp.check(cfg.replace({"optimiser.gtol": -1.0}, source="test"))
    # The batched ones (MAML's horizons, the sweep's points) compute their
    # problems in groups of `optimiser.batch_size` (an integer >= 1, by
    # default 1); `learning-rate`, one problem, has no such key.
    if name == "learning-rate":
        assert cfg.optimiser.get("batch_size") is None
        return
    assert cfg.optimiser.batch_size == 1
    exp.check(cfg.replace({"optimiser.batch_size": 4}, source="test"))
    for size in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="optimiser.batch_size"):
            exp.check(cfg.replace({"optimiser.batch_size": size}, source="test"))


# ------------------------------------------- costly control: the first levels


def _levels_run(learned, betas=(0.01, 0.5, 2.0), offset=-1.0, levels=4):
    """Arrays of a costly sweep whose β runs learn the levels `learned`
    (a bool per level): each level's loss falls to 0.1 of its start if
    learned, else to 0.9."""
    losses = np.ones((len(betas), 5, levels))
    losses[:, -1] = np.where(np.asarray(learned), 0.1, 0.9)
    return {
        "beta_values": np.asarray(betas, dtype=float),
        "beta_level_loss": losses,
        "cost_offset": np.asarray(offset),
    }


def _first(n, levels=4):
    return np.arange(levels) < n


def test_first_levels_only_holds_and_fails_on_its_negative_controls():
    finding = learning_rate_sweep.FIRST_LEVELS_ONLY
    v = finding.check(_levels_run([_first(4), _first(2), _first(1)]))
    assert v.status == "holds" and v.effect == 3.0, v.evidence
    assert v.negatives == {"values reversed": 0.0, "every level learned": 0.0}
    # The claim's shape absent: every level learned everywhere, none anywhere,
    # more levels for costlier control, or a later level learned first.
    for learned in (
        [_first(4)] * 3,
        [_first(0)] * 3,
        [_first(1), _first(2), _first(4)],
        [_first(4), [True, False, True, False], _first(1)],
    ):
        v = finding.check(_levels_run(learned))
        assert v.status == "fails" and v.effect <= 0, v.evidence
    # With the base rate free (offset 0) the claim is not about the run.
    v = finding.check(_levels_run([_first(4), _first(2), _first(1)], offset=0.0))
    assert v.status == "not applicable" and v.negatives == {}
    assert v.to_dict()["effect"] is None


def test_maml_resumes_after_a_failed_evaluation_without_optimising_again(
    quick_run, tmp_path, monkeypatch, capsys
):
    """The optimisation's end is checkpointed: a run that fails in the
    evaluation resumes from there and gives the uninterrupted run's numbers."""
    name, _, summary, results, _ = quick_run
    if name != "maml":
        pytest.skip("maml only")
    assert get("maml").default_config(quick=True).checkpoint_every > 0
    out = tmp_path / "run"

    def too_few_steps(cfg):  # the evaluation window outgrows max_steps
        return lc.SolverOptions(rtol=cfg.solver.rtol, atol=cfg.solver.atol, max_steps=2)

    monkeypatch.setattr(maml, "evaluation_options", too_few_steps)
    status = cli.main(["run", "maml", "--quick", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err
    assert status == cli.EXIT_FAILED and "max_steps reached" in err, err
    assert f"--resume {out}" in err, err
    assert not (out / "summary.json").exists()
    assert (out / "checkpoint-0.npz").exists()

    monkeypatch.undo()
    status = cli.main(["run", "maml", "--resume", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 0, err
    iterations = get("maml").default_config(quick=True).optimiser.iterations
    # Resumed at the loop's end: no iteration is run again.
    assert f"resuming from checkpoint-0.npz at iteration {iterations}" in err, err
    resumed = json.loads((out / "summary.json").read_text())
    for key in ("V_baseline", "V_control", "projected_grad_norm"):
        np.testing.assert_allclose(resumed[key], summary[key], rtol=1e-12, err_msg=key)
    again = io.read_npz(out / "results.npz")
    np.testing.assert_allclose(
        again["cumulative_loss"], results["cumulative_loss"], rtol=1e-12
    )
    assert not list(out.glob("checkpoint-*.npz"))  # removed once complete
