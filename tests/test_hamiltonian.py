"""`lc.hamiltonian`: its definition, and Pontryagin's principle at an optimum.

For an autonomous problem (gamma = 1, a task that does not change in time)
$H = \\gamma^t[\\eta P - C] + \\lambda^\\top h$ is constant along an optimal
control. A piecewise-linear control is optimal only among its knots, so the
spread of H shrinks as they are refined; along the optimum reversed in time
it does not. Along any *constant* control H is constant as well (dH/dt =
dH/dg dg/dt), so constancy alone is no evidence of optimality: the tests use
the reversed optimum as the negative control.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lecontrol as lc
from lecontrol.experiments import get

TIGHT = lc.SolverOptions(rtol=1e-10, atol=1e-12)


def _single_neuron(knots: int, gamma: float):
    exp = get("single-neuron")
    values = {"objective.gamma": gamma, "control.knots": knots}
    cfg = exp.default_config(quick=False).replace(values, source="test")
    return exp.build(cfg)


def _flat(tree, n):
    return jnp.concatenate([x.reshape(n, -1) for x in jax.tree.leaves(tree)], axis=1)


def test_hamiltonian_is_costate_times_flow_plus_net_reward():
    s = _single_neuron(13, gamma=0.9)
    problem = s.problem
    theta = jax.random.uniform(jax.random.key(3), (13,), maxval=0.5)
    ts = jnp.linspace(0.0, problem.objective.T, 41)
    H = lc.hamiltonian(problem, theta, ts=ts, options=TIGHT)
    lam = lc.costate(problem, theta, ts=ts, options=TIGHT)
    tr = lc.solve(problem, theta, ts=ts, options=TIGHT)
    flow = jax.vmap(problem.system.vector_field)(ts, tr.w, tr.g)
    n = ts.shape[0]
    expected = jnp.sum(_flat(lam, n) * _flat(flow, n), axis=1) + tr.v
    np.testing.assert_allclose(H, expected, rtol=1e-9, atol=1e-12)
    # At T the costate is zero: H(T) is the net reward there.
    np.testing.assert_allclose(H[-1], tr.v[-1], rtol=1e-9)
    with pytest.raises(ValueError, match="ts"):
        lc.hamiltonian(problem, theta, ts=jnp.array([0.0, 2 * problem.objective.T]))


def test_hamiltonian_is_constant_at_the_optimum_as_the_knots_are_refined():
    """Single neuron, gamma = 1, nested knots 13, 25, 49 (measured spreads
    3.8e-4, 2.8e-4, 1.7e-4, dominated by the first interval, where the gain
    leaves its upper bound between two knots; after t = 0.06 they are 3.8e-5,
    7.0e-6, 1.3e-6: order 2.5 in the knot spacing). The reversed optimum's
    spread is 7.4e-2."""
    spreads, late_spreads = [], []
    for knots in (13, 25, 49):
        s = _single_neuron(knots, gamma=1.0)
        res = lc.optimize(
            s.problem,
            s.theta0,
            optimizer=lc.optimizers.LBFGSB(),
            steps=200,
            gtol=1e-11,
            options=TIGHT,
        )
        assert lc.result_name(res.result) == "converged"
        ts = jnp.linspace(0.0, s.problem.objective.T, 2401)
        H = np.asarray(lc.hamiltonian(s.problem, res.theta, ts=ts, options=TIGHT))
        spreads.append(np.ptp(H))
        late_spreads.append(np.ptp(H[np.asarray(ts) >= 0.06]))
    # The tolerance shrinks with the knot spacing: strictly, and fast after
    # the bound exit (at least 3 times per halving, where 4 is the order 2).
    assert spreads[0] > spreads[1] > spreads[2]
    assert late_spreads[0] > 3 * late_spreads[1] > 9 * late_spreads[2]
    assert spreads[-1] < 3e-4 and late_spreads[-1] < 3e-6
    # Negative controls: the optimum reversed in time (same values, wrong
    # order) is far from constant; a constant control is constant too.
    reversed_H = lc.hamiltonian(s.problem, res.theta[::-1], ts=ts, options=TIGHT)
    assert float(jnp.ptp(reversed_H)) > 100 * spreads[-1]
    constant = lc.hamiltonian(s.problem, s.control.init(0.3), ts=ts, options=TIGHT)
    assert float(jnp.ptp(constant)) < 1e-8
