"""Property-based tests (hypothesis) of the mathematical building blocks.

Over random inputs:

- costs equal their formulas, and `jax.grad` of each equals the analytic
  gradient (to 1e-12 relative: same arithmetic up to round-off);
- the hat basis of `PiecewiseLinear` on random increasing knots is a partition
  of unity with values in [0, 1] and at most two non-zero hats, interpolates
  its coefficients at the knots and is linear between them; after
  `project`, coefficients and the whole signal respect the bounds;
  `PiecewiseConstant` holds each coefficient on its interval;
- `NeuronBasis` places the per-neuron signal along the chosen axis of the
  chosen leaf and zeros elsewhere;
- every learning system in `lc.systems` has the vector field its equation
  prescribes as a (scaled) negative gradient of its expected (or auxiliary)
  loss, at random parameters, weights and controls (1e-10 relative);
- the single-layer closed form (matrix exponential / Magnus) matches the
  solver at random parameters (the single-neuron one is swept in
  test_closed_form.py).

Examples are few (`max_examples` 10–20) and seeded by hypothesis; a failing
example is printed with its inputs.
"""

from __future__ import annotations

import functools
import inspect

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import lecontrol as lc
from lecontrol import closed_form as cf
from test_closed_form import REL, SOLVER, make_control, random_theta
from test_systems import make_task
from test_vector_fields import random_moments

PROPERTY = settings(max_examples=15, deadline=None)
FEW = settings(max_examples=10, deadline=None)


def _reals(lo: float, hi: float):
    """Floats in [lo, hi] without subnormals: XLA flushes those to zero on the
    CPU, so e.g. a bound of 1e-308 would not survive `jnp.clip`."""
    return st.floats(lo, hi, allow_subnormal=False)


finite = _reals(-3.0, 3.0)
shapes = hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=4)


def control_trees():
    """A control pytree: one array, or a tuple of two arrays of random shapes."""
    leaf = shapes.flatmap(lambda s: hnp.arrays(np.float64, s, elements=finite))
    return st.one_of(leaf, st.tuples(leaf, leaf))


def _rel(a, b) -> float:
    a, b = np.ravel(np.asarray(a)), np.ravel(np.asarray(b))
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


# ------------------------------------------------------------------ costs


@PROPERTY
@given(g=control_trees(), beta=_reals(0.0, 5.0), offset=finite)
def test_quadratic_cost_and_gradient(g, beta, offset):
    cost = lc.costs.Quadratic(beta=beta, offset=offset)
    sq = sum(np.sum((x - offset) ** 2) for x in _leaves(g))
    np.testing.assert_allclose(cost(g), beta * sq, rtol=1e-12, atol=1e-300)
    grad = jax.grad(cost)(jax.tree.map(jnp.asarray, g))
    for got, x in zip(_leaves(grad), _leaves(g)):
        np.testing.assert_allclose(got, 2 * beta * (x - offset), rtol=1e-12, atol=1e-14)


@PROPERTY
@given(g=control_trees(), beta=_reals(0.0, 0.1))
def test_exp_quadratic_cost_and_gradient(g, beta):
    cost = lc.costs.ExpQuadratic(beta=beta)
    sq = sum(np.sum(x**2) for x in _leaves(g))
    np.testing.assert_allclose(cost(g), np.expm1(beta * sq), rtol=1e-12, atol=1e-300)
    grad = jax.grad(cost)(jax.tree.map(jnp.asarray, g))
    for got, x in zip(_leaves(grad), _leaves(g)):
        want = 2 * beta * x * np.exp(beta * sq)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@PROPERTY
@given(g=control_trees(), beta=_reals(0.0, 5.0), norm2=_reals(0.0, 10.0))
def test_fixed_norm_cost_and_gradient(g, beta, norm2):
    cost = lc.costs.FixedNorm(beta=beta, norm2=norm2)
    sq = sum(np.sum(x**2) for x in _leaves(g))
    np.testing.assert_allclose(
        cost(g), beta * (sq - norm2) ** 2, rtol=1e-12, atol=1e-300
    )
    grad = jax.grad(cost)(jax.tree.map(jnp.asarray, g))
    scale = 4 * beta * max(abs(sq - norm2), 1.0) * max(np.sqrt(sq), 1.0)
    for got, x in zip(_leaves(grad), _leaves(g)):
        want = 4 * beta * (sq - norm2) * x
        # sq - norm2 cancels: bound the error by the size of its terms.
        assert np.max(np.abs(got - want), initial=0.0) <= 1e-12 * max(scale, 1e-300)


