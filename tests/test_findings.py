"""Findings: effect sizes against margins, and negative controls that fail."""

import numpy as np
import pytest

from lecontrol.findings import (
    Finding,
    baseline_as_control,
    check_all,
    reversed_control,
)

TS = np.linspace(0.0, 1.0, 11)
RESULTS = {
    "ts": TS,
    "baseline_g": np.zeros(11),
    "control_g": np.exp(-5 * TS),
    "baseline_V": np.array([0.0, -1.0]),
    "control_V": np.array([0.0, -0.5]),
    "theta_init": np.zeros(3),
    "theta": np.ones(3),
}


def _early(r):
    g = r["control_g"]
    return (g[:3].mean() - g[-3:].mean()) / g.max() if g.max() > 0 else np.nan, ""


def test_negative_controls_replace_or_reverse_the_control():
    base = baseline_as_control(RESULTS)
    np.testing.assert_array_equal(base["control_g"], RESULTS["baseline_g"])
    np.testing.assert_array_equal(base["control_V"], RESULTS["baseline_V"])
    np.testing.assert_array_equal(base["theta"], RESULTS["theta_init"])
    rev = reversed_control(RESULTS)
    np.testing.assert_array_equal(rev["control_g"], RESULTS["control_g"][::-1])
    np.testing.assert_array_equal(rev["control_V"], RESULTS["control_V"])


def test_a_finding_holds_and_its_negative_controls_fail():
    f = Finding("early", "g early", _early, 0.25, "…", ("baseline", "reversed"))
    v = f.check(RESULTS)
    assert v.holds and v.informative and v.status == "holds"
    assert np.isnan(v.negatives["baseline"]) and v.negatives["reversed"] < 0
    stored = check_all([f], RESULTS)["early"]
    assert stored["negative_controls"]["baseline"] == {"effect": None, "holds": False}


def test_a_check_that_cannot_fail_is_reported_as_uninformative():
    always = Finding("always", "…", lambda r: (1.0, ""), 0.5, "…")
    v = always.check(RESULTS)
    assert v.holds and not v.informative and v.status == "uninformative"


@pytest.mark.parametrize("effect", [0.1, np.nan, np.inf, -np.inf])
def test_a_small_or_non_finite_effect_fails(effect):
    v = Finding("f", "…", lambda r: (effect, ""), 0.25, "…").check(RESULTS)
    assert not v.holds and v.status == "fails"


def test_a_finding_needs_known_negative_controls_and_a_finite_margin():
    with pytest.raises(ValueError, match="negative_controls"):
        Finding("f", "…", _early, 0.1, "…", ())
    with pytest.raises(ValueError, match="negative_controls"):
        Finding("f", "…", _early, 0.1, "…", ("shuffled-ish",))
    with pytest.raises(ValueError, match="margin"):
        Finding("f", "…", _early, float("nan"), "…")
