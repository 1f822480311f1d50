"""The paper's App. G.2 (docs/systems/single-neuron.md): a single-layer linear network with elementwise gains."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_finite, check_positive
from ..tasks import AbstractTask
from .base import AbstractLearningSystem


def _f(x) -> Array:
    return jnp.asarray(x, dtype=float)


class SingleLayerGain(AbstractLearningSystem):
    r"""Linear network $\hat Y = (\tilde G\circ W) X$ with per-weight gains.

    $\tilde G = 1 + G$ and $\tilde W = \tilde G\circ W$. The expected loss and its
    gradient flow (the paper's Eqs. 44-46) are

    $$\langle L\rangle = \tfrac12\operatorname{tr}\big(\Sigma_y - 2\tilde W\Sigma_{xy}
    + \tilde W\Sigma_x\tilde W^\top\big) + \tfrac{\lambda}{2}\lVert W\rVert_F^2,$$
    $$\tau\,\dot W = \big[\Sigma_{xy}^\top - \tilde W\Sigma_x\big]\circ\tilde G
    - \lambda W.$$

    **Arguments:**

    - `task`: any `lc.tasks.AbstractTask` (statistics read at time $t$,
      `Sx_at(t)`, …; it may switch in time).
    - `lam`: L2 regularisation $\lambda \ge 0$.
    - `tau`: time constant $\tau > 0$.
    - `W0`: initial weights, shape `(outputs, inputs)`; zeros by default.
    """

    task: AbstractTask
    lam: Float[Array, ""] = eqx.field(converter=_f)
    tau: Float[Array, ""] = eqx.field(converter=_f)
    W0: Float[Array, "outputs inputs"] = eqx.field(converter=_f)

    def __init__(self, task: AbstractTask, *, lam=0.0, tau=1.0, W0=None):
        self.task = task
        self.lam = lam
        self.tau = tau
        self.W0 = jnp.zeros((task.n_outputs, task.n_inputs)) if W0 is None else W0

    def __check_init__(self):
        check_positive("lam", self.lam, allow_zero=True)
        check_positive("tau", self.tau)
        check_finite("W0", self.W0)
        want = (self.task.n_outputs, self.task.n_inputs)
        if self.W0.shape != want:
            raise ValueError(
                f"`W0` must have shape (outputs, inputs) = {want}; got {self.W0.shape}."
            )

    @property
    def control_shape(self) -> tuple[int, ...]:
        return self.W0.shape

    def init_state(self) -> Float[Array, "outputs inputs"]:
        return self.W0

    def sample_batch(self, key, t, n):
        """`n` samples `(x, y)` of the task at time `t`."""
        return self.task.sample_at(key, n, t)

    def jump_times(self) -> Float[Array, " jumps"]:
        """The task's jump times (none for a constant task)."""
        return self.task.jump_times()

    def vector_field(self, t, w, g):
        gt = 1.0 + g
        Wt = gt * w
        S = self.task
        return ((S.Sxy_at(t).T - Wt @ S.Sx_at(t)) * gt - self.lam * w) / self.tau

    def loss(self, t, w, g):
        Wt = (1.0 + g) * w
        S = self.task
        Sx, Sxy, Sy = S.Sx_at(t), S.Sxy_at(t), S.Sy_at(t)
        fit = jnp.trace(Sy) - 2 * jnp.sum(Wt.T * Sxy) + jnp.sum((Wt @ Sx) * Wt)
        return 0.5 * fit + 0.5 * self.lam * jnp.sum(w**2)

    def batch_loss(self, t, w, g, x, y):
        r"""$\frac1\tau[\frac1{2B}\sum_n\lVert y_n - \tilde W x_n\rVert^2 + \frac\lambda2\lVert W\rVert_F^2]$; its mean is `loss`·$/\tau$."""
        fit = 0.5 * jnp.mean(jnp.sum((y - x @ ((1.0 + g) * w).T) ** 2, axis=-1))
        return (fit + 0.5 * self.lam * jnp.sum(w**2)) / self.tau