def test_cost_checks_can_fail():
    """Guard: the formulas above are not trivially satisfied."""
    cost = lc.costs.Quadratic(beta=0.5, offset=0.2)
    g = jnp.asarray([1.0, -2.0])
    assert _rel(jax.grad(cost)(g), 2 * 0.5 * g) > 1e-3  # offset forgotten


# ------------------------------------------------------------- hat basis


@st.composite
def knots_(draw, min_knots=2, max_knots=9):
    """Strictly increasing knots from 0 to a random horizon (uneven spacing)."""
    n = draw(st.integers(min_knots, max_knots))
    gaps = draw(st.lists(_reals(0.05, 2.0), min_size=n - 1, max_size=n - 1))
    return np.concatenate([[0.0], np.cumsum(gaps)])


@st.composite
def hat_problem(draw):
    knots = draw(knots_())
    lower = draw(_reals(-2.0, 1.0))
    upper = lower + draw(_reals(0.0, 2.0))
    theta = draw(hnp.arrays(np.float64, knots.shape, elements=finite))
    ts = draw(st.lists(_reals(0.0, 1.0), min_size=1, max_size=8))
    return knots, lower, upper, theta, np.asarray(ts) * knots[-1]


def _hats(control, ts):
    """phi_k(t) for every knot k and time t: the signal of the unit vectors."""
    K = control.knots.shape[0]
    return np.stack(
        [
            np.asarray(jax.vmap(lambda t, k=k: control(jnp.eye(K)[k], t))(ts))
            for k in range(K)
        ]
    )


@PROPERTY
@given(problem=hat_problem())
def test_hat_basis_partition_of_unity_and_interpolation(problem):
    knots, _, _, theta, ts = problem
    control = lc.controls.PiecewiseLinear(knots)
    ts = jnp.asarray(ts)
    phi = _hats(control, ts)  # (K, times)
    np.testing.assert_allclose(phi.sum(0), 1.0, rtol=0, atol=1e-14)
    assert phi.min() >= -1e-15 and phi.max() <= 1 + 1e-15
    assert np.all((np.abs(phi) > 1e-15).sum(0) <= 2)
    # g = sum_k theta_k phi_k
    g = jax.vmap(lambda t: control(jnp.asarray(theta), t))(ts)
    np.testing.assert_allclose(g, theta @ phi, rtol=1e-12, atol=1e-12)
    # Interpolation at the knots, linear in between.
    at_knots = jax.vmap(lambda t: control(jnp.asarray(theta), t))(jnp.asarray(knots))
    np.testing.assert_allclose(at_knots, theta, rtol=1e-13, atol=1e-13)
    mid = (knots[:-1] + knots[1:]) / 2
    at_mid = jax.vmap(lambda t: control(jnp.asarray(theta), t))(jnp.asarray(mid))
    np.testing.assert_allclose(
        at_mid, (theta[:-1] + theta[1:]) / 2, rtol=1e-12, atol=1e-12
    )
    # Breakpoints (where g may be non-smooth) are exactly the knots.
    np.testing.assert_array_equal(control.breakpoints(knots[-1]), knots)


@PROPERTY
@given(problem=hat_problem())
def test_projection_respects_the_bounds(problem):
    knots, lower, upper, theta, ts = problem
    control = lc.controls.PiecewiseLinear(knots, lower=lower, upper=upper)
    projected = np.asarray(control.project(jnp.asarray(theta)))
    assert projected.min() >= lower and projected.max() <= upper
    # Idempotent, and the identity on coefficients already inside.
    np.testing.assert_array_equal(control.project(jnp.asarray(projected)), projected)
    inside = (theta >= lower) & (theta <= upper)
    np.testing.assert_array_equal(projected[inside], theta[inside])
    # The signal of projected coefficients stays inside at every time (the
    # hats are a convex combination).
    g = jax.vmap(lambda t: control(jnp.asarray(projected), t))(jnp.asarray(ts))
    assert float(g.min()) >= lower - 1e-12 and float(g.max()) <= upper + 1e-12


