r"""Optimisers for the control coefficients $\theta$ (gradient *ascent* on $V$).

Every optimiser is a strategy object with `init(theta, control)` and
`step(value_and_grad, theta, state, control)`. `step` evaluates $V$ and
$\nabla_\theta V$ at the current $\theta$ (through `value_and_grad`), returns
them, and moves $\theta$; the box bounds of the control are always respected.
`ProjectedGradientAscent` and `Adam` are optax transformations of $-\nabla V$
followed by the projection onto the control's box (`control.project`, optax's
`projections.projection_box` for a box). `LBFGSB` is a limited-memory
quasi-Newton method for the box that reaches the bounds exactly and converges
to a small projected gradient in few iterations; `LBFGS` works unconstrained
through a reparametrisation. Best-so-far tracking and stopping rules belong to
the loop (`lc.optimize`), not to the optimisers.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optimistix as optx
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Bool, Float, Int, PyTree

from ._checks import check_number
from .controls import AbstractControl, PiecewiseConstant, PiecewiseLinear

ValueAndGrad = Callable[[PyTree[Array]], tuple[Float[Array, ""], PyTree[Array]]]


class AbstractOptimizer(eqx.Module):
    """Maximises $V(\\theta)$ within the control's box bounds."""

    @abc.abstractmethod
    def init(self, theta: PyTree[Array], control: AbstractControl) -> PyTree:
        """Optimiser state for the starting coefficients `theta`."""

    @abc.abstractmethod
    def step(
        self,
        value_and_grad: ValueAndGrad,
        theta: PyTree[Array],
        state: PyTree,
        control: AbstractControl,
    ) -> tuple[PyTree[Array], PyTree, Float[Array, ""], PyTree[Array]]:
        """One iteration: returns `(new_theta, new_state, V, grad)`, where `V` and
        `grad` were evaluated at the coefficients the step started from (for
        `LBFGS`, at the point it evaluated)."""

    def stalled(self, state: PyTree) -> Bool[Array, ""]:
        """Whether the optimiser, with `state` after a step, can make no more
        progress (`lc.optimize` then stops with `RESULTS.stalled`): never,
        unless the optimiser says so (`LBFGSB`: two failed line searches in a
        row)."""
        return jnp.asarray(False)

    def bind(self, problem) -> AbstractOptimizer:
        """The optimiser for `problem` (`lc.optimize` calls this once per
        problem, inside `vmap` for a batch): itself, unless it takes something
        from the problem (`LBFGSB`'s `metric="discounted"`)."""
        return self


class ProjectedGradientAscent(AbstractOptimizer):
    r"""The paper's Algorithm 1: $\theta \leftarrow \Pi_{[l,u]}(\theta + \text{lr}\,M^{-1}\nabla_\theta V)$.

    With a hat basis of knot spacing $\Delta$, $\partial V/\partial\theta_k
    \approx m_k\Delta\,\delta V/\delta g(t_k)$, where $m_k\Delta$ is the support
    of the $k$-th coefficient (the lumped mass, $\int\varphi_k\,dt$: $m_k = 1$
    inside, $\tfrac12$ at the two ends of a uniform grid), while the paper
    updated one control value per SGD step of size $\alpha$ (gradient
    $\approx\alpha\,\delta V/\delta g$). The paper's learning rate
    $\text{lr}_p$ therefore corresponds to $\text{lr} = \text{lr}_p\,\alpha/\Delta$
    here (the experiments convert it), with the metric $M = \operatorname{diag}
    (m)$, `metric="lumped"`. Without it (`metric="euclidean"`, $M = I$) the end
    coefficients move half as fast as the paper's, and an unconverged run
    leaves them lagging behind the interior.

    **Arguments:**

    - `lr`: step size on $\theta$, finite and > 0.
    - `metric`: `"euclidean"` (the plain gradient) or `"lumped"`: the gradient of
      each coefficient divided by $m_k = \int\varphi_k\,dt / \Delta$, $\Delta$ the
      mean knot spacing (for a `PiecewiseLinear` control, or `PiecewiseConstant`:
      the interval's length over $\Delta$; a `NeuronBasis` uses its `inner`
      control's knots; other controls have no knots and $m = 1$).
    """

    lr: float
    metric: str = eqx.field(static=True, default="euclidean")

    def __check_init__(self):
        check_number("lr", self.lr)
        if self.metric not in METRICS:
            raise ValueError(
                f"`metric` must be one of {list(METRICS)}; got {self.metric!r}."
            )

    def _tx(self):
        return optax.sgd(self.lr)

    def init(self, theta, control):
        return self._tx().init(theta)

    def step(self, value_and_grad, theta, state, control):
        V, grad = value_and_grad(theta)
        ascent = grad
        if self.metric == "lumped":
            m = lumped_mass(control)
            ascent = jax.tree.map(lambda g: g / _along_first(m, g), grad)
        neg = jax.tree.map(jnp.negative, ascent)
        updates, state = self._tx().update(neg, state, theta)
        return control.project(optax.apply_updates(theta, updates)), state, V, grad


