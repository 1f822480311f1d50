r"""Control parametrisations $g(t;\theta) = \sum_k \theta_k \varphi_k(t)$.

A control maps coefficients $\theta$ (a pytree) and a time $t$ to the control
signal $g(t)$ (a pytree shaped like the system's `control_shape`). Every control
declares

- its **box bounds** (`lower`, `upper`), enforced by `project`;
- its **jump times** (where $g$ is discontinuous) and **kink times** (where it
  is continuous but not smooth), so adaptive solvers step exactly onto them;
- its **breakpoints** on $[0, T]$: between consecutive breakpoints $g$ is a
  polynomial in $t$, so the continuous adjoint projects $\delta V/\delta g$ onto
  the basis by Gauss–Legendre quadrature interval by interval.

Knots are treated as constants: gradients flow to $\theta$, never to the knots.
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree, Real

from ._checks import concrete

Shape = tuple[int, ...]


def is_shape(x) -> bool:
    """A leaf of a `control_shape` pytree: a tuple of ints (`()` for a scalar)."""
    return isinstance(x, tuple) and all(isinstance(i, int) for i in x)


def _normalise_shape(shape) -> PyTree[Shape]:
    if isinstance(shape, int):
        return (shape,)
    if isinstance(shape, list):
        shape = tuple(shape)
    if is_shape(shape):
        return shape
    return jax.tree.map(
        lambda s: tuple(int(i) for i in s),
        shape,
        is_leaf=lambda x: is_shape(x) or isinstance(x, list),
    )


def _check_bounds(lower: float, upper: float) -> None:
    if math.isnan(lower) or math.isnan(upper):
        raise ValueError(
            f"Control bounds must not be nan; got lower={lower}, upper={upper}."
        )
    if lower > upper:
        raise ValueError(
            f"Control bounds need lower <= upper; got lower={lower} > upper={upper}. "
            "Swap them."
        )


def _check_knots(knots) -> None:
    arr = concrete(knots)
    if arr is None:
        return
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(
            f"`knots` must be a 1-D array of at least two times; got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("`knots` must be finite.")
    if not np.all(np.diff(arr) > 0):
        bad = int(np.argmin(np.diff(arr)))
        raise ValueError(
            f"`knots` must be strictly increasing; knots[{bad}]={arr[bad]} >= knots[{bad + 1}]={arr[bad + 1]}. "
            "Use e.g. jnp.linspace(0, T, K)."
        )
    if arr[0] != 0:
        raise ValueError(
            f"`knots` must start at 0 (the start of learning); got {arr[0]}."
        )


class AbstractControl(eqx.Module):
    r"""A parametrised control signal $g(t;\theta)$ with box bounds."""

    shape: eqx.AbstractVar[PyTree[Shape]]
    lower: eqx.AbstractVar[float]
    upper: eqx.AbstractVar[float]

    @abc.abstractmethod
    def coefficient_shape(self, leaf_shape: Shape) -> Shape:
        """Shape of the coefficients of one leaf of the control."""

    @abc.abstractmethod
    def __call__(self, theta: PyTree[Array], t: Real[Array, ""]) -> PyTree[Array]:
        r"""Evaluate $g(t;\theta)$."""

    @abc.abstractmethod
    def jump_times(self) -> Float[Array, " jumps"]:
        """Times where $g$ is discontinuous; solvers step exactly onto them and
        restart there (the right-hand side jumps)."""

    def kink_times(self) -> Float[Array, " kinks"]:
        """Times where $g$ is continuous but not smooth; solvers step exactly
        onto them without restarting. None by default."""
        return jnp.zeros((0,))

    @abc.abstractmethod
    def breakpoints(self, T) -> Float[Array, " breaks"]:
        """Sorted times in $[0, T]$ between which $g$ is a polynomial in $t$."""

    def check_horizon(self, T) -> None:
        """Raise if the control does not cover $[0, T]$ exactly."""

    def init(self, value: float | PyTree = 0.0) -> PyTree[Float[Array, ...]]:
        """Coefficients $\\theta$ giving the constant control $g(t) = $ `value`.

        `value` is a scalar, or a pytree shaped like the control (one array per leaf).
        """

        def leaf(s, v):
            v = jnp.asarray(v, dtype=float)
            return jnp.broadcast_to(v, self.coefficient_shape(s)) + jnp.zeros(())

        if (
            isinstance(value, (int, float))
            or not isinstance(value, (tuple, list, dict))
            and jnp.ndim(value) == 0
        ):
            theta = jax.tree.map(lambda s: leaf(s, value), self.shape, is_leaf=is_shape)
        else:
            theta = jax.tree.map(leaf, self.shape, value, is_leaf=is_shape)
        arr = concrete(
            jnp.stack(
                [jnp.min(x) for x in jax.tree.leaves(theta)]
                + [jnp.max(x) for x in jax.tree.leaves(theta)]
            )
        )
        if arr is not None and (arr.min() < self.lower or arr.max() > self.upper):
            raise ValueError(
                f"`value` must lie within the bounds [{self.lower}, {self.upper}]; "
                f"got values in [{arr.min()}, {arr.max()}]."
            )
        return theta

    def project(self, theta: PyTree[Array]) -> PyTree[Array]:
        """Clip $\\theta$ onto the box $[$`lower`, `upper`$]$."""
        return jax.tree.map(lambda x: jnp.clip(x, self.lower, self.upper), theta)

    def check_theta(self, theta: PyTree[Array]) -> None:
        """Raise a `ValueError` if `theta` does not match this control's shapes."""
        want = jax.tree.map(self.coefficient_shape, self.shape, is_leaf=is_shape)
        want_struct = jax.tree.structure(want, is_leaf=is_shape)
        got_struct = jax.tree.structure(theta)
        if want_struct.num_leaves != got_struct.num_leaves:
            raise ValueError(
                f"`theta` has {got_struct.num_leaves} leaves but the control expects "
                f"{want_struct.num_leaves} (shapes {want}). Build theta with control.init()."
            )
        got = [tuple(jnp.shape(x)) for x in jax.tree.leaves(theta)]
        exp = jax.tree.leaves(want, is_leaf=is_shape)
        if got != exp:
            raise ValueError(
                f"`theta` leaves have shapes {got}; the control expects {exp}. "
                "Build theta with control.init(), and make the control's `shape` equal "
                "to the system's `control_shape`."
            )


