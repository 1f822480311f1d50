r"""Task and category engagement (the paper's Sec. 5, App. H.2-H.3;
docs/systems/engagement.md): engagement coefficients that weight parts of the loss.

Both systems are two-layer linear networks $\hat Y = W_2 W_1 X$ trained by
gradient flow on a *weighted* auxiliary loss, while performance is measured
with the *unweighted* loss. With per-output weights $c_o \ge 0$,

$$\langle L_c\rangle = \tfrac12\sum_o c_o\big[\Sigma_y - 2W\Sigma_{xy}
+ W\Sigma_x W^\top\big]_{oo} + \tfrac\lambda2\big(\lVert W_1\rVert_F^2
+ \lVert W_2\rVert_F^2\big),\qquad W = W_2W_1,$$

and with $E = \Sigma_{xy}^\top - W\Sigma_x$ and $C = \operatorname{diag}(c)$,

$$\tau\dot W_1 = W_2^\top C E - \lambda W_1 = -\tau\,\partial\langle L_c\rangle/\partial W_1,
\qquad \tau\dot W_2 = C E W_1^\top - \lambda W_2.$$

Task engagement uses $c_o = \psi_{\tau(o)}$ (the coefficient of the task that
owns output $o$); category engagement uses $c_o = \varphi_o^2$.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from ..tasks import ConcatenatedTasks
from .two_layer import AbstractTwoLayerSystem, linear_fit

# ------------------------------------------------------------------ helpers


def weighted_fit(Sx, Sxy, Sy, W, c) -> Float[Array, ""]:
    r"""$\tfrac12\sum_o c_o[\Sigma_y - 2W\Sigma_{xy} + W\Sigma_xW^\top]_{oo}$."""
    per_output = (
        jnp.diagonal(Sy)
        - 2 * jnp.sum(W * Sxy.T, axis=1)
        + jnp.sum((W @ Sx) * W, axis=1)
    )
    return 0.5 * jnp.sum(c * per_output)


def weighted_flow(Sx, Sxy, W1, W2, c, lam, tau):
    r"""$(W_2^\top C E - \lambda W_1,\; C E W_1^\top - \lambda W_2)/\tau$."""
    CE = c[:, None] * (Sxy.T - W2 @ W1 @ Sx)
    return (W2.T @ CE - lam * W1) / tau, (CE @ W1.T - lam * W2) / tau


# ------------------------------------------------------------------ systems


class TaskEngagement(AbstractTwoLayerSystem):
    r"""Several tasks learnt at once, each weighted by an engagement coefficient.

    The paper's Sec. 5, Eq. 6. The network sees the concatenated inputs of
    $N_\tau$ tasks and predicts their concatenated outputs; task $\tau$ owns the
    output rows $W_{2\tau}$ of $W_2$. With engagement $\psi_\tau$ the weights
    follow gradient flow on the auxiliary loss $\sum_\tau\psi_\tau L_\tau$:

    $$\tau\dot W_1 = \sum_\tau\psi_\tau W_{2\tau}^\top(\Sigma_{xy\tau}^\top
    - W_{2\tau}W_1\Sigma_x) - \lambda W_1,\qquad
    \tau\dot W_2 = \sum_\tau\psi_\tau(\Sigma_{xy\tau}^\top
    - W_{2\tau}W_1\Sigma_x)W_1^\top - \lambda W_2,$$

    i.e. $-\tau\,\partial$`aux_loss`$/\partial W$, while performance uses the
    unweighted loss (`loss`):

    $$\langle L\rangle = \sum_\tau \langle L_\tau\rangle + \tfrac\lambda2
    \big(\lVert W_1\rVert_F^2 + \lVert W_2\rVert_F^2\big),\quad
    \langle L_\tau\rangle = \tfrac12\big\langle\lVert y_\tau - W_{2\tau}W_1x
    \rVert^2\big\rangle.$$

    The control is $\psi$ itself, `control_shape = (n_tasks,)`: $\psi = 1$ is
    plain gradient flow on the summed loss (initialise the control with
    `control.init(1.0)`), $\psi_\tau = 0$ disengages task $\tau$. The paper's
    costs are `Quadratic(beta, offset=1)` (attentive), `Quadratic(beta)`
    (active) and `FixedNorm(beta, n_tasks)` (vector). The state is `(W1, W2)`.

    **Arguments:** as `lc.systems.AbstractTwoLayerSystem` (`task`, `hidden`,
    `lam`, `tau`, `W1_0`, `W2_0`, `seed`, `scale`), where `task` must be an
    `lc.tasks.ConcatenatedTasks` (it says which outputs belong to which task).
    """

    def __check_init__(self):
        if not isinstance(self.task, ConcatenatedTasks):
            raise TypeError(
                "`task` of TaskEngagement must be an lc.tasks.ConcatenatedTasks "
                "(e.g. ConcatenatedTasks([task_a, task_b])); got "
                f"{type(self.task).__name__}."
            )

    @property
    def control_shape(self) -> tuple[int, ...]:
        return (self.task.n_tasks,)

    def _output_weights(self, psi) -> Float[Array, " outputs"]:
        return jnp.asarray(psi)[self.task.output_task()]

    def vector_field(self, t, w, g):
        W1, W2 = w
        S = self.task
        return weighted_flow(
            S.Sx_at(t), S.Sxy_at(t), W1, W2, self._output_weights(g), self.lam, self.tau
        )

    def aux_loss(self, t, w, g) -> Float[Array, ""]:
        r"""The $\psi$-weighted loss $\sum_\tau\psi_\tau\langle L_\tau\rangle$ + regulariser.

        `vector_field` is $-\partial(\cdot)/\partial W$ of this, divided by $\tau$.
        """
        W1, W2 = w
        S = self.task
        c = self._output_weights(g)
        fit = weighted_fit(S.Sx_at(t), S.Sxy_at(t), S.Sy_at(t), W2 @ W1, c)
        return fit + self.regulariser(W1, W2)

    def batch_loss(self, t, w, g, x, y):
        r"""$\frac1\tau[\frac1{2B}\sum_n\sum_o\psi_{\tau(o)}(y_{no} - \hat y_{no})^2$ + regulariser$]$.

        The $\psi$-weighted minibatch loss on concatenated samples; its mean is
        `aux_loss`$/\tau$ (SGD's gradient weights each task by $\psi_\tau$, while
        performance, `loss`, stays unweighted).
        """
        W1, W2 = w
        c = self._output_weights(g)
        fit = 0.5 * jnp.mean(jnp.sum(c * (y - x @ W1.T @ W2.T) ** 2, axis=-1))
        return (fit + self.regulariser(W1, W2)) / self.tau

    def loss(self, t, w, g):
        W1, W2 = w
        S = self.task
        reg = self.regulariser(W1, W2)
        return linear_fit(S.Sx_at(t), S.Sxy_at(t), S.Sy_at(t), W2 @ W1) + reg

    def task_losses(self, w) -> Float[Array, " tasks"]:
        r"""$\langle L_\tau\rangle$ for every task (no regulariser)."""
        W1, W2 = w
        S = self.task
        return jnp.stack(
            [
                weighted_fit(S.Sx, S.Sxy, S.Sy, W2 @ W1, S.output_mask(i))
                for i in range(S.n_tasks)
            ]
        )


class CategoryEngagement(AbstractTwoLayerSystem):
    r"""One engagement coefficient per output class.

    The paper's App. H.3, Eqs. 73-75. With $d(\varphi) = \operatorname{diag}(\varphi)$,

    $$\tau\dot W_1 = W_2^\top d(\varphi)^2(\Sigma_{xy}^\top - W_2W_1\Sigma_x)
    - \lambda W_1,\qquad
    \tau\dot W_2 = d(\varphi)^2(\Sigma_{xy}^\top - W_2W_1\Sigma_x)W_1^\top
    - \lambda W_2,$$

    gradient flow on the auxiliary loss (`aux_loss`) where output $c$'s squared
    error is weighted by $\varphi_c^2$. Performance uses the unweighted loss
    (`loss`, as `TwoLayerLinear`):
    $\tfrac12\operatorname{tr}(\Sigma_y - 2W\Sigma_{xy} + W\Sigma_xW^\top)
    + \tfrac\lambda2(\lVert W_1\rVert_F^2 + \lVert W_2\rVert_F^2)$.

    The control is $\varphi$ itself, `control_shape = (outputs,)`; $\varphi = 1$
    is plain gradient flow (initialise with `control.init(1.0)`). The paper
    bounds $\varphi \in [0, 2]$ with a fixed-total-engagement cost
    `FixedNorm(beta, outputs)`. The state is `(W1, W2)`.

    **Arguments:**

    - `task`: any `lc.tasks.AbstractTask` (e.g. 10-class `Digits`, or
      `SemanticHierarchy`, whose outputs are the features of the hierarchy).
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

    @property
    def control_shape(self) -> tuple[int, ...]:
        return (self.task.n_outputs,)

    def vector_field(self, t, w, g):
        W1, W2 = w
        S = self.task
        return weighted_flow(
            S.Sx_at(t), S.Sxy_at(t), W1, W2, jnp.square(g), self.lam, self.tau
        )

    def aux_loss(self, t, w, g) -> Float[Array, ""]:
        r"""$\tfrac12\sum_c\varphi_c^2[\cdots]_{cc}$ + regulariser (see above)."""
        W1, W2 = w
        S = self.task
        fit = weighted_fit(S.Sx_at(t), S.Sxy_at(t), S.Sy_at(t), W2 @ W1, jnp.square(g))
        return fit + self.regulariser(W1, W2)

    def batch_loss(self, t, w, g, x, y):
        r"""$\frac1\tau[\frac1{2B}\sum_n\sum_c\varphi_c^2(y_{nc} - \hat y_{nc})^2$ + regulariser$]$; its mean is `aux_loss`$/\tau$."""
        W1, W2 = w
        fit = 0.5 * jnp.mean(
            jnp.sum(jnp.square(g) * (y - x @ W1.T @ W2.T) ** 2, axis=-1)
        )
        return (fit + self.regulariser(W1, W2)) / self.tau

    def class_batch_loss(self, t, w, x, y, mask, batch_size) -> Float[Array, ""]:
        r"""The unweighted loss of a batch whose *class proportions* carry $\varphi$.

        The class-proportion experiment of the paper's App. H.3 (Eq. 77): instead of
        weighting output $c$'s error by $\varphi_c^2$, the batch of nominal size
        $B$ = `batch_size` holds $n_c$ samples of class $c$ with
        $\mathbb E\,n_c = \varphi_c B/C$, and the loss is unweighted,
        $\frac1\tau[\frac1{2B}\sum_n m_n\lVert y_n - W_2W_1x_n\rVert^2$ +
        regulariser$]$, where the mask $m_n \in \{0, 1\}$ marks the samples in
        use (`x`, `y` have a fixed number of rows, as `jit` needs). Its mean is
        $\frac1\tau[\sum_c\frac{\varphi_c}{C}L_c$ + regulariser$]$ with $L_c$
        the loss on class $c$ alone: linear in $\varphi$ and per *sample* class,
        a different flow from `vector_field`'s $\varphi^2$ weighting of outputs.
        `lc.simulate(..., class_proportions=True)` draws such batches.
        """
        W1, W2 = w
        err = jnp.sum((y - x @ W1.T @ W2.T) ** 2, axis=-1)
        fit = 0.5 * jnp.sum(mask * err) / batch_size
        return (fit + self.regulariser(W1, W2)) / self.tau

    def loss(self, t, w, g):
        W1, W2 = w
        S = self.task
        reg = self.regulariser(W1, W2)
        return linear_fit(S.Sx_at(t), S.Sxy_at(t), S.Sy_at(t), W2 @ W1) + reg

    def class_losses(self, w) -> Float[Array, " outputs"]:
        r"""$\tfrac12\langle(y_c - \hat y_c)^2\rangle$ for every output (no regulariser)."""
        W1, W2 = w
        S = self.task
        W = W2 @ W1
        return 0.5 * (
            jnp.diagonal(S.Sy)
            - 2 * jnp.sum(W * S.Sxy.T, axis=1)
            + jnp.sum((W @ S.Sx) * W, axis=1)
        )