METRICS = ("euclidean", "lumped")
"""The metrics of `ProjectedGradientAscent`."""


def lumped_mass(control: AbstractControl) -> Float[Array, " K"]:
    r"""Each coefficient's support over the mean knot spacing $\Delta$: the
    lumped mass $m_k = \int\varphi_k\,dt/\Delta$ of the basis (for
    `PiecewiseLinear`, $(t_{k+1} - t_{k-1})/(2\Delta)$, with the missing
    neighbour of an end knot at the end itself; for `PiecewiseConstant`,
    $(t_{k+1} - t_k)/\Delta$; for `NeuronBasis`, its `inner` control's; for a
    control without knots, $m = 1$)."""
    control = getattr(control, "inner", control)
    if isinstance(control, PiecewiseLinear):
        t = jax.lax.stop_gradient(control.knots)
        spacing = (t[-1] - t[0]) / (t.shape[0] - 1)
        padded = jnp.concatenate([t[:1], t, t[-1:]])
        return (padded[2:] - padded[:-2]) / (2 * spacing)
    if isinstance(control, PiecewiseConstant):
        dt = jnp.diff(jax.lax.stop_gradient(control.knots))
        return dt / jnp.mean(dt)
    return jnp.ones((1,))


def discounted_mass(problem) -> Float[Array, " K"]:
    r"""$m_k\gamma^{t_k}$ per knot: the lumped mass (`lumped_mass`) of
    `problem`'s control weighted by the discount at the knots, for `LBFGSB`'s
    `metric` (a control without knots: 1)."""
    control = getattr(problem.control, "inner", problem.control)
    m = lumped_mass(control)
    if not isinstance(control, PiecewiseLinear | PiecewiseConstant):
        return m
    t = jax.lax.stop_gradient(control.knots)
    if isinstance(control, PiecewiseConstant):
        t = t[:-1]  # each interval's start
    return m * problem.objective.discount(t)


def _is_str(x) -> bool:
    return isinstance(x, str)


def _along_first(m, x):
    """`m` shaped to broadcast along the first axis of `x` (a scalar `m` of
    length 1 broadcasts everywhere)."""
    if m.shape[0] == 1:
        return m[0]
    return m.reshape(m.shape + (1,) * (jnp.ndim(x) - 1))


class Adam(AbstractOptimizer):
    r"""Adam (optax) on $-V$, projected onto the box bounds after every step.

    **Arguments:**

    - `lr`: learning rate, finite and > 0 (or an optax schedule).
    - `b1`, `b2`, `eps`: Adam's moment decay rates, in $[0, 1)$, and
      stabiliser, finite and $\ge 0$.
    """

    lr: float
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def __check_init__(self):
        if not callable(self.lr):  # an optax schedule is checked by optax
            check_number("lr", self.lr)
        check_number("b1", self.b1, allow_zero=True, below=1.0)
        check_number("b2", self.b2, allow_zero=True, below=1.0)
        check_number("eps", self.eps, allow_zero=True)

    def _tx(self):
        return optax.adam(self.lr, b1=self.b1, b2=self.b2, eps=self.eps)

    def init(self, theta, control):
        return self._tx().init(theta)

    def step(self, value_and_grad, theta, state, control):
        return _projected_step(self._tx(), value_and_grad, theta, state, control)


def _projected_step(
    tx: optax.GradientTransformation, value_and_grad, theta, state, control
):
    """One step of the optax transformation `tx` on $-V$, then the projection
    onto the control's bounds."""
    V, grad = value_and_grad(theta)
    neg = jax.tree.map(jnp.negative, grad)
    updates, state = tx.update(neg, state, theta)
    return control.project(optax.apply_updates(theta, updates)), state, V, grad


# ---------------------------------------------------------------- reparametrisation


def _to_box(z, lower: float, upper: float):
    if math.isfinite(lower) and math.isfinite(upper):
        return lower + (upper - lower) * jax.nn.sigmoid(z)
    if math.isfinite(lower):
        return lower + jax.nn.softplus(z)
    if math.isfinite(upper):
        return upper - jax.nn.softplus(z)
    return z


def _from_box(x, lower: float, upper: float, eps: float = 1e-2):
    if math.isfinite(lower) and math.isfinite(upper):
        s = jnp.clip((x - lower) / (upper - lower), eps, 1 - eps)
        return jnp.log(s) - jnp.log1p(-s)
    if math.isfinite(lower):
        y = jnp.maximum(x - lower, eps)
        return y + jnp.log(-jnp.expm1(-y))  # inverse softplus
    if math.isfinite(upper):
        y = jnp.maximum(upper - x, eps)
        return y + jnp.log(-jnp.expm1(-y))
    return x


