r"""The objective: horizon, discount and performance weight of the value $V$."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree, Real

from ._checks import as_real, check_finite_tree, concrete
from ._dynamics import Numerics, Problem, check_result, forward_solve
from .adjoint import (
    AbstractGradientStrategy,
    ContinuousAdjoint,
    _tree_vdot,
    costate_solve,
)
from .controls import AbstractControl, is_shape
from .costs import AbstractCost
from .systems import AbstractLearningSystem


class Objective(eqx.Module):
    r"""Discounted cumulative net reward over a learning period.

    $$V[g] = \int_0^T \gamma^t\big[\eta P(t) - C(g(t))\big]\,dt,\qquad
    P = -\langle L\rangle.$$

    **Arguments:**

    - `T`: horizon $T > 0$ (in the time units of the ODE: $N$ SGD steps at
      learning rate $\alpha$ give $T = N\alpha$).
    - `gamma`: discount per unit time, $0 < \gamma \le 1$.
    - `eta`: weight of performance against cost, finite and $\ge 0$.
    """

    T: Float[Array, ""] = eqx.field(converter=as_real("T"))
    gamma: Float[Array, ""] = eqx.field(converter=as_real("gamma"), default=1.0)
    eta: Float[Array, ""] = eqx.field(converter=as_real("eta"), default=1.0)

    def __check_init__(self):
        T, gamma, eta = concrete(self.T), concrete(self.gamma), concrete(self.eta)
        if T is not None and not (np.all(np.isfinite(T)) and np.all(T > 0)):
            raise ValueError(f"`T` (the horizon) must be finite and > 0; got {T}.")
        if gamma is not None and not np.all((gamma > 0) & (gamma <= 1)):
            raise ValueError(
                f"`gamma` (the discount) must lie in (0, 1]; got {gamma}. "
                "gamma = 1 means no discounting."
            )
        if eta is not None and not (np.all(np.isfinite(eta)) and np.all(eta >= 0)):
            raise ValueError(f"`eta` must be finite and >= 0; got {eta}.")

    def discount(self, t) -> Float[Array, ""]:
        r"""$\gamma^t$."""
        return self.gamma**t


# ------------------------------------------------------------------ public verbs

DEFAULT_RTOL = 1e-7
DEFAULT_ATOL = 1e-9
DEFAULT_MAX_STEPS = 4096


def _problem(system, control, theta, cost, objective) -> Problem:
    if not isinstance(system, AbstractLearningSystem):
        raise TypeError(
            f"`system` must be an lc.systems.AbstractLearningSystem; got {type(system).__name__}."
        )
    if not isinstance(control, AbstractControl):
        raise TypeError(
            f"`control` must be an lc.controls control; got {type(control).__name__}."
        )
    if not isinstance(cost, AbstractCost):
        raise TypeError(f"`cost` must be an lc.costs cost; got {type(cost).__name__}.")
    if not isinstance(objective, Objective):
        raise TypeError(
            f"`objective` must be an lc.Objective; got {type(objective).__name__}."
        )
    want = jax.tree.leaves(system.control_shape, is_leaf=is_shape)
    got = jax.tree.leaves(control.shape, is_leaf=is_shape)
    if jax.tree.structure(system.control_shape, is_leaf=is_shape) != jax.tree.structure(
        control.shape, is_leaf=is_shape
    ) or [tuple(s) for s in want] != [tuple(s) for s in got]:
        raise ValueError(
            f"The control's shape {control.shape} does not match the system's "
            f"control_shape {system.control_shape}; build the control with "
            "shape=system.control_shape."
        )
    control.check_horizon(objective.T)
    control.check_theta(theta)
    check_finite_tree(
        "theta", theta, fix="Start from finite coefficients (control.init())."
    )
    check_finite_tree("system", system)
    check_finite_tree("cost", cost)
    check_finite_tree("objective", objective)
    return Problem(theta, system, control, cost, objective)


def _numerics(solver, rtol, atol, max_steps, dt0) -> Numerics:
    if not (rtol > 0 and atol >= 0):
        raise ValueError(f"Need rtol > 0 and atol >= 0; got rtol={rtol}, atol={atol}.")
    if int(max_steps) < 1:
        raise ValueError(f"`max_steps` must be a positive integer; got {max_steps}.")
    return Numerics(solver, rtol, atol, int(max_steps), dt0)


def value(
    system: AbstractLearningSystem,
    control: AbstractControl,
    theta: PyTree[Array],
    cost: AbstractCost,
    objective: Objective,
    *,
    adjoint: AbstractGradientStrategy = ContinuousAdjoint(),
    solver: diffrax.AbstractSolver = diffrax.Tsit5(),
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    max_steps: int = DEFAULT_MAX_STEPS,
    dt0: float | None = None,
) -> Float[Array, ""]:
    r"""The value $V[g] = \int_0^T\gamma^t[\eta P(t) - C(g(t))]\,dt$.

    $V$ is integrated as an extra state in the same adaptive solve as $w$.
    The result is differentiable (`jax.grad`) with respect to `theta` and every
    floating-point array of the system, cost and objective, by the strategy
    `adjoint`; it works under `jit` and `vmap`.

    **Arguments:**

    - `system`, `control`, `theta`, `cost`, `objective`: the problem.
    - `adjoint`: gradient strategy (`ContinuousAdjoint()`, `CheckpointAdjoint()`,
      `EulerUnrolled(dt)`).
    - `solver`: a diffrax solver (default `Tsit5()`).
    - `rtol`, `atol`: tolerances of the PID step-size controller.
    - `max_steps`: step budget of each solve.
    - `dt0`: initial step (default: chosen by the solver).

    **Returns:** the scalar $V$.
    """
    problem = _problem(system, control, theta, cost, objective)
    numerics = _numerics(solver, rtol, atol, max_steps, dt0)
    return _value(problem, adjoint.bind(problem), numerics)


@eqx.filter_jit
def _value(problem: Problem, adjoint: AbstractGradientStrategy, numerics: Numerics):
    # Compiled even when called eagerly: op-by-op dispatch of an ODE solve is
    # orders of magnitude slower. Inside a user's jit this is inlined.
    return adjoint.value(problem, numerics)


class Trajectory(eqx.Module):
    r"""A solved learning trajectory sampled at `ts`.

    - `ts`: the times.
    - `w`: weights $w(t)$ (pytree, leading axis over `ts`).
    - `loss`: expected loss $\langle L\rangle(t)$.
    - `g`: control $g(t)$ (pytree, leading axis over `ts`).
    - `v`: instantaneous net reward $\gamma^t[\eta P(t) - C(g(t))]$.
    - `V`: cumulative value $\int_0^t v\,dt'$ (so `V[-1]` is $V$ when `ts[-1] = T`).
    - `num_steps`: accepted solver steps.
    """

    ts: Float[Array, " times"]
    w: PyTree[Array]
    loss: Float[Array, " times"]
    g: PyTree[Array]
    v: Float[Array, " times"]
    V: Float[Array, " times"]
    num_steps: Array


def _check_ts(ts, T):
    arr, Tc = concrete(ts), concrete(T)
    if arr is None or Tc is None:
        return
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"`ts` must be a non-empty 1-D array of times; got shape {arr.shape}."
        )
    if np.any(np.diff(arr) < 0) or arr[0] < 0 or arr[-1] > float(Tc) * (1 + 1e-12):
        raise ValueError(f"`ts` must be non-decreasing and lie in [0, T={float(Tc)}].")


def solve(
    system: AbstractLearningSystem,
    control: AbstractControl,
    theta: PyTree[Array],
    cost: AbstractCost,
    objective: Objective,
    *,
    ts: Real[Array, " times"],
    solver: diffrax.AbstractSolver = diffrax.Tsit5(),
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    max_steps: int = DEFAULT_MAX_STEPS,
    dt0: float | None = None,
) -> Trajectory:
    """Solve the learning dynamics and report $w$, loss, $g$, $v$ and $V$ at `ts`.

    **Arguments:** as `value`, plus `ts`, the times in $[0, T]$ to report.

    **Returns:** a `Trajectory`.
    """
    problem = _problem(system, control, theta, cost, objective)
    numerics = _numerics(solver, rtol, atol, max_steps, dt0)
    ts = jnp.asarray(ts, dtype=float)
    _check_ts(ts, objective.T)
    sol = forward_solve(problem, numerics, diffrax.SaveAt(ts=ts))
    w, V = check_result(sol.ys, sol, numerics)
    g = jax.vmap(problem.control_at)(ts)
    loss = jax.vmap(system.loss)(ts, w, g)
    v = jax.vmap(problem.reward)(ts, w, g)
    return Trajectory(ts, w, loss, g, v, V, sol.stats["num_accepted_steps"])


def _adjoint_solutions(
    problem: Problem, numerics: Numerics, adjoint: ContinuousAdjoint
):
    fwd = forward_solve(problem, numerics, diffrax.SaveAt(t1=True, dense=True))
    back = adjoint.backward_numerics(numerics)
    bwd = costate_solve(problem, back, lambda t: fwd.evaluate(t)[0])
    return fwd, bwd


def costate(
    system,
    control,
    theta,
    cost,
    objective,
    *,
    ts,
    adjoint: ContinuousAdjoint = ContinuousAdjoint(),
    solver=diffrax.Tsit5(),
    rtol=DEFAULT_RTOL,
    atol=DEFAULT_ATOL,
    max_steps=DEFAULT_MAX_STEPS,
    dt0=None,
) -> PyTree[Array]:
    r"""The costate $\lambda(t)$ at `ts` (pytree like $w$, leading axis over `ts`).

    $\dot\lambda = -(\partial h/\partial w)^\top\lambda - \gamma^t\eta\,\partial P/\partial w$,
    $\lambda(T) = 0$: the sensitivity of the remaining value $\int_t^T v$ to the
    weights at time $t$.
    """
    problem = _problem(system, control, theta, cost, objective)
    numerics = _numerics(solver, rtol, atol, max_steps, dt0)
    ts = jnp.asarray(ts, dtype=float)
    _check_ts(ts, objective.T)
    _, bwd = _adjoint_solutions(problem, numerics, adjoint)
    return jax.vmap(bwd.evaluate)(ts)


def functional_gradient(
    system,
    control,
    theta,
    cost,
    objective,
    *,
    ts,
    adjoint: ContinuousAdjoint = ContinuousAdjoint(),
    solver=diffrax.Tsit5(),
    rtol=DEFAULT_RTOL,
    atol=DEFAULT_ATOL,
    max_steps=DEFAULT_MAX_STEPS,
    dt0=None,
) -> PyTree[Array]:
    r"""The functional derivative $\delta V/\delta g(t)$ at `ts`.

    $$\frac{\delta V}{\delta g(t)} = \Big(\frac{\partial h}{\partial g}\Big)^\top\lambda
    + \gamma^t\Big(\eta\frac{\partial P}{\partial g} - \frac{\partial C}{\partial g}\Big).$$

    It is the direction of steepest ascent of $V$ in function space (the paper's
    update rule) and vanishes at an unconstrained optimum: the optimality residual.

    **Returns:** a pytree shaped like the control, leading axis over `ts`.
    """
    problem = _problem(system, control, theta, cost, objective)
    numerics = _numerics(solver, rtol, atol, max_steps, dt0)
    ts = jnp.asarray(ts, dtype=float)
    _check_ts(ts, objective.T)
    fwd, bwd = _adjoint_solutions(problem, numerics, adjoint)

    def at(t):
        w = fwd.evaluate(t)[0]
        lam = bwd.evaluate(t)
        g = problem.control_at(t)

        def H(g_):
            return _tree_vdot(lam, system.vector_field(t, w, g_)) + problem.reward(
                t, w, g_
            )

        return jax.grad(H)(g)

    return jax.vmap(at)(ts)