def _knot_fields(knots):
    knots = jnp.asarray(knots, dtype=float)
    _check_knots(knots)
    return knots


def _check_knots_span(knots, T) -> None:
    kn, Tc = concrete(knots), concrete(T)
    if kn is None or Tc is None:
        return
    if not np.isclose(kn[-1], Tc, rtol=1e-12, atol=1e-12):
        raise ValueError(
            f"The control's last knot ({kn[-1]}) must equal the horizon T={float(Tc)}; "
            "build the knots with jnp.linspace(0, T, K)."
        )


def _interval(knots, t):
    """Index `i` of the knot interval holding `t`, and the local coordinate s in [0, 1]."""
    knots = jax.lax.stop_gradient(knots)
    i = jnp.clip(jnp.searchsorted(knots, t, side="right") - 1, 0, knots.shape[0] - 2)
    s = (t - knots[i]) / (knots[i + 1] - knots[i])
    return i, jnp.clip(s, 0.0, 1.0)


class AbstractKnotControl(AbstractControl):
    r"""A control defined on knots $0 = t_0 < \dots < t_{K-1} = T$.

    Holds the knots, the shape and the box bounds; between consecutive knots
    $g$ is a polynomial in $t$, so the knots are its breakpoints.

    **Arguments:**

    - `knots`: strictly increasing times from 0 to the horizon $T$.
    - `shape`: the system's `control_shape` (a tuple, or a pytree of tuples).
    - `lower`, `upper`: box bounds on every coefficient (and hence on $g$).
    """

    knots: Float[Array, " K"]
    shape: PyTree[Shape] = eqx.field(static=True)
    lower: float = eqx.field(static=True)
    upper: float = eqx.field(static=True)

    def __init__(
        self,
        knots,
        shape: PyTree[Shape] = (),
        lower: float = -math.inf,
        upper: float = math.inf,
    ):
        self.knots = _knot_fields(knots)
        self.shape = _normalise_shape(shape)
        self.lower, self.upper = float(lower), float(upper)
        _check_bounds(self.lower, self.upper)

    def breakpoints(self, T):
        return jax.lax.stop_gradient(self.knots)

    def check_horizon(self, T) -> None:
        _check_knots_span(self.knots, T)