@PROPERTY
@given(problem=hat_problem())
def test_piecewise_constant_holds_each_coefficient(problem):
    knots, _, _, theta, ts = problem
    control = lc.controls.PiecewiseConstant(knots)
    coef = jnp.asarray(theta[:-1])  # K - 1 intervals
    for t in ts:
        i = min(int(np.searchsorted(knots, t, side="right")) - 1, len(knots) - 2)
        assert float(control(coef, jnp.asarray(t))) == float(coef[i])
    # The last interval is closed at T.
    assert float(control(coef, jnp.asarray(knots[-1]))) == float(coef[-1])


@st.composite
def neuron_basis_problem(draw):
    h = draw(st.integers(1, 4))
    n_in = draw(st.integers(1, 4))
    n_out = draw(st.integers(1, 4))
    shape = ((h, n_in), (n_out, h))
    leaf = draw(st.sampled_from([0, 1, -1, -2]))
    axis = draw(st.sampled_from([0, 1, -1]))
    target = shape[leaf]
    n = target[axis]
    knots = draw(knots_(max_knots=5))
    theta = draw(hnp.arrays(np.float64, (len(knots), n), elements=finite))
    t = draw(_reals(0.0, 1.0)) * knots[-1]
    return shape, leaf, axis, knots, theta, t


@PROPERTY
@given(problem=neuron_basis_problem())
def test_neuron_basis_expansion(problem):
    shape, leaf, axis, knots, theta, t = problem
    n = shape[leaf][axis]
    inner = lc.controls.PiecewiseLinear(knots, shape=(n,))
    control = lc.controls.NeuronBasis(inner, shape, leaf=leaf, axis=axis)
    g = control(jnp.asarray(theta), jnp.asarray(t))
    nu = np.asarray(inner(jnp.asarray(theta), jnp.asarray(t)))
    leaves = [np.asarray(x) for x in jax.tree.leaves(g)]
    assert [x.shape for x in leaves] == [tuple(s) for s in shape]
    chosen = leaf % 2
    expanded = np.moveaxis(leaves[chosen], axis, 0)  # neurons first
    np.testing.assert_array_equal(
        expanded, np.broadcast_to(nu[:, None], expanded.shape)
    )
    np.testing.assert_array_equal(leaves[1 - chosen], 0.0)
    # The coefficients and breakpoints are those of the inner control.
    assert control.init(0.3).shape == inner.init(0.3).shape
    np.testing.assert_array_equal(control.breakpoints(1.0), inner.breakpoints(1.0))


# ---------------------------------------------------- vector fields = flows


def _u(key, lo, hi, shape=()):
    return jax.random.uniform(key, shape, minval=lo, maxval=hi, dtype=float)


def _normal_like(key, tree, scale=1.0):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef,
        [scale * jax.random.normal(k, jnp.shape(x)) for k, x in zip(keys, leaves)],
    )


def _two_layer(key, cls, **kw):
    k = jax.random.split(key, 5)
    task = make_task(int(jax.random.randint(k[0], (), 0, 2**30)))
    system = cls(
        task, hidden=3, lam=_u(k[1], 0, 1), tau=_u(k[2], 0.2, 3), scale=0.5, **kw
    )
    w = _normal_like(k[3], system.init_state())
    return system, w, k[4]


def _gains(key, shape, scale=0.5):
    return _normal_like(
        key, jax.tree.map(jnp.zeros, shape, is_leaf=lc.controls.is_shape), scale
    )


def _minus_grad(loss, factor=lambda system, g: 1.0):
    """The prescribed flow -factor * grad_w loss / tau."""

    def flow(system, t, w, g):
        grad = jax.grad(getattr(system, loss), argnums=1)(t, w, g)
        c = factor(system, g)
        return jax.tree.map(lambda d: -c * d / system.tau, grad)

    return flow


def _single_neuron(key):
    k = jax.random.split(key, 6)
    task = lc.tasks.TwoGaussians(mu=_u(k[0], -3, 3), sigma=_u(k[1], 0, 2))
    system = lc.systems.SingleNeuronGain(task, lam=_u(k[2], 0, 2), tau=_u(k[3], 0.2, 3))
    return system, _u(k[4], -3, 3), _u(k[5], -1, 1)


