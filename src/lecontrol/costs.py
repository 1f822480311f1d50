r"""Costs of control $C(g)$, summed over every leaf of the control pytree."""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from ._checks import check_finite, check_positive


def _f(x) -> Array:
    return jnp.asarray(x, dtype=float)


def _sumsq(g: PyTree[Array], offset=0.0) -> Float[Array, ""]:
    return sum(jnp.sum((x - offset) ** 2) for x in jax.tree.leaves(g))


class AbstractCost(eqx.Module):
    r"""Instantaneous cost of control $C(g)$ (a scalar)."""

    @abc.abstractmethod
    def __call__(self, g: PyTree[Array]) -> Float[Array, ""]:
        """Evaluate $C(g)$."""


class Quadratic(AbstractCost):
    r"""$C(g) = \beta\,\lVert g - \text{offset}\rVert^2$ (sum over all entries).

    **Arguments:**

    - `beta`: cost scale $\beta \ge 0$.
    - `offset`: the free control value (e.g. a default learning rate).
    """

    beta: Float[Array, ""] = eqx.field(converter=_f)
    offset: Float[Array, ""] = eqx.field(converter=_f, default=0.0)

    def __check_init__(self):
        check_positive("beta", self.beta, allow_zero=True)
        check_finite("offset", self.offset)

    def __call__(self, g):
        return self.beta * _sumsq(g, self.offset)


class ExpQuadratic(AbstractCost):
    r"""$C(g) = \exp\!\big(\beta\sum_i \lVert G_i\rVert_F^2\big) - 1$ (the paper's Sec. 6; docs/systems/costs-controls.md).

    **Arguments:**

    - `beta`: cost scale $\beta \ge 0$.
    """

    beta: Float[Array, ""] = eqx.field(converter=_f)

    def __check_init__(self):
        check_positive("beta", self.beta, allow_zero=True)

    def __call__(self, g):
        return jnp.expm1(self.beta * _sumsq(g))


class FixedNorm(AbstractCost):
    r"""$C(g) = \beta\big(\lVert g\rVert^2 - n\big)^2$: a fixed total engagement.

    **Arguments:**

    - `beta`: cost scale $\beta \ge 0$.
    - `norm2`: the target squared norm $n \ge 0$.
    """

    beta: Float[Array, ""] = eqx.field(converter=_f)
    norm2: Float[Array, ""] = eqx.field(converter=_f)

    def __check_init__(self):
        check_positive("beta", self.beta, allow_zero=True)
        check_positive("norm2", self.norm2, allow_zero=True)

    def __call__(self, g):
        return self.beta * (_sumsq(g) - self.norm2) ** 2


class KLPrecision(AbstractCost):
    r"""The price of precision: for each entry $\sigma_i > 0$ of the control
    (the standard deviation of a memory $\tilde q_i \sim \mathcal N(\bar q_i,
    \sigma_i^2)$), $\lambda$ times the Kullback-Leibler divergence of that
    memory from a base distribution of the same mean,

    $$
    C(\sigma) = \lambda\sum_i \mathrm{KL}\big(\mathcal N(\bar q_i, \sigma_i^2)
    \,\big\Vert\, \mathcal N(\bar q_i, \sigma_\text{base}^2)\big)
    = \lambda\sum_i\Big[\log\frac{\sigma_\text{base}}{\sigma_i}
    + \frac{\sigma_i^2}{2\sigma_\text{base}^2} - \frac12\Big],
    $$

    so that $\partial C/\partial\sigma_i = \lambda(\sigma_i/\sigma_\text{base}^2
    - 1/\sigma_i)$ (Patel, Acerbi & Pouget 2020, Eq. A.7). It is 0 at
    $\sigma_i = \sigma_\text{base}$ and grows without bound as a memory is made
    precise ($\sigma_i \to 0$). The control must stay positive: give it a
    positive lower bound (at $\sigma_i \le 0$ the cost is nan or inf).

    **Arguments:**

    - `sigma_base`: the base standard deviation $\sigma_\text{base} > 0$, the
      precision that costs nothing.
    - `lam`: the price of one nat, $\lambda \ge 0$.
    """

    sigma_base: Float[Array, ""] = eqx.field(converter=_f)
    lam: Float[Array, ""] = eqx.field(converter=_f, default=1.0)

    def __check_init__(self):
        check_positive("sigma_base", self.sigma_base)
        check_positive("lam", self.lam, allow_zero=True)

    def __call__(self, g):
        s2 = self.sigma_base**2

        def kl(sigma):
            return jnp.sum(0.5 * jnp.log(s2 / sigma**2) + sigma**2 / (2 * s2) - 0.5)

        return self.lam * sum(kl(x) for x in jax.tree.leaves(g))