class LBFGS(AbstractOptimizer):
    r"""Limited-memory BFGS (optimistix) on $-V$.

    Box bounds are enforced by a smooth reparametrisation
    $\theta = l + (u - l)\,\sigma(z)$ (softplus for one-sided bounds), so the
    optimiser works unconstrained in $z$. Coefficients starting on (or within 1%
    of) a bound are moved 1% of the box width inside, where the sigmoid still
    passes gradient; the bounds themselves are reached only asymptotically.

    **Arguments:**

    - `rtol`, `atol`: optimistix's convergence tolerances, finite and $\ge 0$.
    - `history_length`: number of stored curvature pairs, a positive int.
    """

    rtol: float = 1e-8
    atol: float = 1e-10
    history_length: int = eqx.field(static=True, default=10)

    def __check_init__(self):
        check_number("rtol", self.rtol, allow_zero=True)
        check_number("atol", self.atol, allow_zero=True)
        _check_count("history_length", self.history_length)

    def _solver(self):
        return optx.LBFGS(
            rtol=self.rtol, atol=self.atol, history_length=self.history_length
        )

    def _theta(self, z, control):
        return jax.tree.map(lambda x: _to_box(x, control.lower, control.upper), z)

    def _fn(self, value_and_grad, control, scale):
        def fn(z, args):
            V = _value_only(value_and_grad, self._theta(z, control))
            return -V * scale, V

        return fn

    def init(self, theta, control):
        z = jax.tree.map(lambda x: _from_box(x, control.lower, control.upper), theta)
        return z, None, None

    def step(self, value_and_grad, theta, state, control):
        z, solver_state, scale = state
        solver = self._solver()
        V, grad = value_and_grad(self._theta(z, control))
        if scale is None:
            # optimistix's quasi-Newton steps are not scale invariant: normalise
            # -V so that its initial gradient in z has unit norm.
            _, vjp = jax.vjp(lambda z_: self._theta(z_, control), z)
            (gz,) = vjp(grad)
            norm = jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(gz)))
            scale = 1.0 / jnp.maximum(norm, jnp.finfo(norm.dtype).tiny)
        fn = self._fn(value_and_grad, control, scale)
        if solver_state is None:
            f_struct = jax.ShapeDtypeStruct((), jnp.result_type(float))
            solver_state = solver.init(fn, z, None, {}, f_struct, f_struct, frozenset())
        z, solver_state, _ = solver.step(fn, z, None, {}, solver_state, frozenset())
        return self._theta(z, control), (z, solver_state, scale), V, grad


# ------------------------------------------------ bound-constrained quasi-Newton


class _LBFGSBState(eqx.Module):
    """The state of `LBFGSB`: arrays only (a loop carry, saved by checkpoints).
    Vectors are the flattened coefficients (`jax.flatten_util.ravel_pytree`)."""

    s: Float[Array, "m n"]  # steps x_{k+1} - x_k, newest last (zero: empty)
    y: Float[Array, "m n"]  # the matching changes of the gradient of f = -V
    x: Float[Array, " n"]  # where `f` and `g` were evaluated
    f: Float[Array, ""]  # f = -V at x
    g: Float[Array, " n"]  # the gradient of f at x
    cached: Bool[Array, ""]  # whether x, f, g hold an evaluation
    stuck: Bool[Array, ""]  # the last line search failed with an empty memory