def _single_layer(key):
    k = jax.random.split(key, 5)
    system = lc.systems.SingleLayerGain(
        random_moments(k[0], 4, 3), lam=_u(k[1], 0, 2), tau=_u(k[2], 0.2, 3)
    )
    return system, jax.random.normal(k[3], (3, 4)), _u(k[4], -1, 1, (3, 4))


def _two_layer_linear(key):
    system, w, _ = _two_layer(key, lc.systems.TwoLayerLinear)
    return system, w, jnp.asarray(0.0)


def _two_layer_gain(key):
    system, w, k = _two_layer(key, lc.systems.TwoLayerGain)
    return system, w, _gains(k, system.control_shape)


def _feedback_alignment(key):
    system, w, k = _two_layer(key, lc.systems.FeedbackAlignment)
    return system, w, _gains(k, system.control_shape)


def _feedback_alignment_flow(system, t, w, g):
    """Backprop's flow for W2; for W1 the output error E = -d fit/dW at
    W = W~2 W~1, sent back through the fixed B instead of W~2^T."""
    (W1, W2), (G1, G2) = w, g
    S, We = system.task, ((1.0 + G2) * W2) @ ((1.0 + G1) * W1)
    fit = functools.partial(lc.systems.two_layer.linear_fit, S.Sx, S.Sxy, S.Sy)
    E = -jax.grad(fit)(We)
    dW1 = ((system.B @ E) * (1.0 + G1) - system.lam * W1) / system.tau
    return (dW1, _minus_grad("loss")(system, t, w, g)[1])


def _learning_rate(key):
    system, w, k = _two_layer(key, lc.systems.LearningRate)
    return system, w, _u(k, -0.9, 2.0)


def _tanh(key):
    k0, k1 = jax.random.split(key)
    task = make_task(int(jax.random.randint(k0, (), 0, 2**30)))
    system, w, k = _two_layer(
        k1, lc.systems.TanhTaylor, mean_x=task.mean_x(), mean_y=task.mean_y()
    )
    return system, w, _gains(k, system.control_shape, scale=0.3)


def _maml(key):
    k = jax.random.split(key, 6)
    n = int(jax.random.randint(k[0], (), 1, 4))
    tasks = [make_task(int(s)) for s in jax.random.randint(k[1], (n,), 0, 2**30)]
    system = lc.systems.MAML(tasks, hidden=3, lam=_u(k[2], 0, 1), tau=_u(k[3], 0.2, 3))
    u = _normal_like(k[4], system.init_state(), scale=0.5)
    g = _normal_like(k[5], system.gaussian_init(seed=0, scale=1.0), scale=0.5)
    return system, u, g


def _correlated(key):
    k = jax.random.split(key, 3)
    return lc.tasks.CorrelatedGaussians(
        mu=_u(k[0], -3, 3, (2,)), sigma=_u(k[1], 0, 2, (2,)), p=_u(k[2], 0, 1)
    )


def _task_engagement(key):
    k = jax.random.split(key, 6)
    tasks = lc.tasks.ConcatenatedTasks(
        [
            lc.tasks.TwoGaussians(mu=_u(k[0], -3, 3), sigma=_u(k[1], 0, 2)),
            _correlated(k[2]),
        ]
    )
    system = lc.systems.TaskEngagement(
        tasks, hidden=3, lam=_u(k[3], 0, 1), tau=_u(k[4], 0.2, 3), scale=0.5
    )
    k5, k6 = jax.random.split(k[5])
    return system, _normal_like(k5, system.init_state()), _u(k6, 0, 2, (2,))


def _category_engagement(key):
    system, w, k = _two_layer(key, lc.systems.CategoryEngagement)
    return system, w, _u(k, 0, 2, system.control_shape)


def _task_switch(key):
    k = jax.random.split(key, 7)
    switching = lc.tasks.SwitchingTasks(
        [_correlated(k[0]), _correlated(k[1])], period=_u(k[2], 0.2, 1.0), horizon=3.0
    )
    system = lc.systems.TwoLayerGain(
        switching, hidden=3, lam=_u(k[3], 0, 1), tau=_u(k[4], 0.2, 3), scale=0.5
    )
    return (
        system,
        _normal_like(k[5], system.init_state()),
        _gains(k[6], system.control_shape),
    )


