"""knot-convergence: the piecewise-linear optimum as its knots are refined."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from lecontrol.experiments import get, knot_convergence as kc
from lecontrol.runner import ConfigError, execute


def _config(**changes):
    experiment = get("knot-convergence")
    return experiment.default_config(quick=True).replace(changes, source="test")


@pytest.mark.slow  # three compiled optimisations: ~50 s of CPU
def test_quick_run_end_to_end(tmp_path):
    """Single-neuron (quick variant, 7 knots of its own) at 4, 7 and 13 knots:
    nested knots, so V can only rise; g converges; the files are written."""
    cfg = _config(**{"task.overrides": "control.knots=7", "control.knots": "4,13"})
    summary = execute(get("knot-convergence"), cfg, tmp_path)
    r = np.load(tmp_path / "results.npz")
    assert list(r["knot_counts"]) == [4, 7, 13] and int(r["base_knots"]) == 7
    assert r["control_g"].shape == (3, r["ts"].size, 1)
    assert np.all(np.diff(r["V"]) > -1e-12), r["V"]  # nested spaces: V rises
    # the same L2 tolerance on dV/dg: gtol scaled by sqrt(h_K / h_base)
    np.testing.assert_allclose(r["gtol"], 1e-9 * np.sqrt(6 / (r["knot_counts"] - 1)))
    assert np.all(r["projected_grad_norm"] <= r["gtol"])
    assert summary["status"] == "converged"
    # the summary's norm and tolerance: the count farthest from its own
    worst = int(np.argmax(r["projected_grad_norm"] / r["gtol"]))
    assert summary["projected_grad_norm"] == r["projected_grad_norm"][worst]
    assert summary["gtol"] == r["gtol"][worst]
    assert summary["projected_grad_norm"] <= summary["gtol"]
    assert summary["V_baseline"] == r["V"][1] and summary["V_control"] == r["V"][2]
    for name in ("value_converges", "control_converges"):
        assert summary["verdicts"][name]["status"] == "holds", summary["verdicts"]
    base = summary["verdicts"]["base_knots_resolve_value"]["negative_controls"]
    assert not any(c["holds"] for c in base.values()), base
    assert (tmp_path / "convergence.png").stat().st_size > 0
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["base_experiment"] == "single-neuron"
    # every count's g lies within the bounds and starts at the coarse optimum's
    # interpolant: the ladder's g agree to within the coarse distance
    assert r["control_g"].min() >= 0.0 and r["control_g"].max() <= 0.5


def _synthetic(order: float = 2.0, counts=(5, 9, 17, 33, 65), base=17) -> dict:
    """Results of a converging ladder: $g_K$ the interpolant of a smooth $g$
    on $K$ knots, $V_K = V^* - 10^{-4} h_K^\\text{order}$, $V$ of the start -0.11."""
    ts = np.linspace(0.0, 1.0, 257)
    smooth = lambda t: 0.5 * np.exp(-5 * t) + 0.1 * np.sin(7 * t)  # noqa: E731
    g = [
        np.interp(ts, np.linspace(0, 1, k), smooth(np.linspace(0, 1, k)))
        for k in counts
    ]
    h = 1.0 / (np.asarray(counts) - 1)
    return {
        "knot_counts": np.asarray(counts),
        "base_knots": np.asarray(base),
        "ts": ts,
        "control_g": np.stack(g)[:, :, None],
        "V": -0.1 - 1e-4 * h**order,
        "V_start": np.asarray(-0.11),
        "projected_grad_norm": np.zeros(len(counts)),
        "iterations": np.ones(len(counts), int),
    }


@pytest.mark.parametrize("finding", kc.FINDINGS, ids=lambda f: f.name)
def test_findings_hold_on_a_converging_ladder_and_fail_on_its_negative_controls(
    finding,
):
    verdict = finding.check(_synthetic())
    assert verdict.status == "holds", (verdict.evidence, verdict.negatives)
    assert all(
        e <= finding.margin or not np.isfinite(e) for e in verdict.negatives.values()
    )


def test_observed_order_of_an_interpolant_is_two():
    d = kc.distances(_synthetic())
    assert d["order_l2"] == pytest.approx(2.0, abs=0.15)
    assert 1.0 < d["order_sup"] < 2.5  # pre-asymptotic on the coarsest knots


def test_findings_fail_on_a_ladder_that_does_not_converge():
    r = _synthetic()
    rng = np.random.default_rng(0)
    r["control_g"] = rng.uniform(0, 0.5, r["control_g"].shape)  # unrelated g's
    r["V"] = -0.1 + 1e-3 * rng.standard_normal(len(r["V"]))
    for finding in kc.FINDINGS:
        assert finding.check(r).status == "fails", finding.name


def test_refine_is_exact_on_nested_knots():
    """A coarse piecewise-linear g is one of the finer ones: interpolating its
    coefficients onto nested knots leaves g unchanged."""
    import lecontrol as lc

    coarse = lc.controls.PiecewiseLinear(jnp.linspace(0, 0.6, 7), (), 0.0, 0.5)
    fine = lc.controls.PiecewiseLinear(jnp.linspace(0, 0.6, 13), (), 0.0, 0.5)
    theta = jnp.array([0.5, 0.5, 0.3, 0.2, 0.1, 0.05, 0.0])
    refined = kc.refine(theta, coarse.knots, fine.knots, fine)
    ts = jnp.linspace(0, 0.6, 101)
    g = lambda c, th: np.array([c(th, t) for t in ts])  # noqa: E731
    np.testing.assert_allclose(g(fine, refined), g(coarse, theta), atol=1e-14)


def test_fine_times_hold_every_knot():
    ts = kc.fine_times(0.6, [4, 7, 13, 61, 301, 601], 2001)
    for k in (4, 7, 13, 61, 301, 601):
        knots = np.linspace(0, 0.6, k)
        assert np.min(np.abs(ts[:, None] - knots[None]), axis=0).max() < 1e-12
    assert ts.size >= 2001


def test_ladder_and_base_are_checked():
    experiment = get("knot-convergence")
    with pytest.raises(ConfigError, match="control.knots"):
        experiment.validate(_config(**{"control.knots": "4.5,9"}))
    with pytest.raises(ConfigError, match="no default ladder"):
        experiment.validate(_config(**{"task.experiment": "effort-semantic"}))
    with pytest.raises(ConfigError, match="piecewise-linear control"):
        experiment.validate(_config(**{"task.experiment": "maml"}))
    with pytest.raises(ConfigError, match="unknown config key"):
        experiment.validate(_config(**{"task.overrides": "objective.stepz=5"}))
    cfg = _config(**{"control.knots": "13,4"})
    assert kc.ladder(cfg, kc.base(cfg)[1]) == [4, 13, 31]  # the base's 31 added