class LBFGSB(AbstractOptimizer):
    r"""An L-BFGS-B-like method: limited-memory quasi-Newton steps within the box.

    Minimises $f = -V$ over $l \le \theta \le u$ by two-metric projection
    (Bertsekas 1982, *SIAM J. Control Optim.* 20(2); the projected L-BFGS of
    Kim, Sra & Dhillon 2010) and reaches the bounds exactly, unlike `LBFGS`,
    which reaches them only asymptotically. At $\theta$ with gradient
    $g = \nabla f$ and projected gradient $w = \theta - \Pi(\theta - g)$
    ($\Pi$: `control.project`), one iteration

    1. takes the $\varepsilon$-active set $A = \{i: \theta_i \le l + \varepsilon,
       g_i > 0\} \cup \{i: \theta_i \ge u - \varepsilon, g_i < 0\}$ with
       $\varepsilon = \min(\lVert w\rVert_2, 10^{-3}\Delta)$ ($\Delta = u - l$,
       or 1 for an unbounded box), and the free set $F$, the others;
    2. moves in the direction $d_F = -H_F\,g_F$ and $d_A$ on $A$, where
       $H_F$ is the L-BFGS inverse-Hessian approximation (two-loop recursion)
       built from the stored pairs $(s, y)$ restricted to $F$ (pairs with
       $s_F^\top y_F \le \sqrt{\epsilon_\text{mach}}\lVert s_F\rVert\lVert
       y_F\rVert$ are skipped) and started from $\gamma M^{-1}$, $M$ the
       `metric` (the identity for `metric=None`) and $\gamma = s^\top y /
       y^\top M^{-1} y$ of the newest of them ($d_A = -\gamma M^{-1} g_A$).
       With no usable pair (first iteration, or after a failed line search)
       or if $d$ is not a descent direction
       ($g^\top d \not< 0$), $d$ is projected steepest descent:
       $d = -\gamma M^{-1}g$, with $\gamma = \Delta / \lVert M^{-1}g
       \rVert_\infty$ when there is no pair, so that the first trial moves no
       coefficient by more than $\Delta$;
    3. backtracks along the projection arc $\theta(t) = \Pi(\theta + t\,d)$,
       $t = 1, \text{shrink}, \text{shrink}^2, \dots$, until the sufficient
       decrease $f(\theta(t)) \le f(\theta) + c_1\,g^\top(\theta(t) - \theta)$
       (with $g^\top(\theta(t) - \theta) < 0$) holds, or its form through
       the gradient at $\theta(t)$, which still works when the decrease is
       below the rounding of $f$: $\nabla f(\theta(t))^\top(\theta(t) -
       \theta) \le (2c_1 - 1)\,g^\top(\theta(t) - \theta)$ with
       $f(\theta(t)) \le f(\theta) + 10^{-12}\lvert f(\theta)\rvert$ (the
       same test for a quadratic; Hager & Zhang 2005's approximate Wolfe
       condition);
    4. stores the pair $s = \theta_\text{new} - \theta$, $y = \nabla
       f(\theta_\text{new}) - g$ if $s^\top y > \sqrt{\epsilon_\text{mach}}
       \lVert s\rVert\lVert y\rVert$ (the oldest of `history_length` pairs is
       dropped).

    Every trial costs one evaluation of $V$ and $\nabla_\theta V$; the state
    keeps the accepted point's, so an iteration whose first trial is accepted
    costs one evaluation (a $\theta$ other than the one the previous step
    returned, e.g. the first, is evaluated first). If no trial of
    `max_line_search` decreases $f$, $\theta$ stays where it is and the memory
    is cleared, so the next iteration tries projected steepest descent; if that
    fails too ($f$ is flat to rounding along it), $\theta$ stays there and the
    remaining iterations repeat its $V$ and gradient without evaluating again
    (`lc.optimize` keeps the best $\theta$ and ends `completed`, or
    `converged` if the projected gradient is within `gtol`).

    **Arguments:**

    - `history_length`: number of stored pairs $(s, y)$, an int >= 1.
    - `c1`: the sufficient-decrease constant, in $(0, 0.5)$.
    - `shrink`: factor of $t$ per backtracking trial, in $(0, 1)$.
    - `max_line_search`: trials per iteration at most, an int >= 1.
    - `metric`: positive weights $M_k$ along the first (knot) axis of every
      leaf of $\theta$; `"discounted"` (the default): `discounted_mass` of the
      problem, $m_k\gamma^{t_k}$ (set by `bind`); None: all 1. The recursion
      starts from $H_0 = \gamma M^{-1}$ with $\gamma = s^\top y / y^\top
      M^{-1}y$, and steepest descent is $-M^{-1}g$. The Hessian of $f$ in
      coefficient $k$ scales like $m_k\gamma^{t_k}$ (the coefficient's support
      and its discount), a scaling the limited memory would otherwise have to
      learn: the single neuron at $\gamma = 10^{-8}$ (the weights span five
      orders of magnitude) converges in 14 iterations with it and not in 700
      without it.
    """

    history_length: int = eqx.field(static=True, default=10)
    c1: float = 1e-4
    shrink: float = 0.5
    max_line_search: int = eqx.field(static=True, default=20)
    metric: str | Float[Array, " K"] | None = "discounted"

    def __check_init__(self):
        _check_count("history_length", self.history_length)
        _check_search(self)

    def stalled(self, state: _LBFGSBState) -> Bool[Array, ""]:
        """The last line search failed with an empty memory, that is, along
        the (metric) steepest-ascent direction after a failure had cleared the
        memory: the step after it would not move."""
        return state.stuck

    def bind(self, problem) -> LBFGSB:
        return _bind_metric(self, problem)

    def init(self, theta, control):
        x, _ = ravel_pytree(theta)
        x = jnp.asarray(x, dtype=jnp.result_type(x.dtype, float))
        history = jnp.zeros((self.history_length, x.size), x.dtype)
        return _LBFGSBState(
            s=history,
            y=history,
            x=x,
            f=jnp.zeros((), x.dtype),
            g=jnp.zeros_like(x),
            cached=jnp.asarray(False),
            stuck=jnp.asarray(False),
        )

    def step(self, value_and_grad, theta, state, control):
        x0, unravel = ravel_pytree(theta)
        dtype = state.x.dtype
        x0 = x0.astype(dtype)
        lower, upper = control.lower, control.upper
        width = upper - lower
        scale = width if math.isfinite(width) and width > 0 else 1.0
        tiny = jnp.finfo(dtype).tiny
        c1 = jnp.asarray(self.c1, dtype)

        def evaluate(x):
            V, grad = value_and_grad(unravel(x))
            return -jnp.asarray(V, dtype), -ravel_pytree(grad)[0].astype(dtype)

        def project(x):
            return ravel_pytree(control.project(unravel(x)))[0].astype(dtype)

        inverse = _inverse_metric(self.metric, theta, dtype)

        def direction(g):
            w = x0 - project(x0 - g)
            eps = jnp.minimum(jnp.linalg.norm(w), 1e-3 * scale)
            active = ((x0 <= lower + eps) & (g > 0)) | ((x0 >= upper - eps) & (g < 0))
            free = jnp.where(active, 0.0, 1.0).astype(dtype)
            r, gamma, has_pairs = _two_loop(
                g * free, state.s * free, state.y * free, inverse
            )
            mg = inverse * g  # the gradient in the metric
            steepest = jnp.where(
                has_pairs, gamma, scale / jnp.maximum(jnp.max(jnp.abs(mg)), tiny)
            )
            d = jnp.where(has_pairs, -r - gamma * (1 - free) * mg, -steepest * mg)
            descent = (jnp.vdot(g, d) < 0) & jnp.all(jnp.isfinite(d))
            return jnp.where(descent, d, -steepest * mg)

        def trial(d, t):
            xt = project(x0 + t * d)
            return xt, jnp.all(xt == x0)

        def accept(f0, g0, xt, f, g):
            return _accepts(x0, f0, g0, c1, xt, f, g)

        # The loop's state: (evaluating the start?, f0, g0, d, t, trial point,
        # f and g there, trials, accepted, done). With the start cached, the
        # first pass evaluates the first trial; otherwise it evaluates the
        # start, and the trials follow.
        cached = state.cached & jnp.all(state.x == x0)
        d = direction(state.g)
        xt, zero = trial(d, 1.0)
        one = jnp.asarray(1.0, dtype)
        init = (
            ~cached,
            state.f,
            state.g,
            d,
            one,
            xt,
            state.f,
            state.g,
            jnp.asarray(0),
            jnp.asarray(False),
            cached & (state.stuck | zero | ~jnp.isfinite(state.f)),
        )

        def body(c):
            start, f0, g0, d, t, xt, _, _, trials, _, _ = c
            f, g = evaluate(jnp.where(start, x0, xt))
            # `f`, `g` as the start: its direction and first trial.
            d_start = direction(g)
            x_start, zero_start = trial(d_start, 1.0)
            # `f`, `g` as a trial: accept it, or the next trial.
            ok = accept(f0, g0, xt, f, g)
            x_next, zero_next = trial(d, t * self.shrink)
            trials = trials + 1
            return (
                jnp.asarray(False),
                jnp.where(start, f, f0),
                jnp.where(start, g, g0),
                jnp.where(start, d_start, d),
                jnp.where(start | ok, jnp.where(start, one, t), t * self.shrink),
                jnp.where(start, x_start, jnp.where(ok, xt, x_next)),
                f,
                g,
                jnp.where(start, 0, trials),
                ~start & ok,
                jnp.where(
                    start,
                    ~jnp.isfinite(f) | zero_start,
                    ok | zero_next | (trials >= self.max_line_search),
                ),
            )

        out = jax.lax.while_loop(lambda c: ~c[-1], body, init)
        _, f0, g0, _, _, xt, ft, gt, _, accepted, _ = out
        # The accepted point, its evaluation, and the new pair.
        x = jnp.where(accepted, xt, x0)
        s, y = xt - x0, gt - g0
        keep = accepted & (
            jnp.vdot(s, y) > _CURVATURE * jnp.linalg.norm(s) * jnp.linalg.norm(y)
        )

        def push(history, v):
            pushed = jnp.concatenate([history[1:], v[None]])
            # A failed line search clears the memory.
            return jnp.where(keep, pushed, jnp.where(accepted, history, 0.0))

        empty = ~jnp.any(state.s != 0)
        new_state = _LBFGSBState(
            s=push(state.s, s),
            y=push(state.y, y),
            x=x,
            f=jnp.where(accepted, ft, f0),
            g=jnp.where(accepted, gt, g0),
            cached=jnp.asarray(True),
            stuck=~accepted & empty,
        )
        return unravel(x), new_state, -f0, unravel(-g0)


