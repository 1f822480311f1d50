r"""Gradient strategies for $dV/d\theta$.

Four ways to differentiate the value $V[\theta]$, all behind `lc.value(...,
adjoint=...)`:

- `ContinuousAdjoint` (default, optimise-then-discretise): one forward solve
  saving $w$ at the quadrature nodes, one backward solve of the costate
  $$\dot\lambda = -(\partial h/\partial w)^\top\lambda - \partial v/\partial w,
  \qquad \lambda(T) = 0,$$
  reading $w(t)$ from an interpolant of those saved values, then
  $$\frac{dV}{dp} = \int_0^T \Big[\lambda^\top\frac{\partial h}{\partial p}
  + \frac{\partial v}{\partial p}\Big]dt
  + \lambda(0)^\top\frac{\partial w_0}{\partial p}$$
  for every parameter $p$ (the coefficients $\theta$ through
  $g(t;\theta)$, and any floating-point field of the system, cost or objective),
  by Gauss–Legendre quadrature on each interval between breakpoints (knots and
  task jumps), where the basis is polynomial. Here $v = \gamma^t[\eta P - C]$ is
  the instantaneous net reward.
- `CheckpointAdjoint` (discretise-then-optimise): reverse mode through the same
  adaptive solve with diffrax's `RecursiveCheckpointAdjoint`.
- `EulerUnrolled(dt)`: the paper's own method, explicit Euler at the SGD
  learning rate with a Riemann sum for $V$, reverse mode through `lax.scan`.
  The baseline for benchmarks.
- `ZerothOrder(samples, sigma)`: no derivative of the dynamics at all; an
  antithetic evolution-strategies estimate of $dV/d\theta$ from values of $V$
  at randomly perturbed coefficients (the zeroth-order protocol).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PyTree

from ._checks import concrete
from ._dynamics import (
    Posed,
    SolverOptions,
    check_result,
    finite_value,
    forward_solve,
    stepsize_controller,
)
from ._transforms import (
    TransformNotSupportedError,
    forward_mode_guard,
    second_order_guard,
)


class AbstractGradientStrategy(eqx.Module):
    """How $V$ is computed and differentiated."""

    @abc.abstractmethod
    def value(self, problem: Posed, numerics: SolverOptions) -> Float[Array, ""]:
        """The value $V$, differentiable with respect to every array in `problem`."""

    def bind(self, problem: Posed) -> AbstractGradientStrategy:
        """This strategy with anything it needs to know statically about
        `problem` fixed, called before compilation (e.g. Euler's step count)."""
        return self


# --------------------------------------------------------------------------- helpers


def _forward_mode_message(name: str, second: str) -> str:
    return (
        "forward-mode differentiation (jax.jvp, jax.jacfwd, jax.linearize, and so "
        f"jax.hessian and jax.jacfwd(jax.grad(...))) of lc.value with {name} is not "
        "supported. For forward mode use adjoint=lc.ForwardSensitivity() (jax.jvp, "
        "jax.jacfwd, jax.linearize, jax.jacfwd(jax.jacfwd(f))). Or use reverse "
        "mode: jax.grad, jax.vjp or jax.jacrev for first "
        f"derivatives{second}; or adjoint=lc.EulerUnrolled(dt), which supports "
        "every transformation."
    )


_CONTINUOUS_FORWARD = _forward_mode_message(
    "ContinuousAdjoint", ", and jax.jacrev(jax.grad(f)) for second derivatives"
)
_CHECKPOINT_FORWARD = _forward_mode_message(
    "CheckpointAdjoint",
    "; for second derivatives use ContinuousAdjoint with jax.jacrev(jax.grad(f))",
)
_BACKSOLVE_FORWARD = _forward_mode_message("BacksolveAdjoint", "")
_CONTINUOUS_HORIZON_SECOND_ORDER = (
    "second derivatives with respect to the horizon T (jax.grad or jax.jacrev of "
    "a gradient, taken with respect to T) of lc.value with ContinuousAdjoint are "
    "not supported: its quadrature nodes move with T but are held fixed when its "
    "backward pass is differentiated. Use finite differences in T of jax.grad; "
    "second derivatives in theta (jax.jacrev(jax.grad(f))), and the derivative of "
    "dV/dT with respect to theta, are exact."
)
_CHECKPOINT_SECOND_ORDER = (
    "second-order differentiation (jax.jacrev(jax.grad(...)), jax.hessian, a "
    "gradient of a gradient) of lc.value with CheckpointAdjoint is not supported: "
    "diffrax's RecursiveCheckpointAdjoint cannot be differentiated twice. Use "
    "ContinuousAdjoint with jax.jacrev(jax.grad(f)), or adjoint=lc.EulerUnrolled(dt), "
    "which supports every transformation."
)


def _tree_vdot(a: PyTree[Array], b: PyTree[Array]) -> Float[Array, ""]:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _tree_add(a, b):
    return jax.tree.map(
        lambda x, y: x if y is None else (y if x is None else x + y),
        a,
        b,
        is_leaf=lambda x: x is None,
    )


def _value_from(sol: diffrax.Solution, numerics: SolverOptions) -> Float[Array, ""]:
    V = sol.ys[1][-1]
    return finite_value(check_result(V, sol, numerics), throw=numerics.throw)


def gauss_legendre(breakpoints: Float[Array, " B"], nodes: int):
    """Nodes and weights of `nodes`-point Gauss–Legendre on each interval."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    a, b = breakpoints[:-1], breakpoints[1:]
    mid, half = (a + b) / 2, (b - a) / 2
    ts = (mid[:, None] + half[:, None] * x).reshape(-1)
    ws = (half[:, None] * w).reshape(-1)
    return ts, ws


def _reference_points(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """The interval's ends and its Gauss nodes on [-1, 1], with barycentric weights."""
    x = np.concatenate([[-1.0], np.polynomial.legendre.leggauss(nodes)[0], [1.0]])
    weights = np.array([1 / np.prod(x[j] - np.delete(x, j)) for j in range(len(x))])
    return x, weights / np.max(np.abs(weights))


def sample_times(breakpoints: Float[Array, " B"], nodes: int) -> Float[Array, " S"]:
    """Each interval's left end and Gauss nodes, in order, then the last breakpoint.

    Where the forward pass saves $w$ for `NodeInterpolant`.
    """
    ts, _ = gauss_legendre(breakpoints, nodes)
    inner = jnp.concatenate(
        [breakpoints[:-1, None], ts.reshape(-1, nodes)], axis=1
    ).reshape(-1)
    return jnp.concatenate([inner, breakpoints[-1:]])


class NodeInterpolant(eqx.Module):
    r"""$w(t)$ rebuilt from its values at the breakpoints and Gauss nodes.

    Between two consecutive breakpoints (knots of the control, task switches)
    the right-hand side is smooth, so $w$ is smooth there, and the $n + 2$
    samples on the interval (both ends and the $n$ Gauss–Legendre nodes of the
    quadrature) define its polynomial interpolant of degree $n + 1$, evaluated
    in barycentric form. Its error is that of the $n$-node quadrature itself:
    both assume $w$ is polynomial-like on every interval. Storage is
    `(breakpoints - 1) × (n + 2)` states: independent of the horizon, of the
    number of SGD steps it stands for and of `max_steps`.

    **Arguments:**

    - `breakpoints`: sorted times (repeats allowed: empty intervals are skipped).
    - `samples`: pytree like $w$ with leading axes `(breakpoints - 1, n + 2)`.
    """

    breakpoints: Float[Array, " B"]
    samples: PyTree[Float[Array, "intervals points ..."]]

    @classmethod
    def from_saved(cls, breakpoints, saved, nodes: int) -> NodeInterpolant:
        """From `w` saved at `sample_times(breakpoints, nodes)`."""

        def split(x):
            body = x[:-1].reshape((-1, nodes + 1) + x.shape[1:])
            right = x[nodes + 1 :: nodes + 1]
            return jnp.concatenate([body, right[:, None]], axis=1)

        return cls(breakpoints, jax.tree.map(split, saved))

    @property
    def nodes(self) -> int:
        return jax.tree.leaves(self.samples)[0].shape[1] - 2

    def at_nodes(self) -> PyTree[Float[Array, "nodes_total ..."]]:
        """$w$ at the Gauss nodes of every interval, in time order."""
        return jax.tree.map(
            lambda x: x[:, 1:-1].reshape((-1,) + x.shape[2:]), self.samples
        )

    def __call__(self, t: Float[Array, ""]) -> PyTree[Float[Array, ...]]:
        x, weights = _reference_points(self.nodes)
        b = self.breakpoints
        # The interval (b_i, b_{i+1}] holding t; empty intervals never hold it
        # except at their own point, where every sample is that same value.
        # (One comparison with every breakpoint: cheaper than a binary search's
        # loop for the few hundred breakpoints of a control.)
        i = jnp.clip(
            jnp.searchsorted(b, t, side="left", method="compare_all") - 1,
            0,
            b.shape[0] - 2,
        )
        width = b[i + 1] - b[i]
        safe = jnp.where(width > 0, width, 1.0)
        s = jnp.where(width > 0, (2 * t - b[i] - b[i + 1]) / safe, 0.0)
        d = s - x
        exact = d == 0
        c = jnp.where(
            jnp.any(exact), exact.astype(d.dtype), weights / jnp.where(exact, 1.0, d)
        )
        c = c / jnp.sum(c)
        return jax.tree.map(lambda v: jnp.tensordot(c, v[i], axes=1), self.samples)


def costate_field(
    problem: Posed, w_at: Callable[[Float[Array, ""]], PyTree[Array]]
) -> Callable[[Float[Array, ""], PyTree[Array]], PyTree[Array]]:
    r"""The right-hand side of the costate equation, $(t, \lambda) \mapsto
    \dot\lambda = -(\partial h/\partial w)^\top\lambda - \partial v/\partial w$
    at $w$ = `w_at(t)`: one vector–Jacobian product of $(h, v)$."""
    one = jnp.ones((), dtype=jnp.result_type(float))

    def minus_dw(t, lam):
        w = w_at(t)
        g = problem.control_at(t)

        def f(w_):
            return problem.system.vector_field(t, w_, g), problem.reward(t, w_, g)

        _, vjp = jax.vjp(f, w)
        (dw,) = vjp((lam, one))
        return jax.tree.map(jnp.negative, dw)

    return minus_dw


def costate_solve(
    problem: Posed,
    numerics: SolverOptions,
    w_at: Callable[[Float[Array, ""]], PyTree[Array]],
    ts: Float[Array, " times"] | None = None,
) -> diffrax.Solution:
    r"""Solve the costate equation backwards from $\lambda(T) = 0$ to $t = 0$.

    $w(t)$ is read from the stored forward pass, `w_at(t)` (e.g. a
    `NodeInterpolant`, or a dense forward solution's `evaluate`); it is never
    re-integrated backwards (which would be unstable for gradient flow).
    With `ts` (increasing), `ys` is `(λ at ts[::-1], λ(0))`, and the solver
    steps $\lambda$ as one flat vector (fewer operations per stage than a
    pytree of small arrays); without, the solution is dense.
    """
    lam_T = jax.tree.map(jnp.zeros_like, problem.system.init_state())
    flat_T, unravel = ravel_pytree(lam_T)
    minus_dw = costate_field(problem, w_at)

    if ts is None:
        y0 = lam_T
        saveat = diffrax.SaveAt(t1=True, dense=True)

        def rhs(t, lam, args):
            return minus_dw(t, lam)

    else:
        y0 = flat_T

        def rhs(t, lam, args):
            return ravel_pytree(minus_dw(t, unravel(lam)))[0]

        def save(t, y, args):
            return unravel(y)

        # ys[0] holds λ at ts[::-1]; ys[1] holds λ(0).
        saveat = diffrax.SaveAt(
            subs=[
                diffrax.SubSaveAt(ts=ts[::-1], fn=save),
                diffrax.SubSaveAt(t1=True, fn=save),
            ]
        )
    return diffrax.diffeqsolve(
        diffrax.ODETerm(rhs),
        numerics.solver,
        t0=problem.objective.T,
        t1=0.0,
        dt0=None if numerics.dt0 is None else -numerics.dt0,
        y0=y0,
        saveat=saveat,
        stepsize_controller=stepsize_controller(problem, numerics),
        max_steps=numerics.max_steps,
        throw=False,
    )


def _integrand(problem: Posed, t, w, lam) -> Float[Array, ""]:
    r"""$\lambda^\top h(w, g) + v(t, w, g)$: its gradient in $g$ is $\delta V/\delta g$."""
    g = problem.control_at(t)
    return _tree_vdot(lam, problem.system.vector_field(t, w, g)) + problem.reward(
        t, w, g
    )


# --------------------------------------------------------------------- continuous


class ContinuousAdjoint(AbstractGradientStrategy):
    r"""Optimise-then-discretise: forward solve, backward costate solve, quadrature.

    The forward pass saves $w$ at the ends and Gauss nodes of every interval
    between breakpoints and rebuilds $w(t)$ for the costate solve from them
    (`NodeInterpolant`); the backward pass saves $\lambda$ at the nodes.
    Memory is $(\text{breakpoints} - 1)(n + 2)$ states: independent of the
    number of SGD steps the horizon represents and of `max_steps`. See the
    module docstring for the maths.

    Reverse mode only: `jax.grad`, `jax.jacrev`, and `jax.jacrev(jax.grad(f))`
    for exact second derivatives (not in the horizon $T$). Forward mode
    (`jax.jvp`, `jax.jacfwd`, `jax.hessian`) raises
    `lc.TransformNotSupportedError`; see the table in docs/gradients.md.

    **Arguments:**

    - `nodes`: Gauss–Legendre nodes per interval between breakpoints. With
      `PiecewiseLinear` controls the integrand is smooth on each interval, so 8
      nodes integrate it (and interpolate $w$) to the accuracy of the solver.
    - `min_intervals`: when the control and system declare fewer breakpoint
      intervals than this (a few knots, or a constant control), every interval
      is split into equal parts so that there are at least `min_intervals`, and
      quadrature and interpolation resolve $w$ on long intervals.
    - `rtol`, `atol`: tolerances of the backward costate solve (default: those
      of the forward solve).
    """

    nodes: int = eqx.field(static=True, default=8)
    min_intervals: int = eqx.field(static=True, default=32)
    rtol: float | None = None
    atol: float | None = None

    def __check_init__(self):
        for name in ("nodes", "min_intervals"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"`{name}` of ContinuousAdjoint must be an integer >= 1; got "
                    f"{value!r}."
                )

    def value(self, problem, numerics):
        if problem.closed_loop:
            raise TypeError(
                "ContinuousAdjoint differentiates open-loop controls g(t; theta): "
                "its costate equation leaves out how a closed-loop controller's "
                "control depends on the weights. Use adjoint=lc.CheckpointAdjoint() "
                "(the default for a controller) or lc.EulerUnrolled(dt)."
            )
        # A custom_vjp: reverse mode only. Nested reverse mode differentiates
        # the backward pass below by ordinary autodiff, which is exact.
        problem = forward_mode_guard(problem, _CONTINUOUS_FORWARD)
        return _continuous_value(problem, self, numerics)

    def breakpoints(self, problem: Posed) -> Float[Array, " B"]:
        """Sorted times between which quadrature and interpolation are done."""
        b = problem.quadrature_breakpoints()
        intervals = b.shape[0] - 1
        if intervals >= self.min_intervals:
            return b
        # Split every interval into m equal parts (static: shapes only).
        m = -(-self.min_intervals // intervals)
        parts = jnp.arange(m, dtype=b.dtype) / m
        inner = b[:-1, None] + (b[1:] - b[:-1])[:, None] * parts[None, :]
        return jnp.concatenate([inner.reshape(-1), b[-1:]])

    def backward_numerics(self, numerics: SolverOptions) -> SolverOptions:
        return SolverOptions(
            numerics.solver,
            numerics.rtol if self.rtol is None else self.rtol,
            numerics.atol if self.atol is None else self.atol,
            numerics.max_steps,
            numerics.dt0,
            numerics.throw,
        )


@eqx.filter_custom_vjp
def _continuous_value(problem, strategy, numerics):
    sol = forward_solve(problem, numerics, diffrax.SaveAt(t1=True))
    return _value_from(sol, numerics)


def stored_forward(
    problem: Posed, strategy: ContinuousAdjoint, numerics: SolverOptions
) -> tuple[diffrax.Solution, NodeInterpolant]:
    r"""The forward pass of `ContinuousAdjoint`: $V$ and the stored $w$.

    Saves $w$ only where the backward pass needs it, as one flat vector
    (`ravel_pytree`): the ends and Gauss nodes of every interval between
    breakpoints (not diffrax's dense output, whose buffers are sized by
    `max_steps`). Returns the solution (`ys[0]` holds $(w(T), V)$) and the
    `NodeInterpolant` of the flat $w$.
    """
    breakpoints = strategy.breakpoints(problem)
    saveat = diffrax.SaveAt(
        subs=[
            diffrax.SubSaveAt(t1=True),
            diffrax.SubSaveAt(
                ts=sample_times(breakpoints, strategy.nodes),
                fn=lambda t, y, a: ravel_pytree(y[0])[0],
            ),
        ]
    )
    sol = forward_solve(problem, numerics, saveat)
    w_at = NodeInterpolant.from_saved(breakpoints, sol.ys[1], strategy.nodes)
    return sol, w_at


def costate_at_nodes(
    problem: Posed,
    strategy: ContinuousAdjoint,
    numerics: SolverOptions,
    w_at: NodeInterpolant,
):
    r"""The backward pass of `ContinuousAdjoint`, before the quadrature.

    Solves the costate equation reading $w$ from `w_at` (the flat
    `NodeInterpolant` of `stored_forward`) and returns the solution with the
    Gauss–Legendre nodes `ts`, weights `ws`, and $w$ and $\lambda$ at the
    nodes (pytrees like $w$ with a leading axis over `ts`).
    """
    _, unravel = ravel_pytree(problem.system.init_state())
    ts, ws = gauss_legendre(w_at.breakpoints, strategy.nodes)
    bwd = costate_solve(problem, numerics, lambda t: unravel(w_at(t)), ts)
    W = jax.vmap(unravel)(w_at.at_nodes())
    L = jax.tree.map(lambda x: x[::-1], bwd.ys[0])
    return bwd, ts, ws, W, L


def projection(perturbed: Posed, problem: Posed, ts, ws, W, L) -> Posed:
    r"""$\sum_j w_j[\lambda^\top\partial h/\partial p + \partial v/\partial p](t_j)$
    for every array $p$ of `problem` that `perturbed` marks (Gauss–Legendre
    on each smooth interval), `None` for the others."""
    # Differentiate only what the caller differentiates (`perturbed`): e.g.
    # θ alone inside `lc.optimize`, never integer data held by a task.
    diff, static = eqx.partition(problem, perturbed)

    def quadrature(d):
        p = eqx.combine(d, static)
        return jnp.sum(
            ws * jax.vmap(lambda t, w, lam: _integrand(p, t, w, lam))(ts, W, L)
        )

    return jax.grad(quadrature)(diff)


@_continuous_value.def_fwd
def _continuous_value_fwd(perturbed, problem, strategy, numerics):
    sol, w_at = stored_forward(problem, strategy, numerics)
    (_, V), samples = check_result((sol.ys[0], w_at.samples), sol, numerics)
    w_at = NodeInterpolant(w_at.breakpoints, samples)
    # w(T): the last sample of the last interval.
    return finite_value(V[-1], throw=numerics.throw), (w_at, samples[-1, -1])


@_continuous_value.def_bwd
def _continuous_value_bwd(fwd, cotangent, perturbed, problem, strategy, numerics):
    w_at, w_T = fwd
    _, unravel = ravel_pytree(problem.system.init_state())
    w_T = unravel(w_T)
    # Nested reverse mode (jax.jacrev(jax.grad(f))) differentiates this
    # backward pass by ordinary autodiff, through the costate solve and the
    # forward pass's saved w: the exact derivative of the computed gradient,
    # except along T, which also moves the (stop-gradient) quadrature nodes.
    problem = eqx.tree_at(
        lambda p: p.objective.T,
        problem,
        second_order_guard(problem.objective.T, _CONTINUOUS_HORIZON_SECOND_ORDER),
    )
    back = strategy.backward_numerics(numerics)
    # ∫ λᵀ ∂h/∂p + ∂v/∂p dt by Gauss–Legendre on each smooth interval: the
    # backward solve saves λ at the nodes, the forward pass saved w there.
    bwd, ts, ws, W, L = costate_at_nodes(problem, strategy, back, w_at)
    L, lam0 = check_result((L, bwd.ys[1]), bwd, back)
    lam0 = jax.tree.map(lambda x: x[-1], lam0)
    grads = projection(perturbed, problem, ts, ws, W, L)
    diff, static = eqx.partition(problem, perturbed)

    # λ(0)ᵀ ∂w0/∂p: the initial weights may depend on parameters.
    if jax.tree.leaves(diff.system):
        _, init_vjp = jax.vjp(
            lambda d: eqx.combine(d, static.system).init_state(), diff.system
        )
        (g_init,) = init_vjp(lam0)
        grads = eqx.tree_at(lambda p: p.system, grads, _tree_add(grads.system, g_init))

    # ∂V/∂T = v(T): the integrand at the upper limit (λ(T) = 0).
    if perturbed.objective.T:
        T = problem.objective.T
        vT = problem.reward(T, w_T, problem.control_at(T))
        grads = eqx.tree_at(lambda p: p.objective.T, grads, grads.objective.T + vT)

    return jax.tree.map(lambda x: x * cotangent, grads)


# --------------------------------------------------------------------- checkpoint


class CheckpointAdjoint(AbstractGradientStrategy):
    r"""Discretise-then-optimise: reverse mode through the adaptive solve.

    Uses `diffrax.RecursiveCheckpointAdjoint`, which stores `checkpoints`
    solver states and recomputes the rest (binomial checkpointing).

    First-order reverse mode only: forward mode and second derivatives raise
    `lc.TransformNotSupportedError`.

    **Arguments:**

    - `checkpoints`: number of checkpoints (default: diffrax's choice,
      $O(\log)$ of `max_steps`).
    """

    checkpoints: int | None = eqx.field(static=True, default=None)

    def value(self, problem, numerics):
        problem = forward_mode_guard(problem, _CHECKPOINT_FORWARD)
        return _checkpoint_value(problem, self, numerics)


def _checkpoint_solve(problem, strategy, numerics):
    adj = diffrax.RecursiveCheckpointAdjoint(checkpoints=strategy.checkpoints)
    sol = forward_solve(problem, numerics, diffrax.SaveAt(t1=True), adjoint=adj)
    return _value_from(sol, numerics)


# Reverse mode through diffrax's checkpointed solve, wrapped in a custom_vjp only
# so that differentiating its backward pass again (which diffrax cannot do: its
# while loop has dynamic bounds) raises a clear error.
@eqx.filter_custom_vjp
def _checkpoint_value(problem, strategy, numerics):
    return _checkpoint_solve(problem, strategy, numerics)


@_checkpoint_value.def_fwd
def _checkpoint_value_fwd(perturbed, problem, strategy, numerics):
    diff, static = eqx.partition(problem, perturbed)
    return jax.vjp(
        lambda d: _checkpoint_solve(eqx.combine(d, static), strategy, numerics), diff
    )


@_checkpoint_value.def_bwd
def _checkpoint_value_bwd(vjp, cotangent, perturbed, problem, strategy, numerics):
    vjp = second_order_guard(vjp, _CHECKPOINT_SECOND_ORDER)
    (grads,) = vjp(cotangent)
    return grads


class BacksolveAdjoint(AbstractGradientStrategy):
    r"""diffrax's `BacksolveAdjoint`, offered **for comparison only**.

    !!! warning

        It re-integrates $w$ backwards in time together with the costate.
        Gradient flow contracts towards a minimum, so running it backwards
        amplifies errors like $e^{\text{rate}\cdot T}$: on the single neuron
        with $T \ge 5$ its gradient is wrong by orders of magnitude even at
        tight tolerances (see `tests/test_adjoint.py`). Use
        `ContinuousAdjoint`, which reads $w(t)$ from the stored forward pass.
    """

    def value(self, problem, numerics):
        problem = forward_mode_guard(problem, _BACKSOLVE_FORWARD)
        sol = forward_solve(
            problem,
            numerics,
            diffrax.SaveAt(t1=True),
            adjoint=diffrax.BacksolveAdjoint(),
        )
        return _value_from(sol, numerics)


# -------------------------------------------------------------------------- euler


class EulerUnrolled(AbstractGradientStrategy):
    r"""The paper's method: explicit Euler at step `dt`, backprop through every step.

    $w_{i+1} = w_i + \Delta t\,h(w_i, g(t_i))$ and
    $V \approx \sum_{i=0}^{N-1}\Delta t\,v(t_i, w_i, g(t_i))$ with
    $N = T/\Delta t$ steps; reverse mode through `lax.scan` stores every step.
    With $\Delta t$ equal to the SGD learning rate this is what the reference
    research code did; it is the baseline of every benchmark.

    **Arguments:**

    - `dt`: the step, e.g. the SGD learning rate $\alpha$. The horizon must be
      an integer multiple of it.
    - `n_steps`: the number of steps $T/\Delta t$; filled in from the horizon
      before compilation (set it yourself only to trace or vmap over $T$).
    """

    dt: float = eqx.field(static=True)
    n_steps: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if not (self.dt > 0):
            raise ValueError(f"`dt` of EulerUnrolled must be > 0; got {self.dt}.")

    def steps(self, T) -> int:
        Tc = concrete(T)
        if Tc is None:
            raise ValueError(
                "EulerUnrolled needs a concrete horizon T (its number of steps is "
                "static): do not trace or vmap over T, or pass "
                "EulerUnrolled(dt, n_steps=T/dt) explicitly."
            )
        n = int(round(float(Tc) / self.dt))
        if n < 1 or abs(n * self.dt - float(Tc)) > 1e-9 * max(1.0, float(Tc)):
            raise ValueError(
                f"The horizon T={float(Tc)} must be a positive integer multiple of "
                f"EulerUnrolled.dt={self.dt}."
            )
        return n

    def bind(self, problem):
        if self.n_steps is not None or concrete(problem.objective.T) is None:
            return self
        return EulerUnrolled(self.dt, self.steps(problem.objective.T))

    def value(self, problem, numerics):
        n = (
            self.n_steps
            if self.n_steps is not None
            else self.steps(problem.objective.T)
        )
        dt = self.dt

        def step(carry, i):
            w, V = carry
            t = i * dt
            g = problem.control_for(t, w)
            dw = problem.system.vector_field(t, w, g)
            V = V + dt * problem.reward(t, w, g)
            w = jax.tree.map(lambda a, b: a + dt * b, w, dw)
            return (w, V), None

        V0 = jnp.zeros((), dtype=jnp.result_type(float))
        (_, V), _ = jax.lax.scan(step, (problem.system.init_state(), V0), jnp.arange(n))
        return finite_value(V, throw=numerics.throw)


# ------------------------------------------------------------------- zeroth order


def _as_key(key):
    """`key` as a JAX PRNG key: an integer seed becomes `jax.random.key(seed)`."""
    if isinstance(key, bool):
        raise ValueError(
            f"`key` of ZerothOrder must be an integer seed or a JAX PRNG key "
            f"(jax.random.key(seed)); got {key!r}."
        )
    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and (
        jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        or (key.dtype == jnp.uint32 and key.shape == (2,))
    ):
        return key
    what = (
        f"an array of dtype {key.dtype} and shape {key.shape}"
        if isinstance(key, jax.Array | np.ndarray)
        else repr(key)
    )
    raise ValueError(
        "`key` of ZerothOrder must be an integer seed or a JAX PRNG key "
        f"(jax.random.key(seed)); got {what}."
    )


_ZEROTH_FORWARD = _forward_mode_message("ZerothOrder", "")
_ZEROTH_SECOND_ORDER = (
    "second-order differentiation (jax.jacrev(jax.grad(...)), jax.hessian, a "
    "gradient of a gradient) of lc.value with ZerothOrder is not supported: its "
    "gradient is a Monte Carlo estimate from values of V, not a derivative of "
    "the computation. Use ContinuousAdjoint with jax.jacrev(jax.grad(f)) for exact "
    "second derivatives."
)


class ZerothOrder(AbstractGradientStrategy):
    r"""The zeroth-order protocol: $dV/d\theta$ estimated from values of $V$ alone.

    The value is $V[\theta]$ from one forward solve (the same solve as
    `ContinuousAdjoint` and `CheckpointAdjoint`, so the same number). Its
    gradient is never taken through the dynamics: `jax.grad` returns the
    antithetic evolution-strategies estimate
    $$\hat g = \frac{1}{2\sigma N}\sum_{i=1}^{N}
    \big[V(\theta + \sigma\varepsilon_i) - V(\theta - \sigma\varepsilon_i)\big]
    \,\varepsilon_i,\qquad \varepsilon_i \sim \mathcal N(0, I),$$
    with $N$ = `samples` pairs of directions in the space of the control
    coefficients $\theta$ (every leaf, flattened together). $\hat g$ is an
    unbiased estimate of $\nabla_\theta\,\mathbb E_\varepsilon[V(\theta +
    \sigma\varepsilon)]$, the gradient of $V$ smoothed at scale $\sigma$,
    which differs from $\nabla_\theta V$ by $O(\sigma^2)$. For small $\sigma$,
    $\hat g \approx \frac1N\sum_i \varepsilon_i\varepsilon_i^\top\nabla V$, so
    $$\mathbb E\,\|\hat g - \nabla V\|^2 \approx \frac{d + 1}{N}\,\|\nabla V\|^2$$
    for $d$ coefficients: the relative error falls like $\sqrt{(d+1)/N}$
    (`tests/test_zeroth_order.py` measures it).

    Cost: $2N + 1$ forward solves per value-and-gradient, the $2N$ perturbed
    ones batched into one `jax.vmap`-ed solve. Memory holds the $2N$ perturbed
    coefficient vectors ($2Nd$ numbers) and $2N$ copies of the solver's state;
    it does not grow with the horizon. Each is an adaptive solve, so a
    $\sigma$ too small for the solver's tolerance drowns the differences
    $V(\theta+\sigma\varepsilon) - V(\theta-\sigma\varepsilon) \approx
    2\sigma\,\varepsilon^\top\nabla V$ in solver error ($\sim$ `rtol`
    $\cdot|V|$).

    The estimate is of the **unconstrained** $V$: the perturbed coefficients
    $\theta \pm \sigma\varepsilon$ may leave the control's box
    [`lower`, `upper`] and are not clipped, exactly as the adjoints
    differentiate $V$ at a coefficient on a bound without regard to the box.
    `lc.optimize` projects its steps onto the box as with any strategy.

    Randomness is explicit: the same `key` draws the same directions at every
    call, so a value-and-gradient is reproducible and, inside `lc.optimize`,
    every iteration uses the same $\varepsilon_i$. The estimate is then
    $\frac1N\sum_i\varepsilon_i\varepsilon_i^\top$ (a fixed positive
    semi-definite matrix, definite when $N \ge d$) times the gradient; pass a new `key` (the strategy is a
    pytree: `eqx.tree_at(lambda a: a.key, adjoint, key)`) for fresh directions.

    Only $\theta$ is perturbed. Differentiating $V$ with respect to any other
    array of the problem (system, cost, objective) raises
    `lc.TransformNotSupportedError` naming it, rather than returning a
    silent zero; use `ContinuousAdjoint` or `CheckpointAdjoint` for those.
    Open-loop coefficients only (not a closed-loop controller); reverse mode
    only (`jax.grad`, `jax.vjp`, `jax.jacrev`); no second derivatives.

    **Arguments:**

    - `samples`: the number $N \ge 1$ of antithetic pairs ($2N$ perturbed solves).
    - `sigma`: the perturbation scale $\sigma > 0$, in the units of $\theta$
      (for a gain in $[0, 0.5]$, e.g. `1e-3`).
    - `key`: a JAX PRNG key (`jax.random.key(seed)`) or an integer seed
      (default 0) for the directions $\varepsilon_i$.
    """

    samples: int = eqx.field(static=True)
    sigma: float = eqx.field(static=True)
    key: Array = eqx.field(default=0, converter=_as_key)

    def __check_init__(self):
        n = self.samples
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(
                f"`samples` of ZerothOrder (the number of antithetic pairs) must be "
                f"an integer >= 1; got {n!r}."
            )
        sigma = self.sigma
        if isinstance(sigma, bool) or not isinstance(
            sigma, (int, float, np.floating, np.integer)
        ):
            raise ValueError(
                f"`sigma` of ZerothOrder (the perturbation scale) must be a finite "
                f"number > 0; got {sigma!r}."
            )
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(
                f"`sigma` of ZerothOrder (the perturbation scale) must be finite and "
                f"> 0; got {sigma!r}. Try a small fraction of the control's range, "
                "e.g. 1e-3 for a gain in [0, 0.5]."
            )

    def value(self, problem, numerics):
        if problem.closed_loop:
            raise TypeError(
                "ZerothOrder perturbs open-loop coefficients theta of g(t; theta), "
                "not a closed-loop controller. Use adjoint=lc.CheckpointAdjoint() "
                "(the default for a controller) or lc.EulerUnrolled(dt)."
            )
        problem = forward_mode_guard(problem, _ZEROTH_FORWARD)
        return _zeroth_order_value(problem, self, numerics)

    def directions(self, theta: PyTree[Array]) -> PyTree[Float[Array, "samples ..."]]:
        r"""The directions $\varepsilon_1, \dots, \varepsilon_N$: a pytree like
        `theta` with a leading axis of length `samples`."""
        flat, unravel = ravel_pytree(theta)
        eps = jax.random.normal(
            self.key, (self.samples, flat.shape[0]), dtype=flat.dtype
        )
        return jax.vmap(unravel)(eps)


def _forward_value(problem: Posed, numerics: SolverOptions) -> Float[Array, ""]:
    sol = forward_solve(problem, numerics, diffrax.SaveAt(t1=True))
    return _value_from(sol, numerics)


@eqx.filter_custom_vjp
def _zeroth_order_value(problem, strategy, numerics):
    return _forward_value(problem, numerics)


def _perturbed_besides_theta(perturbed: Posed) -> list[str]:
    rest = eqx.tree_at(lambda p: p.theta, perturbed, None)
    leaves = jax.tree_util.tree_flatten_with_path(rest)[0]
    return [jax.tree_util.keystr(path)[1:] for path, flag in leaves if flag]


@_zeroth_order_value.def_fwd
def _zeroth_order_value_fwd(perturbed, problem, strategy, numerics):
    others = _perturbed_besides_theta(perturbed)
    if others:
        raise TransformNotSupportedError(
            "ZerothOrder estimates dV/dtheta only (it perturbs the control "
            "coefficients theta); lc.value was differentiated with respect to "
            f"{', '.join(others)}. Use adjoint=lc.ContinuousAdjoint() or "
            "lc.CheckpointAdjoint() for gradients with respect to the system, cost "
            "or objective, or differentiate theta alone."
        )
    return _forward_value(problem, numerics), None


@_zeroth_order_value.def_bwd
def _zeroth_order_value_bwd(_, cotangent, perturbed, problem, strategy, numerics):
    if not any(jax.tree.leaves(perturbed.theta)):
        return jax.tree.map(lambda _: None, perturbed)
    # The estimate is not a derivative of this computation: differentiating it
    # again (a gradient of a gradient) is refused.
    problem = second_order_guard(problem, _ZEROTH_SECOND_ORDER)
    theta = problem.theta
    eps = strategy.directions(theta)
    sigma = strategy.sigma
    # θ + σε_i for i = 1..N, then θ − σε_i: 2N solves, one vmap.
    both = jax.tree.map(lambda t, e: t + sigma * jnp.concatenate([e, -e]), theta, eps)
    V = jax.vmap(
        lambda th: _forward_value(eqx.tree_at(lambda p: p.theta, problem, th), numerics)
    )(both)
    n = strategy.samples
    weights = (V[:n] - V[n:]) * (cotangent / (2 * sigma * n))
    g = jax.tree.map(
        lambda e, p: jnp.tensordot(weights, e, axes=1) if p else None,
        eps,
        perturbed.theta,
    )
    grads = jax.tree.map(lambda _: None, perturbed)
    return eqx.tree_at(lambda p: p.theta, grads, g, is_leaf=lambda x: x is None)
