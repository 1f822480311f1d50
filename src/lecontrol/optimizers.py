r"""Optimisers for the control coefficients $\theta$ (gradient *ascent* on $V$).

Every optimiser is a strategy object with `init(theta, control)` and
`step(value_and_grad, theta, state, control)`. `step` evaluates $V$ and
$\nabla_\theta V$ at the current $\theta$ (through `value_and_grad`), returns
them, and moves $\theta$; the box bounds of the control are always respected.
`ProjectedGradientAscent` and `Adam` are optax transformations of $-\nabla V$
followed by the projection onto the control's box (`control.project`, optax's
`projections.projection_box` for a box). Best-so-far tracking and stopping
rules belong to the loop (`lc.optimize`), not to the optimisers.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optimistix as optx
from jaxtyping import Array, Float, PyTree

from ._checks import check_number
from .controls import AbstractControl

ValueAndGrad = Callable[[PyTree[Array]], tuple[Float[Array, ""], PyTree[Array]]]


class AbstractOptimizer(eqx.Module):
    """Maximises $V(\\theta)$ within the control's box bounds."""

    @abc.abstractmethod
    def init(self, theta: PyTree[Array], control: AbstractControl) -> PyTree:
        """Optimiser state for the starting coefficients `theta`."""

    @abc.abstractmethod
    def step(
        self,
        value_and_grad: ValueAndGrad,
        theta: PyTree[Array],
        state: PyTree,
        control: AbstractControl,
    ) -> tuple[PyTree[Array], PyTree, Float[Array, ""], PyTree[Array]]:
        """One iteration: returns `(new_theta, new_state, V, grad)`, where `V` and
        `grad` were evaluated at the coefficients the step started from (for
        `LBFGS`, at the point it evaluated)."""


class ProjectedGradientAscent(AbstractOptimizer):
    r"""The paper's Algorithm 1: $\theta \leftarrow \Pi_{[l,u]}(\theta + \text{lr}\,\nabla_\theta V)$.

    With a hat basis of knot spacing $\Delta$, $\partial V/\partial\theta_k
    \approx \Delta\,\delta V/\delta g(t_k)$, while the paper updated one control
    value per SGD step of size $\alpha$ (gradient $\approx\alpha\,\delta V/\delta g$).
    The paper's learning rate $\text{lr}_p$ therefore corresponds to
    $\text{lr} = \text{lr}_p\,\alpha/\Delta$ here (the experiments convert it).

    **Arguments:**

    - `lr`: step size on $\theta$, finite and > 0.
    """

    lr: float

    def __check_init__(self):
        check_number("lr", self.lr)

    def _tx(self):
        return optax.sgd(self.lr)

    def init(self, theta, control):
        return self._tx().init(theta)

    def step(self, value_and_grad, theta, state, control):
        return _projected_step(self._tx(), value_and_grad, theta, state, control)


class Adam(AbstractOptimizer):
    r"""Adam (optax) on $-V$, projected onto the box bounds after every step.

    **Arguments:**

    - `lr`: learning rate, finite and > 0 (or an optax schedule).
    - `b1`, `b2`, `eps`: Adam's moment decay rates, in $[0, 1)$, and
      stabiliser, finite and $\ge 0$.
    """

    lr: float
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def __check_init__(self):
        if not callable(self.lr):  # an optax schedule is checked by optax
            check_number("lr", self.lr)
        check_number("b1", self.b1, allow_zero=True, below=1.0)
        check_number("b2", self.b2, allow_zero=True, below=1.0)
        check_number("eps", self.eps, allow_zero=True)

    def _tx(self):
        return optax.adam(self.lr, b1=self.b1, b2=self.b2, eps=self.eps)

    def init(self, theta, control):
        return self._tx().init(theta)

    def step(self, value_and_grad, theta, state, control):
        return _projected_step(self._tx(), value_and_grad, theta, state, control)


def _projected_step(
    tx: optax.GradientTransformation, value_and_grad, theta, state, control
):
    """One step of the optax transformation `tx` on $-V$, then the projection
    onto the control's bounds."""
    V, grad = value_and_grad(theta)
    neg = jax.tree.map(jnp.negative, grad)
    updates, state = tx.update(neg, state, theta)
    return control.project(optax.apply_updates(theta, updates)), state, V, grad