class PiecewiseLinear(AbstractKnotControl):
    r"""Hat-basis control: $g(t) = \sum_{k=0}^{K-1}\theta_k\varphi_k(t)$.

    $\varphi_k$ is the hat function equal to 1 at knot $t_k$ and 0 at the other
    knots, so $g$ interpolates $\theta$ linearly between knots and
    $\theta_k = g(t_k)$. The hats form a partition of unity.

    **Arguments:** as `AbstractKnotControl`.
    """

    def coefficient_shape(self, leaf_shape: Shape) -> Shape:
        return (self.knots.shape[0], *leaf_shape)

    def __call__(self, theta, t):
        i, s = _interval(self.knots, t)
        return jax.tree.map(lambda c: (1 - s) * c[i] + s * c[i + 1], theta)

    def jump_times(self):
        return jnp.zeros((0,))

    def kink_times(self):
        return jax.lax.stop_gradient(self.knots[1:-1])


class PiecewiseConstant(AbstractKnotControl):
    r"""Step control: $g(t) = \theta_k$ for $t_k \le t < t_{k+1}$.

    `K` knots define `K - 1` intervals and coefficients; the last interval is
    closed at $T$.

    **Arguments:** as `AbstractKnotControl`.
    """

    def coefficient_shape(self, leaf_shape: Shape) -> Shape:
        return (self.knots.shape[0] - 1, *leaf_shape)

    def __call__(self, theta, t):
        i, _ = _interval(self.knots, t)
        return jax.tree.map(lambda c: c[i], theta)

    def jump_times(self):
        return jax.lax.stop_gradient(self.knots[1:-1])


class Constant(AbstractControl):
    r"""Time-invariant control $g(t) = \theta$ (e.g. MAML's initial weights).

    **Arguments:**

    - `shape`, `lower`, `upper`: as `PiecewiseLinear`.
    - `quadrature_intervals`: the continuous adjoint integrates
      $\int_0^T \delta V/\delta g\,dt$ by Gauss–Legendre quadrature on this many
      equal sub-intervals of $[0, T]$ (the control itself has no knots). The
      default 256 keeps the gradient within ~1e-8 of reverse mode through the
      solve for two-layer MAML up to T = 50 (64 gave ~1e-4 there); raise it for
      longer horizons with fast early learning.
    """

    shape: PyTree[Shape] = eqx.field(static=True)
    lower: float = eqx.field(static=True)
    upper: float = eqx.field(static=True)
    quadrature_intervals: int = eqx.field(static=True)

    def __init__(
        self,
        shape: PyTree[Shape] = (),
        lower: float = -math.inf,
        upper: float = math.inf,
        quadrature_intervals: int = 256,
    ):
        self.shape = _normalise_shape(shape)
        self.lower, self.upper = float(lower), float(upper)
        _check_bounds(self.lower, self.upper)
        if int(quadrature_intervals) < 1:
            raise ValueError(
                f"`quadrature_intervals` must be >= 1; got {quadrature_intervals}."
            )
        self.quadrature_intervals = int(quadrature_intervals)

    def coefficient_shape(self, leaf_shape: Shape) -> Shape:
        return tuple(leaf_shape)

    def __call__(self, theta, t):
        return theta

    def jump_times(self):
        return jnp.zeros((0,))

    def breakpoints(self, T):
        return jnp.linspace(0.0, 1.0, self.quadrature_intervals + 1) * T


