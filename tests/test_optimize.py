"""Optimisers raise V within bounds; the loop stops cleanly on failure;
the single-neuron findings of the paper (Sec. 2.1, Fig. 2) hold."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lecontrol as lc
from conftest import NanLossSystem


def _neuron(mu=2.0, sigma=1.0, lam=0.1, beta=0.3, gamma=0.99, T=0.6, knots=31):
    task = lc.tasks.TwoGaussians(mu=mu, sigma=sigma)
    system = lc.systems.SingleNeuronGain(task, lam=lam, tau=1.0, w0=0.0)
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0.0, T, knots), shape=system.control_shape, lower=0.0, upper=0.5
    )
    return (
        system,
        control,
        lc.costs.Quadratic(beta),
        lc.Objective(T=T, gamma=gamma, eta=1.0),
    )


@pytest.mark.parametrize(
    "optimizer",
    [
        lc.optimizers.ProjectedGradientAscent(lr=2.0),
        lc.optimizers.Adam(lr=0.02),
        lc.optimizers.LBFGS(),
    ],
    ids=["pga", "adam", "lbfgs"],
)
def test_optimizers_raise_value_within_bounds(optimizer):
    system, control, cost, obj = _neuron()
    theta0 = control.init(0.0)
    V0 = float(lc.value(lc.Problem(system, control, cost, obj), theta0))
    res = lc.optimize(
        lc.Problem(system, control, cost, obj), theta0, optimizer=optimizer, steps=25
    )
    assert res.status == "completed", res.message
    assert res.best_value > V0 + 1e-4
    np.testing.assert_allclose(
        res.best_value,
        lc.value(lc.Problem(system, control, cost, obj), res.theta),
        rtol=1e-10,
    )
    assert float(jnp.min(res.theta)) >= 0.0 and float(jnp.max(res.theta)) <= 0.5
    assert res.values.shape == (25,) and res.grad_norms.shape == (25,)
    assert np.all(np.isfinite(res.values)) and res.wall_time > 0


def test_callback_sees_every_iteration_and_can_stop():
    system, control, cost, obj = _neuron()
    seen = []

    def cb(i, theta, V, gnorm):
        seen.append((i, V))
        return i < 4

    res = lc.optimize(
        lc.Problem(system, control, cost, obj), control.init(0.0), steps=50, callback=cb
    )
    assert [i for i, _ in seen] == [0, 1, 2, 3, 4]
    assert res.iterations == 5 and "callback" in res.message


class _Fragile(lc.systems.AbstractLearningSystem):
    """dw/dt = -w + sqrt(0.2 - g): NaN once the control passes 0.2."""

    @property
    def control_shape(self):
        return ()

    def init_state(self):
        return jnp.asarray(0.0)

    def vector_field(self, t, w, g):
        return -w + jnp.sqrt(0.2 - g)

    def loss(self, t, w, g):
        return 0.5 * w**2


def test_nonfinite_value_stops_and_keeps_the_best_theta():
    system = _Fragile()
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0, 1.0, 5), lower=-1.0, upper=1.0
    )
    cost, obj = lc.costs.Quadratic(0.0), lc.Objective(T=1.0)
    res = lc.optimize(
        lc.Problem(system, control, cost, obj),
        control.init(0.0),
        optimizer=lc.optimizers.ProjectedGradientAscent(lr=5.0),
        steps=100,
    )
    # NaN in the dynamics: the solver cannot step.
    assert res.status in ("max_steps_reached", "solver_failed"), res.message
    assert "iteration" in res.message
    assert res.iterations < 100
    assert np.isfinite(res.best_value)
    assert float(jnp.max(res.theta)) <= 0.2
    np.testing.assert_allclose(
        lc.value(lc.Problem(system, control, cost, obj), res.theta), res.best_value
    )


def _optimal(**kw):
    system, control, cost, obj = _neuron(**kw)
    res = lc.optimize(
        lc.Problem(system, control, cost, obj),
        control.init(0.0),
        optimizer=lc.optimizers.ProjectedGradientAscent(lr=3.0),
        steps=300,
    )
    ts = jnp.linspace(0, obj.T, 301)
    g = jax.vmap(lambda t: control(res.theta, t))(ts)
    V0 = float(lc.value(lc.Problem(system, control, cost, obj), control.init(0.0)))
    return res, g, float(jnp.trapezoid(g, ts)), V0


@pytest.mark.slow
def test_single_neuron_findings():
    """The paper (Fig. 2): g(t) largest early and decaying; V(control) > V(baseline);
    more control for larger γ, less for larger σ and larger β."""
    res, g, total, V0 = _optimal()
    assert res.best_value > V0
    dg = jnp.diff(g)
    assert float(jnp.mean(dg <= 1e-9)) > 0.8, (
        "g(t) should decrease over most of the horizon"
    )
    assert float(g[0]) > float(g[-1])

    _, _, total_low_gamma, _ = _optimal(gamma=1e-4)
    assert total > total_low_gamma
    _, _, total_noisy, _ = _optimal(sigma=2.0)
    assert total_noisy < total
    _, _, total_costly, _ = _optimal(beta=1.0)
    assert total_costly < total


# ------------------------------------------------------------ the compiled loop


def _small(**kw):
    system, control, cost, obj = _neuron(knots=7, **kw)
    return lc.Problem(system, control, cost, obj), control.init(0.0)


def test_chunk_length_does_not_change_the_result():
    """The loop runs in compiled chunks; where they end changes nothing."""
    problem, theta0 = _small()
    opt = lc.optimizers.Adam(lr=0.05)
    runs = [
        lc.optimize(problem, theta0, optimizer=opt, steps=12, chunk=c)
        for c in (1, 5, 12, 50)
    ]
    seen = []
    runs.append(
        lc.optimize(
            problem,
            theta0,
            optimizer=opt,
            steps=12,
            callback=lambda i, th, V, g: seen.append((i, V)),
        )
    )
    ref = runs[0]
    assert ref.result == lc.RESULTS.completed and ref.iterations == 12
    for r in runs[1:]:
        np.testing.assert_array_equal(r.values, ref.values)
        np.testing.assert_array_equal(r.grad_norms, ref.grad_norms)
        np.testing.assert_array_equal(r.theta, ref.theta)
        np.testing.assert_array_equal(r.final_theta, ref.final_theta)
        assert (r.best_value, r.best_iteration) == (ref.best_value, ref.best_iteration)
    assert [i for i, _ in seen] == list(range(12))
    np.testing.assert_array_equal([V for _, V in seen], ref.values)


def test_gtol_stops_at_a_small_projected_gradient():
    problem, theta0 = _small()
    opt = lc.optimizers.ProjectedGradientAscent(lr=3.0)
    full = lc.optimize(problem, theta0, optimizer=opt, steps=200)
    assert full.result == lc.RESULTS.completed and full.status == "completed"
    # A huge tolerance: converged at the first iteration, theta0 kept.
    first = lc.optimize(problem, theta0, optimizer=opt, steps=200, gtol=1e9)
    assert first.result == lc.RESULTS.converged and first.iterations == 1
    np.testing.assert_array_equal(first.final_theta, theta0)
    # A tolerance the ascent reaches part way: same iterations up to there.
    res = lc.optimize(problem, theta0, optimizer=opt, steps=200, gtol=1e-4)
    assert res.result == lc.RESULTS.converged, res.message
    assert 1 < res.iterations < 200 and "converged" in res.message
    np.testing.assert_array_equal(res.values, full.values[: res.iterations])
    grad = jax.grad(lambda th: lc.value(problem, th))(res.final_theta)
    pg = problem.control.project(res.final_theta + grad) - res.final_theta
    assert float(jnp.linalg.norm(pg)) <= 1e-4
    with pytest.raises(ValueError, match="gtol"):
        lc.optimize(problem, theta0, steps=2, gtol=-1.0)


class _SqrtCost(lc.costs.AbstractCost):
    """C(g) = 0.01 sqrt(|g|): finite, with a non-finite derivative at g = 0."""

    def __call__(self, g):
        return 0.01 * jnp.sum(jnp.sqrt(jnp.abs(g)))


def test_result_codes_of_failures():
    """A loss that turns nan stops the solver (the value is part of the
    solve): `max_steps_reached`, best theta kept. A non-finite gradient at a
    finite V is `nonfinite`. A solve out of steps is `max_steps_reached`;
    `lc.value` itself still raises."""
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0, 1.0, 5), lower=-1.0, upper=1.0
    )
    problem = lc.Problem(
        NanLossSystem(), control, lc.costs.Quadratic(0.0), lc.Objective(T=1.0)
    )
    res = lc.optimize(
        problem,
        control.init(0.0),
        optimizer=lc.optimizers.ProjectedGradientAscent(lr=5.0),
        steps=40,
    )
    assert res.result == lc.RESULTS.max_steps_reached, res.message
    assert res.message.startswith(f"stopped at iteration {res.iterations}")
    assert "max_steps" in res.message and "best theta" in res.message
    assert float(jnp.max(res.theta)) <= 0.3 and np.isfinite(res.best_value)
    assert res.values.shape == (res.iterations,)

    sqrt_cost = lc.Problem(NanLossSystem(), control, _SqrtCost(), lc.Objective(T=1.0))
    res = lc.optimize(sqrt_cost, control.init(0.0), steps=5)
    assert res.result == lc.RESULTS.nonfinite and res.status == "nonfinite"
    assert res.iterations == 0 and "not finite" in res.message

    small, theta0 = _small()
    tight = lc.SolverOptions(max_steps=2)
    res = lc.optimize(small, theta0, steps=5, options=tight)
    assert res.result == lc.RESULTS.max_steps_reached, res.message
    assert res.iterations == 0 and "max_steps" in res.message
    with pytest.raises(Exception, match="max_steps"):
        lc.value(small, theta0, options=tight)
    # Without throwing, a failed solve is nan, not an error.
    nothrow = lc.SolverOptions(max_steps=2, throw=False)
    assert np.isnan(lc.value(small, theta0, options=nothrow))
