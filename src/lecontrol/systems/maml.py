"""MAML (the paper's Sec. 4, App. F.1; docs/systems/maml.md) — the control is the shared initial weights."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_finite, check_positive, check_symmetric_psd
from ..tasks import AbstractTask
from .base import AbstractLearningSystem
from .two_layer import gaussian_weights, linear_fit, two_layer_flow


def _f(x) -> Array:
    return jnp.asarray(x, dtype=float)


class MAML(AbstractLearningSystem):
    r"""Model-agnostic meta-learning of the initial weights of a two-layer linear net.

    $K$ tasks with statistics $(\Sigma_x^k, \Sigma_{xy}^k, \Sigma_y^k)$ share one
    initialisation $w(0) = (W_1(0), W_2(0))$, which is the control. From it each
    task runs its *own* inner loop, gradient flow on its own loss
    (the paper's App. F.1; `lc.systems.TwoLayerLinear` per task):

    $$\tau\dot w_k = -\nabla L_k(w_k),\qquad w_k(0) = g,$$
    $$L_k(W_1, W_2) = \tfrac12\operatorname{tr}\big(\Sigma_y^k - 2W\Sigma_{xy}^k
    + W\Sigma_x^k W^\top\big) + \tfrac\lambda2\big(\lVert W_1\rVert_F^2
    + \lVert W_2\rVert_F^2\big),\quad W = W_2W_1,$$

    and performance is the average over tasks, $P = -\frac1K\sum_k L_k(w_k(t))$.
    With $\gamma = 1$ and no cost, maximising $V$ minimises the average loss
    accumulated over the inner loop; its length (the number of inner steps
    times the inner learning rate $\alpha$) is the horizon $T$, and one-step MAML
    is $T = \alpha$.

    **How the control enters.** A control must act through `vector_field` and
    `loss`, not through `init_state`. So the state is the *displacement*
    $u_k = w_k - g$ of every task's weights from the initialisation, with
    $u_k(0) = 0$:

    $$\dot u_k = -\tfrac1\tau\nabla L_k(g + u_k),\qquad
    \langle L\rangle = \tfrac1K\textstyle\sum_k L_k(g + u_k).$$

    This is exactly the MAML problem, and every gradient strategy then returns
    $dV/dg$ with no special case (use a time-invariant
    `lc.controls.Constant(shape=system.control_shape)`). The state is the pair
    `(U1, U2)` with a leading task axis: shapes `(K, hidden, inputs)` and
    `(K, outputs, hidden)`; the weights of task $k$ at time $t$ are
    `(g[0] + U1[k], g[1] + U2[k])`.

    `control_shape` is `((hidden, inputs), (outputs, hidden))`.

    **Arguments:**

    - `tasks`: a sequence of `lc.tasks.AbstractTask` with equal numbers of
      inputs and of outputs (or a single task).
    - `hidden`: number of hidden units $H$.
    - `lam`: L2 regularisation $\lambda \ge 0$.
    - `tau`: time constant $\tau > 0$.

    The statistics are stored stacked along a leading task axis (`Sx`, `Sxy`,
    `Sy`). `gaussian_init(seed, scale)` draws an initial control.
    """

    Sx: Float[Array, "tasks inputs inputs"] = eqx.field(converter=_f)
    Sxy: Float[Array, "tasks inputs outputs"] = eqx.field(converter=_f)
    Sy: Float[Array, "tasks outputs outputs"] = eqx.field(converter=_f)
    hidden: int = eqx.field(static=True)
    lam: Float[Array, ""] = eqx.field(converter=_f)
    tau: Float[Array, ""] = eqx.field(converter=_f)

    def __init__(
        self,
        tasks: Sequence[AbstractTask] | AbstractTask,
        *,
        hidden: int,
        lam=0.0,
        tau=1.0,
    ):
        if isinstance(tasks, AbstractTask):
            tasks = [tasks]
        tasks = list(tasks)
        if len(tasks) == 0 or not all(isinstance(k, AbstractTask) for k in tasks):
            raise ValueError(
                "`tasks` must be a non-empty sequence of lc.tasks.AbstractTask; got "
                f"{[type(k).__name__ for k in tasks]}."
            )
        if any(jnp.shape(k.jump_times())[0] for k in tasks):
            raise ValueError(
                "Every task of MAML must be constant (MAML stores each task's "
                "statistics once); a task that declares jump times changes in time."
            )
        dims = {(k.n_inputs, k.n_outputs) for k in tasks}
        if len(dims) != 1:
            raise ValueError(
                "Every task of MAML must have the same numbers of inputs and outputs "
                f"(one network serves them all); got (inputs, outputs) in {sorted(dims)}."
            )
        self.Sx = jnp.stack([k.Sx for k in tasks])
        self.Sxy = jnp.stack([k.Sxy for k in tasks])
        self.Sy = jnp.stack([k.Sy for k in tasks])
        if int(hidden) < 1:
            raise ValueError(f"`hidden` must be a positive integer; got {hidden}.")
        self.hidden = int(hidden)
        self.lam = lam
        self.tau = tau

    def __check_init__(self):
        check_positive("lam", self.lam, allow_zero=True)
        check_positive("tau", self.tau)
        for k in range(self.Sx.shape[0]):
            check_symmetric_psd(f"Sx of task {k}", self.Sx[k])
            check_symmetric_psd(f"Sy of task {k}", self.Sy[k])
            check_finite(f"Sxy of task {k}", self.Sxy[k])

    @property
    def n_tasks(self) -> int:
        return self.Sx.shape[0]

    @property
    def control_shape(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        n_in, n_out = self.Sx.shape[1], self.Sy.shape[1]
        return ((self.hidden, n_in), (n_out, self.hidden))

    def gaussian_init(
        self, seed: int = 0, scale: float = 0.01
    ) -> tuple[Float[Array, "hidden inputs"], Float[Array, "outputs hidden"]]:
        r"""Initial weights with i.i.d. $\mathcal N(0, \text{scale}^2)$ entries.

        As `lc.systems.TwoLayerLinear` draws them; pass the result to
        `Constant.init` to start the optimisation of the initialisation.
        """
        n_in, n_out = self.Sx.shape[1], self.Sy.shape[1]
        return gaussian_weights(n_in, n_out, self.hidden, int(seed), float(scale))

    def loss_floor(self) -> Float[Array, ""]:
        r"""The infimum of the average loss over all weights, task by task:
        $\langle L\rangle^* = \frac1K\sum_k \min_W L_k(W)$, with

        $$\min_W L_k(W) = \tfrac12\operatorname{tr}\big(\Sigma_y^k
        - \Sigma_{xy}^{k\top}(\Sigma_x^k)^{+}\Sigma_{xy}^k\big),$$

        the least-squares fit of task $k$ alone ($^+$: the pseudo-inverse).
        Every task's inner loop stays above its own minimum, so
        $\langle L\rangle(t) \ge \langle L\rangle^*$ and, with no cost,
        $V \le -\eta\langle L\rangle^*\int_0^T\gamma^t dt$ for every
        initialisation. With $\lambda = 0$ this bound is the supremum of $V$
        and no initialisation attains it (`zero_product_init`).

        Needs $\lambda = 0$ (the regulariser makes the minimum depend on the
        factorisation) and `hidden` $\ge \min(\text{inputs}, \text{outputs})$
        (so that $W = W_2W_1$ reaches every linear map).
        """
        n_in, n_out = self.Sx.shape[1], self.Sy.shape[1]
        if self.hidden < min(n_in, n_out):
            raise ValueError(
                f"loss_floor needs `hidden` >= min(inputs, outputs) = "
                f"{min(n_in, n_out)}, so that W2 @ W1 reaches every linear map; "
                f"got hidden={self.hidden}."
            )
        if float(self.lam) != 0.0:
            raise ValueError(
                "loss_floor is the least-squares floor of the unregularised loss; "
                f"got `lam`={float(self.lam)} (it needs lam = 0)."
            )

        def task_floor(Sx, Sxy, Sy):
            fit = Sxy.T @ jnp.linalg.pinv(Sx, hermitian=True) @ Sxy
            return 0.5 * jnp.trace(Sy - fit)

        return jnp.mean(jax.vmap(task_floor)(self.Sx, self.Sxy, self.Sy))

    def zero_product_init(
        self, scale: float, seed: int = 0
    ) -> tuple[Float[Array, "hidden inputs"], Float[Array, "outputs hidden"]]:
        r"""Initial weights of norm growing with `scale` whose product is zero.

        $W_1 = s\,Q_1A$ and $W_2 = s\,BQ_2^\top$, with $[Q_1\,Q_2]$ a random
        orthogonal basis of the hidden layer split into $H - n_\text{out}$
        and $n_\text{out}$ columns and $A$, $B$ Gaussian (rows of $B$
        normalised): $W_2W_1 = s^2BQ_2^\top Q_1A = 0$, so every task starts at
        the loss of the zero map, while its inner loop learns at a rate that
        grows as $s^2$: with $E_k = W\Sigma_x^k - \Sigma_{xy}^{k\top}$, the
        product follows $\tau\dot W = -W_2W_2^\top E_k - E_kW_1^\top W_1$,
        and $W_2W_2^\top = s^2BB^\top$. As $s\to\infty$ each task reaches
        its least-squares fit in a time of order $s^{-2}$, and with $\lambda =
        0$ and no cost $V$ tends to $-\eta\langle L\rangle^*\int_0^T\gamma^t
        dt$ (`loss_floor`): $V$ has no finite maximiser over the
        initialisation. Needs `hidden` > outputs.
        """
        n_in, n_out = self.Sx.shape[1], self.Sy.shape[1]
        if self.hidden <= n_out:
            raise ValueError(
                f"zero_product_init needs `hidden` > outputs = {n_out}; "
                f"got hidden={self.hidden}."
            )
        k1, k2, k3 = jax.random.split(jax.random.key(int(seed)), 3)
        Q, _ = jnp.linalg.qr(jax.random.normal(k1, (self.hidden, self.hidden)))
        Q1, Q2 = Q[:, : self.hidden - n_out], Q[:, self.hidden - n_out :]
        A = jax.random.normal(k2, (self.hidden - n_out, n_in)) / jnp.sqrt(n_in)
        B = jax.random.normal(k3, (n_out, n_out))
        B = B / jnp.linalg.norm(B, axis=1, keepdims=True)
        return (scale * (Q1 @ A), scale * (B @ Q2.T))

    def init_state(self):
        (s1, s2), K = self.control_shape, self.n_tasks
        return (jnp.zeros((K, *s1)), jnp.zeros((K, *s2)))

    def sample_batch(self, key, t, n):
        """Not available: MAML keeps its tasks' statistics, not their samplers."""
        raise ValueError(
            "MAML keeps only its tasks' statistics, not their samplers: pass the "
            "tasks it was built from to lc.simulate, `data=[task_1, ..., task_K]` "
            "(same order)."
        )

    def vector_field(self, t, w, g):
        (U1, U2), (G1, G2) = w, g

        def task_flow(Sx, Sxy, U1k, U2k):
            W1, W2 = G1 + U1k, G2 + U2k
            d1, d2 = two_layer_flow(Sx, Sxy, W1, W2)
            return (d1 - self.lam * W1) / self.tau, (d2 - self.lam * W2) / self.tau

        return jax.vmap(task_flow)(self.Sx, self.Sxy, U1, U2)

    def loss(self, t, w, g):
        (U1, U2), (G1, G2) = w, g

        def task_loss(Sx, Sxy, Sy, U1k, U2k):
            W1, W2 = G1 + U1k, G2 + U2k
            reg = 0.5 * self.lam * (jnp.sum(W1**2) + jnp.sum(W2**2))
            return linear_fit(Sx, Sxy, Sy, W2 @ W1) + reg

        return jnp.mean(jax.vmap(task_loss)(self.Sx, self.Sxy, self.Sy, U1, U2))

    def batch_loss(self, t, w, g, x, y):
        r"""$\frac1\tau\sum_k L_k$ on each task's own batch: `x` `(tasks, B, inputs)`, `y` `(tasks, B, outputs)`.

        $L_k$ is the minibatch loss of task $k$'s network $(g + U_k)$ on its
        batch $(x_k, y_k)$. Summed, not averaged, over tasks: each task's
        displacement $U_k$ then gets its own task's gradient (every task runs
        its own SGD from $g$), and the mean is $K\,$`loss`$/\tau$.
        """
        (U1, U2), (G1, G2) = w, g

        def task_loss(U1k, U2k, xk, yk):
            W1, W2 = G1 + U1k, G2 + U2k
            fit = 0.5 * jnp.mean(jnp.sum((yk - xk @ W1.T @ W2.T) ** 2, axis=-1))
            return fit + 0.5 * self.lam * (jnp.sum(W1**2) + jnp.sum(W2**2))

        return jnp.sum(jax.vmap(task_loss)(U1, U2, x, y)) / self.tau