# ------------------------------------------------------ bound-constrained Newton


def _check_search(optimizer) -> None:
    """The line search's arguments and the metric of `LBFGSB` and `NewtonCG`."""
    metric = optimizer.metric
    if isinstance(metric, str) and metric != "discounted":
        raise ValueError(
            "`metric` must be 'discounted', None or an array of knot weights; "
            f"got {metric!r}."
        )
    check_number("c1", optimizer.c1, below=0.5)
    check_number("shrink", optimizer.shrink, below=1.0)
    _check_count("max_line_search", optimizer.max_line_search)


def _bind_metric(optimizer, problem):
    """`optimizer` with `metric="discounted"` replaced by `problem`'s
    `discounted_mass`."""
    if isinstance(optimizer.metric, str):
        return eqx.tree_at(
            lambda o: o.metric, optimizer, discounted_mass(problem), is_leaf=_is_str
        )
    return optimizer


class _NewtonCGState(eqx.Module):
    """The state of `NewtonCG`: arrays only (a loop carry, saved by
    checkpoints). Vectors are the flattened coefficients."""

    x: Float[Array, " n"]  # where `f` and `g` were evaluated
    f: Float[Array, ""]  # f = -V at x
    g: Float[Array, " n"]  # the gradient of f at x
    cached: Bool[Array, ""]  # whether x, f, g hold an evaluation
    failed: Bool[Array, ""]  # the last line search failed (next: steepest descent)
    stuck: Bool[Array, ""]  # it failed along steepest descent too
    hvps: Int[Array, ""]  # Hessian-vector products so far (all steps)


