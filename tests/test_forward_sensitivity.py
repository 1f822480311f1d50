"""`lc.ForwardSensitivity`: forward mode (`jax.jvp`, `jax.jacfwd`) through `lc.value`.

On three small systems (the single neuron, a two-layer gain network, task
engagement), V is a function of x = (s, p, T): s moves the coefficients
along a random direction, p is a parameter of the system (its L2 weight or
time constant), T the horizon. The JVP in random directions of x is checked
against central differences of V, and `jax.jacfwd` against the reverse-mode
gradient of `ContinuousAdjoint`. Negative controls show that the checks
fail when the sensitivity drops a term.

Tolerances. Solves at rtol = 1e-10, atol = 1e-12. Central differences with
step h = 1e-4 have truncation error O(h²) ~ 1e-9 and solver noise about
rtol·|V|/h ~ 1e-6·|V|; the check allows 1e-6 of the largest gradient entry
(measured below 1e-8). Forward and reverse mode both converge to the exact
derivative at the solver tolerance: they agree to 1e-8 relative (measured
about 1e-11).
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import lecontrol as lc
from test_engagement import engagement_tasks

OPTIONS = lc.SolverOptions(rtol=1e-10, atol=1e-12)
FD_TOL = 1e-6
REVERSE_TOL = 1e-8
REVERSE = (
    r"reverse-mode differentiation.*ForwardSensitivity is not supported.*"
    r"Use adjoint=lc\.ContinuousAdjoint\(\) for reverse mode"
)


def _neuron():
    system = lc.systems.SingleNeuronGain(
        lc.tasks.TwoGaussians(2.0, 1.0), lam=0.1, tau=1.0, w0=0.2
    )
    return system, "lam", 0.6, lc.costs.Quadratic(0.3), 0.9


def _two_layer():
    system = lc.systems.TwoLayerGain(
        lc.tasks.CorrelatedGaussians(), hidden=2, lam=0.01, seed=0, scale=0.3
    )
    return system, "tau", 1.0, lc.costs.ExpQuadratic(0.3), 0.99


def _engagement():
    system = lc.systems.TaskEngagement(
        engagement_tasks(), hidden=3, lam=0.01, seed=4, scale=0.3
    )
    return system, "tau", 1.0, lc.costs.Quadratic(0.1, offset=1.0), 0.99


SYSTEMS = {
    "single-neuron": _neuron,
    "two-layer-gain": _two_layer,
    "task-engagement": _engagement,
}


def _setup(name, system_wrapper=lambda s: s):
    """V(x) for x = (s, p, T), and x0.

    The last two coefficients are equal, so that g is flat at T and V is
    smooth in T (the control is held constant past its last knot)."""
    system, field, T, cost, gamma = SYSTEMS[name]()
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0, T, 5), shape=system.control_shape, lower=-2.0, upper=2.0
    )
    leaves, tree = jax.tree.flatten(control.init(0.0))
    keys = jax.random.split(jax.random.key(1), len(leaves) + 1)
    theta = jax.tree.unflatten(
        tree,
        [
            0.3 + 0.2 * jax.random.uniform(k, x.shape).at[-1].set(0.0).at[-2].set(0.0)
            for k, x in zip(keys, leaves)
        ],
    )
    theta0, unravel = ravel_pytree(theta)
    direction = jax.random.normal(keys[-1], theta0.shape) / jnp.sqrt(theta0.size)
    problem = lc.Problem(system, control, cost, lc.Objective(T, gamma))
    x0 = jnp.array([0.0, float(getattr(system, field)), T])

    def posed(x, T=None):
        """The problem at x = (s, p, T), or at x = (s, p) and a separate T."""
        T = x[2] if T is None else T
        p = eqx.tree_at(lambda q: getattr(q.system, field), problem, x[1])
        p = eqx.tree_at(lambda q: q.objective.T, p, T)
        p = eqx.tree_at(lambda q: q.system, p, system_wrapper(p.system))
        return p, unravel(theta0 + x[0] * direction)

    def V(x, T=None, adjoint=lc.ForwardSensitivity()):
        return lc.value(*posed(x, T), adjoint=adjoint, options=OPTIONS)

    return V, x0, posed


STEP = 1e-4  # central differences
RANDOM = jax.random.normal(jax.random.key(7), (2, 3))  # two random directions
DIRECTIONS = jnp.concatenate([jnp.eye(3), RANDOM])


def _rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@functools.cache
def _derivatives(name):
    """For the system `name`: the JVPs at x0 along DIRECTIONS, and central
    differences of V along them, from one compiled, vmapped jax.jvp (its
    values at x0 ± STEP·d give the differences). Computed once per system
    (compiling is most of the cost) for the tests below."""
    V, x0, _ = _setup(name)
    n = DIRECTIONS.shape[0]
    points = jnp.concatenate(
        [jnp.broadcast_to(x0, (n, 3)), x0 + STEP * DIRECTIONS, x0 - STEP * DIRECTIONS]
    )
    directions = jnp.concatenate([DIRECTIONS] * 3)
    values, tangents = jax.jit(jax.vmap(lambda x, d: jax.jvp(V, (x,), (d,))))(
        points, directions
    )
    fd = (values[n : 2 * n] - values[2 * n :]) / (2 * STEP)
    return tangents[:n], fd


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_jvp_matches_finite_differences(name):
    """In θ, the system parameter, T and two random mixtures of the three."""
    tangents, fd = _derivatives(name)
    err = float(jnp.max(jnp.abs(tangents - fd)) / jnp.max(jnp.abs(fd[:3])))
    assert err < FD_TOL, f"{name}: error {err:.1e} against finite differences"


def test_jacfwd_and_jvp_equal_reverse_mode():
    """jax.jacfwd equals ContinuousAdjoint's jax.grad, and each JVP the
    gradient dotted with its direction, to the solver tolerance (two-layer
    gain network, in θ, τ and T)."""
    V, x0, _ = _setup("two-layer-gain")
    forward = jax.jit(jax.jacfwd(V))(x0)
    reverse = jax.jit(jax.grad(lambda x: V(x, adjoint=lc.ContinuousAdjoint())))(x0)
    assert _rel(forward, reverse) < REVERSE_TOL
    tangents, _ = _derivatives("two-layer-gain")
    assert _rel(tangents, DIRECTIONS @ reverse) < REVERSE_TOL


# ------------------------------------------------------------ negative controls


class _FrozenFlow(lc.systems.AbstractLearningSystem):
    """`inner` with its flow h(w, g) cut from the parameters and the control
    (stop_gradient on both; not on w): the same V, but its sensitivity drops
    ∂h/∂p ṗ. A deliberately wrong variant, built here, not in the library."""

    inner: lc.systems.AbstractLearningSystem

    @property
    def control_shape(self):
        return self.inner.control_shape

    def init_state(self):
        return self.inner.init_state()

    def vector_field(self, t, w, g):
        frozen = jax.lax.stop_gradient((self.inner, g))
        return frozen[0].vector_field(t, w, frozen[1])

    def loss(self, t, w, g):
        return self.inner.loss(t, w, g)

    def jump_times(self):
        return self.inner.jump_times()


def test_negative_controls_dropping_a_term_fails_the_check():
    """Without ∂h/∂p ṗ (in θ, in the system parameter), or without v(T)Ṫ,
    the derivative misses the finite differences by far more than FD_TOL
    (single neuron)."""
    _, fd = _derivatives("single-neuron")
    scale = float(jnp.max(jnp.abs(fd[:3])))
    wrong_flow, x0, posed = _setup(
        "single-neuron", system_wrapper=lambda s: _FrozenFlow(s)
    )
    wrong = jax.jit(jax.jacfwd(wrong_flow))(x0)
    assert np.all(np.abs(wrong[:2] - fd[:2]) / scale > 100 * FD_TOL)
    # The horizon: nothing but the upper limit depends on T, so dV/dT is
    # v(T) alone, and without it the derivative would be zero.
    problem, theta = posed(x0)
    v_T = lc.solve(problem, theta, ts=x0[2:], options=OPTIONS).v[0]
    np.testing.assert_allclose(fd[2], v_T, rtol=FD_TOL)
    assert abs(float(v_T)) / scale > 100 * FD_TOL


# ------------------------------------------------------------ transformations


def test_reverse_mode_is_refused_with_advice():
    V, x0, posed = _setup("single-neuron")
    # jax.hessian pushes a tangent of T forward too: keep T out of it (see the
    # Hessian test for what a second derivative in T raises).
    hessian = jax.hessian(lambda y: V(y, x0[2]))
    for transform in (
        jax.jit(jax.grad(V)),
        jax.jacrev(V),
        lambda x: jax.vjp(V, x)[1](1.0),
    ):
        with pytest.raises(lc.TransformNotSupportedError, match=REVERSE):
            transform(x0)
    with pytest.raises(lc.TransformNotSupportedError, match=REVERSE):
        hessian(x0[:2])
    problem, theta = posed(x0)
    with pytest.raises(lc.TransformNotSupportedError, match=REVERSE):
        lc.optimize(problem, theta, steps=2, adjoint=lc.ForwardSensitivity())


def test_jit_vmap_and_linearize():
    V, x0, _ = _setup("single-neuron")
    d = DIRECTIONS[-1]
    jvp = jax.jit(lambda x, t: jax.jvp(V, (x,), (t,)))
    want = jvp(x0, d)
    value, linear = jax.linearize(V, x0)
    np.testing.assert_allclose(value, want[0], rtol=1e-14)
    np.testing.assert_allclose(linear(d), want[1], rtol=1e-10)
    # vmap over problems: a batch of (θ, system parameter, horizon).
    xs = x0 + jnp.array([[0.0, 0.0, 0.0], [0.1, 0.05, -0.1], [0.2, -0.05, 0.1]])
    batched = jax.jit(jax.vmap(lambda x: jax.jvp(V, (x,), (d,))))(xs)
    for x, v, t in zip(xs, *batched):
        np.testing.assert_allclose((v, t), jvp(x, d), rtol=1e-10)


def test_hessian_by_forward_over_forward():
    """jax.jacfwd(jax.jacfwd(f)) in y = (s, p) of the gradient in (s, p, T),
    against central differences of jax.jacfwd: the Hessian in y and the
    derivative of dV/dT in y. A second derivative in T is refused."""
    V, x0, _ = _setup("single-neuron")
    y0, T0 = x0[:2], x0[2]

    def gradient(y):
        # In (s, p) and in T, with T its own argument (not sliced from y).
        g_y, g_T = jax.jacfwd(V, argnums=(0, 1))(y, T0)
        return jnp.append(g_y, g_T)

    H = jax.jit(jax.jacfwd(gradient))(y0)
    points = jnp.concatenate([y0 + STEP * jnp.eye(2), y0 - STEP * jnp.eye(2)])
    g = jax.jit(jax.vmap(gradient))(points)
    fd = ((g[:2] - g[2:]) / (2 * STEP)).T
    assert H.shape == (3, 2)
    assert _rel(H, fd) < 1e-6
    np.testing.assert_allclose(H[0, 1], H[1, 0], rtol=1e-8)
    horizon = r"second derivatives with respect to the horizon T.*ForwardSensitivity"
    for f in (jax.jacfwd(jax.jacfwd(V)), jax.hessian(V)):
        with pytest.raises(lc.TransformNotSupportedError, match=horizon):
            f(x0)
