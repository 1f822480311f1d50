"""Gradient strategies agree with each other and with finite differences.

Tolerances (float64): solves at rtol=1e-10, atol=1e-12 for the adaptive
strategies; the adjoint strategies must agree with each other and with central
finite differences within 1e-6 relative (solved tighter than the default
rtol so that finite differences are trustworthy).
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float

import lecontrol as lc

TIGHT = dict(rtol=1e-10, atol=1e-12)


class Quartic(lc.systems.AbstractLearningSystem):
    """A user-written system: gradient flow on a gain-scaled quartic loss.

    <L> = ½ (1+g)² wᵀAw − (1+g) bᵀw + ¼ c Σ w⁴, so dw/dt = −∂<L>/∂w.
    """

    A: Float[Array, "2 2"]
    b: Float[Array, " 2"]
    c: Float[Array, ""]

    @property
    def control_shape(self):
        return ()

    def init_state(self):
        return jnp.zeros(2)

    def loss(self, t, w, g):
        gt = 1.0 + g
        return (
            0.5 * gt**2 * w @ self.A @ w
            - gt * self.b @ w
            + 0.25 * self.c * jnp.sum(w**4)
        )

    def vector_field(self, t, w, g):
        gt = 1.0 + g
        return -(gt**2 * self.A @ w - gt * self.b + self.c * w**3)


def _neuron(T=0.6):
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    system = lc.systems.SingleNeuronGain(task, lam=0.1, tau=1.0, w0=0.2)
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0, T, 7), shape=(), lower=0.0, upper=0.5
    )
    return (
        system,
        control,
        lc.costs.Quadratic(0.3),
        lc.Objective(T=T, gamma=0.9, eta=1.0),
    )


class _Task(lc.tasks.AbstractTask):
    Sx_: Array
    Sxy_: Array
    Sy_: Array

    @property
    def Sx(self):
        return self.Sx_

    @property
    def Sxy(self):
        return self.Sxy_

    @property
    def Sy(self):
        return self.Sy_

    def sample(self, key, n):
        raise NotImplementedError


def _layer(T=1.0):
    k1, k2 = jax.random.split(jax.random.key(3))
    X = jax.random.normal(k1, (3, 3))
    Sx = X @ X.T / 3 + 0.2 * jnp.eye(3)
    Sxy = jax.random.normal(k2, (3, 2))
    task = _Task(Sx, Sxy, jnp.eye(2))
    system = lc.systems.SingleLayerGain(
        task, lam=0.05, tau=0.7, W0=0.1 * jnp.ones((2, 3))
    )
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0, T, 5), shape=system.control_shape, lower=-0.5, upper=0.5
    )
    return (
        system,
        control,
        lc.costs.ExpQuadratic(0.1),
        lc.Objective(T=T, gamma=0.95, eta=2.0),
    )


def _quartic(T=1.5):
    system = Quartic(
        jnp.array([[2.0, 0.3], [0.3, 1.0]]), jnp.array([1.0, -0.5]), jnp.asarray(0.5)
    )
    control = lc.controls.PiecewiseConstant(
        jnp.linspace(0, T, 4), shape=(), lower=-0.5, upper=1.0
    )
    return (
        system,
        control,
        lc.costs.Quadratic(0.2, offset=0.1),
        lc.Objective(T=T, gamma=0.8),
    )


PROBLEMS = {"single-neuron": _neuron, "single-layer": _layer, "user-quartic": _quartic}


def _random_theta(control, key):
    theta = control.init(0.0)
    leaves, tree = jax.tree.flatten(theta)
    keys = jax.random.split(key, len(leaves))
    lo = max(control.lower, -1.0)
    hi = min(control.upper, 1.0)
    new = [
        jax.random.uniform(k, x.shape, minval=lo, maxval=hi)
        for k, x in zip(keys, leaves)
    ]
    return jax.tree.unflatten(tree, new)


def _grad(strategy, system, control, theta, cost, obj, **kw):
    def f(th):
        return lc.value(
            lc.Problem(system, control, cost, obj),
            th,
            adjoint=strategy,
            options=lc.SolverOptions(**kw),
        )

    return jax.jit(jax.grad(f))(theta)


def _flat(tree):
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def _fd_directional(f, theta, direction, h=1e-4):
    plus = jax.tree.map(lambda x, d: x + h * d, theta, direction)
    minus = jax.tree.map(lambda x, d: x - h * d, theta, direction)
    return (f(plus) - f(minus)) / (2 * h)


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_adjoint_strategies_agree_with_each_other_and_finite_differences(name):
    system, control, cost, obj = PROBLEMS[name]()
    theta = _random_theta(control, jax.random.key(0))
    g_cont = _flat(
        _grad(lc.ContinuousAdjoint(), system, control, theta, cost, obj, **TIGHT)
    )
    g_ckpt = _flat(
        _grad(lc.CheckpointAdjoint(), system, control, theta, cost, obj, **TIGHT)
    )
    scale = jnp.max(jnp.abs(g_ckpt))
    np.testing.assert_allclose(g_cont, g_ckpt, rtol=1e-6, atol=1e-6 * scale)

    V = jax.jit(
        lambda th: lc.value(
            lc.Problem(system, control, cost, obj),
            th,
            options=lc.SolverOptions(**TIGHT),
        )
    )
    for seed in range(3):
        d = _random_theta(control, jax.random.key(10 + seed))
        fd = _fd_directional(V, theta, d)
        an = jnp.vdot(g_cont, _flat(d))
        np.testing.assert_allclose(an, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_euler_unrolled_is_the_exact_gradient_of_its_own_discretisation(name):
    system, control, cost, obj = PROBLEMS[name]()
    theta = _random_theta(control, jax.random.key(1))
    euler = lc.EulerUnrolled(dt=float(obj.T) / 300)
    g = _flat(_grad(euler, system, control, theta, cost, obj))
    V = jax.jit(
        lambda th: lc.value(lc.Problem(system, control, cost, obj), th, adjoint=euler)
    )
    d = _random_theta(control, jax.random.key(2))
    np.testing.assert_allclose(
        jnp.vdot(g, _flat(d)), _fd_directional(V, theta, d), rtol=1e-6, atol=1e-10
    )


def test_euler_gradient_converges_to_the_adjoint_at_first_order():
    system, control, cost, obj = _neuron()
    theta = _random_theta(control, jax.random.key(4))
    ref = _flat(
        _grad(lc.ContinuousAdjoint(), system, control, theta, cost, obj, **TIGHT)
    )
    errs = []
    for n in (150, 300, 600):
        g = _flat(
            _grad(
                lc.EulerUnrolled(dt=float(obj.T) / n), system, control, theta, cost, obj
            )
        )
        errs.append(float(jnp.linalg.norm(g - ref) / jnp.linalg.norm(ref)))
    # Explicit Euler is first order: halving dt halves the error (ratio ~2).
    assert errs[2] < errs[1] < errs[0] < 0.05
    assert 1.6 < errs[0] / errs[1] < 2.4 and 1.6 < errs[1] / errs[2] < 2.4


def test_gradient_with_respect_to_system_cost_and_objective_parameters():
    """The continuous adjoint also differentiates task statistics, λ, β, γ, η, T, w0."""
    system, control, cost, obj = _neuron()
    theta = _random_theta(control, jax.random.key(5))
    args = (system, cost, obj)

    def V(args, adjoint):
        s, c, o = args
        return lc.value(
            lc.Problem(s, control, c, o),
            theta,
            adjoint=adjoint,
            options=lc.SolverOptions(**TIGHT),
        )

    g_cont = jax.grad(V)(args, lc.ContinuousAdjoint())
    g_ckpt = jax.grad(V)(args, lc.CheckpointAdjoint())
    # Every parameter except the horizon: reverse mode through the adaptive
    # solve agrees with the continuous adjoint.
    g_cont_noT = eqx.tree_at(lambda a: a[2].T, g_cont, jnp.zeros(()))
    g_ckpt_noT = eqx.tree_at(lambda a: a[2].T, g_ckpt, jnp.zeros(()))
    for a, b in zip(jax.tree.leaves(g_cont_noT), jax.tree.leaves(g_ckpt_noT)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    # dV/dT is the net reward at the horizon, v(T) (exact for fixed θ). Reverse
    # mode through diffrax's clipped step-size controller is off by ~1e-3 here,
    # so the horizon is pinned against v(T) itself (and against finite
    # differences in test_horizon_gradient_with_constant_control).
    vT = lc.solve(
        lc.Problem(system, control, cost, obj),
        theta,
        ts=jnp.asarray([obj.T]),
        options=lc.SolverOptions(**TIGHT),
    ).v[0]
    np.testing.assert_allclose(g_cont[2].T, vT, rtol=1e-8)
    # Finite differences for gamma, mu, lam and w0.
    for path in (
        lambda a: a[2].gamma,
        lambda a: a[0].task.mu,
        lambda a: a[0].lam,
        lambda a: a[0].w0,
    ):
        h = 1e-5
        plus = eqx.tree_at(path, args, path(args) + h)
        minus = eqx.tree_at(path, args, path(args) - h)
        fd = (V(plus, lc.CheckpointAdjoint()) - V(minus, lc.CheckpointAdjoint())) / (
            2 * h
        )
        np.testing.assert_allclose(path(g_cont), fd, rtol=1e-6, atol=1e-9)


def test_horizon_gradient_with_constant_control():
    system, _, cost, obj = _neuron()
    control = lc.controls.Constant(shape=(), lower=0.0, upper=0.5)
    theta = jnp.asarray(0.2)

    def V(T, adjoint):
        return lc.value(
            lc.Problem(system, control, cost, lc.Objective(T, 0.9, 1.0)),
            theta,
            adjoint=adjoint,
            options=lc.SolverOptions(**TIGHT),
        )

    g = jax.grad(V)(jnp.asarray(0.6), lc.ContinuousAdjoint())
    fd = (
        V(0.6 + 1e-5, lc.CheckpointAdjoint()) - V(0.6 - 1e-5, lc.CheckpointAdjoint())
    ) / 2e-5
    np.testing.assert_allclose(g, fd, rtol=1e-6)
    gth = jax.grad(
        lambda th: lc.value(
            lc.Problem(system, control, cost, obj),
            th,
            options=lc.SolverOptions(**TIGHT),
        )
    )(theta)
    gth_ref = jax.grad(
        lambda th: lc.value(
            lc.Problem(system, control, cost, obj),
            th,
            adjoint=lc.CheckpointAdjoint(),
            options=lc.SolverOptions(**TIGHT),
        )
    )(theta)
    np.testing.assert_allclose(gth, gth_ref, rtol=1e-6)


def test_functional_gradient_projects_onto_the_basis_gradient():
    """∫ δV/δg(t) φ_k(t) dt = dV/dθ_k, and λ(T) = 0."""
    system, _, cost, obj = _neuron()
    knots = jnp.linspace(0, obj.T, 7)
    control = lc.controls.PiecewiseLinear(knots, shape=(), lower=0.0, upper=0.5)
    theta = _random_theta(control, jax.random.key(6))
    ts = jnp.linspace(0, obj.T, 6001)
    dg = lc.functional_gradient(
        lc.Problem(system, control, cost, obj),
        theta,
        ts=ts,
        options=lc.SolverOptions(**TIGHT),
    )
    lam = lc.costate(
        lc.Problem(system, control, cost, obj),
        theta,
        ts=ts,
        options=lc.SolverOptions(**TIGHT),
    )
    assert abs(float(lam[-1])) < 1e-12
    grad = jax.grad(
        lambda th: lc.value(
            lc.Problem(system, control, cost, obj),
            th,
            options=lc.SolverOptions(**TIGHT),
        )
    )(theta)
    basis = jax.vmap(lambda k: jax.vmap(lambda t: control(jnp.eye(7)[k], t))(ts))(
        jnp.arange(7)
    )
    proj = jnp.trapezoid(dg[None, :] * basis, ts, axis=1)
    np.testing.assert_allclose(proj, grad, rtol=1e-5, atol=1e-8)


def test_backsolve_adjoint_fails_on_gradient_flow():
    """Why ContinuousAdjoint exists: re-integrating w backwards is unstable.

    On the single neuron with T = 6 diffrax's BacksolveAdjoint gives a gradient
    whose relative error is orders of magnitude above the solver tolerance,
    while the continuous adjoint (reading w from the forward interpolant) is
    accurate.
    """
    T = 6.0
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    system = lc.systems.SingleNeuronGain(task, lam=0.1, tau=1.0, w0=0.0)
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0, T, 31), shape=(), lower=0.0, upper=0.5
    )
    cost, obj = lc.costs.Quadratic(0.3), lc.Objective(T=T, gamma=0.99, eta=1.0)
    theta = control.init(0.1)
    kw = dict(rtol=1e-9, atol=1e-12)
    ref = _flat(_grad(lc.CheckpointAdjoint(), system, control, theta, cost, obj, **kw))
    cont = _flat(_grad(lc.ContinuousAdjoint(), system, control, theta, cost, obj, **kw))
    back = _flat(_grad(lc.BacksolveAdjoint(), system, control, theta, cost, obj, **kw))
    err = lambda g: float(jnp.linalg.norm(g - ref) / jnp.linalg.norm(ref))  # noqa: E731
    assert err(cont) < 1e-6
    assert err(back) > 1e-3, (
        f"BacksolveAdjoint error {err(back):.2e} unexpectedly small"
    )


def test_jit_vmap_and_grad_of_vmap_pass_through_value():
    system, control, cost, obj = _neuron()
    thetas = jnp.stack([_random_theta(control, jax.random.key(k)) for k in range(4)])

    def V(th):
        return lc.value(lc.Problem(system, control, cost, obj), th)

    batched = jax.jit(jax.vmap(V))(thetas)
    single = jnp.stack([V(th) for th in thetas])
    np.testing.assert_allclose(batched, single, rtol=1e-12)

    g_batched = jax.grad(lambda ths: jnp.sum(jax.vmap(V)(ths)))(thetas)
    g_single = jnp.stack([jax.grad(V)(th) for th in thetas])
    np.testing.assert_allclose(g_batched, g_single, rtol=1e-10, atol=1e-14)

    # vmap over a system parameter (a sweep) with gradients.
    sigmas = jnp.array([0.5, 1.0, 2.0])

    def V_sigma(s):
        sys_s = eqx.tree_at(lambda x: x.task.sigma, system, s)
        return lc.value(lc.Problem(sys_s, control, cost, obj), thetas[0])

    gs = jax.vmap(jax.grad(V_sigma))(sigmas)
    assert gs.shape == (3,) and bool(jnp.all(jnp.isfinite(gs)))


def test_solve_reports_consistent_trajectory():
    system, control, cost, obj = _neuron()
    theta = _random_theta(control, jax.random.key(7))
    ts = jnp.linspace(0, obj.T, 11)
    traj = lc.solve(
        lc.Problem(system, control, cost, obj),
        theta,
        ts=ts,
        options=lc.SolverOptions(**TIGHT),
    )
    V = lc.value(
        lc.Problem(system, control, cost, obj), theta, options=lc.SolverOptions(**TIGHT)
    )
    np.testing.assert_allclose(traj.V[-1], V, rtol=1e-10)
    np.testing.assert_allclose(traj.V[0], 0.0, atol=1e-14)
    assert int(traj.num_steps) > 0
    np.testing.assert_allclose(traj.g, jax.vmap(lambda t: control(theta, t))(ts))


def test_solver_failure_raises_with_advice():
    system, control, cost, obj = _neuron()
    theta = control.init(0.1)
    with pytest.raises(Exception, match="max_steps"):
        lc.value(
            lc.Problem(system, control, cost, obj),
            theta,
            options=lc.SolverOptions(max_steps=2),
        )


def test_other_solvers_are_accepted():
    system, control, cost, obj = _neuron()
    theta = control.init(0.1)
    ref = lc.value(
        lc.Problem(system, control, cost, obj), theta, options=lc.SolverOptions(**TIGHT)
    )
    for solver in (diffrax.Dopri5(), diffrax.Dopri8()):
        V = lc.value(
            lc.Problem(system, control, cost, obj),
            theta,
            options=lc.SolverOptions(solver=solver, **TIGHT),
        )
        np.testing.assert_allclose(V, ref, rtol=1e-8)


# ------------------------------------------------- the stored forward pass


def test_node_interpolant_rebuilds_w_between_breakpoints():
    # Breakpoints with a repeat (a task switch on a knot): an empty interval.
    from lecontrol.adjoint import NodeInterpolant, sample_times

    b = jnp.array([0.0, 0.5, 0.5, 1.3, 2.0])
    nodes = 8
    ts = sample_times(b, nodes)
    assert ts.shape == (4 * (nodes + 1) + 1,)
    assert np.all(np.diff(np.asarray(ts)) >= 0)

    def f(t):  # a pytree, as w is
        return {"a": jnp.sin(3 * t) + t**2, "b": jnp.stack([t**9, jnp.exp(-t)])}

    interp = NodeInterpolant.from_saved(b, jax.vmap(f)(ts), nodes)
    probe = jnp.concatenate([jnp.linspace(0.0, 2.0, 401), b])
    got, want = jax.vmap(interp)(probe), jax.vmap(f)(probe)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert np.all(np.isfinite(np.asarray(g)))
        # Degree n + 1 = 9 on each interval: t^9 exactly, smooth functions to
        # ~(width·rate)^10/10! (measured 3.8e-9 here).
        np.testing.assert_allclose(g, w, rtol=0, atol=2e-8)
    # The Gauss nodes themselves come back exactly.
    at = interp.at_nodes()
    want = jax.vmap(f)(lc.adjoint.gauss_legendre(b, nodes)[0])
    for g, w in zip(jax.tree.leaves(at), jax.tree.leaves(want)):
        np.testing.assert_array_equal(g, w)


def test_continuous_adjoint_memory_does_not_depend_on_max_steps():
    # The forward pass saves w at the quadrature nodes only (no dense output
    # sized by max_steps), so the step budget costs no memory.
    system, control, cost, obj = _layer()
    theta = _random_theta(control, jax.random.key(0))

    def memory(max_steps):
        f = jax.jit(
            jax.grad(
                lambda th: lc.value(
                    lc.Problem(system, control, cost, obj),
                    th,
                    options=lc.SolverOptions(max_steps=max_steps),
                )
            )
        )
        m = f.lower(theta).compile().memory_analysis()
        return m.temp_size_in_bytes + m.output_size_in_bytes

    assert memory(64) == memory(65536)


def test_continuous_adjoint_arguments_are_checked():
    for bad in (dict(nodes=0), dict(min_intervals=0), dict(nodes=2.5)):
        with pytest.raises(ValueError, match="ContinuousAdjoint"):
            lc.ContinuousAdjoint(**bad)


def test_min_intervals_resolves_long_intervals():
    # One control interval over a horizon 20 time constants long: Gauss nodes
    # on [0, T] alone cannot resolve w(t); the uniform grid added by
    # min_intervals does (measured: 2.8e-3 with 1 interval, 6.5e-10 with 32).
    T = 6.0
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    system = lc.systems.SingleNeuronGain(task, lam=0.1, tau=0.3, w0=0.0)
    control = lc.controls.PiecewiseConstant(
        jnp.array([0.0, T]), shape=(), lower=0.0, upper=0.5
    )
    cost, obj = lc.costs.Quadratic(0.3), lc.Objective(T=T, gamma=0.9)
    theta = jnp.array([0.3])
    ref = _grad(lc.CheckpointAdjoint(), system, control, theta, cost, obj, **TIGHT)

    def error(m):
        grad = _grad(
            lc.ContinuousAdjoint(min_intervals=m),
            system,
            control,
            theta,
            cost,
            obj,
            **TIGHT,
        )
        return float(jnp.abs(grad - ref)[0] / jnp.abs(ref)[0])

    assert error(32) < 1e-8
    assert error(1) > 1e-4