class NewtonCG(AbstractOptimizer):
    r"""Projected truncated Newton: conjugate gradients on exact Hessian-vector
    products, within the box.

    Minimises $f = -V$ over $l \le \theta \le u$ by the two-metric projection
    of `LBFGSB` (Bertsekas 1982), with the Newton direction on the free
    coefficients computed by truncated conjugate gradients (Nocedal & Wright
    2006, Alg. 7.1) on exact Hessian-vector products $\nabla^2 f\,p$. These
    differentiate the gradient once more by reverse mode (with
    `ContinuousAdjoint`, through its backward pass: the exact derivative of
    the computed gradient); the gradient map is linearised once per iteration
    (`jax.vjp`), after which each product costs one reverse pass through it,
    $\nabla^2 f$ being symmetric. At $\theta$ with gradient $g$ one iteration

    1. takes the $\varepsilon$-active set $A$ and the free set $F$ as `LBFGSB`
       does;
    2. solves $\nabla^2_{FF} f\, d_F = -g_F$ by conjugate gradients
       preconditioned with the metric $M$, from $d_F = 0$, until the residual
       is below $\min(\text{forcing}, \lVert g_F\rVert^{1/2})\lVert g_F
       \rVert$ (superlinear convergence; Dembo & Steihaug 1983), `max_cg`
       products, or a direction $p$ of non-positive curvature ($p^\top
       \nabla^2 f\,p \le 0$: the iterate so far is kept, or, on the first
       product, $d_F$ is preconditioned steepest descent);
    3. moves the active coefficients by $d_A = -\alpha_1 M^{-1} g_A$, with
       $\alpha_1$ the step that minimises the quadratic model along the first
       CG direction $-M^{-1}g_F$ (or $\Delta / \lVert M^{-1}g\rVert_\infty$ if
       its curvature is not positive);
    4. backtracks along the projection arc $\Pi(\theta + t\,d)$ as `LBFGSB`
       does (sufficient decrease, or its gradient form when the decrease is
       below the rounding of $f$); every trial costs one evaluation of $V$
       and $\nabla V$, and the accepted one's is kept for the next iteration.

    If the line search fails, $\theta$ stays and the next iteration tries
    projected steepest descent, $d = -\alpha_1 M^{-1}g$; if that fails too,
    the optimiser has stalled (`lc.optimize` stops with `RESULTS.stalled`).

    Needs a gradient strategy that can be differentiated twice by reverse
    mode: `ContinuousAdjoint` (the default) or `EulerUnrolled`;
    `CheckpointAdjoint` raises `lc.TransformNotSupportedError`.

    **Arguments:**

    - `max_cg`: Hessian-vector products per iteration at most, an int >= 1.
    - `forcing`: the largest relative residual at which CG stops, in $(0, 1)$.
    - `c1`, `shrink`, `max_line_search`: the line search, as for `LBFGSB`.
    - `metric`: the preconditioner, as `LBFGSB`'s `metric`: `"discounted"`
      (the default: $m_k\gamma^{t_k}$ per knot), None (the identity) or an
      array of knot weights.
    """

    max_cg: int = eqx.field(static=True, default=50)
    forcing: float = 0.5
    c1: float = 1e-4
    shrink: float = 0.5
    max_line_search: int = eqx.field(static=True, default=20)
    metric: str | Float[Array, " K"] | None = "discounted"

    def __check_init__(self):
        _check_count("max_cg", self.max_cg)
        check_number("forcing", self.forcing, below=1.0)
        _check_search(self)

    def stalled(self, state: _NewtonCGState) -> Bool[Array, ""]:
        """The line search failed along projected steepest descent too."""
        return state.stuck

    def bind(self, problem) -> NewtonCG:
        return _bind_metric(self, problem)

    def init(self, theta, control):
        x, _ = ravel_pytree(theta)
        x = jnp.asarray(x, dtype=jnp.result_type(x.dtype, float))
        false = jnp.asarray(False)
        return _NewtonCGState(
            x=x,
            f=jnp.zeros((), x.dtype),
            g=jnp.zeros_like(x),
            cached=false,
            failed=false,
            stuck=false,
            hvps=jnp.asarray(0),
        )

    def step(self, value_and_grad, theta, state, control):
        x0, unravel = ravel_pytree(theta)
        dtype = state.x.dtype
        x0 = x0.astype(dtype)
        lower, upper = control.lower, control.upper
        width = upper - lower
        scale = width if math.isfinite(width) and width > 0 else 1.0
        tiny = jnp.finfo(dtype).tiny

        def evaluate(x):
            V, grad = value_and_grad(unravel(x))
            return -jnp.asarray(V, dtype), -ravel_pytree(grad)[0].astype(dtype)

        def gradient(x):
            return evaluate(x)[1]

        def project(x):
            return ravel_pytree(control.project(unravel(x)))[0].astype(dtype)

        inverse = _inverse_metric(self.metric, theta, dtype)
        cached = state.cached & jnp.all(state.x == x0)
        f0, g0 = jax.lax.cond(cached, lambda: (state.f, state.g), lambda: evaluate(x0))

        # The free set, and Newton-CG on it.
        w = x0 - project(x0 - g0)
        eps = jnp.minimum(jnp.linalg.norm(w), 1e-3 * scale)
        active = ((x0 <= lower + eps) & (g0 > 0)) | ((x0 >= upper - eps) & (g0 < 0))
        free = jnp.where(active, 0.0, 1.0).astype(dtype)
        _, hessian_vjp = jax.vjp(gradient, x0)

        def hvp(p):
            return free * hessian_vjp(free * p)[0]

        # After a failed line search only the first product is needed (the
        # step along steepest descent).
        max_cg = jnp.where(state.failed, 1, self.max_cg)
        d, alpha1, products = _truncated_cg(
            hvp, free * g0, inverse, self.forcing, max_cg
        )
        mg = inverse * g0
        steepest = jnp.where(
            alpha1 > 0, alpha1, scale / jnp.maximum(jnp.max(jnp.abs(mg)), tiny)
        )
        # Non-positive curvature along the first CG direction: steepest descent.
        d = jnp.where(alpha1 > 0, d, -steepest * free * mg)
        d = jnp.where(state.failed, -steepest * mg, d - steepest * (1 - free) * mg)
        descent = (jnp.vdot(g0, d) < 0) & jnp.all(jnp.isfinite(d))
        d = jnp.where(descent, d, -steepest * mg)

        xt, ft, gt, accepted = _projected_search(
            evaluate, project, x0, f0, g0, d, self.c1, self.shrink, self.max_line_search
        )
        new_state = _NewtonCGState(
            x=jnp.where(accepted, xt, x0),
            f=jnp.where(accepted, ft, f0),
            g=jnp.where(accepted, gt, g0),
            cached=jnp.asarray(True),
            failed=~accepted,
            stuck=~accepted & state.failed,
            hvps=state.hvps + products,
        )
        return unravel(new_state.x), new_state, -f0, unravel(-g0)


