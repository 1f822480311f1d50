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
