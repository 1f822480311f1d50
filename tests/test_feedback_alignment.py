"""`lc.systems.FeedbackAlignment`: feedback alignment's field, its minibatch
rule, that it is not a gradient, and real SGD against the ODE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lecontrol as lc

TASK = lc.tasks.CorrelatedGaussians()


def _gains(system, scale=0.3, seed=1):
    k1, k2 = jax.random.split(jax.random.key(seed))
    (s1, s2) = system.control_shape
    return (scale * jax.random.normal(k1, s1), scale * jax.random.normal(k2, s2))


def _flat_field(system, g):
    """The vector field as a map of the flattened weights."""
    w0 = system.init_state()
    flat, unravel = jax.flatten_util.ravel_pytree(w0)

    def f(v):
        return jax.flatten_util.ravel_pytree(system.vector_field(0.0, unravel(v), g))[0]

    return f, flat


def test_with_b_equal_to_the_output_weights_it_is_backprop():
    bp = lc.systems.TwoLayerGain(TASK, hidden=5, lam=0.01, scale=0.5, seed=3)
    W1, W2 = bp.init_state()
    g = _gains(bp)
    Bt = ((1.0 + g[1]) * W2).T  # the feedback backprop would send, at this state
    fa = lc.systems.FeedbackAlignment(
        TASK, lam=0.01, W1_0=W1, W2_0=W2, B=Bt, scale=0.5, seed=3
    )
    for a, b in zip(
        fa.vector_field(0.0, (W1, W2), g), bp.vector_field(0.0, (W1, W2), g)
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    x, y = TASK.sample(jax.random.key(0), 64)
    got = fa.batch_update(0.0, (W1, W2), g, x, y)
    want = jax.grad(bp.batch_loss, argnums=1)(0.0, (W1, W2), g, x, y)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert fa.loss(0.0, (W1, W2), g) == pytest.approx(float(bp.loss(0.0, (W1, W2), g)))


def test_the_minibatch_rule_averages_to_the_field():
    fa = lc.systems.FeedbackAlignment(TASK, hidden=4, scale=0.5, seed=2)
    w, g = fa.init_state(), _gains(fa)
    x, y = TASK.sample(jax.random.key(5), 400_000)
    got = fa.batch_update(0.0, w, g, x, y)
    for a, b in zip(got, fa.vector_field(0.0, w, g)):
        # Monte Carlo error of 4e5 samples: measured max 2e-3 of the scale.
        np.testing.assert_allclose(-a, b, atol=1e-2 * float(jnp.max(jnp.abs(b))))


def test_feedback_alignment_is_not_a_gradient_flow():
    # A gradient flow's Jacobian is minus a Hessian: symmetric. Feedback
    # alignment's is not; backprop's (the negative control) is.
    kw = dict(hidden=3, scale=0.5, seed=4)
    asym = {}
    for cls in (lc.systems.TwoLayerGain, lc.systems.FeedbackAlignment):
        system = cls(TASK, **kw)
        f, v = _flat_field(system, _gains(system, 0.0))
        J = jax.jacfwd(f)(v)
        asym[cls.__name__] = float(jnp.max(jnp.abs(J - J.T)) / jnp.max(jnp.abs(J)))
    assert asym["TwoLayerGain"] < 1e-12  # measured 5e-17
    assert asym["FeedbackAlignment"] > 0.05, asym  # measured 1.0


def test_the_feedback_matrix_is_drawn_or_checked():
    fa = lc.systems.FeedbackAlignment(TASK, hidden=6, seed=0)
    assert fa.B.shape == (6, TASK.n_outputs)
    again = lc.systems.FeedbackAlignment(TASK, hidden=6, seed=0)
    np.testing.assert_array_equal(fa.B, again.B)
    # Expected squared norm 1 per output's feedback vector (default scale).
    assert 0.2 < float(jnp.sum(fa.B**2, axis=0).mean()) < 3.0
    with pytest.raises(ValueError, match="`B` must have shape"):
        lc.systems.FeedbackAlignment(TASK, hidden=6, B=jnp.zeros((5, 1)))
    with pytest.raises(ValueError, match="feedback_scale"):
        lc.systems.FeedbackAlignment(TASK, hidden=6, feedback_scale=0.0)


def _sgd_gap(system, problem_of, theta, ode):
    """Largest |SGD seed mean - ODE| in units of the seeds' sd (+1e-4 at t = 0)."""
    sim = lc.simulate(
        problem_of(system),
        theta,
        alpha=0.005,
        steps=4000,
        batch_size=32,
        seeds=range(8),
        record_every=200,
    )
    gap = jnp.abs(sim.mean_loss - ode.loss)
    return float(jnp.max(gap / (jnp.std(sim.loss, axis=0, ddof=1) + 1e-4)))


def test_real_feedback_alignment_sgd_follows_the_ode():
    system = lc.systems.FeedbackAlignment(TASK, hidden=6, lam=0.01, scale=0.01)
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0.0, 20.0, 11), shape=system.control_shape
    )

    def problem_of(s):
        return lc.Problem(s, control, lc.costs.ExpQuadratic(0.3), lc.Objective(20.0))

    theta = jax.tree.map(lambda x: 0.3 * jnp.ones_like(x), control.init(0.0))
    ts = jnp.linspace(0.0, 20.0, 21)
    ode = lc.solve(problem_of(system), theta, ts=ts)
    assert float(ode.loss[0] - ode.loss[-1]) > 0.5  # it learns: 1.0 -> 0.26
    # Within 3 sd of the 8 seeds at every record (measured max 1.9 sd, the
    # largest gap 1.4e-3 of a loss that falls by 0.74).
    assert _sgd_gap(system, problem_of, theta, ode) < 3.0
    # Negative control: backprop's SGD, same weights, gains and batches, is far
    # from feedback alignment's ODE (measured 189 sd).
    backprop = lc.systems.TwoLayerGain(TASK, hidden=6, lam=0.01, scale=0.01)
    assert _sgd_gap(backprop, problem_of, theta, ode) > 10.0
