"""The paper's App. I (docs/systems/nonlinear.md): a tanh network, linearised around the mean input."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_finite
from ..tasks import AbstractTask
from .two_layer import AbstractTwoLayerSystem, initial_weights


def _f(x) -> Array:
    return jnp.asarray(x, dtype=float)


class TanhTaylor(AbstractTwoLayerSystem):
    r"""Two-layer tanh network with per-weight gains, Taylor-expanded around $\langle x\rangle$.

    The network is $\hat y = \tilde W_2 f(\tilde W_1 x)$ with $f = \tanh$ and
    effective weights $\tilde W_i = (1 + G_i)\circ W_i$ as in
    `lc.systems.TwoLayerGain`; the control is $g = (G_1, G_2)$. Its expected
    loss depends on more than second moments, so (the paper's App. I, Eq. 81) the
    hidden layer is expanded to first order around the mean input
    $m = \langle x\rangle$. With $\delta = x - m$, $a = \tilde W_1 m$ and
    $D = \operatorname{diag} f'(a) = \operatorname{diag}(1 - \tanh^2 a)$,

    $$f(\tilde W_1 x) \approx f(a) + D\tilde W_1\delta,\qquad
    \hat y \approx b + J\delta,\qquad b = \tilde W_2 f(a),\quad J = \tilde W_2 D\tilde W_1 .$$

    **Derivation of the expected loss.** Write $m_y = \langle y\rangle$ and the
    centred moments $C_x = \Sigma_x - m m^\top$,
    $C_{xy} = \Sigma_{xy} - m m_y^\top$, $C_y = \Sigma_y - m_y m_y^\top$. Split
    $y - \hat y = (y - m_y) + (m_y - b) - J\delta$; the cross terms with the
    constant $m_y - b$ vanish because $\langle y - m_y\rangle = \langle\delta\rangle = 0$,
    $\langle (y - m_y)^\top J\delta\rangle = \operatorname{tr}(J C_{xy})$ and
    $\langle\lVert J\delta\rVert^2\rangle = \operatorname{tr}(J C_x J^\top)$. Hence

    $$\langle L\rangle \approx \tfrac12\lVert m_y - b\rVert^2
    + \tfrac12\operatorname{tr}\big(C_y - 2JC_{xy} + JC_xJ^\top\big)
    + \tfrac\lambda2\big(\lVert W_1\rVert_F^2 + \lVert W_2\rVert_F^2\big),$$

    a function of the first and second moments only: the loss of the network
    that is *exactly* linear in $x$ around $m$. Its error relative to the true
    tanh network is the Taylor remainder, $\tfrac12 f''(a)(\tilde W_1\delta)^2$
    and higher terms; for small weights it is $O(\lVert W\rVert^4)$ while the
    weight-dependent part of the loss is $O(\lVert W\rVert^2)$. With
    $m = 0$ it reduces to `TwoLayerGain` (then $b = 0$, $D = I$).

    **Dynamics.** $\tau\dot W_i = -\partial\langle L\rangle/\partial W_i$ for this
    approximate loss. Differentiating through $D = \operatorname{diag} f'(a)$
    adds terms in $f''$, so rather than writing them out the vector field is
    computed with `jax.grad` of the closed-form approximate loss: the
    definition of gradient flow, hence exact for this system (and the adjoint
    strategies differentiate through it once more, which JAX supports).

    `control_shape` is `((hidden, inputs), (outputs, hidden))`. `predict`
    evaluates the real (not linearised) network, e.g. for SGD simulations.

    **Arguments:** as `lc.systems.AbstractTwoLayerSystem` (`task`, `hidden`, `lam`,
    `tau`, `W1_0`, `W2_0`, `seed`, `scale`), and

    - `mean_x`: $\langle x\rangle$; default `task.mean_x()`.
    - `mean_y`: $\langle y\rangle$; default the mean of 100 000 samples from
      `task.sample(jax.random.key(0), ...)` (a Monte-Carlo estimate: pass the
      exact value when it is known).
    """

    mean_x: Float[Array, " inputs"] = eqx.field(converter=_f)
    mean_y: Float[Array, " outputs"] = eqx.field(converter=_f)

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
        mean_x=None,
        mean_y=None,
    ):
        self.task = task
        self.lam = lam
        self.tau = tau
        _, self.W1_0, self.W2_0 = initial_weights(task, hidden, W1_0, W2_0, seed, scale)
        self.mean_x = task.mean_x() if mean_x is None else mean_x
        if mean_y is None:
            _, y = task.sample(jax.random.key(0), 100_000)
            mean_y = jnp.mean(y, axis=0)
        self.mean_y = mean_y

    def __check_init__(self):
        # The weights and lam, tau are checked by AbstractTwoLayerSystem.
        if jnp.shape(self.task.jump_times())[0]:
            raise ValueError(
                "TanhTaylor needs a constant task: its expansion point <x> and "
                "target mean <y> are fixed when it is built, but "
                f"{type(self.task).__name__} changes in time (it declares jump times)."
            )
        check_finite("mean_x", self.mean_x)
        check_finite("mean_y", self.mean_y)
        if self.mean_x.shape != (self.task.n_inputs,):
            raise ValueError(
                f"`mean_x` must have shape (inputs,) = ({self.task.n_inputs},); got "
                f"{self.mean_x.shape}."
            )
        if self.mean_y.shape != (self.task.n_outputs,):
            raise ValueError(
                f"`mean_y` must have shape (outputs,) = ({self.task.n_outputs},); got "
                f"{self.mean_y.shape}."
            )

    @property
    def control_shape(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (tuple(self.W1_0.shape), tuple(self.W2_0.shape))

    def predict(self, w, g, x: Float[Array, "n inputs"]) -> Float[Array, "n outputs"]:
        r"""The real network's output $\tilde W_2\tanh(\tilde W_1 x)$ for a batch `x`."""
        (W1, W2), (G1, G2) = w, g
        return jnp.tanh(x @ ((1.0 + G1) * W1).T) @ ((1.0 + G2) * W2).T

    def loss(self, t, w, g):
        (W1, W2), (G1, G2) = w, g
        W1e, W2e = (1.0 + G1) * W1, (1.0 + G2) * W2
        m, my = self.mean_x, self.mean_y
        a = W1e @ m
        b = W2e @ jnp.tanh(a)
        J = W2e @ ((1.0 - jnp.tanh(a) ** 2)[:, None] * W1e)
        Cx = self.task.Sx - jnp.outer(m, m)
        Cxy = self.task.Sxy - jnp.outer(m, my)
        Cy = self.task.Sy - jnp.outer(my, my)
        fit = jnp.trace(Cy) - 2 * jnp.sum(J.T * Cxy) + jnp.sum((J @ Cx) * J)
        reg = self.regulariser(W1, W2)
        return 0.5 * jnp.sum((my - b) ** 2) + 0.5 * fit + reg

    def batch_loss(self, t, w, g, x, y):
        r"""The **real** tanh network's minibatch loss (not the Taylor approximation), divided by $\tau$.

        $\frac1\tau[\frac1{2B}\sum_n\lVert y_n - \tilde W_2\tanh(\tilde W_1x_n)\rVert^2$
        + regulariser$]$: SGD on it is the actual network that the control found
        on the approximation (`loss`, `vector_field`) is applied to.
        """
        W1, W2 = w
        fit = 0.5 * jnp.mean(jnp.sum((y - self.predict(w, g, x)) ** 2, axis=-1))
        reg = self.regulariser(W1, W2)
        return (fit + reg) / self.tau

    def vector_field(self, t, w, g):
        grad = jax.grad(self.loss, argnums=1)(t, w, g)
        return jax.tree.map(lambda d: -d / self.tau, grad)
