"""PAPER.md system 5: a two-layer linear network with a controlled learning rate."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_positive
from ..tasks import AbstractTask
from .base import AbstractLearningSystem
from .two_layer import (
    check_two_layer_weights,
    initial_weights,
    linear_fit,
    two_layer_flow,
)


def _f(x) -> Array:
    return jnp.asarray(x, dtype=float)


class LearningRate(AbstractLearningSystem):
    r"""Two-layer linear network whose learning rate is scaled by $1 + \rho(t)$.

    The control is a scalar $\rho$ (PAPER.md, system 5, the bilevel-programming
    view of learning-rate schedules). Both weight equations of
    `lc.systems.TwoLayerLinear` are multiplied by $1 + \rho$:

    $$\tau\dot W_1 = (1 + \rho)\big[W_2^\top(\Sigma_{xy}^\top - W\Sigma_x) - \lambda W_1\big],$$
    $$\tau\dot W_2 = (1 + \rho)\big[(\Sigma_{xy}^\top - W\Sigma_x)W_1^\top - \lambda W_2\big],$$

    with $W = W_2 W_1$; i.e. $\tau\dot W_i = -(1 + \rho)\,\partial\langle L\rangle/\partial W_i$
    where the expected loss $\langle L\rangle$ is that of `TwoLayerLinear`,
    independent of $\rho$. The paper's bounds are $\rho\in[-1, 1]$ with the
    cost $\beta(\rho - \text{offset})^2$ (`lc.costs.Quadratic`).

    `control_shape` is `()`.

    **Arguments:** as `lc.systems.TwoLayerLinear` (`task`, `hidden`, `lam`,
    `tau`, `W1_0`, `W2_0`, `seed`, `scale`).
    """

    task: AbstractTask
    lam: Float[Array, ""] = eqx.field(converter=_f)
    tau: Float[Array, ""] = eqx.field(converter=_f)
    W1_0: Float[Array, "hidden inputs"] = eqx.field(converter=_f)
    W2_0: Float[Array, "outputs hidden"] = eqx.field(converter=_f)

    def __init__(
        self,
        task: AbstractTask,
        *,
        hidden: int | None = None,
        lam=0.0,
        tau=1.0,
        W1_0=None,
        W2_0=None,
        seed: int = 0,
        scale: float = 0.01,
    ):
        self.task = task
        self.lam = lam
        self.tau = tau
        _, self.W1_0, self.W2_0 = initial_weights(task, hidden, W1_0, W2_0, seed, scale)

    def __check_init__(self):
        check_positive("lam", self.lam, allow_zero=True)
        check_positive("tau", self.tau)
        check_two_layer_weights(self.task, self.hidden, self.W1_0, self.W2_0)

    @property
    def hidden(self) -> int:
        return self.W1_0.shape[0]

    @property
    def control_shape(self) -> tuple[int, ...]:
        return ()

    def init_state(self):
        return (self.W1_0, self.W2_0)

    def vector_field(self, t, w, g):
        W1, W2 = w
        d1, d2 = two_layer_flow(self.task.Sx, self.task.Sxy, W1, W2)
        rate = (1.0 + g) / self.tau
        return (rate * (d1 - self.lam * W1), rate * (d2 - self.lam * W2))

    def loss(self, t, w, g):
        W1, W2 = w
        S = self.task
        reg = 0.5 * self.lam * (jnp.sum(W1**2) + jnp.sum(W2**2))
        return linear_fit(S.Sx, S.Sxy, S.Sy, W2 @ W1) + reg

    def batch_loss(self, t, w, g, x, y):
        r"""$\frac{1 + \rho}\tau[\frac1{2B}\sum_n\lVert y_n - W_2W_1x_n\rVert^2$ + regulariser$]$.

        SGD with step $\alpha(1 + \rho)$ on the plain loss; its mean is
        $(1 + \rho)\,$`loss`$/\tau$.
        """
        W1, W2 = w
        fit = 0.5 * jnp.mean(jnp.sum((y - x @ W1.T @ W2.T) ** 2, axis=-1))
        reg = 0.5 * self.lam * (jnp.sum(W1**2) + jnp.sum(W2**2))
        return (1.0 + g) * (fit + reg) / self.tau
