"""`lc.optimizers.NewtonCG`: projected truncated Newton on exact Hessian-vector
products.

The box-constrained convex quadratic of `test_optimizers_lbfgsb` pins the
algebra (its exact optimum comes from scipy's bounded least squares); the
single neuron at the paper's size pins convergence through the continuous
adjoint's second derivatives, and the Hessian-vector products themselves are
checked against finite differences of the gradient.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lecontrol as lc
from lecontrol import checkpoint as ckpt
from lecontrol.experiments import single_neuron
from lecontrol.experiments.shared import comparison as cmp
from test_optimizers_lbfgsb import (
    LOWER,
    UPPER,
    A,
    B,
    _check_box_optimum,
    _exact,
    _pg,
    _Quadratic,
    _quadratic_grad,
    _quadratic_problem,
)


def _newton(**kw):
    return lc.optimizers.NewtonCG(**kw)


def test_box_constrained_quadratic_exact_optimum_in_few_iterations():
    problem, theta0 = _quadratic_problem()
    res = lc.optimize(
        problem, theta0, optimizer=_newton(), steps=50, gtol=1e-10, adjoint=_Quadratic()
    )
    assert res.status == "converged", res.message
    _check_box_optimum(res.theta, _exact())
    # Measured: 13 iterations (39 products) against LBFGSB's 27.
    lbfgsb = lc.optimize(
        problem,
        theta0,
        optimizer=lc.optimizers.LBFGSB(),
        steps=50,
        gtol=1e-10,
        adjoint=_Quadratic(),
    )
    assert 2 * res.iterations <= lbfgsb.iterations + 1, (res.iterations, lbfgsb)
    assert np.all(np.diff(res.values) >= -1e-15 * np.abs(res.values[1:]))
    assert int(res.state.hvps) > 0


def test_interior_quadratic_one_newton_step():
    """With the optimum inside the box and CG run to exhaustion, the first
    step lands on it: the second evaluation has a projected gradient at
    rounding level. The negative control (one product per iteration: a
    scaled steepest descent) is still far from it after the same two
    evaluations."""
    beta = 0.01  # the unconstrained optimum A⁻¹βb lies inside the box
    problem, theta0 = _quadratic_problem(beta)
    exact = np.linalg.solve(A, beta * B)
    assert np.max(np.abs(exact)) < 0.5 * UPPER
    newton = _newton(forcing=1e-14, max_cg=40, metric=None)
    res = lc.optimize(
        problem, theta0, optimizer=newton, steps=2, gtol=1e-11, adjoint=_Quadratic()
    )
    assert res.status == "converged" and res.iterations == 2, res.message
    np.testing.assert_allclose(res.theta, exact, rtol=0, atol=1e-11)
    steepest = _newton(max_cg=1, metric=None)
    res = lc.optimize(
        problem, theta0, optimizer=steepest, steps=2, gtol=1e-11, adjoint=_Quadratic()
    )
    assert res.status == "completed"
    theta = np.asarray(res.final_theta)
    assert _pg(theta, _quadratic_grad(theta, beta)) > 1e-4


@pytest.fixture(scope="module")
def neuron():
    """The single neuron at the paper's size (61 knots, N = 600 steps)."""
    jax.config.update("jax_enable_x64", True)
    cfg = single_neuron.DEFAULT
    return single_neuron.build(cfg), cmp.options(cfg)


def test_single_neuron_converges_in_fewer_iterations_than_lbfgsb(neuron):
    s, options = neuron
    kw = dict(steps=200, gtol=1e-10, options=options)
    newton = lc.optimize(s.problem, s.theta0, optimizer=_newton(), **kw)
    lbfgsb = lc.optimize(s.problem, s.theta0, optimizer=lc.optimizers.LBFGSB(), **kw)
    assert newton.status == lbfgsb.status == "converged"
    # Measured: 5 iterations (17 products) against 15.
    assert newton.iterations <= 8 and lbfgsb.iterations >= 2 * newton.iterations
    np.testing.assert_allclose(newton.best_value, lbfgsb.best_value, rtol=1e-12)
    np.testing.assert_allclose(newton.theta, lbfgsb.theta, rtol=0, atol=1e-6)
    # The optimum's first knot sits on the upper bound, reached exactly.
    assert float(newton.theta[0]) == s.problem.control.upper


def test_hessian_vector_products_match_finite_differences(neuron):
    """The products NewtonCG uses (`jax.vjp` of the gradient through
    ContinuousAdjoint's backward pass) against central differences of the
    gradient; the negative control is the product in another direction."""
    s, options = neuron
    opts = lc.SolverOptions(rtol=1e-10, atol=1e-12)

    def grad(theta):
        return jax.grad(lambda th: lc.value(s.problem, th, options=opts))(theta)

    theta = jnp.clip(s.theta0 + 0.1 * jnp.sin(jnp.arange(s.theta0.size)), 0, 0.5)
    _, vjp = jax.vjp(grad, theta)
    rng = np.random.default_rng(1)
    v, u = (jnp.asarray(rng.normal(size=theta.shape)) for _ in range(2))
    (hv,) = vjp(v)
    h = 1e-4
    fd = (grad(theta + h * v) - grad(theta - h * v)) / (2 * h)
    error = float(jnp.linalg.norm(hv - fd) / jnp.linalg.norm(fd))
    assert error < 1e-6, error
    (hu,) = vjp(u)
    assert float(jnp.linalg.norm(hu - fd) / jnp.linalg.norm(fd)) > 0.1