def _inverse_metric(metric, theta, dtype) -> Float[Array, " n"]:
    """$M^{-1}$ per flattened coefficient, for knot weights `metric` along the
    first axis of every leaf of `theta` (unbound or None: ones)."""
    x, _ = ravel_pytree(theta)
    if metric is None or isinstance(metric, str):
        return jnp.ones(x.shape, dtype)
    m = jnp.asarray(metric, dtype)
    ones = jax.tree.map(lambda x: _along_first(m, x) * jnp.ones_like(x), theta)
    return 1 / ravel_pytree(ones)[0].astype(dtype)


def _truncated_cg(hvp, g, inverse, forcing, max_cg):
    r"""Truncated preconditioned conjugate gradients for $H d = -g$, from $d = 0$
    (preconditioner $M^{-1}$ = `diag(inverse)`).

    **Returns:** `(d, alpha1, products)`: the direction, the step along the
    first direction $-M^{-1}g$ that minimises the model (0 if its curvature is
    not positive), and the number of products $Hp$ computed.
    """
    tiny = jnp.finfo(g.dtype).tiny
    r = -g
    z = inverse * r
    rz = jnp.vdot(r, z)
    tol = jnp.minimum(forcing, jnp.sqrt(jnp.linalg.norm(g))) * jnp.linalg.norm(g)
    zero = jnp.zeros((), g.dtype)
    # (d, r, p, rz, alpha1, products, done)
    init = (
        jnp.zeros_like(g),
        r,
        z,
        rz,
        zero,
        jnp.asarray(0),
        jnp.linalg.norm(r) <= tol,
    )

    def body(c):
        d, r, p, rz, alpha1, k, _ = c
        Hp = hvp(p)
        pHp = jnp.vdot(p, Hp)
        negative = ~(pHp > 0)  # also a NaN
        alpha = rz / jnp.where(negative, 1, pHp)
        alpha1 = jnp.where(k == 0, jnp.where(negative, 0, alpha), alpha1)
        d_new = d + alpha * p
        r_new = r - alpha * Hp
        z = inverse * r_new
        rz_new = jnp.vdot(r_new, z)
        p_new = z + rz_new / jnp.maximum(rz, tiny) * p
        done = negative | (jnp.linalg.norm(r_new) <= tol) | (k + 1 >= max_cg)
        keep = lambda new, old: jnp.where(negative, old, new)  # noqa: E731
        return (
            keep(d_new, d),
            keep(r_new, r),
            keep(p_new, p),
            keep(rz_new, rz),
            alpha1,
            k + 1,
            done,
        )

    d, _, _, _, alpha1, products, _ = jax.lax.while_loop(lambda c: ~c[-1], body, init)
    return d, alpha1, products


