"""The augmented ODE $(w, V)$ shared by every gradient strategy.

A `Posed` problem is an `lc.Problem` with its control coefficients $\\theta$:
everything that defines $V[\\theta]$. `SolverOptions` says how the ODE is
solved. Both are pytrees, so every array in them is visible to `jit`, `vmap`
and `grad`.
"""

from __future__ import annotations

import numbers

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PyTree

from .controls import AbstractControl
from .costs import AbstractCost
from .systems import AbstractLearningSystem


class Posed(eqx.Module):
    """A problem with its coefficients: what every gradient strategy solves."""

    theta: PyTree[Array]
    system: AbstractLearningSystem
    control: AbstractControl
    cost: AbstractCost
    objective: eqx.Module
    controller: eqx.Module | None = None  # closed loop: g = controller(t, w, self)

    @property
    def closed_loop(self) -> bool:
        return self.controller is not None

    def control_at(self, t):
        """The open-loop control $g(t;\theta)$."""
        if self.closed_loop:
            raise TypeError(
                "This computation needs an open-loop control g(t; theta) and was "
                "given a closed-loop controller: pass coefficients theta instead."
            )
        return self.control(self.theta, t)

    def control_for(self, t, w):
        """The control at time `t` for weights `w`: the controller's feedback
        in closed loop, else $g(t;\theta)$."""
        if self.closed_loop:
            return self.controller(t, w, self)
        return self.control(self.theta, t)

    def reward(self, t, w, g):
        r"""Instantaneous net reward $v(t) = \gamma^t[-\eta\langle L\rangle - C(g)]$."""
        obj = self.objective
        return obj.discount(t) * (-obj.eta * self.system.loss(t, w, g) - self.cost(g))

    def augmented_field(self, t, y, args=None):
        w, _ = y
        g = self.control_for(t, w)
        return self.system.vector_field(t, w, g), self.reward(t, w, g)

    def jump_times(self):
        """Discontinuities of the control and the system: step onto, restart."""
        return jnp.concatenate([self.control.jump_times(), self.system.jump_times()])

    def kink_times(self):
        """Kinks of the control: step onto them exactly."""
        return self.control.kink_times()

    def quadrature_breakpoints(self):
        """Sorted times in [0, T] between which the integrand of dV/dθ is smooth."""
        T = self.objective.T
        pts = jnp.concatenate(
            [self.control.breakpoints(T), jnp.clip(self.system.jump_times(), 0.0, T)]
        )
        return jnp.sort(jax.lax.stop_gradient(pts))


class SolverOptions(eqx.Module):
    r"""How the ODE of the learning dynamics is solved.

    Every verb (`lc.value`, `lc.solve`, `lc.costate`,
    `lc.functional_gradient`, `lc.optimize`) takes one of these as its
    keyword-only `options`.

    **Arguments:**

    - `solver`: a diffrax solver (default `diffrax.Tsit5()`, adaptive).
    - `rtol`, `atol`: tolerances of the PID step-size controller
      (default `1e-7` and `1e-9`: float64 precision is needed for them).
    - `max_steps`: step budget of each solve (default `4096`).
    - `dt0`: initial step (default `None`: chosen by the solver).
    - `throw`: raise a runtime error with advice when a solve fails or $V$ is
      not finite (default). With `throw=False` (diffrax's convention, for use
      under `vmap`) a failed solve gives `nan` instead; `lc.optimize` uses it
      internally and reports the failure as its result code.
    """

    solver: diffrax.AbstractSolver = diffrax.Tsit5()
    rtol: float = 1e-7
    atol: float = 1e-9
    max_steps: int = eqx.field(static=True, default=4096)
    dt0: float | None = None
    throw: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if not isinstance(self.solver, diffrax.AbstractSolver):
            raise TypeError(
                "`solver` must be a diffrax solver such as diffrax.Tsit5(); got "
                f"{type(self.solver).__name__}."
            )
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"`{name}` must be a number; got {value!r}.")
        if not (0 < self.rtol < 1 and 0 <= self.atol < float("inf")):
            raise ValueError(
                "Need 0 < `rtol` < 1 and a finite `atol` >= 0; got "
                f"rtol={self.rtol}, atol={self.atol}."
            )
        if (
            isinstance(self.max_steps, bool)
            or not isinstance(self.max_steps, int)
            or self.max_steps < 1
        ):
            raise ValueError(
                f"`max_steps` must be a positive integer; got {self.max_steps!r}."
            )
        if self.dt0 is not None and not (0 < self.dt0 < float("inf")):
            raise ValueError(
                f"`dt0` must be None or a finite step > 0; got {self.dt0}."
            )


