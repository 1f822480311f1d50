"""PAPER.md system 8: per-weight gain modulation on a task that switches in time."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_positive
from ..tasks import SwitchingTasks
from .base import AbstractLearningSystem
from .two_layer import (
    check_two_layer_weights,
    initial_weights,
    linear_fit,
    two_layer_flow,
)


def _f(x) -> Array:
    return jnp.asarray(x, dtype=float)


class TaskSwitch(AbstractLearningSystem):
    r"""Two-layer linear network with per-weight gains on a switching task.

    PAPER.md system 8: the gain-modulation dynamics of system 4,

    $$\tau\dot W_1 = (\tilde W_2^\top\Sigma_{xy}^\top)\circ\tilde G_1
    - (\tilde W_2^\top\tilde W_2\tilde W_1\Sigma_x)\circ\tilde G_1 - \lambda W_1,$$
    $$\tau\dot W_2 = (\Sigma_{xy}^\top\tilde W_1^\top)\circ\tilde G_2
    - (\tilde W_2\tilde W_1\Sigma_x\tilde W_1^\top)\circ\tilde G_2 - \lambda W_2,$$

    with $\tilde W_i = \tilde G_i\circ W_i$, $\tilde G_i = 1 + G_i$, where the
    statistics $\Sigma_x(t), \Sigma_{xy}(t), \Sigma_y(t)$ are those of the task
    active at time $t$ (`lc.tasks.SwitchingTasks`). The loss is that of system 4
    on the active task,
    $\tfrac12\operatorname{tr}(\Sigma_y - 2\tilde W\Sigma_{xy}
    + \tilde W\Sigma_x\tilde W^\top) + \tfrac\lambda2(\lVert W_1\rVert_F^2
    + \lVert W_2\rVert_F^2)$, $\tilde W = \tilde W_2\tilde W_1$, and the flow is
    its negative gradient in $W$ divided by $\tau$.

    The switch times are declared by `jump_times()`, so every solver steps
    exactly onto them. The paper alternates `CorrelatedGaussians()` and
    `CorrelatedGaussians(mu=(-2, 2), p=0.2)` every $T_s$ and optimises $V$ over
    the whole schedule. `control_shape` is `((hidden, inputs), (outputs,
    hidden))` (the gains $(G_1, G_2)$); $G = 0$ is plain gradient flow. The
    state is `(W1, W2)`.

    **Arguments:**

    - `switching`: an `lc.tasks.SwitchingTasks` (tasks, period and horizon; its
      horizon should be the objective's $T$).
    - `hidden`: number of hidden units $H$ (may be omitted when `W1_0` or `W2_0`
      is given).
    - `lam`: L2 regularisation $\lambda \ge 0$.
    - `tau`: time constant $\tau > 0$.
    - `W1_0`, `W2_0`: initial weights, shapes `(hidden, inputs)` and
      `(outputs, hidden)`. A missing one is drawn with i.i.d.
      $\mathcal N(0, \text{scale}^2)$ entries from `jax.random.key(seed)` (split
      in two: the first key draws $W_1$, the second $W_2$).
    - `seed`: integer seed of that draw.
    - `scale`: standard deviation of that draw (default 0.01).
    """

    switching: SwitchingTasks
    lam: Float[Array, ""] = eqx.field(converter=_f)
    tau: Float[Array, ""] = eqx.field(converter=_f)
    W1_0: Float[Array, "hidden inputs"] = eqx.field(converter=_f)
    W2_0: Float[Array, "outputs hidden"] = eqx.field(converter=_f)

    def __init__(
        self,
        switching: SwitchingTasks,
        *,
        hidden: int | None = None,
        lam=0.0,
        tau=1.0,
        W1_0=None,
        W2_0=None,
        seed: int = 0,
        scale: float = 0.01,
    ):
        if not isinstance(switching, SwitchingTasks):
            raise TypeError(
                "`switching` of TaskSwitch must be an lc.tasks.SwitchingTasks (e.g. "
                "SwitchingTasks([task_a, task_b], period, horizon)); got "
                f"{type(switching).__name__}."
            )
        self.switching = switching
        self.lam = lam
        self.tau = tau
        # All tasks of the schedule share their shapes; the first one stands in.
        _, self.W1_0, self.W2_0 = initial_weights(
            switching.tasks[0], hidden, W1_0, W2_0, seed, scale
        )

    def __check_init__(self):
        check_positive("lam", self.lam, allow_zero=True)
        check_positive("tau", self.tau)
        check_two_layer_weights(
            self.switching.tasks[0], self.hidden, self.W1_0, self.W2_0
        )

    @property
    def hidden(self) -> int:
        return self.W1_0.shape[0]

    @property
    def control_shape(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (tuple(self.W1_0.shape), tuple(self.W2_0.shape))

    def init_state(self):
        return (self.W1_0, self.W2_0)

    def sample_batch(self, key, t, n):
        """`n` samples `(x, y)` of the task active at time `t`."""
        return self.switching.sample(key, n, t)

    def jump_times(self) -> Float[Array, " switches"]:
        """The task-switch times in $(0, \\text{horizon})$."""
        return self.switching.jump_times()

    def vector_field(self, t, w, g):
        (W1, W2), (G1, G2) = w, g
        S = self.switching
        Gt1, Gt2 = 1.0 + G1, 1.0 + G2
        d1, d2 = two_layer_flow(S.Sx_at(t), S.Sxy_at(t), Gt1 * W1, Gt2 * W2)
        return (
            (d1 * Gt1 - self.lam * W1) / self.tau,
            (d2 * Gt2 - self.lam * W2) / self.tau,
        )

    def loss(self, t, w, g):
        (W1, W2), (G1, G2) = w, g
        S = self.switching
        We = ((1.0 + G2) * W2) @ ((1.0 + G1) * W1)
        reg = 0.5 * self.lam * (jnp.sum(W1**2) + jnp.sum(W2**2))
        return linear_fit(S.Sx_at(t), S.Sxy_at(t), S.Sy_at(t), We) + reg

    def batch_loss(self, t, w, g, x, y):
        r"""As `TwoLayerGain.batch_loss`, on a batch from the task active at `t`; its mean is `loss`$/\tau$."""
        (W1, W2), (G1, G2) = w, g
        pred = x @ ((1.0 + G1) * W1).T @ ((1.0 + G2) * W2).T
        fit = 0.5 * jnp.mean(jnp.sum((y - pred) ** 2, axis=-1))
        reg = 0.5 * self.lam * (jnp.sum(W1**2) + jnp.sum(W2**2))
        return (fit + reg) / self.tau