# name -> (factory(key) -> (system, w, g), prescribed flow(system, t, w, g))
FLOWS = {
    "SingleNeuronGain": (_single_neuron, _minus_grad("loss")),
    "SingleLayerGain": (_single_layer, _minus_grad("loss")),
    "TwoLayerLinear": (_two_layer_linear, _minus_grad("loss")),
    "TwoLayerGain": (_two_layer_gain, _minus_grad("loss")),
    # not a gradient flow: the hidden layer's error arrives through B
    "FeedbackAlignment": (_feedback_alignment, _feedback_alignment_flow),
    "TanhTaylor": (_tanh, _minus_grad("loss")),
    # tau dw/dt = -(1 + rho) grad <L>
    "LearningRate": (_learning_rate, _minus_grad("loss", lambda s, g: 1.0 + g)),
    # <L> is the mean over the K tasks; each task's weights follow their own loss.
    "MAML": (_maml, _minus_grad("loss", lambda s, g: s.Sx.shape[0])),
    # gradient flow on the engagement-weighted auxiliary loss
    "TaskEngagement": (_task_engagement, _minus_grad("aux_loss")),
    "CategoryEngagement": (_category_engagement, _minus_grad("aux_loss")),
    # the same system on a task that switches in time
    "TwoLayerGain:switching": (_task_switch, _minus_grad("loss")),
}


def test_every_system_has_a_prescribed_flow():
    """A new system in lc.systems must be added to FLOWS."""
    systems = {
        name
        for name, obj in vars(lc.systems).items()
        if inspect.isclass(obj)
        and issubclass(obj, lc.systems.AbstractLearningSystem)
        and not inspect.isabstract(obj)
    }
    assert systems == {name.split(":")[0] for name in FLOWS}


@pytest.mark.parametrize("name", sorted(FLOWS))
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), t=_reals(0.0, 2.9))
def test_vector_field_is_the_prescribed_gradient_flow(name, seed, t):
    factory, flow = FLOWS[name]
    system, w, g = factory(jax.random.key(seed))
    t = jnp.asarray(t)
    got = system.vector_field(t, w, g)
    want = flow(system, t, w, g)
    assert jax.tree.structure(got) == jax.tree.structure(w)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert x.shape == y.shape
        assert _rel(x, y) <= 1e-10, f"{name}: relative error {_rel(x, y):.3g}"


def test_flow_check_can_fail():
    """Guard: a wrong factor (e.g. forgetting LearningRate's 1 + rho) is caught."""
    system, w, g = _learning_rate(jax.random.key(0))
    got = system.vector_field(0.0, w, g)
    plain = _minus_grad("loss")(system, 0.0, w, g)
    assert (
        max(_rel(x, y) for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(plain)))
        > 1e-3
    )


# ------------------------------------------------- closed form vs solver


@FEW
@given(
    seed=st.integers(0, 2**31 - 1),
    scale=_reals(0.2, 4.0),
    lam=_reals(0.0, 1.0),
    tau=_reals(0.5, 2.0),
    T=_reals(0.2, 3.0),
    kind=st.sampled_from([lc.controls.PiecewiseConstant, lc.controls.PiecewiseLinear]),
)
def test_single_layer_closed_form_matches_the_solver(seed, scale, lam, tau, T, kind):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    task = random_moments(k1, 3, 2)
    system = lc.systems.SingleLayerGain(
        task, lam=lam, tau=tau, W0=0.5 * jax.random.normal(k2, (2, 3))
    )
    control = make_control(kind, T, system.control_shape)
    theta = random_theta(k3, control, -0.5, 0.5)
    cost, objective = lc.costs.ExpQuadratic(beta=0.1), lc.Objective(T=T, gamma=0.9)
    ts = jnp.linspace(0.0, T, 9)
    traj = lc.solve(
        lc.Problem(system, control, cost, objective),
        theta,
        ts=ts,
        options=lc.SolverOptions(**SOLVER),
    )
    W = cf.single_layer_weights(system, control, theta, ts)
    assert _rel(W, traj.w) <= REL
    V = cf.single_layer_value(lc.Problem(system, control, cost, objective), theta)
    assert abs(float(V) - float(traj.V[-1])) <= REL * max(abs(float(V)), 1e-3)


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_factories_draw_valid_problems(name):
    """Each factory builds its system (constructors validate) with finite values."""
    system, w, g = FLOWS[name][0](jax.random.key(1))
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves((w, g)))
    assert np.isfinite(float(system.loss(jnp.asarray(0.1), w, g)))
