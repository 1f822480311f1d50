r"""Closed-loop controllers: the control as a function of the learner's state.

An open-loop control is a signal $g(t;\theta)$ fixed in advance. A
*controller* is a feedback law $g = u(t, w)$: it reads the weights (through
the learner's performance, say) and sets the control, so the loop is part of
the ODE, $\dot w = h(w, u(t, w))$. Pass a controller to `lc.solve` or
`lc.value` in place of the coefficients $\theta$:

    trajectory = lc.solve(problem, controller, ts=ts)
    V = lc.value(problem, controller)  # differentiable in the controller's fields

The problem's `control` still gives the bounds; its coefficients are unused.
Gradients through a closed loop use `lc.CheckpointAdjoint` (the default for a
controller): the continuous adjoint's costate assumes that $g$ does not depend
on $w$.

**The closed-loop optimal learning rate** (`ClosedLoopLearningRate`). For a
learner whose whole learning field is scaled by a rate, $\dot w = \alpha
F(w)$, with cost $C(\alpha)$, $\gamma = 1$ and performance $P(w)$, the
Hamiltonian is $H = \eta P - C(\alpha) + \alpha\,\lambda^\top F$. The optimal
rate maximises it at every $t$: $C'(\alpha) = \lambda^\top F$ where $\alpha$ is
interior. The problem is autonomous, so $H$ is constant along the optimum;
at $T$ the costate vanishes, so $H(T) = \eta P(T) - C_\text{min}$, with
$C_\text{min}$ the least cost within the bounds. Eliminating
$\lambda^\top F$:

$$
\alpha\,C'(\alpha) - C(\alpha) = \eta\,\big(P(T) - P(t)\big) - C_\text{min}.
$$

The left side, $\phi(\alpha)$, increases with $\alpha > 0$ for a convex cost
($\phi' = \alpha C''$), so the law gives one rate for the current
performance $P(t)$ and the final one $P(T)$, and the rate on a bound when the
solution lies outside them (where the bound is active at the optimum, the
unconstrained rate lies beyond it, by the same monotonicity). For the paper's
`lc.systems.LearningRate`, $\alpha = 1 + \rho$ and $C = \beta(\rho -
o)^2$, so $\phi(\alpha) = \beta\big(\alpha^2 - (1 + o)^2\big)$ and

$$
\alpha(t) = \sqrt{(1 + o)^2 + \big[\eta(\hat P_T - P(t)) - C_\text{min}\big]/\beta},
\qquad \rho(t) = \operatorname{clip}(\alpha(t) - 1, \rho_\text{lower}, \rho_\text{upper}),
$$

with $\hat P_T$ the *expected* final performance, the controller's only
parameter. `self_consistent` finds the $\hat P_T$ that the closed loop then
reaches. A one-mode learner $\dot w = \alpha F(w)$ with $C = \tfrac12
c\,\alpha^2$ is this system with offset $-1$ and $\beta = c/2$, where the law
reads $\alpha = \sqrt{2\eta(\hat P_T - P)/c}$.

For any other convex cost $C(\rho)$ the law is a scalar root: $\rho$ solves
$\phi(1 + \rho) = \eta(\hat P_T - P) - C_\text{min}$ within the bounds, and
$C_\text{min} = C(\rho_\text{min})$ with $\rho_\text{min}$ the root of
$C'(\rho) = 0$ within them (both by bisection, differentiated implicitly).

`EpisodicMemory` recalls $\hat P_T$ from past runs: the mean final
performance of the runs whose task descriptors are nearest the new task's.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Float, PyTree

from ._dynamics import SolverOptions

__all__ = ["AbstractController", "ClosedLoopLearningRate", "EpisodicMemory"]


class AbstractController(eqx.Module):
    r"""A feedback law $g = u(t, w)$ for a problem.

    Subclasses implement `__call__(t, w, problem)`, returning the control (a
    pytree shaped like `problem.system.control_shape`, within the bounds of
    `problem.control`). `problem` holds `system`, `control`, `cost` and
    `objective`. Array fields of a controller are differentiable parameters.
    """

    @abc.abstractmethod
    def __call__(self, t, w: PyTree[Array], problem) -> PyTree[Array]:
        """The control at time `t` for weights `w`."""


def _f(x) -> Array:
    return jnp.asarray(x, dtype=float)


class ClosedLoopLearningRate(AbstractController):
    r"""The closed-loop optimal learning rate for `lc.systems.LearningRate`
    with an `lc.costs.Quadratic` cost (module docstring for the law).

    **Arguments:**

    - `target`: the expected final performance $\hat P_T$ (minus the final
      expected loss, so $\le 0$). `self_consistent` finds the value the loop
      reaches; scale it up or down to model over- or under-confidence.
    """

    target: Float[Array, ""] = eqx.field(converter=_f)

    def __call__(self, t, w, problem):
        from .costs import Quadratic
        from .systems import LearningRate

        if not isinstance(problem.system, LearningRate):
            raise TypeError(
                "ClosedLoopLearningRate needs an lc.systems.LearningRate system "
                f"(a rate scaling the whole learning field); got "
                f"{type(problem.system).__name__}."
            )
        lower, upper = problem.control.lower, problem.control.upper
        P = -problem.system.loss(t, w, jnp.zeros(()))
        if not isinstance(problem.cost, Quadratic):
            return _root_law(problem, self.target - P, lower, upper)
        beta, offset = problem.cost.beta, problem.cost.offset
        cheapest = jnp.clip(offset, lower, upper)
        c_min = beta * (cheapest - offset) ** 2
        drive = problem.objective.eta * (self.target - P) - c_min
        safe_beta = jnp.where(beta > 0, beta, 1.0)
        alpha2 = (1.0 + offset) ** 2 + drive / safe_beta
        alpha = jnp.sqrt(jnp.maximum(alpha2, 0.0))
        # beta = 0: free control, the largest rate while there is more to gain.
        free = jnp.where(drive > 0, upper, cheapest)
        return jnp.clip(jnp.where(beta > 0, alpha - 1.0, free), lower, upper)

    def self_consistent(
        self,
        problem,
        *,
        options: SolverOptions = SolverOptions(),
        rtol: float = 1e-10,
        atol: float = 1e-12,
        max_steps: int = 200,
    ) -> ClosedLoopLearningRate:
        r"""The controller whose expected final performance $\hat P_T$ is the
        one its closed loop reaches: the root of $P_T(\hat P_T) - \hat P_T$,
        by bisection (optimistix) between the initial performance $P(0)$
        (the loop then never pays for a rate above the cheapest) and 0 (no
        loss left). `self.target` is not used.

        **Raises:** a runtime error (optimistix's) if the bisection does not
        converge in `max_steps` steps.
        """
        from .objective import solve

        T = problem.objective.T
        w0 = problem.system.init_state()
        P0 = -problem.system.loss(0.0, w0, jnp.zeros(()))

        def residual(target, args):
            tr = solve(
                problem,
                ClosedLoopLearningRate(target),
                ts=jnp.array([T]),
                options=options,
            )
            return -tr.loss[-1] - target

        solver = optx.Bisection(rtol=rtol, atol=atol)
        sol = optx.root_find(
            residual,
            solver,
            P0,
            options=dict(lower=P0, upper=jnp.zeros_like(P0)),
            max_steps=max_steps,
        )
        return ClosedLoopLearningRate(jax.lax.stop_gradient(sol.value))


def _increasing_root(f, lower, upper) -> Array:
    """The root of an increasing scalar `f` within `[lower, upper]`, or the
    bound where `f` keeps one sign: bisection (optimistix) on `f - clip(0,
    f(lower), f(upper))`, which is always bracketed; its derivative comes from
    the implicit function theorem (0 on a bound)."""
    lower, upper = jnp.asarray(lower, float), jnp.asarray(upper, float)
    level = jnp.clip(0.0, f(lower), f(upper))
    solver = optx.Bisection(rtol=1e-13, atol=1e-13, flip=False)  # increasing
    sol = optx.root_find(
        lambda x, _: f(x) - level,
        solver,
        0.5 * (lower + upper),
        options=dict(lower=lower, upper=upper),
        max_steps=256,
        throw=False,
    )
    return jnp.clip(sol.value, lower, upper)


def _root_law(problem, gap, lower, upper) -> Array:
    r"""$\rho$ with $\phi(1 + \rho) = \eta\,\text{gap} - C_\text{min}$ in the
    bounds, $\phi(\alpha) = \alpha C'(\alpha) - C(\alpha)$, for a convex cost
    of the scalar $\rho$ (`gap` $= \hat P_T - P$)."""
    cost = problem.cost
    slope = jax.grad(lambda r: cost(r))
    cheapest = _increasing_root(slope, lower, upper)
    drive = problem.objective.eta * gap - cost(cheapest)
    return _increasing_root(
        lambda r: (1.0 + r) * slope(r) - cost(r) - drive, lower, upper
    )


class EpisodicMemory(eqx.Module):
    r"""Past runs' task descriptors and final performances, for recalling the
    expected final performance $\hat P_T$ of a new task.

    `recall(descriptor)` is the mean final performance of the `neighbours`
    stored runs whose descriptors are nearest (Euclidean distance; scale the
    descriptor's entries to comparable units) — all of them while fewer are
    stored. `store` returns a new memory with one more run. An empty memory
    has nothing to recall and raises.

    **Arguments:**

    - `descriptors`: runs × features (a 1-D array: one feature per run).
    - `performances`: each run's final performance $P(T)$.
    - `neighbours`: how many nearest runs to average ($\ge 1$).
    """

    descriptors: Float[Array, "runs features"] = eqx.field(converter=_f)
    performances: Float[Array, " runs"] = eqx.field(converter=_f)
    neighbours: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        d, p = self.descriptors, self.performances
        if d.ndim != 2 or p.ndim != 1 or d.shape[0] != p.shape[0]:
            raise ValueError(
                "EpisodicMemory needs `descriptors` (runs × features) and "
                "`performances` (runs) with one row per run; got shapes "
                f"{d.shape} and {p.shape}."
            )
        if not isinstance(self.neighbours, int) or self.neighbours < 1:
            raise ValueError(
                f"`neighbours` of EpisodicMemory must be an integer >= 1; got "
                f"{self.neighbours!r}."
            )

    def __init__(self, descriptors, performances, neighbours: int = 1):
        d = jnp.asarray(descriptors, float)
        self.descriptors = d[:, None] if d.ndim == 1 else d
        self.performances = performances
        self.neighbours = neighbours

    @classmethod
    def empty(cls, features: int, neighbours: int = 1) -> EpisodicMemory:
        """A memory of no runs, for descriptors of `features` entries."""
        return cls(jnp.zeros((0, features)), jnp.zeros((0,)), neighbours)

    def store(self, descriptor, performance) -> EpisodicMemory:
        """This memory with one more run (`descriptor`, its final `performance`)."""
        row = jnp.reshape(jnp.asarray(descriptor, float), (1, -1))
        if row.shape[1] != self.descriptors.shape[1]:
            raise ValueError(
                f"`descriptor` has {row.shape[1]} features; the memory's runs "
                f"have {self.descriptors.shape[1]}."
            )
        return EpisodicMemory(
            jnp.concatenate([self.descriptors, row]),
            jnp.append(self.performances, jnp.asarray(performance, float)),
            self.neighbours,
        )

    def recall(self, descriptor) -> Float[Array, ""]:
        """The mean final performance of the nearest stored runs."""
        runs = self.performances.shape[0]
        if runs == 0:
            raise ValueError("the episodic memory is empty: nothing to recall.")
        row = jnp.reshape(jnp.asarray(descriptor, float), (-1,))
        if row.shape[0] != self.descriptors.shape[1]:
            raise ValueError(
                f"`descriptor` has {row.shape[0]} features; the memory's runs "
                f"have {self.descriptors.shape[1]}."
            )
        distance = jnp.sum((self.descriptors - row) ** 2, axis=1)
        k = min(self.neighbours, runs)
        _, nearest = jax.lax.top_k(-distance, k)
        return jnp.mean(self.performances[nearest])

    def controller(self, descriptor) -> ClosedLoopLearningRate:
        """The closed-loop learning rate expecting `recall(descriptor)`."""
        return ClosedLoopLearningRate(self.recall(descriptor))
