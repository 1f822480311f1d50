"""`lc.costs.KLPrecision`: the KL price of a memory's precision."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lecontrol as lc


def _kl_by_quadrature(sigma, sigma_base):
    """KL(N(0, sigma^2) || N(0, sigma_base^2)) by the integral of p log(p/q)."""
    x = np.linspace(-12 * sigma, 12 * sigma, 200_001)
    logp = -0.5 * (x / sigma) ** 2 - np.log(sigma * np.sqrt(2 * np.pi))
    logq = -0.5 * (x / sigma_base) ** 2 - np.log(sigma_base * np.sqrt(2 * np.pi))
    return np.trapezoid(np.exp(logp) * (logp - logq), x)


def test_kl_precision_is_the_divergence_and_its_gradient_is_a7():
    cost = lc.costs.KLPrecision(sigma_base=5.0, lam=0.2)
    sigma = jnp.array([0.3, 1.0, 3.0, 5.0, 8.0])
    each = [float(lc.costs.KLPrecision(5.0)(s)) for s in sigma]
    np.testing.assert_allclose(
        each, [_kl_by_quadrature(float(s), 5.0) for s in sigma], rtol=1e-7, atol=1e-12
    )
    assert each[3] == pytest.approx(0.0, abs=1e-15)  # free at the base precision
    np.testing.assert_allclose(float(cost(sigma)), 0.2 * sum(each), rtol=1e-12)
    grad = jax.grad(cost)(sigma)
    np.testing.assert_allclose(grad, 0.2 * (sigma / 25.0 - 1.0 / sigma), rtol=1e-12)
    # The gradient's sign: more precision than the base costs, less pays back.
    assert grad[0] < 0 < grad[-1]
    fd = (cost(sigma.at[1].add(1e-6)) - cost(sigma.at[1].add(-1e-6))) / 2e-6
    np.testing.assert_allclose(float(grad[1]), float(fd), rtol=1e-7)


def test_kl_precision_sums_over_a_pytree_and_checks_its_arguments():
    cost = lc.costs.KLPrecision(2.0)
    tree = {"a": jnp.array([1.0, 2.0]), "b": jnp.array(4.0)}
    flat = cost(jnp.array([1.0, 2.0, 4.0]))
    np.testing.assert_allclose(float(cost(tree)), float(flat), rtol=1e-14)
    with pytest.raises(ValueError, match="sigma_base"):
        lc.costs.KLPrecision(0.0)
    with pytest.raises(ValueError, match="lam"):
        lc.costs.KLPrecision(1.0, lam=-1.0)
