"""The paper's Sec. 2.1 (docs/systems/single-neuron.md): a single neuron with a multiplicative gain."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_finite, check_positive
from ..tasks import TwoGaussians
from .base import AbstractLearningSystem


def _f(x) -> Array:
    return jnp.asarray(x, dtype=float)


class SingleNeuronGain(AbstractLearningSystem):
    r"""Single neuron $\hat y = x\,w\,\tilde g$ with gain $\tilde g = 1 + g$.

    With $L = \tfrac12 (y - \hat y)^2 + \tfrac12\lambda w^2$ and the two-Gaussian
    task, the expected loss and its gradient flow are

    $$\langle L\rangle = \tfrac12\big(1 - 2\mu w\tilde g + \langle x^2\rangle
    w^2\tilde g^2\big) + \tfrac12\lambda w^2,\qquad
    \tau\,\dot w = \mu\tilde g - w(\langle x^2\rangle\tilde g^2 + \lambda),$$

    with $\langle x^2\rangle = \mu^2 + \sigma^2$ (the paper's Eq. 4).

    **Arguments:**

    - `task`: a `lc.tasks.TwoGaussians` (or any 1-input, 1-output task).
    - `lam`: L2 regularisation $\lambda \ge 0$.
    - `tau`: time constant $\tau > 0$.
    - `w0`: initial weight $w(0)$.
    """

    task: TwoGaussians
    lam: Float[Array, ""] = eqx.field(converter=_f, default=0.1)
    tau: Float[Array, ""] = eqx.field(converter=_f, default=1.0)
    w0: Float[Array, ""] = eqx.field(converter=_f, default=0.0)

    def __check_init__(self):
        if self.task.Sx.shape != (1, 1) or self.task.Sy.shape != (1, 1):
            raise ValueError(
                "`task` of SingleNeuronGain must have one input and one output; got "
                f"Sx {self.task.Sx.shape}, Sy {self.task.Sy.shape}."
            )
        check_positive("lam", self.lam, allow_zero=True)
        check_positive("tau", self.tau)
        check_finite("w0", self.w0)

    @property
    def control_shape(self) -> tuple[int, ...]:
        return ()

    def init_state(self) -> Float[Array, ""]:
        return self.w0

    def sample_batch(self, key, t, n):
        """`n` samples `(x, y)` of the task at time `t`."""
        return self.task.sample_at(key, n, t)

    def jump_times(self) -> Float[Array, " jumps"]:
        """The task's jump times (none for a constant task)."""
        return self.task.jump_times()

    def vector_field(self, t, w, g):
        gt = 1.0 + g
        sx, sxy = self.task.Sx_at(t)[0, 0], self.task.Sxy_at(t)[0, 0]
        return (sxy * gt - w * (sx * gt**2 + self.lam)) / self.tau

    def loss(self, t, w, g):
        gt = 1.0 + g
        S = self.task
        sx, sxy, sy = S.Sx_at(t)[0, 0], S.Sxy_at(t)[0, 0], S.Sy_at(t)[0, 0]
        return (
            0.5 * (sy - 2 * sxy * w * gt + sx * (w * gt) ** 2) + 0.5 * self.lam * w**2
        )

    def batch_loss(self, t, w, g, x, y):
        r"""$\frac1\tau[\frac1{2B}\sum_n (y_n - x_n w\tilde g)^2 + \frac\lambda2 w^2]$; its mean is `loss`·$/\tau$."""
        fit = 0.5 * jnp.mean((y[:, 0] - x[:, 0] * w * (1.0 + g)) ** 2)
        return (fit + 0.5 * self.lam * w**2) / self.tau
