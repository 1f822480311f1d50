"""Every JAX transformation of `lc.value` is either right or refused (issue 11).

For each gradient strategy and transformation of V(θ): the result agrees
with central finite differences of `jax.grad` (of V for ForwardSensitivity,
whose reverse mode is refused; relative 1e-6, solves at
rtol=1e-10, atol=1e-12), or the call raises an error that names the
transformation and says what to use instead. A silently wrong answer is the
defect these tests exist to catch (before the fix, `jax.jacrev(jax.grad(f))`
through `ContinuousAdjoint` was wrong by 37% on the single neuron).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import lecontrol as lc

TIGHT = dict(rtol=1e-10, atol=1e-12)


def V(problem, theta, adjoint, **tol):
    """The one call of `lc.value` in this module."""
    return lc.value(
        lc.Problem(*problem), theta, adjoint=adjoint, options=lc.SolverOptions(**tol)
    )


def _neuron():
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    system = lc.systems.SingleNeuronGain(task, lam=0.1, tau=1.0, w0=0.2)
    T = 0.6
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0, T, 5), shape=(), lower=0.0, upper=0.5
    )
    problem = (system, control, lc.costs.Quadratic(0.3), lc.Objective(T, 0.9, 1.0))
    return problem, jnp.array([0.1, 0.3, 0.2, 0.4, 0.25])


def _two_layer():
    system = lc.systems.TwoLayerGain(
        lc.tasks.CorrelatedGaussians(), hidden=2, lam=0.01, seed=0, scale=0.3
    )
    T = 2.0
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0, T, 3), shape=system.control_shape, lower=-0.5, upper=0.5
    )
    leaves, tree = jax.tree.flatten(control.init(0.0))
    keys = jax.random.split(jax.random.key(0), len(leaves))
    theta = jax.tree.unflatten(
        tree,
        [
            jax.random.uniform(k, x.shape, minval=-0.3, maxval=0.3)
            for k, x in zip(keys, leaves)
        ],
    )
    problem = (system, control, lc.costs.ExpQuadratic(0.3), lc.Objective(T, 0.99))
    return problem, theta


PROBLEMS = {"single-neuron": _neuron, "two-layer-gain": _two_layer}

STRATEGIES = {
    "ContinuousAdjoint": lambda T: lc.ContinuousAdjoint(),
    "CheckpointAdjoint": lambda T: lc.CheckpointAdjoint(),
    "EulerUnrolled": lambda T: lc.EulerUnrolled(dt=T / 50),
    "BacksolveAdjoint": lambda T: lc.BacksolveAdjoint(),
    "ForwardSensitivity": lambda T: lc.ForwardSensitivity(),
}

FORWARD = (
    r"forward-mode differentiation \(jax\.jvp, jax\.jacfwd.*not supported\. "
    r"For forward mode use adjoint=lc\.ForwardSensitivity\(\).*use reverse mode: "
    r"jax\.grad"
)
REVERSE = (
    r"reverse-mode differentiation \(jax\.grad, jax\.vjp, jax\.jacrev.*"
    r"ForwardSensitivity is not supported.*Use adjoint=lc\.ContinuousAdjoint\(\) "
    r"for reverse mode"
)
SECOND = r"second-order differentiation \(jax\.jacrev\(jax\.grad.*CheckpointAdjoint is not supported.*Use ContinuousAdjoint"

# What each strategy does with each transformation: "fd" (agrees with finite
# differences of jax.grad) or the message it raises.
EXPECTED = {
    "ContinuousAdjoint": {
        "jacrev(grad)": "fd",
        "hessian": FORWARD,
        "jacfwd(grad)": FORWARD,
        "jacfwd": FORWARD,
        "jvp": FORWARD,
    },
    "CheckpointAdjoint": {
        "jacrev(grad)": SECOND,
        "hessian": FORWARD,
        "jacfwd(grad)": FORWARD,
        "jacfwd": FORWARD,
        "jvp": FORWARD,
    },
    "EulerUnrolled": {
        "jacrev(grad)": "fd",
        "hessian": "fd",
        "jacfwd(grad)": "fd",
        "jacfwd": "fd",
        "jvp": "fd",
    },
    # Comparison only: forward mode is refused; its reverse-over-reverse
    # raises equinox's own error and is not covered here.
    "BacksolveAdjoint": {"hessian": FORWARD, "jacfwd": FORWARD, "jvp": FORWARD},
    # Forward mode only: first derivatives against finite differences of V,
    # the Hessian by forward over forward against finite differences of
    # jax.jacfwd; reverse mode is refused.
    "ForwardSensitivity": {
        "jvp": "fd",
        "jacfwd": "fd",
        "linearize": "fd",
        "jacfwd(jacfwd)": "fd",
        "grad": REVERSE,
        "jacrev": REVERSE,
        "jacrev(grad)": REVERSE,
        "hessian": REVERSE,
        "jacfwd(grad)": REVERSE,
    },
}

CASES = [
    (s, t, p)
    for s, transforms in EXPECTED.items()
    for t in transforms
    for p in PROBLEMS
    # Refusals are problem-independent: check them on the small problem only.
    if EXPECTED[s][t] == "fd" or p == "single-neuron"
]


def _setup(problem_name, strategy_name):
    """V on the plane θ0 + D s through the coefficients (s in R², D random):
    a 2 × 2 Hessian keeps nested reverse mode cheap on every problem."""
    problem, theta = PROBLEMS[problem_name]()
    adjoint = STRATEGIES[strategy_name](float(problem[3].T))
    theta0, unravel = ravel_pytree(theta)
    D = 0.1 * jax.random.normal(jax.random.key(2), (theta0.size, 2))
    tol = {} if strategy_name == "EulerUnrolled" else TIGHT

    def f(s):
        return V(problem, unravel(theta0 + D @ s), adjoint, **tol)

    return f, jnp.zeros(2)


def _directions(n):
    return jnp.eye(n)


def _fd_hvp(f, x0, d, h=1e-4, gradient=jax.grad):
    g = jax.jit(gradient(f))
    return (g(x0 + h * d) - g(x0 - h * d)) / (2 * h)


def _fd_gradient(f, x0, h=1e-4):
    f = jax.jit(f)
    return jnp.stack([(f(x0 + h * d) - f(x0 - h * d)) / (2 * h) for d in jnp.eye(2)])


# Jitted: nested differentiation through ODE solves compiles in about half
# the time it takes to run op by op.
TRANSFORMS = {
    "hessian": lambda f, x0: jax.jit(jax.hessian(f))(x0),
    "jacrev(grad)": lambda f, x0: jax.jit(jax.jacrev(jax.grad(f)))(x0),
    "jacfwd(grad)": lambda f, x0: jax.jit(jax.jacfwd(jax.grad(f)))(x0),
    "jacfwd": lambda f, x0: jax.jit(jax.jacfwd(f))(x0),
    "jvp": lambda f, x0: jax.jvp(f, (x0,), (_directions(x0.size)[0],))[1],
    "linearize": lambda f, x0: jax.linearize(f, x0)[1](_directions(x0.size)[0]),
    "jacfwd(jacfwd)": lambda f, x0: jax.jit(jax.jacfwd(jax.jacfwd(f)))(x0),
    "grad": lambda f, x0: jax.jit(jax.grad(f))(x0),
    "jacrev": lambda f, x0: jax.jit(jax.jacrev(f))(x0),
}


@pytest.mark.parametrize("strategy,transform,problem", CASES)
def test_transformation_is_right_or_refused(strategy, transform, problem):
    f, x0 = _setup(problem, strategy)
    expected = EXPECTED[strategy][transform]
    if expected != "fd":
        with pytest.raises(lc.TransformNotSupportedError, match=expected):
            TRANSFORMS[transform](f, x0)
        return
    out = TRANSFORMS[transform](f, x0)
    if strategy == "ForwardSensitivity" and transform != "jacfwd(jacfwd)":
        # Central differences of V (step 1e-4): truncation O(h²) and solver
        # noise about rtol·|V|/h, both below 1e-6 of the gradient here.
        g = _fd_gradient(f, x0)
        want = g if transform == "jacfwd" else jnp.vdot(g, _directions(x0.size)[0])
        err = float(jnp.max(jnp.abs(out - want)) / jnp.max(jnp.abs(g)))
        assert err < 1e-6, f"{strategy} {transform} on {problem}: error {err:.1e}"
        return
    if transform in ("jacfwd", "jvp"):
        # First derivatives: against jax.grad (itself checked against finite
        # differences of V in test_adjoint.py).
        g = jax.grad(f)(x0)
        want = g if transform == "jacfwd" else jnp.vdot(g, _directions(x0.size)[0])
        np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-12)
        return
    assert out.shape == (x0.size, x0.size)
    gradient = jax.jacfwd if strategy == "ForwardSensitivity" else jax.grad
    fd = jnp.stack([_fd_hvp(f, x0, d, gradient=gradient) for d in _directions(x0.size)])
    err = float(jnp.max(jnp.abs(out - fd)) / jnp.max(jnp.abs(fd)))
    assert err < 1e-6, f"{strategy} {transform} on {problem}: error {err:.1e}"


def test_refusals_under_jit_name_the_transformation():
    f, x0 = _setup("single-neuron", "ContinuousAdjoint")
    d = jnp.ones_like(x0)
    with pytest.raises(lc.TransformNotSupportedError, match=FORWARD):
        jax.jit(lambda x: jax.jvp(f, (x,), (d,)))(x0)
    with pytest.raises(lc.TransformNotSupportedError, match=FORWARD):
        jax.jvp(jax.jit(f), (x0,), (d,))
    with pytest.raises(lc.TransformNotSupportedError, match=FORWARD):
        jax.linearize(f, x0)[1](d)
    f, x0 = _setup("single-neuron", "CheckpointAdjoint")
    with pytest.raises(lc.TransformNotSupportedError, match=SECOND):
        jax.jit(jax.grad(lambda x: jnp.sum(jax.grad(f)(x) ** 2)))(x0)


def test_reverse_over_reverse_under_jit_and_vmap():
    """The Hessian-vector product of ContinuousAdjoint, jitted and vmapped."""
    f, x0 = _setup("single-neuron", "ContinuousAdjoint")
    ds = jnp.array([[1.0, 0.0], [0.3, -0.7]])

    def hvp(d):
        return jax.grad(lambda x: jnp.vdot(jax.grad(f)(x), d))(x0)

    got = jax.jit(jax.vmap(hvp))(ds)
    for d, h in zip(ds, got):
        fd = _fd_hvp(f, x0, d)
        np.testing.assert_allclose(h, fd, rtol=1e-6, atol=1e-6 * jnp.max(jnp.abs(fd)))


def _constant_neuron(T, lam, w0):
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    system = lc.systems.SingleNeuronGain(task, lam=lam, tau=1.0, w0=w0)
    control = lc.controls.Constant(shape=(), lower=0.0, upper=0.5)
    return (system, control, lc.costs.Quadratic(0.3), lc.Objective(T, 0.9, 1.0))


def test_second_derivatives_in_system_fields_and_the_horizon():
    """ContinuousAdjoint: d²V/dp² for system fields p is exact; a gradient with
    respect to T of a gradient is refused (d/dT of dV/dθ too, refused by the
    same guard); d(dV/dT)/dθ is exact."""
    theta = jnp.asarray(0.2)

    def Vp(p, T=0.6):
        return V(
            _constant_neuron(T, p[0], p[1]), theta, lc.ContinuousAdjoint(), **TIGHT
        )

    p0 = jnp.array([0.1, 0.2])
    H = jax.jit(jax.jacrev(jax.grad(Vp)))(p0)
    g = jax.jit(jax.grad(Vp))
    fd = jnp.stack([(g(p0 + 1e-4 * e) - g(p0 - 1e-4 * e)) / 2e-4 for e in jnp.eye(2)])
    np.testing.assert_allclose(H, fd, rtol=1e-6, atol=1e-6 * jnp.max(jnp.abs(fd)))

    def VT(T, th):
        return V(_constant_neuron(T, 0.1, 0.2), th, lc.ContinuousAdjoint(), **TIGHT)

    T = jnp.asarray(0.6)
    horizon = r"second derivatives with respect to the horizon T.*not supported"
    with pytest.raises(lc.TransformNotSupportedError, match=horizon):
        jax.grad(jax.grad(VT))(T, theta)
    gT = jax.jit(jax.grad(VT))
    fd = (gT(T, theta + 1e-4) - gT(T, theta - 1e-4)) / 2e-4
    mixed = jax.jit(jax.grad(jax.grad(VT), argnums=1))(T, theta)
    np.testing.assert_allclose(mixed, fd, rtol=1e-6)
