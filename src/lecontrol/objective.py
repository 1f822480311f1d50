r"""The objective: horizon, discount and performance weight of the value $V$."""

from __future__ import annotations

import warnings

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree, Real

from ._checks import as_real, check_finite_tree, concrete
from ._dynamics import Posed, SolverOptions, check_result, forward_solve
from .adjoint import (
    AbstractGradientStrategy,
    CheckpointAdjoint,
    ContinuousAdjoint,
    _integrand,
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


# ------------------------------------------------------------------ the problem


class Problem(eqx.Module):
    r"""What defines the value $V[\theta]$, apart from the coefficients $\theta$.

    $$V[\theta] = \int_0^T \gamma^t\big[\eta P(w(t)) - C(g(t;\theta))\big]\,dt,
    \qquad \dot w = h(t, w, g(t;\theta)).$$

    Every verb takes a problem first and $\theta$ second:
    `lc.value(problem, theta)`, `lc.solve(problem, theta, ts=...)`,
    `lc.optimize(problem, theta0)`. A problem is a pytree, so a batch of
    problems is one `jax.vmap` away (see `lc.sweep`).

    **Arguments:**

    - `system`: the learning system (`lc.systems.AbstractLearningSystem`): its
      weights' flow $h$ and expected loss $\langle L\rangle = -P$.
    - `control`: the parametrisation $g(t;\theta)$ (`lc.controls`), built with
      `shape=system.control_shape` and covering $[0, T]$.
    - `cost`: the control cost $C(g)$ (`lc.costs`).
    - `objective`: horizon, discount and performance weight (`lc.Objective`).
    """

    system: AbstractLearningSystem
    control: AbstractControl
    cost: AbstractCost
    objective: Objective

    def __check_init__(self):
        expected = (
            ("system", AbstractLearningSystem, "an lc.systems.AbstractLearningSystem"),
            ("control", AbstractControl, "an lc.controls control"),
            ("cost", AbstractCost, "an lc.costs cost"),
            ("objective", Objective, "an lc.Objective"),
        )
        for name, kind, what in expected:
            value = getattr(self, name)
            if not isinstance(value, kind):
                raise TypeError(f"`{name}` must be {what}; got {type(value).__name__}.")
        system, control = self.system, self.control
        want = jax.tree.leaves(system.control_shape, is_leaf=is_shape)
        got = jax.tree.leaves(control.shape, is_leaf=is_shape)
        same_structure = jax.tree.structure(
            system.control_shape, is_leaf=is_shape
        ) == jax.tree.structure(control.shape, is_leaf=is_shape)
        if not same_structure or [tuple(s) for s in want] != [tuple(s) for s in got]:
            raise ValueError(
                f"The control's shape {control.shape} does not match the system's "
                f"control_shape {system.control_shape}; build the control with "
                "shape=system.control_shape."
            )
        control.check_horizon(self.objective.T)
        # Fields changed with eqx.tree_at skip their constructors' checks.
        for name in ("system", "cost", "objective"):
            check_finite_tree(name, getattr(self, name))


# ------------------------------------------------------------------ public verbs


def _posed(
    problem: Problem, theta: PyTree[Array], *, closed_loop: bool = False
) -> Posed:
    """`problem` with its coefficients `theta`, or (where `closed_loop` is
    allowed) with a controller (`lc.controllers.AbstractController`) in their
    place."""
    if not isinstance(problem, Problem):
        raise TypeError(
            "`problem` must be an lc.Problem(system, control, cost, objective); got "
            f"{type(problem).__name__}. Every verb takes the problem first and the "
            "coefficients theta second."
        )
    from .controllers import AbstractController

    if isinstance(theta, AbstractController):
        if not closed_loop:
            raise TypeError(
                "This verb needs open-loop coefficients theta; it was given a "
                f"controller ({type(theta).__name__}). lc.solve and lc.value take "
                "a controller in place of theta."
            )
        check_finite_tree("controller", theta)
        return Posed(
            None,
            problem.system,
            problem.control,
            problem.cost,
            problem.objective,
            controller=theta,
        )
    problem.control.check_theta(theta)
    check_finite_tree(
        "theta", theta, fix="Start from finite coefficients (control.init())."
    )
    return Posed(
        theta, problem.system, problem.control, problem.cost, problem.objective
    )


def _options(options: SolverOptions) -> SolverOptions:
    if not isinstance(options, SolverOptions):
        raise TypeError(
            f"`options` must be an lc.SolverOptions; got {type(options).__name__}."
        )
    _warn_float32(options)
    return options


def _warn_float32(options: SolverOptions) -> None:
    if jnp.result_type(float) == jnp.float64:
        return
    if options.rtol < _FLOAT32_RTOL:
        warnings.warn(
            f"lecontrol is running in float32, whose precision (about 1e-7) is too "
            f"coarse for rtol={options.rtol:g}: the adaptive solver cannot reach it "
            "and gradients lose accuracy. Switch on float64 before creating any "
            'array with `jax.config.update("jax_enable_x64", True)` (the '
            "`lecontrol` command line does this), or loosen "
            f"`lc.SolverOptions(rtol=...)` to at least {_FLOAT32_RTOL:g}.",
            stacklevel=3,
        )


_FLOAT32_RTOL = 1e-5


def value(
    problem: Problem,
    theta: PyTree[Array],
    *,
    adjoint: AbstractGradientStrategy | None = None,
    options: SolverOptions = SolverOptions(),
) -> Float[Array, ""]:
    r"""The value $V[\theta] = \int_0^T\gamma^t[\eta P(t) - C(g(t))]\,dt$.

    $V$ is integrated as an extra state in the same adaptive solve as $w$.
    The result is differentiable (`jax.grad`) with respect to `theta` and every
    floating-point array of the problem (system, cost, objective), by the
    strategy `adjoint`; it works under `jit` and `vmap`.

    **Arguments:**

    - `problem`: an `lc.Problem`.
    - `theta`: the control coefficients (e.g. `problem.control.init(0.0)`), or
      a closed-loop controller (`lc.controllers`), whose fields are then what
      `jax.grad` differentiates.
    - `adjoint`: gradient strategy (`ContinuousAdjoint()`, the default for
      coefficients; `CheckpointAdjoint()`, the default for a controller;
      `EulerUnrolled(dt)`).
    - `options`: how the ODE is solved (`lc.SolverOptions`).

    **Returns:** the scalar $V$.
    """
    posed = _posed(problem, theta, closed_loop=True)
    if adjoint is None:
        adjoint = CheckpointAdjoint() if posed.closed_loop else ContinuousAdjoint()
    return _value(posed, adjoint.bind(posed), _options(options))


@eqx.filter_jit
def _value(posed: Posed, adjoint: AbstractGradientStrategy, options: SolverOptions):
    # Compiled even when called eagerly: op-by-op dispatch of an ODE solve is
    # orders of magnitude slower. Inside a user's jit this is inlined.
    return adjoint.value(posed, options)


class Trajectory(eqx.Module):
    r"""A solved learning trajectory sampled at `ts`.

    - `ts`: the times.
    - `w`: weights $w(t)$ (pytree, leading axis over `ts`).
    - `loss`: expected loss $\langle L\rangle(t)$.
    - `g`: control $g(t)$ (pytree, leading axis over `ts`).
    - `v`: instantaneous net reward $\gamma^t[\eta P(t) - C(g(t))]$.
    - `V`: cumulative value $\int_0^t v\,dt'$ (so `V[-1]` is $V$ when `ts[-1] = T`).
    - `num_steps`: accepted solver steps.

    `w` and `g` are `None` when the solve was asked not to keep them
    (`lc.solve(..., weights=False)`).
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
    problem: Problem,
    theta: PyTree[Array],
    *,
    ts: Real[Array, " times"],
    options: SolverOptions = SolverOptions(),
    weights: bool = True,
) -> Trajectory:
    """Solve the learning dynamics and report $w$, loss, $g$, $v$ and $V$ at `ts`.

    **Arguments:**

    - `problem`, `theta`, `options`: as `lc.value` (`theta` may be a
      closed-loop controller; `g` is then its feedback along the solution).
    - `ts`: the times in $[0, T]$ to report, non-decreasing.
    - `weights`: keep $w$ and $g$ at every time (default). With `False`,
      only the scalars loss, $v$ and $V$ are kept (computed as the solve
      passes each time) and `w`, `g` are `None`: for many times and large
      networks, whose $w$ and $g$ would take `len(ts)` times their size
      (MAML's 8001 times of 5400 weights: 0.35 GB each).

    **Returns:** a `Trajectory`.
    """
    posed = _posed(problem, theta, closed_loop=True)
    options = _options(options)
    ts = jnp.asarray(ts, dtype=float)
    _check_ts(ts, problem.objective.T)
    if not weights:

        def scalars(t, y, args):
            w, V = y
            g = posed.control_for(t, w)
            return problem.system.loss(t, w, g), posed.reward(t, w, g), V

        sol = forward_solve(posed, options, diffrax.SaveAt(ts=ts, fn=scalars))
        loss, v, V = check_result(sol.ys, sol, options)
        return Trajectory(ts, None, loss, None, v, V, sol.stats["num_accepted_steps"])
    sol = forward_solve(posed, options, diffrax.SaveAt(ts=ts))
    w, V = check_result(sol.ys, sol, options)
    g = jax.vmap(posed.control_for)(ts, w)
    loss = jax.vmap(problem.system.loss)(ts, w, g)
    v = jax.vmap(posed.reward)(ts, w, g)
    return Trajectory(ts, w, loss, g, v, V, sol.stats["num_accepted_steps"])


def _adjoint_solutions(
    posed: Posed, options: SolverOptions, adjoint: ContinuousAdjoint
):
    fwd = forward_solve(posed, options, diffrax.SaveAt(t1=True, dense=True))
    back = adjoint.backward_numerics(options)
    bwd = costate_solve(posed, back, lambda t: fwd.evaluate(t)[0])
    return fwd, bwd


def _along_solution(problem, theta, ts, adjoint, options, at):
    r"""`at(posed, t, w, lam)` at each time of `ts`, with $w$ from the forward
    solve and $\lambda$ from the costate solve (`lc.costate` and the verbs
    built on it)."""
    posed = _posed(problem, theta)
    options = _options(options)
    ts = jnp.asarray(ts, dtype=float)
    _check_ts(ts, problem.objective.T)
    fwd, bwd = _adjoint_solutions(posed, options, adjoint)
    return jax.vmap(lambda t: at(posed, t, fwd.evaluate(t)[0], bwd.evaluate(t)))(ts)


def _hamiltonian_at(posed: Posed, t, w, lam, g):
    r"""$H = v(t, w, g) + \lambda^\top h(t, w, g)$."""
    flow = posed.system.vector_field(t, w, g)
    return _tree_vdot(lam, flow) + posed.reward(t, w, g)


def costate(
    problem: Problem,
    theta: PyTree[Array],
    *,
    ts: Real[Array, " times"],
    adjoint: ContinuousAdjoint = ContinuousAdjoint(),
    options: SolverOptions = SolverOptions(),
) -> PyTree[Array]:
    r"""The costate $\lambda(t)$ at `ts` (pytree like $w$, leading axis over `ts`).

    $\dot\lambda = -(\partial h/\partial w)^\top\lambda - \gamma^t\eta\,\partial P/\partial w$,
    $\lambda(T) = 0$: the sensitivity of the remaining value $\int_t^T v$ to the
    weights at time $t$.

    **Arguments:**

    - `problem`, `theta`, `options`: as `lc.value`.
    - `ts`: the times in $[0, T]$ to report, non-decreasing.
    - `adjoint`: the `ContinuousAdjoint` whose backward solve is reported
      (its `rtol`/`atol` override those of `options` for the costate).

    **Returns:** a pytree like $w$, leading axis over `ts`.
    """
    return _along_solution(
        problem, theta, ts, adjoint, options, lambda posed, t, w, lam: lam
    )


def functional_gradient(
    problem: Problem,
    theta: PyTree[Array],
    *,
    ts: Real[Array, " times"],
    adjoint: ContinuousAdjoint = ContinuousAdjoint(),
    options: SolverOptions = SolverOptions(),
) -> PyTree[Array]:
    r"""The functional derivative $\delta V/\delta g(t)$ at `ts`.

    $$\frac{\delta V}{\delta g(t)} = \Big(\frac{\partial h}{\partial g}\Big)^\top\lambda
    + \gamma^t\Big(\eta\frac{\partial P}{\partial g} - \frac{\partial C}{\partial g}\Big).$$

    It is the direction of steepest ascent of $V$ in function space (the paper's
    update rule) and vanishes at an unconstrained optimum: the optimality residual.

    **Arguments:** as `lc.costate`.

    **Returns:** a pytree shaped like the control, leading axis over `ts`.
    """

    def at(posed, t, w, lam):
        return jax.grad(lambda g: _hamiltonian_at(posed, t, w, lam, g))(
            posed.control_at(t)
        )

    return _along_solution(problem, theta, ts, adjoint, options, at)


def hamiltonian(
    problem: Problem,
    theta: PyTree[Array],
    *,
    ts: Real[Array, " times"],
    adjoint: ContinuousAdjoint = ContinuousAdjoint(),
    options: SolverOptions = SolverOptions(),
) -> Float[Array, " times"]:
    r"""The Hamiltonian along the solution, at `ts`:

    $$H(t) = \gamma^t\big[\eta P(w(t), g(t)) - C(g(t))\big] + \lambda(t)^\top h(w(t), g(t)),$$

    with $\lambda$ the costate (`lc.costate`). Pontryagin's principle: at an
    optimal control, $g(t)$ maximises $H$ over the box at every $t$ (so
    $\delta V/\delta g = \partial H/\partial g$ vanishes where $g$ is
    interior), and when the problem is autonomous ($\gamma = 1$ and a system
    and task that do not change in time) $H$ is constant in $t$ along the
    optimum. Its spread over $[0, T]$ is then an optimality diagnostic for a
    control from any optimiser: it falls towards zero as the control's knots
    are refined. With $\gamma < 1$, $dH/dt = \ln\gamma\,\gamma^t[\eta P - C]$
    along the optimum instead.

    **Arguments:** as `lc.costate`.

    **Returns:** $H$ at `ts`.
    """

    # The continuous adjoint's quadrature integrand is H itself.
    return _along_solution(problem, theta, ts, adjoint, options, _integrand)
