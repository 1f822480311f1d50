"""The paper's App. F.2 (docs/systems/learning-rate.md): a two-layer linear network with a controlled learning rate."""

from __future__ import annotations

import jax.numpy as jnp

from .two_layer import AbstractTwoLayerSystem, linear_fit, two_layer_flow


class LearningRate(AbstractTwoLayerSystem):
    r"""Two-layer linear network whose learning rate is scaled by $1 + \rho(t)$.

    The control is a scalar $\rho$ (the paper's App. F.2, Eqs. 28-29, the bilevel-programming
    view of learning-rate schedules). Both weight equations of
    `lc.systems.TwoLayerLinear` are multiplied by $1 + \rho$:

    $$\tau\dot W_1 = (1 + \rho)\big[W_2^\top(\Sigma_{xy}^\top - W\Sigma_x) - \lambda W_1\big],$$
    $$\tau\dot W_2 = (1 + \rho)\big[(\Sigma_{xy}^\top - W\Sigma_x)W_1^\top - \lambda W_2\big],$$

    with $W = W_2 W_1$; i.e. $\tau\dot W_i = -(1 + \rho)\,\partial\langle L\rangle/\partial W_i$
    where the expected loss $\langle L\rangle$ is that of `TwoLayerLinear`,
    independent of $\rho$. The paper's bounds are $\rho\in[-1, 1]$ with the
    cost $\beta(\rho - \text{offset})^2$ (`lc.costs.Quadratic`).

    `control_shape` is `()`.

    **Arguments:** as `lc.systems.AbstractTwoLayerSystem` (`task`, `hidden`, `lam`,
    `tau`, `W1_0`, `W2_0`, `seed`, `scale`).
    """

    @property
    def control_shape(self) -> tuple[int, ...]:
        return ()

    def vector_field(self, t, w, g):
        W1, W2 = w
        S = self.task
        d1, d2 = two_layer_flow(S.Sx_at(t), S.Sxy_at(t), W1, W2)
        rate = (1.0 + g) / self.tau
        return (rate * (d1 - self.lam * W1), rate * (d2 - self.lam * W2))

    def loss(self, t, w, g):
        W1, W2 = w
        S = self.task
        reg = self.regulariser(W1, W2)
        return linear_fit(S.Sx_at(t), S.Sxy_at(t), S.Sy_at(t), W2 @ W1) + reg

    def batch_loss(self, t, w, g, x, y):
        r"""$\frac{1 + \rho}\tau[\frac1{2B}\sum_n\lVert y_n - W_2W_1x_n\rVert^2$ + regulariser$]$.

        SGD with step $\alpha(1 + \rho)$ on the plain loss; its mean is
        $(1 + \rho)\,$`loss`$/\tau$.
        """
        W1, W2 = w
        fit = 0.5 * jnp.mean(jnp.sum((y - x @ W1.T @ W2.T) ** 2, axis=-1))
        reg = self.regulariser(W1, W2)
        return (1.0 + g) * (fit + reg) / self.tau
