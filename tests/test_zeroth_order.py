"""`lc.ZerothOrder`: the antithetic evolution-strategies estimate of dV/dθ.

Checked on the single-neuron experiment's quick problem (31 coefficients,
d + 1 = 32), against the exact gradient from `ContinuousAdjoint`:

- its value is the forward solve's, the same number as CheckpointAdjoint's;
- `jax.grad` returns exactly the estimator of the docstring, built here by
  hand from values of V;
- the estimator is unbiased with the variance of the docstring: the relative
  error falls like sqrt((d + 1) / N), and at large N the estimate points
  along the gradient. Measured (sigma = 1e-3, the four keys below): mean
  relative error 0.622 at N = 64 and 0.088 at N = 4096 (ratio 7.1; sqrt(32/N)
  predicts 0.707 and 0.088); cosine with the exact gradient 0.9960-0.9971 at
  N = 4096;
- negative controls: estimators that use independent directions for the
  weights, or leave out the 1/2, fail the same criterion.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lecontrol as lc
from lecontrol.experiments import get

SIGMA = 1e-3
KEYS = 4


@pytest.fixture(scope="module")
def quick():
    e = get("single-neuron")
    s = e.build(e.default_config(quick=True))
    return s.problem, s.theta0


@pytest.fixture(scope="module")
def exact(quick):
    problem, theta = quick
    return jax.grad(lambda th: lc.value(problem, th))(theta)


@eqx.filter_jit
def _zeroth_order_grads(problem, theta, samples):
    """`jax.grad` with ZerothOrder(samples) for `KEYS` keys, vmapped over keys."""

    def grad(key):
        adjoint = lc.ZerothOrder(samples, SIGMA, key=key)
        return jax.grad(lambda th: lc.value(problem, th, adjoint=adjoint))(theta)

    return jax.vmap(grad)(jax.random.split(jax.random.key(1), KEYS))


@eqx.filter_jit
def _differences(problem, theta, samples):
    """V(θ+σε_i) − V(θ−σε_i) and ε_i, from forward values of V alone, for the
    same `KEYS` keys as `_zeroth_order_grads`."""

    def values(thetas):
        return jax.vmap(lambda th: lc.value(problem, th))(thetas)

    def one(key):
        eps = lc.ZerothOrder(samples, SIGMA, key=key).directions(theta)
        return values(theta + SIGMA * eps) - values(theta - SIGMA * eps), eps

    return jax.vmap(one)(jax.random.split(jax.random.key(1), KEYS))


def _by_hand(diff, delta):
    """(1/(2σN)) Σ_i [V(θ+σε_i) − V(θ−σε_i)] δ_i, per key."""
    return jnp.einsum("kn,knd->kd", diff, delta) / (2 * SIGMA * diff.shape[1])


def _relative_errors(grads, exact):
    return np.asarray(jnp.linalg.norm(grads - exact, axis=1) / jnp.linalg.norm(exact))


def _cosines(grads, exact):
    return np.asarray(
        grads @ exact / (jnp.linalg.norm(grads, axis=1) * jnp.linalg.norm(exact))
    )


def _consistent(small, large, exact):
    """The criterion: the mean relative error falls at least 4x from N = 64 to
    N = 4096 (1/sqrt(N) predicts 8x), and the mean cosine at N = 4096 exceeds
    0.99."""
    ratio = (
        _relative_errors(small, exact).mean() / _relative_errors(large, exact).mean()
    )
    return bool(ratio >= 4.0 and _cosines(large, exact).mean() > 0.99), ratio


def test_value_is_the_forward_solve(quick):
    problem, theta = quick
    V = lc.value(problem, theta, adjoint=lc.ZerothOrder(4, SIGMA))
    ref = lc.value(problem, theta, adjoint=lc.CheckpointAdjoint())
    np.testing.assert_allclose(V, ref, rtol=1e-10)
    # value_and_grad reports the same value.
    V2, _ = jax.value_and_grad(
        lambda th: lc.value(problem, th, adjoint=lc.ZerothOrder(4, SIGMA))
    )(theta)
    np.testing.assert_allclose(V2, ref, rtol=1e-10)


def test_grad_is_the_antithetic_estimator(quick):
    problem, theta = quick
    samples = 16
    zo = _zeroth_order_grads(problem, theta, samples)
    diff, eps = _differences(problem, theta, samples)
    np.testing.assert_allclose(zo, _by_hand(diff, eps), rtol=1e-8, atol=1e-12)
    # The cotangent scales it: jax.jacrev of (V, 3V) is (ĝ, 3ĝ).
    adjoint = lc.ZerothOrder(samples, SIGMA, key=7)
    g, g3 = jax.jacrev(
        lambda th: jnp.array([1.0, 3.0]) * lc.value(problem, th, adjoint=adjoint)
    )(theta)
    np.testing.assert_allclose(g3, 3 * g, rtol=1e-12)


def test_error_falls_like_one_over_sqrt_samples(quick, exact):
    problem, theta = quick
    d = theta.size
    small = _zeroth_order_grads(problem, theta, 64)
    large = _zeroth_order_grads(problem, theta, 4096)
    ok, ratio = _consistent(small, large, exact)
    # Measured: ratio 7.1 (0.622 / 0.088), cosines 0.9960-0.9971.
    assert ok, (ratio, _cosines(large, exact))
    # And the size of the error is the docstring's sqrt((d + 1) / N) (measured
    # 0.88 and 0.999 of it), which an estimator with the wrong variance misses.
    for N, grads in ((64, small), (4096, large)):
        predicted = np.sqrt((d + 1) / N)
        assert 0.7 < _relative_errors(grads, exact).mean() / predicted < 1.3, N


def test_wrong_estimators_fail_the_criterion(quick, exact):
    problem, theta = quick
    # N = 64 is the first 64 of the 4096 pairs: one batch of solves.
    diff_l, eps_l = _differences(problem, theta, 4096)
    diff_s, eps_s = diff_l[:, :64], eps_l[:, :64]
    # The right estimator, by hand from the same values, passes.
    assert _consistent(_by_hand(diff_s, eps_s), _by_hand(diff_l, eps_l), exact)[0]

    def independent(eps):
        return jax.random.normal(jax.random.key(2), eps.shape)

    def half_missing(eps):  # (1/(σN)) Σ ...: twice the gradient
        return 2 * eps

    for wrong in (independent, half_missing):
        ok, ratio = _consistent(
            _by_hand(diff_s, wrong(eps_s)), _by_hand(diff_l, wrong(eps_l)), exact
        )
        # Measured: independent directions give mean relative errors 1.20 and
        # 0.997 (ratio 1.2, cosines -0.17 to 0.35 at N = 4096); the missing 1/2
        # gives 1.48 and 1.02 (ratio 1.4; its cosines are right: 0.996).
        assert not ok, (wrong.__name__, ratio)


def test_reproducible_keys(quick):
    problem, theta = quick

    def grad(adjoint):
        return jax.grad(lambda th: lc.value(problem, th, adjoint=adjoint))(theta)

    a = grad(lc.ZerothOrder(8, SIGMA, key=3))
    b = grad(lc.ZerothOrder(8, SIGMA, key=jax.random.key(3)))
    c = grad(lc.ZerothOrder(8, SIGMA, key=4))
    assert jnp.array_equal(a, b)
    assert not jnp.allclose(a, c)


def test_directions_follow_the_pytree():
    theta = {"a": jnp.zeros(2), "b": jnp.zeros((2, 3))}
    eps = lc.ZerothOrder(5, SIGMA).directions(theta)
    assert eps["a"].shape == (5, 2) and eps["b"].shape == (5, 2, 3)


def test_optimize_with_zeroth_order(quick):
    problem, theta = quick
    V0 = lc.value(problem, theta)
    exact = lc.optimize(problem, theta, steps=30)
    zo = lc.optimize(problem, theta, steps=30, adjoint=lc.ZerothOrder(64, SIGMA))
    gain_exact = lc.value(problem, exact.final_theta) - V0
    gain_zo = lc.value(problem, zo.final_theta) - V0
    # Measured: 5.54e-3 against the adjoint's 5.64e-3 (98%).
    assert gain_zo > 0.8 * gain_exact > 0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(samples=0, sigma=1e-3), "samples"),
        (dict(samples=-3, sigma=1e-3), "samples"),
        (dict(samples=2.5, sigma=1e-3), "samples"),
        (dict(samples=True, sigma=1e-3), "samples"),
        (dict(samples=8, sigma=0.0), "sigma"),
        (dict(samples=8, sigma=-1e-3), "sigma"),
        (dict(samples=8, sigma=float("nan")), "sigma"),
        (dict(samples=8, sigma=float("inf")), "sigma"),
        (dict(samples=8, sigma=1e-3, key=1.5), "key"),
        (dict(samples=8, sigma=1e-3, key=jnp.zeros(3)), "key"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}` of ZerothOrder"):
        lc.ZerothOrder(**kwargs)


def test_refuses_other_gradients_and_transforms(quick):
    problem, theta = quick
    adjoint = lc.ZerothOrder(4, SIGMA)

    def of_eta(eta, th=theta):
        p = eqx.tree_at(lambda q: q.objective.eta, problem, eta)
        return lc.value(p, th, adjoint=adjoint)

    with pytest.raises(lc.TransformNotSupportedError, match="objective.eta"):
        jax.grad(of_eta)(1.0)
    with pytest.raises(lc.TransformNotSupportedError, match="objective.eta"):
        jax.grad(lambda args: of_eta(args[1], args[0]))((theta, 1.0))

    def f(th):
        return lc.value(problem, th, adjoint=adjoint)

    with pytest.raises(lc.TransformNotSupportedError, match="forward-mode"):
        jax.jvp(f, (theta,), (theta,))
    with pytest.raises(lc.TransformNotSupportedError, match="second-order"):
        jax.jacrev(jax.grad(f))(theta)
