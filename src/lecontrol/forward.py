r"""Forward sensitivities: `jax.jvp` and `jax.jacfwd` of $V$.

For a direction $\dot p$ in the problem's parameters (the coefficients
$\theta$, and any floating-point field of the system, cost or objective,
the horizon $T$ included), the tangents $\dot w = (\partial w/\partial p)\dot p$
and $\dot V = (\partial V/\partial p)\dot p$ obey the forward sensitivity
equations
$$\frac{d\dot w}{dt} = \frac{\partial h}{\partial w}\dot w
+ \frac{\partial h}{\partial p}\dot p,\qquad
\frac{d\dot V}{dt} = \frac{\partial v}{\partial w}\dot w
+ \frac{\partial v}{\partial p}\dot p,$$
$$\dot w(0) = \frac{\partial w_0}{\partial p}\dot p,\qquad \dot V(0) = 0,$$
and $dV = \dot V(T) + v(T)\,\dot T$ for a perturbed horizon. Both right-hand
sides are one `jax.jvp` of the augmented field $(h, v)$ in $(w, p)$: a
Jacobian-vector product per step, never a Jacobian.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._dynamics import (
    Posed,
    SolverOptions,
    check_result,
    finite_value,
    stepsize_controller,
)
from ._transforms import reverse_mode_guard, second_order_guard
from .adjoint import AbstractGradientStrategy

_REVERSE = (
    "reverse-mode differentiation (jax.grad, jax.vjp, jax.jacrev, and so "
    "jax.hessian, jax.value_and_grad and lc.optimize) of lc.value with "
    "ForwardSensitivity is not supported: it pushes tangents forward through the "
    "solve and has no backward pass. Use adjoint=lc.ContinuousAdjoint() for "
    "reverse mode (one costate solve gives the whole gradient); ForwardSensitivity "
    "supports jax.jvp, jax.jacfwd, jax.linearize and jax.jacfwd(jax.jacfwd(f))."
)
_HORIZON_SECOND_ORDER = (
    "second derivatives with respect to the horizon T (a jax.jvp or jax.jacfwd, "
    "taken with respect to T, of a JVP) of lc.value with ForwardSensitivity are "
    "not supported: diffrax's forward-mode derivative of a solve in its end time "
    "is not exact. Use finite differences in T of jax.jacfwd; second derivatives "
    "in theta and in the other fields of the problem "
    "(jax.jacfwd(jax.jacfwd(f))), and the derivative of dV/dT with respect to "
    "them, are exact. Pass T as its own argument: a T sliced from a vector that "
    "is differentiated carries a zero tangent, which counts as one. (Reverse "
    "mode, also inside jax.hessian, is not supported by ForwardSensitivity: "
    "use adjoint=lc.ContinuousAdjoint() for it.)"
)


class ForwardSensitivity(AbstractGradientStrategy):
    r"""Forward mode: the sensitivity equations solved with the state, in one solve.

    `lc.value` is a `custom_jvp`. Its value is the ordinary forward solve of
    $(w, V)$, the same solve as `ContinuousAdjoint`'s. Its Jacobian-vector
    product in a direction $\dot p$ solves $(w, \dot w, \dot V)$ together
    from $0$ to $T$ in one adaptive solve (the equations are in the module
    docstring, derived in docs/maths.md, "Forward sensitivities"), then adds
    $v(T)\,\dot T$ for a perturbed horizon. $\dot p$ may perturb $\theta$
    and any floating-point array of the system (initial weights included),
    the cost or the objective; integer and static fields have no tangent.

    The step-size controller's error norm covers the sensitivities
    $(\dot w, \dot V)$ as well as $w$, at the same `rtol` and `atol`, so the
    derivative is accurate to the solver tolerance, not only the value. The
    steps therefore depend on the direction: `jax.jacfwd` (a `vmap` of JVPs,
    one per basis direction) solves each direction with its own steps, and
    a JVP is linear in $\dot p$ only to the solver tolerance. The value
    returned with a JVP is the plain forward solve's, the same for every
    direction (and unbatched under `jax.jacfwd`).

    Cost: one JVP is the plain forward solve plus the sensitivity solve of
    $(w, \dot w, \dot V)$, so a gradient in $d$ parameters by `jax.jacfwd`
    costs about $1 + 2d$ forward solves' worth of work, against a forward and
    a costate solve and a quadrature for `ContinuousAdjoint`: use this
    strategy for a few parameters (a sensitivity to a system parameter, a
    directional derivative), reverse mode for many (docs/gradients.md,
    "Forward mode", has measurements).

    Transformations: `jax.jvp`, `jax.jacfwd`, `jax.linearize`, `jax.jit`,
    `jax.vmap`, and forward over forward (`jax.jacfwd(jax.jacfwd(f))`, a
    Hessian): the JVP's solve uses `diffrax.ForwardMode`, so it can itself
    be pushed forward; second derivatives with respect to $T$ are refused
    (diffrax's forward-mode derivative of a solve in its end time is not
    exact). Reverse mode (`jax.grad`, `jax.vjp`, `jax.jacrev`, `jax.hessian`,
    and so `lc.optimize`) raises `lc.TransformNotSupportedError`: use
    `ContinuousAdjoint`.
    """

    def value(self, problem, numerics):
        return _forward_sensitivity_value(problem, numerics)


def _solve(problem: Posed, numerics: SolverOptions, field, y0, args, t1):
    return diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        numerics.solver,
        t0=0.0,
        t1=t1,
        dt0=numerics.dt0,
        y0=y0,
        args=args,
        saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=stepsize_controller(problem, numerics),
        # Differentiable forward again: forward over forward (a Hessian).
        adjoint=diffrax.ForwardMode(),
        max_steps=numerics.max_steps,
        throw=False,
    )


def _zero() -> Float[Array, ""]:
    return jnp.zeros((), dtype=jnp.result_type(float))


def _augmented_field(t, y, problem: Posed):
    return problem.augmented_field(t, y)


@eqx.filter_custom_jvp
def _forward_sensitivity_value(problem, numerics):
    y0 = (problem.system.init_state(), _zero())
    sol = _solve(problem, numerics, _augmented_field, y0, problem, problem.objective.T)
    V = check_result(sol.ys[1][-1], sol, numerics)
    return finite_value(V, throw=numerics.throw)


@_forward_sensitivity_value.def_jvp
def _forward_sensitivity_jvp(primals, tangents):
    problem, numerics = primals
    t_problem, _ = tangents
    # The primal is the plain forward solve: the sensitivity solve below picks
    # its steps from the tangents too, so its own w and V would depend on them
    # (and be batched under jax.jacfwd, which needs the value unbatched).
    V = _forward_sensitivity_value(problem, numerics)

    # Push forward only the leaves that carry a tangent (`None`: a symbolic zero).
    is_none = lambda x: x is None  # noqa: E731
    perturbed = jax.tree.map(lambda t: t is not None, t_problem, is_leaf=is_none)
    diff, static = eqx.partition(problem, perturbed)
    t_diff = eqx.filter(t_problem, perturbed, is_leaf=is_none)

    def field(t, y, args):
        d, t_d = args
        w, t_w, _ = y
        (dw, _), (t_dw, t_dV) = jax.jvp(
            lambda d_, w_: eqx.combine(d_, static).augmented_field(t, (w_, None)),
            (d, w),
            (t_d, t_w),
        )
        return dw, t_dw, t_dV

    w0, t_w0 = jax.jvp(
        lambda d: eqx.combine(d, static).system.init_state(), (diff,), (t_diff,)
    )
    # Forward over forward differentiates this rule again, exactly except in
    # T: diffrax's derivative of a solve in its end time moves the last clipped
    # step (about 1e-3 off), so a second derivative in T is refused.
    T = second_order_guard(problem.objective.T, _HORIZON_SECOND_ORDER)
    # One solve of (w, ẇ, V̇); its error control covers all three.
    sol = _solve(problem, numerics, field, (w0, t_w0, _zero()), (diff, t_diff), T)
    w_T, _, t_V = jax.tree.map(lambda x: x[-1], sol.ys)
    # dV/dT = v(T): the integrand at the moving upper limit.
    t_T = t_problem.objective.T
    if t_T is not None:
        t_V = t_V + problem.reward(T, w_T, problem.control_for(T, w_T)) * t_T
    t_V = finite_value(
        check_result(t_V, sol, numerics), "dV (the JVP of V)", throw=numerics.throw
    )
    # Reverse mode transposes this JVP: it fails here, at its first step,
    # before JAX reaches the solve's while loop.
    return V, reverse_mode_guard(t_V, _REVERSE)
