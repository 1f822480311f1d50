"""The paper's Sec. 3, Eq. 5 (docs/systems/two-layer.md): the two-layer linear network (the uncontrolled baseline).

Also the pieces the other two-layer systems share: the expected loss of
$\\hat Y = W_2 W_1 X$ in terms of the task statistics, its gradient, and the
Gaussian initialisation of the weights.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_finite, check_positive
from ..tasks import AbstractTask
from .base import AbstractLearningSystem


def _f(x) -> Array:
    return jnp.asarray(x, dtype=float)


# --------------------------------------------------------------- shared helpers


def linear_fit(Sx, Sxy, Sy, W) -> Float[Array, ""]:
    r"""$\tfrac12\operatorname{tr}(\Sigma_y - 2W\Sigma_{xy} + W\Sigma_x W^\top)$.

    The expected squared error $\tfrac12\langle\lVert y - Wx\rVert^2\rangle$ of
    the linear map `W` (outputs × inputs).
    """
    return 0.5 * (jnp.trace(Sy) - 2 * jnp.sum(W.T * Sxy) + jnp.sum((W @ Sx) * W))


def two_layer_flow(Sx, Sxy, W1e, W2e):
    r"""Minus the gradient of `linear_fit` at $W = \tilde W_2\tilde W_1$.

    Returns $(\tilde W_2^\top E, E\tilde W_1^\top)$ with
    $E = \Sigma_{xy}^\top - \tilde W_2\tilde W_1\Sigma_x$: the (unregularised)
    gradient-flow directions of the two effective weight matrices.
    """
    E = Sxy.T - W2e @ W1e @ Sx
    return W2e.T @ E, E @ W1e.T


def gaussian_weights(
    n_inputs: int, n_outputs: int, hidden: int, seed: int, scale: float
) -> tuple[Float[Array, "hidden inputs"], Float[Array, "outputs hidden"]]:
    r"""$W_1, W_2$ with i.i.d. $\mathcal N(0, \text{scale}^2)$ entries.

    `jax.random.key(seed)` is split in two: the first key draws $W_1$
    (hidden × inputs), the second $W_2$ (outputs × hidden).
    """
    k1, k2 = jax.random.split(jax.random.key(seed))
    W1 = scale * jax.random.normal(k1, (hidden, n_inputs), dtype=float)
    W2 = scale * jax.random.normal(k2, (n_outputs, hidden), dtype=float)
    return W1, W2


def initial_weights(task: AbstractTask, hidden, W1_0, W2_0, seed, scale):
    """Resolve the constructor arguments of a two-layer system into `(W1_0, W2_0)`.

    Given weights are used as they are; missing ones are drawn by
    `gaussian_weights`. `hidden` may be omitted when a given weight fixes it.
    """
    if hidden is None:
        if W1_0 is not None:
            hidden = jnp.shape(W1_0)[0]
        elif W2_0 is not None:
            hidden = jnp.shape(W2_0)[-1]
        else:
            raise ValueError(
                "Pass `hidden` (the number of hidden units), or the initial weights "
                "`W1_0` (hidden, inputs) and `W2_0` (outputs, hidden)."
            )
    hidden = int(hidden)
    if hidden < 1:
        raise ValueError(f"`hidden` must be a positive integer; got {hidden}.")
    for name, W, axis in (("W1_0", W1_0, 0), ("W2_0", W2_0, -1)):
        if W is not None and (jnp.ndim(W) != 2 or jnp.shape(W)[axis] != hidden):
            raise ValueError(
                f"`{name}` has shape {jnp.shape(W)}, which does not match "
                f"hidden={hidden}; W1_0 is (hidden, inputs), W2_0 is (outputs, hidden)."
            )
    if W1_0 is None or W2_0 is None:
        check_positive("scale", scale, allow_zero=True)
        G1, G2 = gaussian_weights(
            task.n_inputs, task.n_outputs, hidden, int(seed), float(scale)
        )
        W1_0 = G1 if W1_0 is None else W1_0
        W2_0 = G2 if W2_0 is None else W2_0
    return hidden, W1_0, W2_0


def check_two_layer_weights(task: AbstractTask, hidden: int, W1_0, W2_0) -> None:
    check_finite("W1_0", W1_0)
    check_finite("W2_0", W2_0)
    want1 = (hidden, task.n_inputs)
    want2 = (task.n_outputs, hidden)
    if W1_0.shape != want1:
        raise ValueError(
            f"`W1_0` must have shape (hidden, inputs) = {want1}; got {W1_0.shape}."
        )
    if W2_0.shape != want2:
        raise ValueError(
            f"`W2_0` must have shape (outputs, hidden) = {want2}; got {W2_0.shape}."
        )


# ----------------------------------------------------------------------- system


class AbstractTwoLayerSystem(AbstractLearningSystem):
    r"""What the two-layer systems on one task share: weights $(W_1, W_2)$.

    The state is the pair `(W1, W2)`, starting from `(W1_0, W2_0)`. Subclasses
    write `vector_field`, `loss`, `control_shape` (and `batch_loss` for SGD),
    reading the task's statistics at time $t$ (`task.Sx_at(t)`, …), so that
    every two-layer system runs on a task that changes in time, such as
    `lc.tasks.SwitchingTasks` (the paper's task switch, Sec. 6, is `TwoLayerGain` on one);
    `jump_times()` reports the task's, and SGD samples `task.sample_at`.

    **Arguments:**

    - `task`: any `lc.tasks.AbstractTask` (statistics `Sx`, `Sxy`, `Sy`, read
      at time $t$ through `Sx_at(t)`, …; a switching schedule is a task).
    - `hidden`: number of hidden units $H$ (may be omitted when `W1_0` or
      `W2_0` is given).
    - `lam`: L2 regularisation $\lambda \ge 0$.
    - `tau`: time constant $\tau > 0$.
    - `W1_0`, `W2_0`: initial weights, shapes `(hidden, inputs)` and
      `(outputs, hidden)`. A missing one is drawn with i.i.d.
      $\mathcal N(0, \text{scale}^2)$ entries from `jax.random.key(seed)`
      (split in two: first key $W_1$, second key $W_2$).
    - `seed`: integer seed of that draw.
    - `scale`: standard deviation of that draw (default 0.01).
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

    def init_state(self):
        return (self.W1_0, self.W2_0)

    def sample_batch(self, key, t, n):
        """`n` samples `(x, y)` of the task at time `t`."""
        return self.task.sample_at(key, n, t)

    def jump_times(self) -> Float[Array, " jumps"]:
        """The task's jump times (e.g. the switches of `lc.tasks.SwitchingTasks`)."""
        return self.task.jump_times()

    def regulariser(self, W1, W2) -> Float[Array, ""]:
        r"""$\tfrac\lambda2(\lVert W_1\rVert_F^2 + \lVert W_2\rVert_F^2)$."""
        return 0.5 * self.lam * (jnp.sum(W1**2) + jnp.sum(W2**2))


class TwoLayerLinear(AbstractTwoLayerSystem):
    r"""Two-layer linear network $\hat Y = W_2 W_1 X$ under plain gradient flow.

    With $W = W_2 W_1$ (the paper's Eq. 5 and App. H),

    $$\langle L\rangle = \tfrac12\operatorname{tr}\big(\Sigma_y - 2W\Sigma_{xy}
    + W\Sigma_x W^\top\big) + \tfrac{\lambda}{2}\big(\lVert W_1\rVert_F^2
    + \lVert W_2\rVert_F^2\big),$$
    $$\tau\dot W_1 = W_2^\top(\Sigma_{xy}^\top - W\Sigma_x) - \lambda W_1,\qquad
    \tau\dot W_2 = (\Sigma_{xy}^\top - W\Sigma_x)W_1^\top - \lambda W_2.$$

    This is the uncontrolled baseline: `control_shape` is `()` and the control
    $g$ has **no effect** on the dynamics or the loss (only its cost counts).
    The state is the pair `(W1, W2)`.

    **Arguments:** as `lc.systems.AbstractTwoLayerSystem` (`task`, `hidden`,
    `lam`, `tau`, `W1_0`, `W2_0`, `seed`, `scale`).
    """

    @property
    def control_shape(self) -> tuple[int, ...]:
        return ()

    def vector_field(self, t, w, g):
        W1, W2 = w
        S = self.task
        d1, d2 = two_layer_flow(S.Sx_at(t), S.Sxy_at(t), W1, W2)
        return ((d1 - self.lam * W1) / self.tau, (d2 - self.lam * W2) / self.tau)

    def loss(self, t, w, g):
        W1, W2 = w
        S = self.task
        reg = self.regulariser(W1, W2)
        return linear_fit(S.Sx_at(t), S.Sxy_at(t), S.Sy_at(t), W2 @ W1) + reg

    def batch_loss(self, t, w, g, x, y):
        r"""$\frac1\tau[\frac1{2B}\sum_n\lVert y_n - W_2W_1x_n\rVert^2$ + regulariser$]$; its mean is `loss`·$/\tau$."""
        W1, W2 = w
        fit = 0.5 * jnp.mean(jnp.sum((y - x @ W1.T @ W2.T) ** 2, axis=-1))
        reg = self.regulariser(W1, W2)
        return (fit + reg) / self.tau
