"""The interface every learning system implements."""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree, Real

from .._checks import check_finite_fields

Shape = tuple[int, ...]


class AbstractLearningSystem(eqx.Module):
    r"""A model whose weights follow gradient flow under a control signal.

    The weights $w(t)$ (any pytree of arrays) obey
    $\dot w = h(w, g(t))$ where $h$ is `vector_field` (already divided by the
    time constant $\tau_w$) and $g(t)$ is the control, a pytree whose leaves have
    the shapes in `control_shape`. Performance is $P = -\langle L\rangle$ with
    $\langle L\rangle$ given by `loss`.

    Subclass this (as a final `eqx.Module`) to add a system: implement the four
    abstract members, store every differentiable parameter as a field, and
    every gradient strategy of `lecontrol` works on it unchanged. Every
    floating array field must be finite (checked when it is built, skipped for
    traced values).
    """

    def __check_init__(self):
        check_finite_fields(type(self).__name__, self)

    @abc.abstractmethod
    def init_state(self) -> PyTree[Float[Array, ...]]:
        """Initial weights $w(0)$ (a pytree of floating arrays)."""

    @abc.abstractmethod
    def vector_field(
        self, t: Real[Array, ""], w: PyTree[Float[Array, ...]], g: PyTree
    ) -> PyTree[Float[Array, ...]]:
        r"""$\dot w = h(w, g(t))$: a pytree shaped like `w`."""

    @abc.abstractmethod
    def loss(
        self, t: Real[Array, ""], w: PyTree[Float[Array, ...]], g: PyTree
    ) -> Float[Array, ""]:
        r"""Expected loss $\langle L\rangle$ at weights `w` under control `g`."""

    @property
    @abc.abstractmethod
    def control_shape(self) -> PyTree[Shape]:
        """Shapes of the control's leaves: a tuple of ints, or a pytree of them."""

    def batch_loss(
        self,
        t: Real[Array, ""],
        w: PyTree[Float[Array, ...]],
        g: PyTree,
        x: Float[Array, "*batch inputs"],
        y: Float[Array, "*batch outputs"],
    ) -> Float[Array, ""]:
        r"""Minibatch training loss, divided by $\tau$ like `vector_field`.

        The loss whose gradient real SGD follows on the batch `(x, y)` (used by
        `lc.simulate`: $w \leftarrow w - \alpha\nabla_w$`batch_loss`). Its
        expectation over batches satisfies
        $\mathbb E[-\nabla_w \text{batch\_loss}] = $ `vector_field(t, w, g)`
        (for `TanhTaylor`, the real network's gradient, which `vector_field`
        approximates). Optional: a system without it still works with every
        gradient strategy, only not with `lc.simulate`.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not define `batch_loss(t, w, g, x, y)`, the "
            "minibatch loss lc.simulate runs SGD on; implement it to simulate SGD."
        )

    def jump_times(self) -> Float[Array, " jumps"]:
        """Times at which the dynamics jump (e.g. task switches). None by default."""
        return jnp.zeros((0,))
