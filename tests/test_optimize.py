"""Optimisers raise V within bounds; the loop stops cleanly on failure;
the single-neuron findings of the paper (Sec. 2.1, Fig. 2) hold."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lecontrol as lc


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
    assert res.status == "nonfinite"
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
