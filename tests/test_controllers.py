"""Closed-loop controllers (`lc.controllers`): the loop inside the ODE, and
the closed-loop optimal learning rate against the open-loop optimum (gamma = 1).

The closed-loop law is the continuous optimum; the open-loop optimum is the
best piecewise-linear schedule on its knots, so V agrees to the knots'
resolution and the closed loop is never worse by more than the solver's error.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lecontrol as lc
from lecontrol.experiments import get

TIGHT = lc.SolverOptions(rtol=1e-9, atol=1e-11)


def _learning_rate(levels: int, knots: int, steps: int = 18000):
    """The learning-rate experiment's quick problem (gamma = 1, beta = 1,
    T = steps x 0.005) on a `levels`-level hierarchy: one level is a one-mode
    learner."""
    exp = get("learning-rate")
    values = {"task.levels": levels, "control.knots": knots, "objective.steps": steps}
    return exp.build(exp.default_config(quick=True).replace(values, source="test"))


# One mode learns within T = 20 (measured gap 1.1e-6 at 41 knots; on
# T = 90 with 31 knots the open loop cannot resolve it: 2.4e-3); the paper's
# four levels at T = 90 (1.4e-4 at 31 knots).
@pytest.mark.parametrize(("levels", "knots", "steps"), [(1, 41, 4000), (4, 61, 18000)])
def test_closed_loop_learning_rate_matches_the_open_loop_optimum(levels, knots, steps):
    s = _learning_rate(levels, knots, steps)
    problem = s.problem
    assert float(problem.objective.gamma) == 1.0
    res = lc.optimize(
        problem,
        s.theta0,
        optimizer=lc.optimizers.LBFGSB(),
        steps=300,
        gtol=1e-7,
        options=TIGHT,
    )
    assert lc.result_name(res.result) == "converged"
    V_open = float(res.best_value)
    loop = lc.controllers.ClosedLoopLearningRate(0.0).self_consistent(
        problem, options=TIGHT
    )
    ts = jnp.linspace(0.0, problem.objective.T, 361)
    closed = lc.solve(problem, loop, ts=ts, options=TIGHT)
    opened = lc.solve(problem, res.theta, ts=ts, options=TIGHT)
    # Self-consistent: the loop reaches the final performance it expects.
    assert float(-closed.loss[-1]) == pytest.approx(float(loop.target), abs=1e-9)
    V_closed = float(lc.value(problem, loop, options=TIGHT))
    assert V_closed == pytest.approx(float(closed.V[-1]), rel=1e-9)
    # The values agree within 1e-4 relative, the closed loop at least as high.
    gap = (V_closed - V_open) / abs(V_open)
    assert -1e-8 < gap < 1e-4, (V_closed, V_open)
    # The schedules overlay: rho(t) within 0.05 everywhere (measured 0.047 at
    # 31 knots on four levels, where the open loop cannot follow a kink).
    assert float(jnp.max(jnp.abs(closed.g - opened.g))) < 0.05
    # Negative control: a loop that expects to end a quarter of the initial
    # loss short learns too little, and loses far more than the tolerance.
    P0 = float(-closed.loss[0])
    biased = lc.controllers.ClosedLoopLearningRate(loop.target + 0.25 * P0)
    V_biased = float(lc.value(problem, biased, options=TIGHT))
    assert (V_closed - V_biased) / abs(V_closed) > 1e-3


def test_a_controller_is_differentiable_and_refused_where_it_cannot_be():
    s = _learning_rate(1, 11)
    problem = s.problem
    loop = lc.controllers.ClosedLoopLearningRate(-0.05)
    grad = jax.grad(lambda c: lc.value(problem, c, options=TIGHT))(loop).target
    h = 1e-4

    def V(target):
        c = lc.controllers.ClosedLoopLearningRate(target)
        return float(lc.value(problem, c, options=TIGHT))

    fd = (V(-0.05 + h) - V(-0.05 - h)) / (2 * h)
    np.testing.assert_allclose(float(grad), fd, rtol=1e-5)
    # The continuous adjoint's costate assumes an open-loop control.
    with pytest.raises(TypeError, match="CheckpointAdjoint"):
        lc.value(problem, loop, adjoint=lc.ContinuousAdjoint())
    for verb in (lc.costate, lc.functional_gradient, lc.hamiltonian):
        with pytest.raises(TypeError, match="open-loop"):
            verb(problem, loop, ts=jnp.array([0.0]))
    # The law needs a rate-scaled learner and a quadratic cost.
    other = lc.Problem(
        problem.system, problem.control, lc.costs.ExpQuadratic(1.0), problem.objective
    )
    with pytest.raises(TypeError, match="Quadratic"):
        lc.value(other, loop)
    neuron = get("single-neuron")
    sn = neuron.build(neuron.default_config(quick=True)).problem
    with pytest.raises(TypeError, match="LearningRate"):
        lc.value(sn, loop)
