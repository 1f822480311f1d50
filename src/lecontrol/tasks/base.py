"""Tasks: the second-order statistics a linear learning system sees."""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Real

from .._checks import check_finite, check_finite_fields, check_symmetric_psd


class AbstractTask(eqx.Module):
    r"""Statistics of a supervised task with inputs $x$ and targets $y$.

    Linear(ised) gradient flow depends on the data only through
    $\Sigma_x = \langle x x^\top\rangle$ (`Sx`, inputs × inputs),
    $\Sigma_{xy} = \langle x y^\top\rangle$ (`Sxy`, inputs × outputs) and
    $\Sigma_y = \langle y y^\top\rangle$ (`Sy`, outputs × outputs). A task also
    samples $(x, y)$ pairs, for the SGD simulations that validate the ODE.

    A task may change in time. Systems read the statistics at time $t$ through
    `Sx_at(t)`, `Sxy_at(t)`, `Sy_at(t)` and draw SGD's samples with
    `sample_at(key, n, t)`; `jump_times()` declares the times where the
    statistics jump, which a system reports so that solvers restart there.
    By default a task is constant: the `_at` methods return `Sx`, `Sxy`, `Sy`
    and `sample`, and there are no jumps. A time-varying task
    (`lc.tasks.SwitchingTasks`) overrides them; its `Sx`, `Sxy`, `Sy` are the
    statistics at $t = 0$.

    Every task, including one written by a user, is checked when it is built:
    `Sx` and `Sy` must be finite, symmetric and positive semi-definite, and
    `Sxy` finite with shape `(inputs, outputs)`, and every floating array field
    (parameters, means, stored data) finite (skipped for traced values).
    """

    def __check_init__(self):
        cls = type(self).__name__
        Sx, Sxy, Sy = self.Sx, self.Sxy, self.Sy
        check_symmetric_psd(f"Sx of {cls}", Sx)
        check_symmetric_psd(f"Sy of {cls}", Sy)
        check_finite(f"Sxy of {cls}", Sxy)
        want = (jnp.shape(Sx)[0], jnp.shape(Sy)[0])
        if jnp.shape(Sxy) != want:
            raise ValueError(
                f"`Sxy` of {cls} has shape {jnp.shape(Sxy)}; with Sx "
                f"{jnp.shape(Sx)} and Sy {jnp.shape(Sy)} it must be {want}."
            )
        check_finite_fields(cls, self)  # means, parameters, stored data

    @property
    @abc.abstractmethod
    def Sx(self) -> Float[Array, "inputs inputs"]:
        r"""$\Sigma_x = \langle x x^\top\rangle$."""

    @property
    @abc.abstractmethod
    def Sxy(self) -> Float[Array, "inputs outputs"]:
        r"""$\Sigma_{xy} = \langle x y^\top\rangle$."""

    @property
    @abc.abstractmethod
    def Sy(self) -> Float[Array, "outputs outputs"]:
        r"""$\Sigma_y = \langle y y^\top\rangle$."""

    @property
    def n_inputs(self) -> int:
        return self.Sx.shape[0]

    @property
    def n_outputs(self) -> int:
        return self.Sy.shape[0]

    @abc.abstractmethod
    def sample(
        self, key: PRNGKeyArray, n: int
    ) -> tuple[Float[Array, "n inputs"], Float[Array, "n outputs"]]:
        """Draw `n` i.i.d. pairs `(x, y)`, stacked along the first axis."""

    def Sx_at(self, t: Real[Array, ""]) -> Float[Array, "inputs inputs"]:
        r"""$\Sigma_x$ at time $t$ (`Sx` for a constant task)."""
        return self.Sx

    def Sxy_at(self, t: Real[Array, ""]) -> Float[Array, "inputs outputs"]:
        r"""$\Sigma_{xy}$ at time $t$ (`Sxy` for a constant task)."""
        return self.Sxy

    def Sy_at(self, t: Real[Array, ""]) -> Float[Array, "outputs outputs"]:
        r"""$\Sigma_y$ at time $t$ (`Sy` for a constant task)."""
        return self.Sy

    def sample_at(
        self, key: PRNGKeyArray, n: int, t: Real[Array, ""]
    ) -> tuple[Float[Array, "n inputs"], Float[Array, "n outputs"]]:
        """`n` i.i.d. pairs `(x, y)` of the task at time `t` (`sample` if constant)."""
        return self.sample(key, n)

    def jump_times(self) -> Float[Array, " jumps"]:
        """Times where the statistics jump (none for a constant task)."""
        return jnp.zeros((0,))

    def linear_loss_floor(self) -> Float[Array, ""]:
        r"""The least expected loss any linear map $W$ reaches on this task,

        $$L^* = \min_W \tfrac12\langle\lVert y - Wx\rVert^2\rangle
        = \tfrac12\operatorname{tr}\bigl(\Sigma_y
        - \Sigma_{xy}^\top\Sigma_x^{+}\Sigma_{xy}\bigr),$$

        at $W^* = \Sigma_{xy}^\top\Sigma_x^{+}$ ($^+$: the pseudo-inverse, so a
        singular $\Sigma_x$ is allowed). A deep linear network with at least
        $\operatorname{rank}\Sigma_{xy}$ hidden units has the same floor. The
        paper ranks digit pairs by it ("linear separability", its App. K.4).
        """
        Sx, Sxy = self.Sx, self.Sxy
        explained = Sxy.T @ jnp.linalg.lstsq(Sx, Sxy, rcond=None)[0]
        return 0.5 * jnp.trace(self.Sy - explained)

    def mean_x(self) -> Float[Array, " inputs"]:
        """$\\langle x\\rangle$ (estimated from samples if not known in closed form)."""
        x, _ = self.sample(jax.random.key(0), 100_000)
        return x.mean(0)
