"""The paper's Sec. 6, Eq. 7 (docs/systems/two-layer.md): a two-layer linear network with per-weight gains."""

from __future__ import annotations

import jax.numpy as jnp

from .two_layer import AbstractTwoLayerSystem, linear_fit, two_layer_flow


class TwoLayerGain(AbstractTwoLayerSystem):
    r"""Two-layer linear network whose every weight is scaled by a controlled gain.

    The control is the pair of gain matrices $g = (G_1, G_2)$, shaped like the
    weights; $\tilde G_i = 1 + G_i$ and the effective weights are
    $\tilde W_i = \tilde G_i\circ W_i$, so $\hat Y = \tilde W_2\tilde W_1 X$.
    The loss uses the effective weights and the regulariser the raw ones
    (the paper's Eq. 7 and App. H.1): with $\tilde W = \tilde W_2\tilde W_1$,

    $$\langle L\rangle = \tfrac12\operatorname{tr}\big(\Sigma_y - 2\tilde W\Sigma_{xy}
    + \tilde W\Sigma_x\tilde W^\top\big) + \tfrac{\lambda}{2}\big(\lVert W_1\rVert_F^2
    + \lVert W_2\rVert_F^2\big),$$

    and gradient flow on the raw weights, $\tau\dot W_i = -\partial\langle L\rangle/\partial W_i$, is

    $$\tau\dot W_1 = \big(\tilde W_2^\top\Sigma_{xy}^\top
    - \tilde W_2^\top\tilde W_2\tilde W_1\Sigma_x\big)\circ\tilde G_1 - \lambda W_1,$$
    $$\tau\dot W_2 = \big(\Sigma_{xy}^\top\tilde W_1^\top
    - \tilde W_2\tilde W_1\Sigma_x\tilde W_1^\top\big)\circ\tilde G_2 - \lambda W_2.$$

    On a task that switches in time (`lc.tasks.SwitchingTasks`) the statistics
    are those of the task active at $t$ and the solver restarts at every
    switch: this is the paper's task-switch system (Sec. 6, App. K.3),
    `TwoLayerGain(SwitchingTasks([a, b], period, T), hidden=8)`.

    `control_shape` is `((hidden, inputs), (outputs, hidden))`. The paper's
    *neuron basis* (one gain per output neuron, $G_1 = 0$) is the control
    wrapper `lc.controls.NeuronBasis`; the system itself is unchanged.

    **Arguments:** as `lc.systems.AbstractTwoLayerSystem` (`task`, `hidden`, `lam`,
    `tau`, `W1_0`, `W2_0`, `seed`, `scale`).
    """

    @property
    def control_shape(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (tuple(self.W1_0.shape), tuple(self.W2_0.shape))

    def vector_field(self, t, w, g):
        (W1, W2), (G1, G2) = w, g
        Gt1, Gt2 = 1.0 + G1, 1.0 + G2
        S = self.task
        d1, d2 = two_layer_flow(S.Sx_at(t), S.Sxy_at(t), Gt1 * W1, Gt2 * W2)
        return (
            (d1 * Gt1 - self.lam * W1) / self.tau,
            (d2 * Gt2 - self.lam * W2) / self.tau,
        )

    def loss(self, t, w, g):
        (W1, W2), (G1, G2) = w, g
        S = self.task
        We = ((1.0 + G2) * W2) @ ((1.0 + G1) * W1)
        reg = self.regulariser(W1, W2)
        return linear_fit(S.Sx_at(t), S.Sxy_at(t), S.Sy_at(t), We) + reg

    def batch_loss(self, t, w, g, x, y):
        r"""$\frac1\tau[\frac1{2B}\sum_n\lVert y_n - \tilde W_2\tilde W_1x_n\rVert^2$ + regulariser$]$; its mean is `loss`·$/\tau$.

        The gains scale the weights inside the forward pass, so SGD's gradient
        on the raw weights carries the factors $\tilde G_i$ of the flow.
        """
        (W1, W2), (G1, G2) = w, g
        pred = x @ ((1.0 + G1) * W1).T @ ((1.0 + G2) * W2).T
        fit = 0.5 * jnp.mean(jnp.sum((y - pred) ** 2, axis=-1))
        reg = self.regulariser(W1, W2)
        return (fit + reg) / self.tau
