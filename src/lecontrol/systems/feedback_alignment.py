"""A two-layer linear network that learns by feedback alignment (Lillicrap et
al. 2016): the hidden layer's error arrives through a fixed random matrix,
not through the transpose of the output weights."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_positive
from ..tasks import AbstractTask
from .gain import TwoLayerGain
from .two_layer import AbstractTwoLayerSystem


def _f(x) -> Array:
    return jnp.asarray(x, dtype=float)


class FeedbackAlignment(AbstractTwoLayerSystem):
    r"""Two-layer linear network with gains, trained by feedback alignment.

    The network, its gains and its loss are those of `lc.systems.TwoLayerGain`:
    $\tilde W_i = (1 + G_i)\circ W_i$, $\hat Y = \tilde W_2\tilde W_1 X$, and
    with $E = \Sigma_{xy}^\top - \tilde W_2\tilde W_1\Sigma_x$ (outputs ×
    inputs) backprop's flow is $\tau\dot W_1 = (\tilde W_2^\top E)\circ\tilde
    G_1 - \lambda W_1$. Feedback alignment sends the output error to the hidden
    layer through a fixed random matrix $B$ (hidden × outputs) instead of
    $\tilde W_2^\top$:

    $$\tau\dot W_1 = (B E)\circ\tilde G_1 - \lambda W_1,\qquad
    \tau\dot W_2 = (E\tilde W_1^\top)\circ\tilde G_2 - \lambda W_2 .$$

    The output layer's rule is unchanged (it is local). The field is a
    function of $\Sigma_x$, $\Sigma_{xy}$ and the weights, like backprop's, but
    it is not minus the gradient of any loss of the weights: its Jacobian is not
    symmetric. $B$ is fixed: not learned, not modulated by the gains.

    `batch_update` is the minibatch rule: with the batch's error
    $e_n = y_n - \tilde W_2\tilde W_1 x_n$, the hidden layer moves by
    $\frac1{B_n}\sum_n (B e_n) x_n^\top\circ\tilde G_1$, whose mean is the flow
    above, so `lc.simulate` runs real feedback-alignment SGD.

    **Arguments:** as `lc.systems.AbstractTwoLayerSystem` (`task`, `hidden`,
    `lam`, `tau`, `W1_0`, `W2_0`, `seed`, `scale`), and

    - `B`: the feedback matrix, shape `(hidden, outputs)`; if omitted, drawn
      with i.i.d. $\mathcal N(0, \text{feedback\_scale}^2)$ entries from
      `jax.random.fold_in(jax.random.key(seed), 7)` (independent of the weights).
    - `feedback_scale`: that draw's standard deviation; default
      $1/\sqrt{\text{hidden}}$, so each output's feedback vector has an
      expected squared norm of 1.
    """

    B: Float[Array, "hidden outputs"] = eqx.field(converter=_f)

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
        B=None,
        feedback_scale: float | None = None,
    ):
        AbstractTwoLayerSystem.__init__(
            self,
            task,
            hidden=hidden,
            lam=lam,
            tau=tau,
            W1_0=W1_0,
            W2_0=W2_0,
            seed=seed,
            scale=scale,
        )
        if B is None:
            h = self.W1_0.shape[0]
            feedback_scale = 1.0 / h**0.5 if feedback_scale is None else feedback_scale
            check_positive("feedback_scale", feedback_scale)
            key = jax.random.fold_in(jax.random.key(seed), 7)
            B = feedback_scale * jax.random.normal(
                key, (h, task.n_outputs), dtype=float
            )
        self.B = B

    def __check_init__(self):
        want = (self.W1_0.shape[0], self.W2_0.shape[0])
        if jnp.shape(self.B) != want:
            raise ValueError(
                f"`B` must have shape (hidden, outputs) = {want}; got "
                f"{jnp.shape(self.B)}."
            )

    @property
    def control_shape(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (tuple(self.W1_0.shape), tuple(self.W2_0.shape))

    def vector_field(self, t, w, g):
        (W1, W2), (G1, G2) = w, g
        Gt1, Gt2 = 1.0 + G1, 1.0 + G2
        S = self.task
        E = S.Sxy_at(t).T - (Gt2 * W2) @ (Gt1 * W1) @ S.Sx_at(t)
        d1, d2 = self.B @ E, E @ (Gt1 * W1).T
        return (
            (d1 * Gt1 - self.lam * W1) / self.tau,
            (d2 * Gt2 - self.lam * W2) / self.tau,
        )

    def loss(self, t, w, g):
        """The network's loss (as `TwoLayerGain.loss`)."""
        return TwoLayerGain.loss(self, t, w, g)

    def batch_loss(self, t, w, g, x, y):
        """The minibatch loss of the network (as `TwoLayerGain.batch_loss`): it
        measures the fit; the learner does not descend it (`batch_update`)."""
        return TwoLayerGain.batch_loss(self, t, w, g, x, y)

    def batch_update(self, t, w, g, x, y):
        (W1, W2), (G1, G2) = w, g
        Gt1, Gt2 = 1.0 + G1, 1.0 + G2
        hidden_ = x @ (Gt1 * W1).T
        err = y - hidden_ @ (Gt2 * W2).T  # batch × outputs
        n = x.shape[0]
        d1 = (self.B @ err.T @ x / n) * Gt1
        d2 = (err.T @ hidden_ / n) * Gt2
        return (
            (self.lam * W1 - d1) / self.tau,
            (self.lam * W2 - d2) / self.tau,
        )