# ---------------------------------------------------------------- reparametrisation


def _to_box(z, lower: float, upper: float):
    if math.isfinite(lower) and math.isfinite(upper):
        return lower + (upper - lower) * jax.nn.sigmoid(z)
    if math.isfinite(lower):
        return lower + jax.nn.softplus(z)
    if math.isfinite(upper):
        return upper - jax.nn.softplus(z)
    return z


def _from_box(x, lower: float, upper: float, eps: float = 1e-2):
    if math.isfinite(lower) and math.isfinite(upper):
        s = jnp.clip((x - lower) / (upper - lower), eps, 1 - eps)
        return jnp.log(s) - jnp.log1p(-s)
    if math.isfinite(lower):
        y = jnp.maximum(x - lower, eps)
        return y + jnp.log(-jnp.expm1(-y))  # inverse softplus
    if math.isfinite(upper):
        y = jnp.maximum(upper - x, eps)
        return y + jnp.log(-jnp.expm1(-y))
    return x


class LBFGS(AbstractOptimizer):
    r"""Limited-memory BFGS (optimistix) on $-V$.

    Box bounds are enforced by a smooth reparametrisation
    $\theta = l + (u - l)\,\sigma(z)$ (softplus for one-sided bounds), so the
    optimiser works unconstrained in $z$. Coefficients starting on (or within 1%
    of) a bound are moved 1% of the box width inside, where the sigmoid still
    passes gradient; the bounds themselves are reached only asymptotically.

    **Arguments:**

    - `rtol`, `atol`: optimistix's convergence tolerances, finite and $\ge 0$.
    - `history_length`: number of stored curvature pairs, a positive int.
    """

    rtol: float = 1e-8
    atol: float = 1e-10
    history_length: int = eqx.field(static=True, default=10)

    def __check_init__(self):
        check_number("rtol", self.rtol, allow_zero=True)
        check_number("atol", self.atol, allow_zero=True)
        h = self.history_length
        if isinstance(h, bool) or not isinstance(h, int | np.integer):
            raise TypeError(
                f"`history_length` must be an int; got {type(h).__name__} {h!r}."
            )
        if h < 1:
            raise ValueError(f"`history_length` must be >= 1; got {h}.")

    def _solver(self):
        return optx.LBFGS(
            rtol=self.rtol, atol=self.atol, history_length=self.history_length
        )

    def _theta(self, z, control):
        return jax.tree.map(lambda x: _to_box(x, control.lower, control.upper), z)

    def _fn(self, value_and_grad, control, scale):
        def fn(z, args):
            V = _value_only(value_and_grad, self._theta(z, control))
            return -V * scale, V

        return fn

    def init(self, theta, control):
        z = jax.tree.map(lambda x: _from_box(x, control.lower, control.upper), theta)
        return z, None, None

    def step(self, value_and_grad, theta, state, control):
        z, solver_state, scale = state
        solver = self._solver()
        V, grad = value_and_grad(self._theta(z, control))
        if scale is None:
            # optimistix's quasi-Newton steps are not scale invariant: normalise
            # -V so that its initial gradient in z has unit norm.
            _, vjp = jax.vjp(lambda z_: self._theta(z_, control), z)
            (gz,) = vjp(grad)
            norm = jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(gz)))
            scale = 1.0 / jnp.maximum(norm, jnp.finfo(norm.dtype).tiny)
        fn = self._fn(value_and_grad, control, scale)
        if solver_state is None:
            f_struct = jax.ShapeDtypeStruct((), jnp.result_type(float))
            solver_state = solver.init(fn, z, None, {}, f_struct, f_struct, frozenset())
        z, solver_state, _ = solver.step(fn, z, None, {}, solver_state, frozenset())
        return self._theta(z, control), (z, solver_state, scale), V, grad


def _value_only(value_and_grad: ValueAndGrad, theta) -> Any:
    """V with the gradient supplied by `value_and_grad` (which may use an adjoint)."""

    @jax.custom_jvp
    def f(th):
        return value_and_grad(th)[0]

    @f.defjvp
    def f_jvp(primals, tangents):
        (th,), (dth,) = primals, tangents
        V, grad = value_and_grad(th)
        dV = sum(
            jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(dth))
        )
        return V, dV

    return f(theta)