def _projected_search(evaluate, project, x0, f0, g0, d, c1, shrink, max_trials):
    r"""Backtracking along the projection arc $\Pi(x_0 + t d)$, $t = 1,
    \text{shrink}, \dots$: the first trial that passes `LBFGSB`'s acceptance
    test (sufficient decrease, or its gradient form below the rounding of $f$).

    **Returns:** `(x, f, g, accepted)` of the last trial evaluated.
    """
    dtype = x0.dtype

    def accept(xt, f, g):
        return _accepts(x0, f0, g0, c1, xt, f, g)

    def body(c):
        t, _, _, _, trials, _, _ = c
        xt = project(x0 + t * d)
        f, g = evaluate(xt)
        ok = accept(xt, f, g)
        zero = jnp.all(project(x0 + t * shrink * d) == x0)
        trials = trials + 1
        return t * shrink, xt, f, g, trials, ok, ok | zero | (trials >= max_trials)

    init = (
        jnp.asarray(1.0, dtype),
        x0,
        f0,
        g0,
        jnp.asarray(0),
        jnp.asarray(False),
        jnp.all(project(x0 + d) == x0),
    )
    _, xt, f, g, _, ok, _ = jax.lax.while_loop(lambda c: ~c[-1], body, init)
    return xt, f, g, ok


def _accepts(x0, f0, g0, c1, xt, f, g) -> Bool[Array, ""]:
    r"""Whether the trial `xt` (with $f$ and $g$ there) is accepted from `x0`:
    sufficient decrease $f \le f_0 + c_1 g_0^\top(x_t - x_0)$ along a descent
    step, or its form through the gradient at `xt`, which still works when the
    decrease is below the rounding of $f$: $g^\top(x_t - x_0) \le (2c_1 - 1)
    g_0^\top(x_t - x_0)$ with $f \le f_0 + 10^{-12}\lvert f_0\rvert$."""
    dx = xt - x0
    slope = jnp.vdot(g0, dx)
    armijo = f <= f0 + c1 * slope
    flat = (f <= f0 + 1e-12 * jnp.abs(f0)) & (jnp.vdot(g, dx) <= (2 * c1 - 1) * slope)
    finite = jnp.isfinite(f) & jnp.all(jnp.isfinite(g))
    return finite & (slope < 0) & (armijo | flat)


_CURVATURE = float(np.sqrt(np.finfo(np.float64).eps))


def _two_loop(q, s, y, inverse=1.0):
    r"""$H q$ for the L-BFGS inverse-Hessian approximation $H$ of the pairs
    $(s_i, y_i)$ (rows, newest last; pairs with too little curvature are
    skipped), started from $H_0 = \gamma D$ with $D$ = `diag(inverse)` (the
    inverse metric; 1: the identity) and $\gamma = s^\top y / y^\top D y$ of
    the newest usable pair.

    **Returns:** `(H q, gamma, whether any pair was usable)`.
    """
    sy = jnp.sum(s * y, axis=1)
    usable = sy > _CURVATURE * jnp.sqrt(jnp.sum(s * s, axis=1) * jnp.sum(y * y, axis=1))
    rho = jnp.where(usable, 1 / jnp.where(usable, sy, 1), 0)

    def backward(q, pair):
        s_i, y_i, rho_i = pair
        a = rho_i * jnp.vdot(s_i, q)
        return q - a * y_i, a

    q, alpha = jax.lax.scan(backward, q, (s, y, rho), reverse=True)
    newest = s.shape[0] - 1 - jnp.argmax(usable[::-1])
    yy = jnp.sum(inverse * y[newest] ** 2)
    gamma = jnp.where(usable[newest], sy[newest] / jnp.where(yy > 0, yy, 1), 1)

    def forward(r, pair):
        s_i, y_i, rho_i, a_i = pair
        b = rho_i * jnp.vdot(y_i, r)
        return r + (a_i - b) * s_i, None

    r, _ = jax.lax.scan(forward, gamma * inverse * q, (s, y, rho, alpha))
    return r, gamma, jnp.any(usable)


def _check_count(name: str, n) -> None:
    """`n` must be an int >= 1 (errors name the argument `name`)."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"`{name}` must be an int; got {type(n).__name__} {n!r}.")
    if n < 1:
        raise ValueError(f"`{name}` must be >= 1; got {n}.")


def _value_only(value_and_grad: ValueAndGrad, theta) -> Any:
    """V with the gradient supplied by `value_and_grad` (which may use an adjoint)."""

    @jax.custom_jvp
    def f(th):
        return value_and_grad(th)[0]

    @f.defjvp
    def f_jvp(primals, tangents):
        (th,), (dth,) = primals, tangents
        V, grad = value_and_grad(th)
        dV = sum(
            jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(dth))
        )
        return V, dV

    return f(theta)
