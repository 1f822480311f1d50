"""Task switch (Fig. 5e-g; App. K.3) and the gain family's "control near the
steepest loss drops" (Figs. 5d, 10d, 11d, 15d): each check holds or fails as
measured on small synthetic runs, and fails on its negative controls."""

import numpy as np
import pytest

from lecontrol.experiments import task_switch as ts
from lecontrol.experiments.shared import gains
from lecontrol.experiments.shared.findings import (
    best_lag,
    delayed_control,
    two_cluster_separation,
)

TS = np.round(np.linspace(0.0, 27.0, 271), 10)  # saved every 0.1
SWITCHES, PERIOD = np.array([9.0, 18.0]), 9.0


def bump(t, centre, width):
    return np.exp(-(((t - centre) / width) ** 2))


def run(norm, loss=None, baseline_loss=None, ts=TS, switches=SWITCHES, w=None):
    """A results dict whose control has size `norm(t)` (spread evenly over a
    2×2 and a 1×2 layer) and whose controlled loss is `loss`."""
    n = len(ts)
    g = np.sqrt(np.asarray(norm, dtype=float)[:, None] ** 2 / 6)
    loss = np.ones(n) if loss is None else loss
    r = dict(ts=ts, knots=np.arange(ts[0], ts[-1] + 0.25, 0.5))
    r |= dict(switch_times=switches, switch_period=np.asarray(PERIOD))
    r |= dict(cost_beta=np.asarray(0.3), control_loss=loss)
    r["baseline_loss"] = np.ones(n) if baseline_loss is None else baseline_loss
    r |= dict(control_g0=np.repeat(g, 4, 1).reshape(n, 2, 2))
    r |= dict(control_g1=np.repeat(g, 2, 1).reshape(n, 1, 2))
    r |= dict(baseline_g0=0 * r["control_g0"], baseline_g1=0 * r["control_g1"])
    rng = np.random.default_rng(0)
    w = w if w is not None else [rng.normal(size=(2, 2)), rng.normal(size=(1, 2))]
    for run_ in gains.RUNS:
        r |= {f"{run_}_w{i}": np.repeat(x[None], n, 0) for i, x in enumerate(w)}
    return r


# ------------------------------------------------------------------ measures


def test_best_lag_finds_the_shift_and_ignores_a_shared_decay():
    t = np.linspace(0.0, 20.0, 201)
    a, b = bump(t, 5.0, 1.0), bump(t, 6.0, 1.0)
    assert best_lag(t, a, b, 10.0)[0] == pytest.approx(1.0)
    assert best_lag(t, b, a, 10.0)[0] == pytest.approx(-1.0)
    lag, c = best_lag(t, a, a, 10.0)
    assert lag == 0.0 and c == pytest.approx(1.0)
    assert np.isnan(best_lag(t, a, np.ones_like(t), 10.0)[0])


def test_delayed_control_shifts_the_control_and_starts_it_at_zero():
    r = run(np.linspace(1.0, 2.0, len(TS)))
    d = delayed_control(r, 1.0)
    np.testing.assert_allclose(d["control_g0"][10:], r["control_g0"][:-10])
    assert np.all(d["control_g0"][:10] == 0)
    np.testing.assert_array_equal(d["control_loss"], r["control_loss"])


def test_two_cluster_separation():
    rng = np.random.default_rng(1)
    spread = np.abs(rng.normal(size=4000))
    eta, _ = two_cluster_separation(spread)
    assert eta == pytest.approx(0.67, abs=0.02)
    few_large = np.r_[
        0.01 * np.abs(rng.normal(size=36)), 1.0 + 0.05 * rng.normal(size=4)
    ]
    eta, upper = two_cluster_separation(few_large)
    assert eta > 0.95 and upper == 4
    assert np.isnan(two_cluster_separation(np.ones(5))[0])


# ------------------------------------------------------ gain family (Fig. 5d)


def _drop_run(t_control, t_drop):
    t = np.linspace(0.0, 40.0, 401)
    loss = 1.0 / (1.0 + np.exp(3.0 * (t - t_drop)))
    return run(bump(t, t_control, 1.0), loss=loss, ts=t, switches=np.array([]))


def test_control_near_the_steepest_drop_holds_and_its_negative_controls_fail():
    check = gains.CHECKS["control_tracks_loss_drops"]
    v = check.check(_drop_run(5.0, 5.5))
    assert v.status == "holds", v.evidence
    assert set(v.negatives) == {"baseline", "reversed", "delayed by 0.25 T"}
    assert not any(e > 0 for e in v.negatives.values() if np.isfinite(e))


def test_control_far_from_the_steepest_drop_fails():
    check = gains.CHECKS["control_tracks_loss_drops"]
    assert check.check(_drop_run(5.0, 12.0)).status == "fails"  # lag 7 > 0.05 T


