r"""Analytic solutions of the gain systems: ground truth for the ODE solver.

Both gain systems of the paper's App. G are *linear* in the weights for a fixed control,
$\dot w = A(g(t))\,w + b(g(t))$, so their trajectories are known in closed
form up to quadrature:

- **Single neuron** (the paper's App. G.1, Eqs. 38-41, `SingleNeuronGain`): the integrating
  factor
  $$M(t) = \exp\Big(\int_0^t \frac{\langle x^2\rangle\tilde g(t')^2 + \lambda}{\tau}
  \,dt'\Big),\qquad
  w(t) = M(t)^{-1}\Big[\int_0^t M(t')\,\frac{\mu\,\tilde g(t')}{\tau}\,dt'
  + w(0)\Big],$$
  for *any* control $g(t)$, with $\tilde g = 1 + g$.
- **Single-layer network** (the paper's App. G.2, Eqs. 47-50, `SingleLayerGain`): with
  $\operatorname{vec}$ stacking columns, $\operatorname{vec}(W\Sigma_x) =
  (\Sigma_x^\top\otimes I)\operatorname{vec}(W)$, so
  $$\frac{d\operatorname{vec}W}{dt} = \frac1\tau\Big[w_g
  - \big(D_{\tilde g}(\Sigma_x^\top\otimes I)D_{\tilde g} + \lambda I\big)
  \operatorname{vec}W\Big],\qquad
  w_g = \operatorname{vec}(\Sigma_{xy}^\top\circ\tilde G),\quad
  D_{\tilde g} = \operatorname{diag}(\operatorname{vec}\tilde G),$$
  solved exactly by the (augmented) matrix exponential where $G$ is constant,
  and by a time-ordered product of exponentials (sixth-order Magnus) where it
  is not.

Every function here takes the times as an array and evaluates the solution on
the grid made of $0$, the control's breakpoints and those times, so the
quadrature never straddles a kink of the control. The results are meant for
tests and studies (accuracy first); the library's own solves go through
`lc.solve` / `lc.value`.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, Float, PyTree, Real

from ._checks import concrete
from .controls import AbstractControl
from .objective import Problem
from .systems import SingleLayerGain, SingleNeuronGain

# ----------------------------------------------------------------- the time grid


def _check_count(name: str, n) -> None:
    if int(n) != n or int(n) < 1:
        raise ValueError(f"`{name}` must be an integer >= 1; got {n!r}.")


def _check_system(system, cls) -> None:
    """The closed forms hold for one system class on a constant task."""
    if not isinstance(system, cls):
        raise TypeError(
            f"`system` must be an lc.systems.{cls.__name__}; got {type(system).__name__}."
        )
    if jnp.shape(system.jump_times())[0]:
        raise ValueError(
            f"The closed form of {cls.__name__} holds for a constant task; "
            f"{type(system.task).__name__} changes in time (it declares jump times). "
            "Use lc.solve / lc.value instead."
        )


def _gauss_legendre(n: int) -> tuple[Array, Array]:
    _check_count("nodes", n)
    x, w = np.polynomial.legendre.leggauss(int(n))
    return jnp.asarray(x), jnp.asarray(w)


def _check_times(ts) -> Array:
    ts = jnp.asarray(ts, dtype=float)
    if ts.ndim != 1 or ts.shape[0] == 0:
        raise ValueError(
            f"`ts` must be a non-empty 1-D array of times; got shape {ts.shape}."
        )
    arr = concrete(ts)
    if arr is not None and (not np.all(np.isfinite(arr)) or np.any(arr < 0)):
        raise ValueError(f"`ts` must be finite times >= 0; got {arr!r}.")
    return ts


def _signal(control, theta) -> Callable[[Array], PyTree[Array]]:
    return lambda t: control(theta, t)


def _breakpoints(control, ts, breakpoints) -> Array:
    """Times between which the control is smooth, clipped to [0, max(ts)]."""
    T = jnp.max(ts)
    if breakpoints is None:
        if isinstance(control, AbstractControl):
            breakpoints = control.breakpoints(T)
        else:
            breakpoints = jnp.zeros((1,))
    breakpoints = jnp.asarray(breakpoints, dtype=float).reshape(-1)
    return jnp.clip(jax.lax.stop_gradient(breakpoints), 0.0, T)


def _grid(ts, breakpoints, panels: int) -> tuple[Array, Array]:
    """Sorted panel edges covering [0, max(ts)], and the edge index of each time.

    The grid is $\\{0\\}\\cup$ breakpoints $\\cup$ `ts`, each cell cut into
    `panels` equal pieces. Repeated times give empty cells, which propagate
    nothing; this keeps the construction `jit`-compatible.
    """
    grid = jnp.sort(jnp.concatenate([jnp.zeros((1,)), breakpoints, ts]))
    frac = jnp.arange(panels) / panels
    left, right = grid[:-1], grid[1:]
    edges = (left[:, None] + (right - left)[:, None] * frac[None, :]).reshape(-1)
    edges = jnp.concatenate([edges, grid[-1:]])
    where = jnp.searchsorted(grid, ts, side="left") * panels
    return edges, where


# ----------------------------------------------------------------- single neuron


def single_neuron_weights(
    system: SingleNeuronGain,
    control: Callable,
    theta: PyTree[Array],
    ts: Real[Array, " times"],
    *,
    breakpoints: Float[Array, " breaks"] | None = None,
    nodes: int = 16,
    panels: int = 2,
) -> Float[Array, " times"]:
    r"""Closed-form weight $w(t)$ of the single neuron with gain, for any control.

    Solves $\tau\dot w = \mu\tilde g - w(\langle x^2\rangle\tilde g^2 + \lambda)$
    (the paper's Eq. 4) by the integrating factor
    $$M(t) = \exp\Big(\int_0^t a(t')\,dt'\Big),\quad
    a = \frac{\langle x^2\rangle\tilde g^2 + \lambda}{\tau},\qquad
    w(t) = M(t)^{-1}\Big[\int_0^t M(t')\,\frac{\mu\tilde g(t')}{\tau}\,dt'
    + w(0)\Big].$$
    $M$ itself overflows on long horizons, so the same formula is evaluated
    panel by panel in the equivalent form
    $w(r) = e^{-\int_l^r a}\,w(l) + \int_l^r e^{-\int_s^r a}\,\mu\tilde g(s)/\tau\,ds$
    on panels $[l, r]$ of the grid $\{0\}\cup$ breakpoints $\cup$ `ts`
    (algebraically identical: $M(r)^{-1}M(s) = e^{-\int_s^r a}$). Both integrals
    use `nodes`-point Gauss–Legendre quadrature, the inner one nested at each
    outer node. For the library's piecewise-linear and piecewise-constant
    controls $a$ is a polynomial of degree $\le 2$ between breakpoints, so the
    inner integrals are exact; the outer integrand is entire there and the
    default (16 nodes, 2 panels per cell) is accurate to round-off
    (~1e-13 relative) whenever $\int a$ over one panel is $\lesssim 10$.

    `ts` and `breakpoints` may be traced (the function works under `jit`).

    **Arguments:**

    - `system`: a `SingleNeuronGain` (any 1-input, 1-output task: $\mu$ is
      `Sxy`, $\langle x^2\rangle$ is `Sx`).
    - `control`: any callable `(theta, t) -> g` with scalar `g`, e.g. an
      `lc.controls` control.
    - `theta`: the control's coefficients.
    - `ts`: times $\ge 0$ at which to report $w$ (any order, repeats allowed).
    - `breakpoints`: times where $g$ is not smooth. Default: the control's
      `breakpoints(max(ts))` for an `lc.controls` control, none otherwise (then
      raise `panels` until the result stops changing).
    - `nodes`: Gauss–Legendre nodes per panel.
    - `panels`: equal panels per grid cell.

    **Returns:** $w$ at `ts`, shape `ts.shape`.
    """
    _check_system(system, SingleNeuronGain)
    ts = _check_times(ts)
    _check_count("panels", panels)
    return _neuron_weights(
        system, control, theta, ts, breakpoints, int(nodes), int(panels)
    )


@eqx.filter_jit
def _neuron_weights(system, control, theta, ts, breakpoints, nodes, panels):
    edges, where = _grid(ts, _breakpoints(control, ts, breakpoints), panels)
    x, wq = _gauss_legendre(nodes)
    g = _signal(control, theta)
    sx, sxy = system.task.Sx[0, 0], system.task.Sxy[0, 0]

    def rate(t):
        gt = 1.0 + jnp.reshape(g(t), ())
        return (sx * gt**2 + system.lam) / system.tau

    def drive(t):
        return sxy * (1.0 + jnp.reshape(g(t), ())) / system.tau

    def integral_of_rate(lo, hi):
        s = lo + (hi - lo) * (x + 1) / 2
        return (hi - lo) / 2 * jnp.dot(wq, jax.vmap(rate)(s))

    def panel(lo, hi):
        s = lo + (hi - lo) * (x + 1) / 2
        decay_from_node = jax.vmap(lambda si: integral_of_rate(si, hi))(s)
        forced = (
            (hi - lo) / 2 * jnp.dot(wq, jnp.exp(-decay_from_node) * jax.vmap(drive)(s))
        )
        return jnp.exp(-integral_of_rate(lo, hi)), forced

    decay, forced = jax.vmap(panel)(edges[:-1], edges[1:])

    def step(w, df):
        w = df[0] * w + df[1]
        return w, w

    w0 = jnp.asarray(system.init_state(), dtype=float)
    _, ws = jax.lax.scan(step, w0, (decay, forced))
    ws = jnp.concatenate([w0[None], ws])
    return ws[where]


# ----------------------------------------------------------------- single layer


def single_layer_matrices(
    system: SingleLayerGain, g: Float[Array, "outputs inputs"]
) -> tuple[Float[Array, "n n"], Float[Array, " n"]]:
    r"""The linear vector field of the single layer in Kronecker form.

    For a fixed gain $G$, the paper's Eq. 46,
    $\tau\dot W = (\Sigma_{xy}^\top - \tilde W\Sigma_x)\circ\tilde G - \lambda W$
    with $\tilde W = \tilde G\circ W$, is linear in $W$. With $\operatorname{vec}$
    stacking columns ($\operatorname{vec}(W\Sigma_x) =
    (\Sigma_x^\top\otimes I_{\text{out}})\operatorname{vec}W$) it reads
    $\frac{d}{dt}\operatorname{vec}W = A\operatorname{vec}W + b$ with
    $$A = -\frac1\tau\big[D_{\tilde g}(\Sigma_x^\top\otimes I)D_{\tilde g}
    + \lambda I\big],\qquad b = \frac1\tau\,w_g,\quad
    w_g = \operatorname{vec}(\Sigma_{xy}^\top\circ\tilde G),$$
    $D_{\tilde g} = \operatorname{diag}(\operatorname{vec}\tilde G)$
    (the paper's Eq. 48 writes it as "$(\Sigma_x^\top\otimes I)\tilde g^2$").

    **Arguments:**

    - `system`: a `SingleLayerGain`.
    - `g`: the gain $G$, shape `(outputs, inputs)`.

    **Returns:** `(A, b)`; `vec(W)` is `W.T.reshape(-1)`.
    """
    S = system.task
    gt = _vec(1.0 + jnp.asarray(g, dtype=float))
    n_out = S.n_outputs
    K = jnp.kron(S.Sx.T, jnp.eye(n_out))
    A = -(gt[:, None] * K * gt[None, :] + system.lam * jnp.eye(gt.shape[0]))
    b = _vec(S.Sxy.T) * gt
    return A / system.tau, b / system.tau


def _commutator(X, Y):
    return X @ Y - Y @ X


def _magnus6(B, lo, hi):
    r"""Sixth-order Magnus exponent $\Omega$ of $\dot z = B(t)z$ over $[lo, hi]$.

    Three-point Gauss–Legendre form (Blanes, Casas & Ros, *Phys. Rep.* 470,
    2009, eq. 253): with $B_{1,2,3}$ at $t = lo + (\tfrac12 \mp \tfrac{\sqrt{15}}{10},
    \tfrac12)h$, $\alpha_1 = hB_2$, $\alpha_2 = \tfrac{\sqrt{15}}{3}h(B_3 - B_1)$,
    $\alpha_3 = \tfrac{10}{3}h(B_3 - 2B_2 + B_1)$, $C_1 = [\alpha_1, \alpha_2]$,
    $C_2 = -\tfrac1{60}[\alpha_1, 2\alpha_3 + C_1]$,
    $\Omega = \alpha_1 + \tfrac1{12}\alpha_3
    + \tfrac1{240}[-20\alpha_1 - \alpha_3 + C_1, \alpha_2 + C_2]$.
    If $B$ is constant on the piece, $\Omega = hB$ exactly.
    """
    h = hi - lo
    c = np.sqrt(15.0) / 10.0
    B1, B2, B3 = B(lo + (0.5 - c) * h), B(lo + 0.5 * h), B(lo + (0.5 + c) * h)
    a1 = h * B2
    a2 = np.sqrt(15.0) / 3.0 * h * (B3 - B1)
    a3 = 10.0 / 3.0 * h * (B3 - 2.0 * B2 + B1)
    C1 = _commutator(a1, a2)
    C2 = -_commutator(a1, 2.0 * a3 + C1) / 60.0
    return a1 + a3 / 12.0 + _commutator(-20.0 * a1 - a3 + C1, a2 + C2) / 240.0


def _vec(W):
    return W.T.reshape(-1)


def _unvec(w, shape):
    return w.reshape(shape[::-1]).T


def single_layer_weights(
    system: SingleLayerGain,
    control: Callable,
    theta: PyTree[Array],
    ts: Real[Array, " times"],
    *,
    breakpoints: Float[Array, " breaks"] | None = None,
    substeps: int = 16,
) -> Float[Array, "times outputs inputs"]:
    r"""Weights $W(t)$ of the single-layer gain network by matrix exponentials.

    With $\dot{\operatorname{vec}W} = A(t)\operatorname{vec}W + b(t)$ from
    `single_layer_matrices`, the augmented state $z = (\operatorname{vec}W, 1)$
    obeys $\dot z = B(t)z$, $B = \begin{pmatrix}A & b\\ 0 & 0\end{pmatrix}$.
    Each cell of the grid $\{0\}\cup$ breakpoints $\cup$ `ts` is cut into
    `substeps` pieces of width $h$ and $z$ is propagated by the time-ordered
    product of sixth-order Magnus exponentials, $z(t + h) = e^{\Omega}z(t)$
    with $\Omega$ built from $B$ at the three Gauss points of the piece
    (Blanes, Casas & Ros, *Phys. Rep.* 470, 2009, eq. 253: with
    $\alpha_1 = hB_2$, $\alpha_2 = \tfrac{\sqrt{15}}3h(B_3 - B_1)$,
    $\alpha_3 = \tfrac{10}3h(B_3 - 2B_2 + B_1)$, $C_1 = [\alpha_1, \alpha_2]$,
    $C_2 = -\tfrac1{60}[\alpha_1, 2\alpha_3 + C_1]$:
    $\Omega = \alpha_1 + \tfrac1{12}\alpha_3
    + \tfrac1{240}[-20\alpha_1 - \alpha_3 + C_1, \alpha_2 + C_2]$).

    - **Piecewise-constant control** (also `Constant`): $B$ is constant on each
      piece, every commutator vanishes and each factor is the exact
      $\exp(hB)$ — the solution is exact (to round-off) for any `substeps`,
      provided the control's knots are among the breakpoints (the default).
    - **Piecewise-linear control**: $B$ varies (quadratically) within a knot
      interval and the product converges as $h^6$. With the default 16
      substeps per cell the relative error is ~1e-11 or below for gains in
      $[-0.5, 1]$, $\lVert\Sigma_x\rVert \le 5$ and knot intervals up to
      $\tau/4$ (measured in `tests/test_closed_form.py`, which also checks the
      $h^6$ rate); raise `substeps` for stiffer problems or wider intervals.

    `ts` may be traced (the function works under `jit`).

    **Arguments:**

    - `system`: a `SingleLayerGain`.
    - `control`: any callable `(theta, t) -> G` with `G` of shape
      `(outputs, inputs)`, e.g. an `lc.controls` control.
    - `theta`: the control's coefficients.
    - `ts`: times $\ge 0$ at which to report $W$.
    - `breakpoints`: times where $G$ is not smooth (default: the control's
      knots for an `lc.controls` control).
    - `substeps`: Magnus pieces per grid cell.

    **Returns:** $W$ at `ts`, shape `(len(ts), outputs, inputs)`.
    """
    _check_system(system, SingleLayerGain)
    ts = _check_times(ts)
    _check_count("substeps", substeps)
    return _layer_weights(system, control, theta, ts, breakpoints, int(substeps))


@eqx.filter_jit
def _layer_weights(system, control, theta, ts, breakpoints, substeps):
    edges, where = _grid(ts, _breakpoints(control, ts, breakpoints), substeps)
    g = _signal(control, theta)
    shape = system.W0.shape
    n = shape[0] * shape[1]

    def augmented(t):
        A, b = single_layer_matrices(system, jnp.reshape(g(t), shape))
        B = jnp.zeros((n + 1, n + 1), dtype=A.dtype)
        return B.at[:n, :n].set(A).at[:n, n].set(b)

    def propagator(lo, hi):
        return jsl.expm(_magnus6(augmented, lo, hi))

    props = jax.vmap(propagator)(edges[:-1], edges[1:])

    def step(z, P):
        z = P @ z
        return z, z

    z0 = jnp.concatenate(
        [_vec(jnp.asarray(system.init_state(), dtype=float)), jnp.ones(1)]
    )
    _, zs = jax.lax.scan(step, z0, props)
    zs = jnp.concatenate([z0[None], zs])[where, :n]
    return jax.vmap(lambda w: _unvec(w, shape))(zs)


# ----------------------------------------------------------------- value


def _value_by_quadrature(
    weights_at, system, control, theta, cost, objective, nodes, panels
) -> Float[Array, ""]:
    T = objective.T
    pts = jnp.concatenate(
        [
            jnp.zeros((1,)),
            _breakpoints(control, jnp.reshape(T, (1,)), None),
            jnp.clip(system.jump_times(), 0.0, T),
            jnp.reshape(T, (1,)),
        ]
    )
    cells = jnp.sort(pts)
    frac = jnp.arange(panels + 1) / panels
    lo, hi = cells[:-1], cells[1:]
    sub = lo[:, None] + (hi - lo)[:, None] * frac[None, :]
    left, right = sub[:, :-1].reshape(-1), sub[:, 1:].reshape(-1)
    x, wq = _gauss_legendre(nodes)
    tq = (left[:, None] + (right - left)[:, None] * (x[None, :] + 1) / 2).reshape(-1)
    weights = ((right - left)[:, None] / 2 * wq[None, :]).reshape(-1)
    w = weights_at(tq)
    g = jax.vmap(lambda t: control(theta, t))(tq)

    def reward(t, w_, g_):
        loss = system.loss(t, w_, g_)
        return objective.discount(t) * (-objective.eta * loss - cost(g_))

    return jnp.dot(weights, jax.vmap(reward)(tq, w, g))


def _unpack(problem, kind):
    if not isinstance(problem, Problem):
        raise TypeError(
            f"`problem` must be an lc.Problem; got {type(problem).__name__}."
        )
    _check_system(problem.system, kind)
    return problem.system, problem.control, problem.cost, problem.objective


def single_neuron_value(
    problem,
    theta: PyTree[Array],
    *,
    nodes: int = 16,
    panels: int = 2,
) -> Float[Array, ""]:
    r"""$V = \int_0^T\gamma^t[-\eta\langle L\rangle - C(g)]\,dt$ from the closed form.

    $w(t)$ comes from `single_neuron_weights` at the Gauss–Legendre nodes of
    `panels` equal panels per interval between the control's breakpoints (and
    the system's jump times); the integrand is smooth there, so `nodes`-point
    Gauss–Legendre quadrature converges spectrally.

    **Arguments:** `problem` (an `lc.Problem` whose system is a
    `SingleNeuronGain`) and `theta` as in `lc.value`; `nodes` and `panels` as
    in `single_neuron_weights` (used for both the weights and the outer
    integral).

    **Returns:** the scalar $V$.
    """
    _check_count("nodes", nodes)
    _check_count("panels", panels)
    system, control, cost, objective = _unpack(problem, SingleNeuronGain)
    return _neuron_value(
        system, control, theta, cost, objective, int(nodes), int(panels)
    )


@eqx.filter_jit
def _neuron_value(system, control, theta, cost, objective, nodes, panels):
    return _value_by_quadrature(
        lambda tq: _neuron_weights(system, control, theta, tq, None, nodes, panels),
        system,
        control,
        theta,
        cost,
        objective,
        nodes,
        panels,
    )


def single_layer_value(
    problem,
    theta: PyTree[Array],
    *,
    nodes: int = 16,
    panels: int = 1,
    substeps: int = 16,
) -> Float[Array, ""]:
    r"""$V = \int_0^T\gamma^t[-\eta\langle L\rangle - C(G)]\,dt$ for the single layer.

    $W(t)$ comes from `single_layer_weights` at the Gauss–Legendre nodes of
    `panels` equal panels per interval between breakpoints, and the integral
    is a `nodes`-point Gauss–Legendre sum on each panel.

    **Arguments:** as `single_neuron_value`, plus `substeps` of
    `single_layer_weights`.

    **Returns:** the scalar $V$.
    """
    for name, n in (("nodes", nodes), ("panels", panels), ("substeps", substeps)):
        _check_count(name, n)
    system, control, cost, objective = _unpack(problem, SingleLayerGain)
    return _layer_value(
        system, control, theta, cost, objective, int(nodes), int(panels), int(substeps)
    )


@eqx.filter_jit
def _layer_value(system, control, theta, cost, objective, nodes, panels, substeps):
    return _value_by_quadrature(
        lambda tq: _layer_weights(system, control, theta, tq, None, substeps),
        system,
        control,
        theta,
        cost,
        objective,
        nodes,
        panels,
    )
