"""`lc.optimizers.LBFGSB` (projected L-BFGS) and the projected-gradient
reporting of the loop (`projected_grad_norms`, `projected_grad_norm`).

Most tests use a box-constrained convex quadratic: a gradient strategy whose
`value` is $V(\\theta) = -(\\tfrac12\\theta^\\top A\\theta - \\beta\\,b^\\top\\theta)$
(β read from the problem's cost, so a batch can vary it), which the loop runs
like any problem, with no ODE to compile; its exact bound-constrained optimum
comes from scipy's bounded-variable least squares (an active-set method).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
from jax.flatten_util import ravel_pytree

import lecontrol as lc
from lecontrol import checkpoint as ckpt

N, LOWER, UPPER = 12, -0.5, 0.5
_rng = np.random.default_rng(0)
_M = _rng.normal(size=(N, N))
A = _M @ _M.T + 0.5 * np.eye(N)
B = 3.0 * _rng.normal(size=N)


class _Quadratic(lc.AbstractGradientStrategy):
    """$V = -(\\theta^\\top A\\theta/2 - \\beta\\,b^\\top\\theta)$, β from the cost."""

    def value(self, problem, numerics):
        th = problem.theta
        beta = problem.cost.beta
        return -(0.5 * th @ jnp.asarray(A) @ th - beta * jnp.asarray(B) @ th)


def _quadratic_problem(beta=1.0):
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    system = lc.systems.SingleNeuronGain(task, lam=0.1)
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0.0, 1.0, N), lower=LOWER, upper=UPPER
    )
    problem = lc.Problem(system, control, lc.costs.Quadratic(beta), lc.Objective(T=1.0))
    return problem, control.init(0.0)


def _exact(beta=1.0):
    """The optimum of the quadratic in the box (bounded least squares)."""
    C = scipy.linalg.cholesky(A)  # A = C^T C
    d = scipy.linalg.solve_triangular(C, beta * B, trans="T")
    return scipy.optimize.lsq_linear(
        C, d, bounds=(LOWER, UPPER), method="bvls", tol=1e-15
    ).x


def _pg(theta, grad):
    return float(np.linalg.norm(np.clip(theta + grad, LOWER, UPPER) - theta))


def _quadratic_grad(theta, beta=1.0):
    return -(A @ theta - beta * B)


def _check_box_optimum(theta, exact):
    """θ in the box, equal to the exact optimum, and its active coefficients
    exactly on their bounds (the negative control: ignoring the bounds fails)."""
    theta = np.asarray(theta)
    assert np.all(theta >= LOWER) and np.all(theta <= UPPER)
    on_bound = (exact == LOWER) | (exact == UPPER)
    assert 2 <= on_bound.sum() < N  # the bounds matter here
    np.testing.assert_array_equal(theta[on_bound], exact[on_bound])
    np.testing.assert_allclose(theta, exact, rtol=0, atol=1e-8)


def test_exact_optimum_of_a_box_constrained_quadratic():
    problem, theta0 = _quadratic_problem()
    exact = _exact()
    # The unconstrained optimum is far outside the box: bounds are active.
    assert np.max(np.abs(np.linalg.solve(A, B))) > 1.0
    res = lc.optimize(
        problem,
        theta0,
        optimizer=lc.optimizers.LBFGSB(),
        steps=200,
        gtol=1e-10,
        adjoint=_Quadratic(),
    )
    assert res.status == "converged", res.message
    assert res.iterations < 60
    _check_box_optimum(res.theta, exact)
    np.testing.assert_array_equal(res.theta, res.final_theta)
    # The reported projected gradient is the loop's (what gtol saw) and the
    # direct one at the returned θ.
    direct = _pg(np.asarray(res.theta), _quadratic_grad(np.asarray(res.theta)))
    assert res.projected_grad_norm <= 1e-10
    np.testing.assert_allclose(res.projected_grad_norm, direct, rtol=0, atol=1e-13)
    assert res.projected_grad_norms.shape == (res.iterations,)
    assert res.projected_grad_norms[-1] == res.projected_grad_norm
    assert np.all(res.projected_grad_norms[:-1] > 1e-10)
    # V never decreases: every accepted step passed the sufficient-decrease test.
    assert np.all(np.diff(res.values) >= -1e-15 * np.abs(res.values[1:]))


def test_projected_gradient_ascent_reports_the_final_evaluation():
    """A completed run whose best θ is the final one (evaluated after the
    loop): its projected-gradient norm is that of the final coefficients."""
    problem, theta0 = _quadratic_problem()
    pga = lc.optimizers.ProjectedGradientAscent(lr=0.01)
    res = lc.optimize(problem, theta0, optimizer=pga, steps=30, adjoint=_Quadratic())
    assert res.status == "completed" and res.best_iteration == res.iterations == 30
    theta = np.asarray(res.theta)
    np.testing.assert_array_equal(theta, res.final_theta)
    np.testing.assert_allclose(
        res.projected_grad_norm, _pg(theta, _quadratic_grad(theta)), rtol=1e-10
    )
    # Each iteration's entry is the projected gradient at that iterate.
    direct0 = _pg(np.asarray(theta0), _quadratic_grad(np.asarray(theta0)))
    np.testing.assert_allclose(res.projected_grad_norms[0], direct0, rtol=1e-12)
    assert res.projected_grad_norm < res.projected_grad_norms[0]
    # No iterations: the starting point's.
    none = lc.optimize(problem, theta0, optimizer=pga, steps=0, adjoint=_Quadratic())
    assert none.iterations == 0 and none.projected_grad_norms.shape == (0,)
    np.testing.assert_allclose(none.projected_grad_norm, direct0, rtol=1e-12)


class _QuadraticTree(lc.AbstractGradientStrategy):
    """The quadratic of a pytree θ: $V = -(x^\\top A x/2 - b^\\top x)$, $x$ its
    flattened leaves."""

    A: np.ndarray
    b: np.ndarray

    def value(self, problem, numerics):
        x = ravel_pytree(problem.theta)[0]
        return -(0.5 * x @ jnp.asarray(self.A) @ x - jnp.asarray(self.b) @ x)


def test_pytree_coefficients():
    """Two leaves of coefficients (a two-layer gain's shape), flattened
    internally: the exact optimum, leaf by leaf on the bounds."""
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    system = lc.systems.TwoLayerGain(task, hidden=2, lam=0.01, scale=0.3)
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0.0, 1.0, 3),
        shape=system.control_shape,
        lower=LOWER,
        upper=UPPER,
    )
    theta0 = control.init(0.0)
    n = ravel_pytree(theta0)[0].size
    rng = np.random.default_rng(1)
    M = rng.normal(size=(n, n))
    A2, b2 = M @ M.T + 0.5 * np.eye(n), 3.0 * rng.normal(size=n)
    C = scipy.linalg.cholesky(A2)
    d = scipy.linalg.solve_triangular(C, b2, trans="T")
    exact = scipy.optimize.lsq_linear(
        C, d, bounds=(LOWER, UPPER), method="bvls", tol=1e-15
    ).x
    problem = lc.Problem(system, control, lc.costs.Quadratic(0.0), lc.Objective(T=1.0))
    res = lc.optimize(
        problem,
        theta0,
        optimizer=lc.optimizers.LBFGSB(),
        steps=300,
        gtol=1e-10,
        adjoint=_QuadraticTree(A2, b2),
    )
    assert res.status == "converged", res.message
    assert len(jax.tree.leaves(theta0)) == 2
    assert jax.tree.structure(res.theta) == jax.tree.structure(theta0)
    x = ravel_pytree(res.theta)[0]
    on_bound = (exact == LOWER) | (exact == UPPER)
    assert 2 <= on_bound.sum() < n
    np.testing.assert_array_equal(x[on_bound], exact[on_bound])
    np.testing.assert_allclose(x, exact, rtol=0, atol=1e-8)


def test_lbfgsb_step_reevaluates_a_point_other_than_the_cached_one():
    """The state caches V and the gradient of the point it returned; a step
    from another θ (e.g. the loop's best θ, or a user's) evaluates that θ."""
    problem, theta0 = _quadratic_problem()
    control = problem.control
    opt = lc.optimizers.LBFGSB()

    def vg(theta):
        return jax.value_and_grad(
            lambda th: -(0.5 * th @ jnp.asarray(A) @ th - jnp.asarray(B) @ th)
        )(theta)

    step = jax.jit(lambda th, st: opt.step(vg, th, st, control))
    theta1, state, V0, g0 = step(theta0, opt.init(theta0, control))
    np.testing.assert_allclose(V0, vg(theta0)[0], rtol=1e-15)
    _, _, V1, g1 = step(theta1, state)  # the cached point
    np.testing.assert_array_equal(V1, state.f * -1)
    other = theta1 * 0.5
    _, _, V2, g2 = step(other, state)
    np.testing.assert_allclose(V2, vg(other)[0], rtol=1e-15)
    np.testing.assert_allclose(g2, vg(other)[1], rtol=1e-14)


@pytest.mark.slow
def test_single_neuron_lbfgsb_against_projected_gradient_ascent():
    """The paper's single neuron (Sec. 2.1; quick size: 31 knots, g in
    [0, 0.5]): LBFGSB reaches a projected gradient of 1e-8 in tens of
    iterations, where 700 of projected gradient ascent (the paper's learning
    rate) do not, and its V is at least as high.

    Measured: LBFGSB converged in 16 iterations, V = -0.09416555458466903,
    projected gradient 3.1e-9; ascent: 700 iterations, V = -0.09418366014440675,
    projected gradient 3.6e-4."""
    T, knots = 0.6, 31
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    system = lc.systems.SingleNeuronGain(task, lam=0.1, tau=1.0, w0=0.0)
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0.0, T, knots), shape=system.control_shape, lower=0.0, upper=0.5
    )
    problem = lc.Problem(
        system, control, lc.costs.Quadratic(0.3), lc.Objective(T=T, gamma=0.99)
    )
    options = lc.SolverOptions(rtol=1e-7, atol=1e-9, max_steps=4096)
    theta0 = control.init(0.0)
    lbfgsb = lc.optimize(
        problem,
        theta0,
        optimizer=lc.optimizers.LBFGSB(),
        steps=200,
        gtol=1e-8,
        options=options,
    )
    lr = 10.0 * 1e-3 / (T / (knots - 1))  # the paper's lr on hat coefficients
    pga = lc.optimize(
        problem,
        theta0,
        optimizer=lc.optimizers.ProjectedGradientAscent(lr=lr),
        steps=700,
        options=options,
    )
    assert lbfgsb.status == "converged", lbfgsb.message
    assert lbfgsb.iterations <= 40 and lbfgsb.projected_grad_norm <= 1e-8
    assert pga.status == "completed"
    assert np.min(pga.projected_grad_norms) > 1e-6 and pga.projected_grad_norm > 1e-6
    assert lbfgsb.best_value >= pga.best_value - 1e-12
    # The gain sits exactly on its upper bound at t = 0 and inside after.
    theta = np.asarray(lbfgsb.theta)
    assert theta[0] == 0.5 and np.all(theta >= 0.0) and np.all(theta[1:] < 0.5)
    # No artefact of the basis at the ends (the end hats have half the support,
    # so half the gradient): at the optimum the first knot is on its bound and
    # the second differences keep one sign at both ends, as inside (g is
    # convex). Negative control: 700 iterations of Euclidean ascent leave the
    # first knot 0.086 below the bound and a zig-zag at both ends (measured
    # second differences -0.139, 0.062 at the start).
    assert np.all(np.diff(theta, 2) > 0)
    ascent = np.asarray(pga.theta)
    assert 0.5 - ascent[0] > 0.05
    d2 = np.diff(ascent, 2)
    for end in (d2[:3], d2[-3:]):
        assert np.any(np.diff(np.sign(end)) != 0)
    # The reported projected gradient at the returned θ, computed directly.

    @jax.jit
    def projected_gradient(th):
        grad = jax.grad(lambda th: lc.value(problem, th, options=options))(th)
        return jnp.linalg.norm(control.project(th + grad) - th)

    for res in (lbfgsb, pga):
        direct = projected_gradient(res.theta)
        np.testing.assert_allclose(res.projected_grad_norm, direct, rtol=1e-6)


def test_lbfgsb_under_vmap_in_a_batch():
    """`lc.sweep.optimize_batch`: each problem of the batch converges to its
    own exact optimum, as `lc.optimize` does alone."""
    betas = jnp.array([0.5, 1.0, 2.0])
    opt = lc.optimizers.LBFGSB()
    kw = dict(optimizer=opt, steps=120, gtol=1e-10, adjoint=_Quadratic())
    res = lc.sweep.optimize_batch(_quadratic_problem, betas, **kw)
    assert list(res.status) == ["converged"] * 3, res.message
    assert res.projected_grad_norms.shape == (3, 120)
    for i, beta in enumerate(np.asarray(betas)):
        _check_box_optimum(res.theta[i], _exact(beta))
        theta = np.asarray(res.theta[i])
        direct = _pg(theta, _quadratic_grad(theta, beta))
        assert res.projected_grad_norm[i] <= 1e-10
        np.testing.assert_allclose(res.projected_grad_norm[i], direct, atol=1e-13)
        alone = lc.optimize(*_quadratic_problem(beta), **kw)
        assert alone.iterations == res.iterations[i]
        np.testing.assert_allclose(alone.values, res.values[i, : alone.iterations])
        np.testing.assert_allclose(res.theta[i], alone.theta, rtol=0, atol=1e-12)
        assert np.all(np.isnan(res.projected_grad_norms[i, alone.iterations :]))


def test_lbfgsb_resumes_bitwise_from_a_checkpoint(tmp_path):
    """The LBFGSB state (history, cached evaluation, flags) survives the npz
    round trip: a resumed run ends bitwise as an uninterrupted one."""
    problem, theta0 = _quadratic_problem()

    def run(checkpoint, **kw):
        return lc.optimize(
            problem,
            theta0,
            optimizer=lc.optimizers.LBFGSB(history_length=5),
            steps=12,
            adjoint=_Quadratic(),
            checkpoint=checkpoint,
            **kw,
        )

    full = run(ckpt.Checkpointer(tmp_path / "full.npz", 4))
    assert full.result == lc.RESULTS.completed
    path = tmp_path / "part.npz"
    part = run(ckpt.Checkpointer(path, 4), callback=lambda i, *_: i < 6)
    assert part.iterations == 7
    with np.load(path) as f:
        assert int(f["iteration"]) == 4
    resumed = run(ckpt.Checkpointer(path, 4, resume=True))
    for a, b in [
        (full.theta, resumed.theta),
        (full.final_theta, resumed.final_theta),
        (full.state, resumed.state),
    ]:
        assert jax.tree.structure(a) == jax.tree.structure(b)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            assert x.dtype == y.dtype and np.array_equal(x, y)
    for field in ("values", "grad_norms", "projected_grad_norms"):
        np.testing.assert_array_equal(getattr(full, field), getattr(resumed, field))
    assert (full.best_value, full.best_iteration, full.projected_grad_norm) == (
        resumed.best_value,
        resumed.best_iteration,
        resumed.projected_grad_norm,
    )


@pytest.mark.parametrize(
    "make, exc, name",
    [
        (lambda: lc.optimizers.LBFGSB(history_length=0), ValueError, "`history_length`"),
        (lambda: lc.optimizers.LBFGSB(history_length=2.0), TypeError, "`history_length`"),
        (lambda: lc.optimizers.LBFGSB(c1=0.0), ValueError, "`c1`"),
        (lambda: lc.optimizers.LBFGSB(c1=0.5), ValueError, "`c1`"),
        (lambda: lc.optimizers.LBFGSB(shrink=1.0), ValueError, "`shrink`"),
        (lambda: lc.optimizers.LBFGSB(shrink=math.nan), ValueError, "`shrink`"),
        (lambda: lc.optimizers.LBFGSB(shrink="0.5"), TypeError, "`shrink`"),
        (lambda: lc.optimizers.LBFGSB(max_line_search=0), ValueError, "`max_line_search`"),
        (lambda: lc.optimizers.LBFGSB(max_line_search=True), TypeError, "`max_line_search`"),
    ],
)  # fmt: skip
def test_bad_lbfgsb_parameters(make, exc, name):
    with pytest.raises(exc) as info:
        make()
    assert name in str(info.value)


# ------------------------------------- projected gradient ascent, lumped metric


class _Integral(lc.AbstractGradientStrategy):
    """$V = \\int_0^T g\\,dt$ for a piecewise-linear $g$ (the trapezoid rule of
    its knot values is exact): $\\partial V/\\partial\\theta_k$ is the support
    of the $k$-th hat, half as large at the ends as inside."""

    def value(self, problem, numerics):
        return jnp.trapezoid(problem.theta, problem.control.knots)


def _integral_problem(knots):
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    system = lc.systems.SingleNeuronGain(task, lam=0.1)
    control = lc.controls.PiecewiseLinear(knots, lower=-10.0, upper=10.0)
    T = float(knots[-1])
    problem = lc.Problem(system, control, lc.costs.Quadratic(0.0), lc.Objective(T=T))
    return problem, control


def test_lumped_mass_of_the_hat_basis():
    """The support of each hat over the mean spacing: 1/2 at the ends of a
    uniform grid; on uneven knots (mean spacing 1.5), half the distance
    between the neighbours."""
    uniform = lc.controls.PiecewiseLinear(jnp.linspace(0.0, 2.0, 5))
    np.testing.assert_allclose(
        lc.optimizers.lumped_mass(uniform), [0.5, 1, 1, 1, 0.5], rtol=1e-14
    )
    uneven = lc.controls.PiecewiseLinear(jnp.asarray([0.0, 1.0, 3.0]))
    np.testing.assert_allclose(
        lc.optimizers.lumped_mass(uneven), np.array([0.5, 1.5, 1.0]) / 1.5, rtol=1e-14
    )
    steps = lc.controls.PiecewiseConstant(jnp.asarray([0.0, 1.0, 3.0]))
    np.testing.assert_allclose(lc.optimizers.lumped_mass(steps), [2 / 3, 4 / 3])
    assert float(lc.optimizers.lumped_mass(lc.controls.Constant())[0]) == 1.0


@pytest.mark.parametrize("knots", [np.linspace(0.0, 3.0, 7), [0.0, 0.5, 2.0, 2.5, 4.0]])
def test_lumped_projected_ascent_moves_every_knot_alike(knots):
    """Ascent on $V = \\int g\\,dt$, whose functional derivative is 1 everywhere:
    in the lumped metric one step raises every knot's value by the same
    lr × mean spacing (the paper's per-SGD-step update); in the Euclidean
    metric (the negative control) the end knots move half as far, and on
    uneven knots the interior ones unevenly."""
    knots = jnp.asarray(knots, dtype=float)
    problem, control = _integral_problem(knots)
    spacing = float(knots[-1] / (knots.shape[0] - 1))
    lr = 0.3
    moved = {}
    for metric in ("lumped", "euclidean"):
        res = lc.optimize(
            problem,
            control.init(0.0),
            optimizer=lc.optimizers.ProjectedGradientAscent(lr=lr, metric=metric),
            steps=2,
            adjoint=_Integral(),
        )
        moved[metric] = np.asarray(res.theta) / 2  # two steps
    np.testing.assert_allclose(moved["lumped"], lr * spacing, rtol=1e-12)
    euclid = moved["euclidean"]
    assert euclid[0] == pytest.approx(lr * float(knots[1] - knots[0]) / 2)  # support
    assert not np.allclose(euclid, lr * spacing, rtol=1e-3)


def test_projected_ascent_metric_is_checked():
    with pytest.raises(ValueError, match="`metric`"):
        lc.optimizers.ProjectedGradientAscent(lr=1.0, metric="diagonal")


def test_discounted_mass_weights_the_lumped_mass_by_the_discount():
    """$m_k\\gamma^{t_k}$ at the knots (a step control: at each interval's
    start); `LBFGSB`'s default metric binds it from the problem."""
    knots = jnp.linspace(0.0, 2.0, 5)
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    system = lc.systems.SingleNeuronGain(task, lam=0.1)
    control = lc.controls.PiecewiseLinear(knots)
    problem = lc.Problem(
        system, control, lc.costs.Quadratic(0.1), lc.Objective(T=2.0, gamma=0.25)
    )
    expected = np.array([0.5, 1, 1, 1, 0.5]) * 0.25 ** np.asarray(knots)
    np.testing.assert_allclose(
        lc.optimizers.discounted_mass(problem), expected, rtol=1e-14
    )
    bound = lc.optimizers.LBFGSB().bind(problem)
    np.testing.assert_allclose(bound.metric, expected, rtol=1e-14)
    assert lc.optimizers.LBFGSB(metric=None).bind(problem).metric is None
    steps = eqx.tree_at(
        lambda p: p.control, problem, lc.controls.PiecewiseConstant(knots)
    )
    np.testing.assert_allclose(
        lc.optimizers.discounted_mass(steps),
        np.ones(4) * 0.25 ** np.asarray(knots[:-1]),
        rtol=1e-14,
    )
    with pytest.raises(ValueError, match="`metric`"):
        lc.optimizers.LBFGSB(metric="lumped")


class _Discounted(lc.AbstractGradientStrategy):
    """$V = -\\tfrac12\\sum_k m_k\\gamma^{t_k}(\\theta_k - c_k)^2$: a Hessian
    scaled like the discounted mass, as a strongly discounted problem's."""

    def value(self, problem, numerics):
        w = lc.optimizers.discounted_mass(problem)
        c = jnp.linspace(-0.3, 0.3, w.shape[0])
        return -0.5 * jnp.sum(w * (problem.theta - c) ** 2)


def test_discounted_metric_removes_the_discount_scaling():
    """With $\\gamma = 10^{-8}$ the curvatures span eight orders of magnitude:
    in the discounted metric L-BFGS-B converges within a few iterations; in the
    Euclidean one (the negative control) it needs many more."""
    knots = jnp.linspace(0.0, 1.0, 40)
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    control = lc.controls.PiecewiseLinear(knots, lower=-1.0, upper=1.0)
    problem = lc.Problem(
        lc.systems.SingleNeuronGain(task, lam=0.1),
        control,
        lc.costs.Quadratic(0.0),
        lc.Objective(T=1.0, gamma=1e-8),
    )
    kw = dict(steps=300, gtol=1e-12, adjoint=_Discounted())
    iterations = {}
    for name, metric in (("discounted", "discounted"), ("euclidean", None)):
        opt = lc.optimizers.LBFGSB(metric=metric)
        res = lc.optimize(problem, control.init(0.0), optimizer=opt, **kw)
        iterations[name] = int(res.iterations)
        if name == "discounted":
            assert lc.result_name(res.result) == "converged"
            np.testing.assert_allclose(res.theta, np.linspace(-0.3, 0.3, 40), atol=1e-6)
    assert iterations["discounted"] <= 5, iterations
    assert iterations["euclidean"] >= 4 * iterations["discounted"], iterations


class _NoisyQuadratic(_Quadratic):
    """The quadratic plus an error of 1e-7 that the gradient does not see and
    that changes abruptly with theta: like the error of an adaptive solve."""

    def value(self, problem, numerics):
        noise = jax.lax.stop_gradient(jnp.sin(1e9 * jnp.sum(problem.theta)))
        return super().value(problem, numerics) + 1e-7 * noise


@pytest.mark.parametrize("noisy", [True, False])
def test_lbfgsb_stalls_on_the_error_of_v_and_the_loop_says_so(noisy):
    problem, theta0 = _quadratic_problem()
    strategy = _NoisyQuadratic() if noisy else _Quadratic()
    res = lc.optimize(
        problem,
        theta0,
        optimizer=lc.optimizers.LBFGSB(),
        steps=300,
        gtol=1e-13 if noisy else 1e-10,
        adjoint=strategy,
    )
    if noisy:
        # It stops as soon as the line search fails twice, not after 300
        # iterations of standing still, and says why.
        assert res.result == lc.RESULTS.stalled and res.status == "stalled"
        assert res.iterations < 100 and "rtol" in res.message
        assert res.projected_grad_norm > 1e-13
    else:  # the negative control: the same quadratic without the error
        assert res.result == lc.RESULTS.converged, res.message