def test_the_loss_rate_skips_the_jump_at_a_switch():
    loss = np.where(TS < 9.0, 0.2, 1.0)
    r = run(np.ones_like(TS), loss=loss)
    assert gains.loss_rate(r).max() < 1e-12
    r["switch_times"] = np.array([])
    assert gains.loss_rate(r).max() == pytest.approx(0.8 / 0.2)  # across the jump


# ---------------------------------------------------------- task switch (Fig. 5)


def _switch_norm(lead):
    """‖G‖: 0.05 settled, a bump at each switch, rising `lead` before it."""
    n = 0.05 + bump(TS, 0.0, 0.5)
    for s in SWITCHES:
        ramp = np.clip((TS - (s - lead)) / lead, 0.0, 1.0)
        n += np.where(TS < s, ramp, np.exp(-(TS - s) / 0.5))
    return n


def test_anticipation_holds_when_the_control_rises_before_the_switch():
    r = run(_switch_norm(lead=2.0))
    v = ts.ANTICIPATES.check(r)
    assert v.status == "holds", v.evidence  # one knot (0.5) before: 75% risen
    assert v.effect == pytest.approx(0.75, abs=0.02)
    assert v.negatives["delayed by 0.25 T_s"] < ts.RISE
    found = ts.anticipation(TS, _switch_norm(2.0), SWITCHES, PERIOD, 0.5)
    assert [a["lead"] for a in found] == [pytest.approx(1.8, abs=0.15)] * 2


def test_anticipation_fails_for_a_rise_only_into_the_switch_knot():
    # the ramp of one knot interval into the knot at the switch is not anticipation
    v = ts.ANTICIPATES.check(run(_switch_norm(lead=0.5)))
    assert v.status == "fails" and v.effect < ts.RISE


def _peaks(heights):
    """A loss that jumps to `heights[k]` at switch k and decays."""
    loss = 0.2 * np.ones_like(TS)
    for s, h in zip(SWITCHES, heights):
        loss = np.where(TS >= s, 0.2 + (h - 0.2) * np.exp(-(TS - s)), loss)
    return loss


def test_switch_loss_falls_relative_to_the_baseline():
    base = _peaks([1.0, 2.0])
    falling = run(np.ones_like(TS), loss=_peaks([0.9, 1.2]), baseline_loss=base)
    v = ts.SWITCH_LOSS_FALLS.check(falling)
    assert v.status == "holds" and v.effect == pytest.approx(1 - 0.6 / 0.9)
    assert v.negatives["baseline"] == 0.0
    rising = run(np.ones_like(TS), loss=_peaks([0.9, 2.0]), baseline_loss=base)
    assert ts.SWITCH_LOSS_FALLS.check(rising).status == "fails"


def test_switch_cost_falls_between_switches_in_the_same_direction():
    t = np.round(np.linspace(0.0, 45.0, 451), 10)
    switches = np.array([9.0, 18.0, 27.0, 36.0])
    norm = 0.01 + sum(h * bump(t, s, 0.5) for s, h in zip(switches, [1, 2, 0.6, 1]))
    r = run(norm, ts=t, switches=switches)
    v = ts.SWITCH_COST_FALLS.check(r)
    c = np.expm1(0.3 * np.array([1.01, 0.61]) ** 2)  # switches 1 and 3
    assert v.status == "holds" and v.effect == pytest.approx(1 - c[1] / c[0], 1e-3)
    assert not any(e > 0.1 for e in v.negatives.values() if np.isfinite(e))
    two = run(_switch_norm(2.0))  # two switches: no pair in the same direction
    assert np.isnan(ts.SWITCH_COST_FALLS.check(two).effect)


def test_weights_split_into_two_clusters_with_control():
    rng = np.random.default_rng(2)
    r = run(np.ones_like(TS))
    small = 0.01 * rng.normal(size=6)
    r["control_w0"] = np.repeat(np.r_[small[:3], 2.0].reshape(1, 2, 2), len(TS), 0)
    r["control_w1"] = np.repeat(np.r_[small[3], -2.0].reshape(1, 1, 2), len(TS), 0)
    v = ts.WEIGHTS_CLUSTER.check(r)
    assert v.status == "holds", v.evidence
    assert v.negatives["baseline"] == 0.0


def test_weights_larger_with_control_through_the_switches():
    r = run(np.ones_like(TS))
    r["control_w0"] = 1.2 * r["baseline_w0"]
    r["control_w1"] = 1.2 * r["baseline_w1"]
    v = ts.WEIGHTS_LARGER.check(r)
    assert v.status == "holds" and v.effect == pytest.approx(0.2)
    assert v.negatives["baseline"] == 0.0
    r["control_w0"], r["control_w1"] = r["baseline_w0"], 1.04 * r["baseline_w1"]
    assert ts.WEIGHTS_LARGER.check(r).status == "fails"