def test_refuses_a_strategy_without_second_derivatives(neuron):
    s, options = neuron
    with pytest.raises(lc.TransformNotSupportedError, match="CheckpointAdjoint"):
        lc.optimize(
            s.problem,
            s.theta0,
            optimizer=_newton(),
            steps=2,
            adjoint=lc.CheckpointAdjoint(),
            options=options,
        )


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(max_cg=0), "max_cg"),
        (dict(forcing=1.0), "forcing"),
        (dict(c1=0.7), "c1"),
        (dict(shrink=0.0), "shrink"),
        (dict(metric="lumped"), "metric"),
    ],
)
def test_arguments_are_checked(kw, name):
    with pytest.raises((ValueError, TypeError), match=name):
        lc.optimizers.NewtonCG(**kw)


def test_bounds_respected_from_outside_the_box():
    problem, _ = _quadratic_problem()
    theta0 = jnp.full((12,), 2.0)  # projected onto the box first
    res = lc.optimize(
        problem, theta0, optimizer=_newton(), steps=50, gtol=1e-10, adjoint=_Quadratic()
    )
    assert np.all(np.asarray(res.theta) <= UPPER) and np.all(
        np.asarray(res.theta) >= LOWER
    )
    assert res.status == "converged"


def test_experiments_offer_newton_by_name():
    """`optimiser.method = "newton"` in an experiment's configuration is
    NewtonCG (and an unknown method is still refused, naming the key)."""
    cfg = single_neuron.DEFAULT
    newton = cfg.replace({"optimiser.method": "newton"}, source="test")
    single_neuron.EXPERIMENT.check(newton)
    assert cmp.configured_optimizer(newton) == lc.optimizers.NewtonCG()
    bad = cfg.replace({"optimiser.method": "newton-cg"}, source="test")
    with pytest.raises(Exception, match="optimiser.method"):
        single_neuron.EXPERIMENT.check(bad)


def test_newton_under_vmap_in_a_batch():
    """`lc.sweep.optimize_batch`: each problem converges to its own exact
    optimum in the iterations it takes alone."""
    betas = jnp.array([0.5, 1.0, 2.0])
    kw = dict(optimizer=_newton(), steps=40, gtol=1e-10, adjoint=_Quadratic())
    res = lc.sweep.optimize_batch(_quadratic_problem, betas, **kw)
    assert list(res.status) == ["converged"] * 3, res.message
    for i, beta in enumerate(np.asarray(betas)):
        _check_box_optimum(res.theta[i], _exact(beta))
        alone = lc.optimize(*_quadratic_problem(beta), **kw)
        assert alone.iterations == res.iterations[i]
        np.testing.assert_allclose(res.theta[i], alone.theta, rtol=0, atol=1e-12)


def test_newton_resumes_bitwise_from_a_checkpoint(tmp_path):
    problem, theta0 = _quadratic_problem()

    def run(checkpoint, **kw):
        return lc.optimize(
            problem,
            theta0,
            optimizer=_newton(),
            steps=10,
            adjoint=_Quadratic(),
            checkpoint=checkpoint,
            **kw,
        )

    full = run(ckpt.Checkpointer(tmp_path / "full.npz", 3))
    path = tmp_path / "part.npz"
    run(ckpt.Checkpointer(path, 3), callback=lambda i, *_: i < 5)
    resumed = run(ckpt.Checkpointer(path, 3, resume=True))
    assert full.iterations == resumed.iterations
    for x, y in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state)):
        assert np.array_equal(x, y)
    np.testing.assert_array_equal(full.theta, resumed.theta)
    np.testing.assert_array_equal(full.values, resumed.values)


class _WrongSign(lc.AbstractGradientStrategy):
    """The quadratic's value with the sign of every derivative flipped: no
    direction built from them descends."""

    def value(self, problem, numerics):
        @jax.custom_jvp
        def f(th):
            return _Quadratic().value(eqx.tree_at(lambda p: p.theta, problem, th), None)

        @f.defjvp
        def f_jvp(primals, tangents):
            value, tangent = jax.jvp(f.fun, primals, tangents)
            return value, -tangent

        return f(problem.theta)


def test_stalls_when_no_direction_descends():
    """A failed line search along the Newton direction, then along steepest
    descent: `stalled`, at the start."""
    problem, theta0 = _quadratic_problem()
    theta0 = theta0 + 0.1
    res = lc.optimize(
        problem, theta0, optimizer=_newton(), steps=10, gtol=1e-10, adjoint=_WrongSign()
    )
    assert res.status == "stalled" and res.iterations == 2, res.message
    np.testing.assert_array_equal(res.theta, theta0)
    assert bool(res.state.failed) and bool(res.state.stuck)