class NeuronBasis(AbstractControl):
    r"""One gain per neuron: a per-neuron control expanded into a full gain pytree.

    The paper's *neuron basis* (App. H.1.1, Eqs. 66-67): $G_i(t) = \sum_b \nu_b(t)\,G_i^b$ where
    $G_i^b$ is a row (or column) of ones, so every weight of neuron $b$ shares
    the coefficient $\nu_b(t)$. The per-neuron signal $\nu(t)$ is any control
    `inner` (e.g. `PiecewiseLinear` with `shape=(n,)`); this wrapper places it
    along axis `axis` of leaf number `leaf` of the full control pytree `shape`
    and sets every other leaf to zero:

    $$g(t)[\text{leaf}]_{i_0 i_1\ldots} = \nu_{i_\text{axis}}(t),
    \qquad g(t)[\text{other leaves}] = 0.$$

    The paper uses it on the rows of $G_2$ (one gain per output neuron) with
    $G_1 = 0$; for `lc.systems.TwoLayerGain`:

    ```python
    shape = system.control_shape                # ((H, inputs), (outputs, H))
    inner = lc.controls.PiecewiseLinear(knots, shape=(shape[1][0],),
                                        lower=-0.5, upper=0.5)
    control = lc.controls.NeuronBasis(inner, shape, leaf=1, axis=0)
    theta = control.init(0.0)                   # inner's coefficients
    ```

    The coefficients $\theta$ are those of `inner`; knots, jump times,
    breakpoints, bounds, `init`, `project` and `check_theta` are all
    delegated to it, so every gradient strategy works unchanged (the map from
    $\nu$ to $g$ is linear and time-independent). Costs see the expanded $g$.

    **Arguments:**

    - `inner`: the per-neuron control; its `shape` must be `(n,)` with `n`
      the size of axis `axis` of the chosen leaf.
    - `shape`: the system's full `control_shape` (a pytree of tuples).
    - `leaf`: index of the expanded leaf in the flattened `shape`
      (`jax.tree.leaves` order; default: the last leaf, e.g. $G_2$).
    - `axis`: which axis of that leaf indexes the neurons (0: one coefficient
      per row, 1: per column).
    """

    inner: AbstractControl
    shape: PyTree[Shape] = eqx.field(static=True)
    leaf: int = eqx.field(static=True)
    axis: int = eqx.field(static=True)

    def __init__(
        self,
        inner: AbstractControl,
        shape: PyTree[Shape],
        *,
        leaf: int = -1,
        axis: int = 0,
    ):
        if not isinstance(inner, AbstractControl):
            raise TypeError(
                f"`inner` must be an lc.controls control; got {type(inner).__name__}."
            )
        self.inner = inner
        self.shape = _normalise_shape(shape)
        leaves = jax.tree.leaves(self.shape, is_leaf=is_shape)
        if not -len(leaves) <= leaf < len(leaves):
            raise ValueError(
                f"`leaf`={leaf} is out of range: `shape` {self.shape} has "
                f"{len(leaves)} leaves."
            )
        self.leaf = leaf % len(leaves)
        target = leaves[self.leaf]
        if not -len(target) <= axis < len(target):
            raise ValueError(
                f"`axis`={axis} is out of range for leaf {self.leaf} of shape {target}."
            )
        self.axis = axis % len(target)
        want = (target[self.axis],)
        if inner.shape != want:
            raise ValueError(
                f"`inner` must have shape {want} (one coefficient per neuron along "
                f"axis {self.axis} of leaf {self.leaf}, shape {target}); got "
                f"{inner.shape}."
            )

    @property
    def lower(self) -> float:
        return self.inner.lower

    @property
    def upper(self) -> float:
        return self.inner.upper

    def coefficient_shape(self, leaf_shape: Shape) -> Shape:
        """As `inner.coefficient_shape`: `leaf_shape` is a leaf of `inner.shape`."""
        return self.inner.coefficient_shape(leaf_shape)

    def __call__(self, theta, t):
        nu = self.inner(theta, t)
        leaves, treedef = jax.tree.flatten(self.shape, is_leaf=is_shape)
        target = leaves[self.leaf]
        other = tuple(i for i in range(len(target)) if i != self.axis)
        out = [jnp.zeros(s, dtype=nu.dtype) for s in leaves]
        out[self.leaf] = jnp.broadcast_to(jnp.expand_dims(nu, other), target)
        return jax.tree.unflatten(treedef, out)

    def jump_times(self):
        return self.inner.jump_times()

    def kink_times(self):
        return self.inner.kink_times()

    def breakpoints(self, T):
        return self.inner.breakpoints(T)

    def check_horizon(self, T) -> None:
        self.inner.check_horizon(T)

    def init(self, value: float | PyTree = 0.0) -> PyTree[Float[Array, ...]]:
        """Coefficients of `inner` giving the constant per-neuron signal `value`."""
        return self.inner.init(value)

    def project(self, theta):
        return self.inner.project(theta)

    def check_theta(self, theta) -> None:
        self.inner.check_theta(theta)
