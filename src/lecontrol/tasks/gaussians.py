"""Gaussian-mixture tasks with closed-form statistics."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_finite, check_positive
from .base import AbstractTask


def _f(x) -> Array:
    return jnp.asarray(x, dtype=float)


class TwoGaussians(AbstractTask):
    r"""One-dimensional two-class task of the paper's single-neuron example (Sec. 2.1).

    $y = \pm 1$ with probability ½ each and $x \sim \mathcal N(y\mu, \sigma^2)$,
    so $\langle x^2\rangle = \mu^2 + \sigma^2$, $\langle xy\rangle = \mu$ and
    $\langle y^2\rangle = 1$.

    **Arguments:**

    - `mu`: class mean $\mu$ (finite).
    - `sigma`: class standard deviation $\sigma \ge 0$.
    """

    mu: Float[Array, ""] = eqx.field(converter=_f)
    sigma: Float[Array, ""] = eqx.field(converter=_f)

    def __check_init__(self):
        check_finite("mu", self.mu)
        check_positive("sigma", self.sigma, allow_zero=True)

    @property
    def Sx(self) -> Float[Array, "1 1"]:
        return jnp.reshape(self.mu**2 + self.sigma**2, (1, 1))

    @property
    def Sxy(self) -> Float[Array, "1 1"]:
        return jnp.reshape(self.mu, (1, 1))

    @property
    def Sy(self) -> Float[Array, "1 1"]:
        return jnp.ones((1, 1))

    def mean_x(self) -> Float[Array, " 1"]:
        return jnp.zeros(1)

    def sample(self, key: PRNGKeyArray, n: int):
        ky, kx = jax.random.split(key)
        y = jnp.where(jax.random.bernoulli(ky, 0.5, (n, 1)), 1.0, -1.0)
        x = y * self.mu + self.sigma * jax.random.normal(kx, (n, 1))
        return x, y