SOLVER_ADVICE = (
    "the ODE solve of the learning dynamics failed ({what}). Raise `max_steps` "
    "(now {max_steps}), loosen `rtol`/`atol`, or make sure every discontinuity "
    "of the control or task is declared (control knots, system.jump_times())."
)


def stepsize_controller(problem: Posed, numerics: SolverOptions):
    pid = diffrax.PIDController(rtol=numerics.rtol, atol=numerics.atol)
    jumps, kinks = problem.jump_times(), problem.kink_times()
    if jumps.shape[0] == 0 and kinks.shape[0] == 0:
        return pid
    return diffrax.ClipStepSizeController(
        pid,
        step_ts=None if kinks.shape[0] == 0 else jax.lax.stop_gradient(kinks),
        jump_ts=None if jumps.shape[0] == 0 else jax.lax.stop_gradient(jumps),
    )


def check_result(out, sol: diffrax.Solution, numerics: SolverOptions):
    """Raise a runtime error with advice if the solve did not succeed.

    With `numerics.throw=False`, the floating-point leaves of `out` are `nan`
    instead (so the failure shows as a non-finite value, lane by lane under
    `vmap`).
    """
    R = diffrax.RESULTS
    if not numerics.throw:
        failed = sol.result != R.successful
        return jax.tree.map(
            lambda x: (
                jnp.where(failed, jnp.nan, x)
                if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
                else x
            ),
            out,
        )
    msgs = [
        SOLVER_ADVICE.format(
            what="max_steps reached; if the weights diverge (a non-finite state "
            "makes every step fail), more steps will not help: check the task "
            "statistics, bounds and time constant",
            max_steps=numerics.max_steps,
        ),
        SOLVER_ADVICE.format(
            what="step size underflow or non-finite state", max_steps=numerics.max_steps
        ),
    ]
    failed = sol.result != R.successful
    index = jnp.where(sol.result == R.max_steps_reached, 0, 1)
    return eqx.branched_error_if(out, failed, index, msgs)


def forward_solve(
    problem: Posed,
    numerics: SolverOptions,
    saveat: diffrax.SaveAt,
    adjoint: diffrax.AbstractAdjoint = diffrax.RecursiveCheckpointAdjoint(),
) -> diffrax.Solution:
    """Solve $(\\dot w, \\dot V) = (h, v)$ from 0 to T with $V(0) = 0$.

    The solver steps one flat vector $(w, V)$ (`ravel_pytree`), which costs
    fewer operations per Runge–Kutta stage than a pytree of small arrays;
    what is saved (`saveat`'s `fn`, by default the state) sees the pytree
    $(w, V)$, so `ys` has the usual structure. Dense output and adjoints other
    than the default (e.g. diffrax's `BacksolveAdjoint`) step the pytree itself.
    """
    w0 = problem.system.init_state()
    y0 = (w0, jnp.zeros((), dtype=jnp.result_type(float)))
    common = dict(
        t0=0.0,
        t1=problem.objective.T,
        dt0=numerics.dt0,
        args=problem,
        stepsize_controller=stepsize_controller(problem, numerics),
        adjoint=adjoint,
        max_steps=numerics.max_steps,
        throw=False,
    )
    if saveat.dense or not isinstance(adjoint, diffrax.RecursiveCheckpointAdjoint):
        term = diffrax.ODETerm(_augmented_field)
        return diffrax.diffeqsolve(
            term, numerics.solver, y0=y0, saveat=saveat, **common
        )
    flat, unravel = ravel_pytree(y0)

    def field(t, y, problem):
        return ravel_pytree(problem.augmented_field(t, unravel(y)))[0]

    def unflatten(sub: diffrax.SubSaveAt) -> diffrax.SubSaveAt:
        fn = sub.fn
        return eqx.tree_at(
            lambda s: s.fn, sub, lambda t, y, args: fn(t, unravel(y), args)
        )

    subs = jax.tree.map(
        unflatten, saveat.subs, is_leaf=lambda x: isinstance(x, diffrax.SubSaveAt)
    )
    saveat = eqx.tree_at(lambda s: s.subs, saveat, subs)
    return diffrax.diffeqsolve(
        diffrax.ODETerm(field), numerics.solver, y0=flat, saveat=saveat, **common
    )


def _augmented_field(t, y, problem: Posed):
    return problem.augmented_field(t, y)


def finite_value(V, what: str = "V", *, throw: bool = True):
    if not throw:
        return V
    return eqx.error_if(
        V,
        ~jnp.isfinite(V),
        f"{what} is not finite (nan or inf): the learning dynamics diverged. Check "
        "the task statistics, the control bounds and the time constant.",
    )
