"""The interface every learning system implements."""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree, Real

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
        gradient strategy, only not with `lc.simulate` (which also needs
        `sample_batch`, or samples passed as `data=`).
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not define `batch_loss(t, w, g, x, y)`, the "
            "minibatch loss lc.simulate runs SGD on; implement it to simulate SGD."
        )

    def batch_update(
        self,
        t: Real[Array, ""],
        w: PyTree[Float[Array, ...]],
        g: PyTree,
        x: Float[Array, "*batch inputs"],
        y: Float[Array, "*batch outputs"],
    ) -> PyTree[Float[Array, ...]]:
        r"""What one SGD step subtracts (times the learning rate) on the batch
        `(x, y)`: `lc.simulate` runs $w \leftarrow w - \alpha\,$`batch_update`,
        with $\mathbb E[-\text{batch\_update}] = $ `vector_field`.

        By default $\nabla_w$`batch_loss`, the learner's gradient. A learning
        rule that is not the gradient of any loss (`lc.systems.FeedbackAlignment`)
        overrides it; its `batch_loss` then only measures the fit.
        """
        return jax.grad(self.batch_loss, argnums=1)(t, w, g, x, y)

    def sample_batch(
        self, key: PRNGKeyArray, t: Real[Array, ""], n: int
    ) -> tuple[Float[Array, "n ..."], Float[Array, "n ..."]]:
        r"""A minibatch `(x, y)` of `n` samples for SGD's step at time `t`.

        Where `lc.simulate` draws the batches it feeds to `batch_loss` (unless
        it is given `data=`): samples of the distribution whose statistics
        define `vector_field`, so that
        $\mathbb E[-\nabla_w\text{batch\_loss}] = $ `vector_field`. The
        library's systems draw `task.sample_at(key, n, t)` from their task.
        Optional, like `batch_loss`.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not define `sample_batch(key, t, n)`, which "
            "draws the minibatches (x, y) lc.simulate trains on; implement it, or "
            "pass the samples' source to lc.simulate as `data=` (an lc.tasks task)."
        )

    def jump_times(self) -> Float[Array, " jumps"]:
        """Times at which the dynamics jump (e.g. task switches). None by default."""
        return jnp.zeros((0,))


class AbstractGradientFlowSystem(AbstractLearningSystem):
    r"""A learning system defined by the loss its weights descend.

    Write the loss the learner descends, $L_{\text{learn}}(t, w, g)$
    (`learning_loss`); the vector field is its negative gradient divided by
    the time constant,

    $$\tau\,\dot w = -\nabla_w L_{\text{learn}}(t, w, g(t)),$$

    computed with `jax.grad`. Performance is $P = -\langle L\rangle$ with
    $\langle L\rangle$ = `loss`, which is `learning_loss` unless overridden:
    override `loss` when the learner descends a different (e.g. weighted or
    engagement-modulated) loss from the one that measures performance.

    A subclass implements `learning_loss`, `init_state` and `control_shape`
    and declares a field `tau`; it is an ordinary
    `lc.systems.AbstractLearningSystem`, so every gradient strategy works on
    it (the adjoints differentiate through `jax.grad` of `learning_loss`).
    Write the class final, store differentiable parameters as fields.

    **Arguments** (the fields a subclass declares):

    - `tau`: the time constant $\tau > 0$ (a float or a scalar array).
      Equinox puts a field declared abstract in the base first in the
      generated `__init__`, so construct such systems with keyword arguments.
    """

    tau: eqx.AbstractVar[Float[Array, ""]]

    @abc.abstractmethod
    def learning_loss(
        self, t: Real[Array, ""], w: PyTree[Float[Array, ...]], g: PyTree
    ) -> Float[Array, ""]:
        r"""The loss $L_{\text{learn}}(t, w, g)$ gradient flow descends (a scalar)."""

    def loss(
        self, t: Real[Array, ""], w: PyTree[Float[Array, ...]], g: PyTree
    ) -> Float[Array, ""]:
        r"""Expected loss $\langle L\rangle$ (performance $P = -\langle L\rangle$).

        `learning_loss` by default; override it when performance is measured
        by a different loss from the one the learner descends.
        """
        return self.learning_loss(t, w, g)

    def vector_field(
        self, t: Real[Array, ""], w: PyTree[Float[Array, ...]], g: PyTree
    ) -> PyTree[Float[Array, ...]]:
        r"""$\dot w = -\frac1\tau\nabla_w L_{\text{learn}}(t, w, g)$, by `jax.grad`."""
        grad = jax.grad(self.learning_loss, argnums=1)(t, w, g)
        return jax.tree.map(lambda d: -d / self.tau, grad)
