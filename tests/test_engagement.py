"""Task engagement, category engagement and task switch (the paper's Secs. 5-6; docs/systems/).

Checked: each vector field is minus the gradient (jax.grad) of its auxiliary
expected loss over tau; each expected loss matches Monte-Carlo averages of the
per-sample loss (within 5 standard errors) or exact averages over a data set;
the continuous adjoint agrees with the checkpointed solve (rtol = 1e-8 solves,
1e-6 relative) and with central finite differences; the task switch steps
onto its switch times and equals a segment-by-segment solve.
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lecontrol as lc

# ------------------------------------------------------------------ helpers


def random_weights(system, seed, scale=0.5):
    k1, k2 = jax.random.split(jax.random.key(seed))
    W1, W2 = system.init_state()
    return (
        scale * jax.random.normal(k1, W1.shape),
        scale * jax.random.normal(k2, W2.shape),
    )


def assert_tree_close(a, b, rtol=1e-11):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        scale = max(1.0, float(jnp.max(jnp.abs(y))))
        np.testing.assert_allclose(x, y, rtol=0, atol=rtol * scale)


def assert_mc_mean(per_sample, exact, z=5.0):
    per_sample = np.asarray(per_sample)
    mc = per_sample.mean()
    se = per_sample.std() / np.sqrt(per_sample.size)
    assert abs(mc - float(exact)) <= z * se, (mc, float(exact), se)


def per_sample_loss(W1, W2, x, y, c, lam):
    """(1/2) sum_o c_o (y_o - (W2 W1 x)_o)^2 + (lam/2)(|W1|^2 + |W2|^2), per sample."""
    err = y - x @ (W2 @ W1).T
    reg = 0.5 * lam * (jnp.sum(W1**2) + jnp.sum(W2**2))
    return 0.5 * jnp.sum(c * err**2, axis=1) + reg


def engagement_tasks():
    # Non-zero <x> and <y> in the second task: the cross blocks matter.
    return lc.tasks.ConcatenatedTasks(
        [
            lc.tasks.CorrelatedGaussians(mu=(1.0, -0.5), p=0.3),
            lc.tasks.SemanticHierarchy(2),
        ]
    )


def switching_tasks(horizon=1.0, period=0.35):
    return lc.tasks.SwitchingTasks(
        [
            lc.tasks.CorrelatedGaussians(),
            lc.tasks.CorrelatedGaussians(mu=(-2.0, 2.0), p=0.2),
        ],
        period=period,
        horizon=horizon,
    )


# ----------------------------------------------------------- task engagement


def test_task_engagement_vector_field_is_minus_grad_of_aux_loss():
    sys_ = lc.systems.TaskEngagement(
        engagement_tasks(), hidden=4, lam=0.05, tau=1.5, seed=1, scale=0.3
    )
    assert sys_.control_shape == (2,)
    for seed in range(3):
        w = random_weights(sys_, seed)
        psi = jax.random.uniform(jax.random.key(10 + seed), (2,), maxval=2.0)
        grad = jax.grad(sys_.aux_loss, argnums=1)(0.0, w, psi)
        want = jax.tree.map(lambda d: -d / sys_.tau, grad)
        assert_tree_close(sys_.vector_field(0.0, w, psi), want)
    # At psi = 1 the auxiliary loss is the performance loss, the sum of the
    # per-task losses plus the regulariser.
    ones = jnp.ones(2)
    W1, W2 = w
    reg = 0.5 * 0.05 * (jnp.sum(W1**2) + jnp.sum(W2**2))
    np.testing.assert_allclose(sys_.aux_loss(0.0, w, ones), sys_.loss(0.0, w, psi))
    np.testing.assert_allclose(
        sys_.loss(0.0, w, psi), jnp.sum(sys_.task_losses(w)) + reg, rtol=1e-13
    )
    # A disengaged task's output rows only decay.
    dW1, dW2 = sys_.vector_field(0.0, w, jnp.array([1.3, 0.0]))
    rows = slice(*sys_.task.output_slices[1])
    np.testing.assert_allclose(dW2[rows], -0.05 * W2[rows] / 1.5, rtol=1e-13)
    assert not np.allclose(dW2[:2], -0.05 * W2[:2] / 1.5)


def test_task_engagement_losses_match_monte_carlo():
    tasks = engagement_tasks()
    sys_ = lc.systems.TaskEngagement(tasks, hidden=3, lam=0.1, seed=2, scale=0.4)
    w = random_weights(sys_, 5)
    x, y = tasks.sample(jax.random.key(7), 200_000)
    psi = jnp.array([0.4, 1.7])
    c = psi[tasks.output_task()]
    assert_mc_mean(per_sample_loss(*w, x, y, jnp.ones(5), 0.1), sys_.loss(0.0, w, psi))
    assert_mc_mean(per_sample_loss(*w, x, y, c, 0.1), sys_.aux_loss(0.0, w, psi))
    for i in range(2):
        mask = tasks.output_mask(i)
        assert_mc_mean(per_sample_loss(*w, x, y, mask, 0.0), sys_.task_losses(w)[i])


def test_task_engagement_digit_pairs_runs_and_learns():
    pairs = [lc.tasks.Digits.load(p) for p in [(0, 1), (7, 1), (8, 9)]]
    tasks = lc.tasks.ConcatenatedTasks(pairs)
    sys_ = lc.systems.TaskEngagement(tasks, hidden=6, seed=0, scale=0.1)
    T = 2.0
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0, T, 3), shape=sys_.control_shape, lower=0.0, upper=2.0
    )
    ts = jnp.linspace(0, T, 5)
    psi = jnp.array([1.0, 1.0, 0.0])
    traj = lc.solve(
        lc.Problem(
            sys_,
            control,
            lc.costs.Quadratic(beta=0.1, offset=1.0),
            lc.Objective(T=T, gamma=0.99),
        ),
        control.init(psi),
        ts=ts,
    )
    assert np.all(np.diff(np.asarray(traj.loss)) < 0)
    L0 = sys_.task_losses(sys_.init_state())
    LT = sys_.task_losses(jax.tree.map(lambda a: a[-1], traj.w))
    # Engaged tasks are learnt; the disengaged task's read-out never moves.
    assert np.all(np.asarray(LT[:2]) < 0.5 * np.asarray(L0[:2]))
    rows = slice(*tasks.output_slices[2])
    np.testing.assert_allclose(traj.w[1][-1][rows], sys_.W2_0[rows], rtol=0, atol=0)


def test_task_engagement_rejects_plain_task():
    with pytest.raises(TypeError, match="ConcatenatedTasks"):
        lc.systems.TaskEngagement(lc.tasks.CorrelatedGaussians(), hidden=2)
    with pytest.raises(ValueError, match="W2_0"):
        lc.systems.TaskEngagement(
            engagement_tasks(), W1_0=jnp.zeros((3, 5)), W2_0=jnp.zeros((4, 3))
        )
    with pytest.raises(ValueError, match="hidden"):
        lc.systems.TaskEngagement(engagement_tasks())


# ------------------------------------------------------- category engagement


@pytest.mark.parametrize("levels", [3, 4])
def test_category_engagement_vector_field_is_minus_grad_of_aux_loss(levels):
    task = lc.tasks.SemanticHierarchy(levels)
    sys_ = lc.systems.CategoryEngagement(task, hidden=5, lam=0.02, tau=0.7, seed=3)
    assert sys_.control_shape == (2**levels - 1,)
    for seed in range(3):
        w = random_weights(sys_, seed)
        phi = jax.random.uniform(
            jax.random.key(20 + seed), sys_.control_shape, maxval=2.0
        )
        grad = jax.grad(sys_.aux_loss, argnums=1)(0.0, w, phi)
        want = jax.tree.map(lambda d: -d / sys_.tau, grad)
        assert_tree_close(sys_.vector_field(0.0, w, phi), want)
    # phi enters squared: the sign of phi does not matter, phi = 1 is the baseline.
    assert_tree_close(sys_.vector_field(0.0, w, -phi), sys_.vector_field(0.0, w, phi))
    ones = jnp.ones(sys_.control_shape)
    np.testing.assert_allclose(sys_.aux_loss(0.0, w, ones), sys_.loss(0.0, w, phi))


def test_category_engagement_loss_matches_monte_carlo_and_data():
    task = lc.tasks.SemanticHierarchy(3)
    sys_ = lc.systems.CategoryEngagement(task, hidden=4, lam=0.1, seed=0)
    w = random_weights(sys_, 1)
    phi = jnp.linspace(0.2, 1.8, 7)
    x, y = task.sample(jax.random.key(2), 100_000)
    assert_mc_mean(per_sample_loss(*w, x, y, jnp.ones(7), 0.1), sys_.loss(0.0, w, phi))
    assert_mc_mean(per_sample_loss(*w, x, y, phi**2, 0.1), sys_.aux_loss(0.0, w, phi))
    # Digits: the statistics are exact training-set moments, so the expected
    # loss is exactly the average over the training set.
    digits = lc.tasks.Digits.load(seed=0)
    sysd = lc.systems.CategoryEngagement(digits, hidden=6, lam=0.01, seed=1, scale=0.2)
    wd = random_weights(sysd, 4, scale=0.2)
    phid = jnp.linspace(0.0, 2.0, 10)
    X, Y = digits.x_train, digits.y_train
    np.testing.assert_allclose(
        per_sample_loss(*wd, X, Y, jnp.ones(10), 0.01).mean(),
        sysd.loss(0.0, wd, phid),
        rtol=1e-11,
    )
    np.testing.assert_allclose(
        per_sample_loss(*wd, X, Y, phid**2, 0.01).mean(),
        sysd.aux_loss(0.0, wd, phid),
        rtol=1e-11,
    )
    np.testing.assert_allclose(
        jnp.sum(sysd.class_losses(wd)),
        per_sample_loss(*wd, X, Y, jnp.ones(10), 0.0).mean(),
        rtol=1e-11,
    )


# ---------------------------------------------------------------- task switch


def test_task_switch_vector_field_is_minus_grad_of_loss():
    sw = switching_tasks()
    sys_ = lc.systems.TwoLayerGain(sw, hidden=4, lam=0.01, tau=1.3, seed=0, scale=0.3)
    shapes = sys_.control_shape
    assert shapes == ((4, 3), (2, 4))
    np.testing.assert_allclose(sys_.jump_times(), [0.35, 0.7])
    w = random_weights(sys_, 1)
    k1, k2 = jax.random.split(jax.random.key(9))
    g = (
        jax.random.uniform(k1, shapes[0], minval=-0.5, maxval=0.5),
        jax.random.uniform(k2, shapes[1], minval=-0.5, maxval=0.5),
    )
    fields = []
    for t in (0.1, 0.5, 0.8):
        grad = jax.grad(lambda w_, t=t: sys_.loss(t, w_, g))(w)
        want = jax.tree.map(lambda d: -d / sys_.tau, grad)
        vf = sys_.vector_field(t, w, g)
        assert_tree_close(vf, want)
        fields.append(vf)
    # The statistics switch: same w and g, different field in the second phase.
    assert_tree_close(fields[0], fields[2])
    assert not np.allclose(fields[0][0], fields[1][0])


def test_task_switch_loss_matches_monte_carlo():
    sw = switching_tasks()
    sys_ = lc.systems.TwoLayerGain(sw, hidden=3, lam=0.05, seed=1, scale=0.4)
    w = random_weights(sys_, 2)
    G1 = 0.3 * jnp.ones(sys_.control_shape[0])
    G2 = -0.2 * jnp.ones(sys_.control_shape[1])
    for t in (0.2, 0.5):
        x, y = sw.sample_at(jax.random.key(3), 200_000, t)
        We = ((1 + G1) * w[0], (1 + G2) * w[1])
        err = y - x @ (We[1] @ We[0]).T
        reg = 0.5 * 0.05 * (jnp.sum(w[0] ** 2) + jnp.sum(w[1] ** 2))
        assert_mc_mean(0.5 * jnp.sum(err**2, 1) + reg, sys_.loss(t, w, (G1, G2)))


def test_task_switch_solve_steps_onto_switches_and_matches_segments():
    T = 1.0
    sw = switching_tasks(horizon=T)
    sys_ = lc.systems.TwoLayerGain(sw, hidden=4, lam=0.001, seed=0, scale=0.3)
    knots = jnp.linspace(0, T, 5)
    control = lc.controls.PiecewiseLinear(
        knots, shape=sys_.control_shape, lower=-0.5, upper=0.5
    )
    theta = jax.tree.map(
        lambda c: 0.4 * jnp.sin(jnp.arange(c.size).reshape(c.shape) + 1.0),
        control.init(0.0),
    )
    cost = lc.costs.ExpQuadratic(beta=0.3)
    obj = lc.Objective(T=T, gamma=0.99)
    switches = np.asarray(sw.switch_times)
    eps = 1e-9
    ts = jnp.asarray(np.sort(np.r_[0.0, switches - eps, switches + eps, T]))
    traj = lc.solve(
        lc.Problem(sys_, control, cost, obj),
        theta,
        ts=ts,
        options=lc.SolverOptions(rtol=1e-10, atol=1e-12),
    )

    # Reference: integrate each segment with the fixed statistics of its task.
    def segment_field(t, w_, fixed):
        return fixed.vector_field(t, w_, control(theta, t))

    w = sys_.init_state()
    bounds = np.r_[0.0, switches, T]
    for k in range(len(bounds) - 1):
        fixed = lc.systems.TwoLayerGain(
            sw.tasks[k % 2],
            W1_0=sys_.W1_0,
            W2_0=sys_.W2_0,
            lam=0.001,
        )
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(segment_field),
            diffrax.Tsit5(),
            t0=jnp.asarray(bounds[k]),
            t1=jnp.asarray(bounds[k + 1]),
            dt0=None,
            y0=w,
            args=fixed,
            stepsize_controller=diffrax.ClipStepSizeController(
                diffrax.PIDController(rtol=1e-10, atol=1e-12), jump_ts=knots
            ),
            max_steps=100_000,
        )
        w = jax.tree.map(lambda a: a[-1], sol.ys)
    assert_tree_close(jax.tree.map(lambda a: a[-1], traj.w), w, rtol=1e-7)
    # The loss jumps at every switch while the weights are continuous.
    loss = np.asarray(traj.loss)
    for j in range(len(switches)):
        before, after = 1 + 2 * j, 2 + 2 * j
        assert abs(loss[after] - loss[before]) > 1e-2
        np.testing.assert_allclose(traj.w[0][after], traj.w[0][before], atol=1e-6)


def test_systems_report_the_jump_times_of_their_task():
    sw = switching_tasks(horizon=1.0)
    plain = sw.tasks[0]
    assert lc.systems.TwoLayerGain(plain, hidden=2).jump_times().shape == (0,)
    systems = [
        lc.systems.TwoLayerLinear(sw, hidden=2),
        lc.systems.TwoLayerGain(sw, hidden=2),
        lc.systems.LearningRate(sw, hidden=2),
        lc.systems.CategoryEngagement(sw, hidden=2),
        lc.systems.SingleLayerGain(sw),
    ]
    for s in systems:
        np.testing.assert_array_equal(s.jump_times(), sw.switch_times)
    # A time-varying task on its own reads like its first task at t = 0.
    np.testing.assert_array_equal(sw.Sx, plain.Sx)
    np.testing.assert_array_equal(sw.Sxy_at(0.5), sw.tasks[1].Sxy)


def test_time_varying_task_rejected_where_statistics_are_fixed():
    sw = switching_tasks()
    with pytest.raises(ValueError, match="changes in time"):
        lc.tasks.ConcatenatedTasks([sw, lc.tasks.CorrelatedGaussians()])
    with pytest.raises(ValueError, match="changes in time"):
        lc.tasks.SwitchingTasks([sw], period=1.0, horizon=2.0)
    with pytest.raises(ValueError, match="constant"):
        lc.systems.MAML([sw], hidden=2)
    with pytest.raises(ValueError, match="changes in time"):
        lc.systems.TanhTaylor(sw, hidden=2)


# ------------------------------------------- gradient strategies agree (short T)


def _engagement_problem():
    sys_ = lc.systems.TaskEngagement(
        engagement_tasks(), hidden=3, lam=0.01, seed=4, scale=0.3
    )
    T = 1.0
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0, T, 5), shape=sys_.control_shape, lower=0.0, upper=2.0
    )
    theta = control.init(1.0) + 0.3 * jnp.cos(jnp.arange(10.0)).reshape(5, 2)
    return (
        sys_,
        control,
        theta,
        lc.costs.Quadratic(0.1, offset=1.0),
        lc.Objective(T, 0.99),
    )


def _category_problem():
    sys_ = lc.systems.CategoryEngagement(
        lc.tasks.SemanticHierarchy(3), hidden=4, lam=0.0, seed=5, scale=0.3
    )
    T = 1.0
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0, T, 5), shape=sys_.control_shape, lower=0.0, upper=2.0
    )
    theta = control.init(1.0) + 0.4 * jnp.sin(jnp.arange(35.0)).reshape(5, 7)
    cost = lc.costs.FixedNorm(beta=5.0, norm2=7.0)
    return sys_, control, theta, cost, lc.Objective(T, 0.99)


def _switch_problem():
    T = 1.0
    sys_ = lc.systems.TwoLayerGain(
        switching_tasks(horizon=T), hidden=3, lam=0.001, seed=6, scale=0.3
    )
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0, T, 5), shape=sys_.control_shape, lower=-0.5, upper=0.5
    )
    theta = jax.tree.map(
        lambda c: 0.3 * jnp.cos(jnp.arange(c.size).reshape(c.shape) * 0.7),
        control.init(0.0),
    )
    return sys_, control, theta, lc.costs.ExpQuadratic(beta=0.3), lc.Objective(T, 0.99)


@pytest.mark.parametrize(
    "make, check_fd",
    [(_engagement_problem, False), (_category_problem, False), (_switch_problem, True)],
    ids=["task", "category", "switch"],
)
def test_gradient_strategies_agree(make, check_fd):
    system, control, theta, cost, obj = make()
    kw = dict(rtol=1e-8, atol=1e-10)

    def grad(adjoint):
        return jax.jit(
            jax.grad(
                lambda th: lc.value(
                    lc.Problem(system, control, cost, obj),
                    th,
                    adjoint=adjoint,
                    options=lc.SolverOptions(**kw),
                )
            )
        )(theta)

    g_cont = jnp.concatenate(
        [x.ravel() for x in jax.tree.leaves(grad(lc.ContinuousAdjoint()))]
    )
    g_ckpt = jnp.concatenate(
        [x.ravel() for x in jax.tree.leaves(grad(lc.CheckpointAdjoint()))]
    )
    rel = float(jnp.linalg.norm(g_cont - g_ckpt) / jnp.linalg.norm(g_ckpt))
    assert rel < 1e-6, rel
    if not check_fd:
        return
    # Across task switches, also against a central finite difference along a
    # fixed direction (tight solves): the two strategies could share an error.
    leaves, tdef = jax.tree.flatten(theta)
    d = jax.tree.unflatten(
        tdef, [jnp.cos(jnp.arange(x.size) * 1.3).reshape(x.shape) for x in leaves]
    )
    h = 1e-4

    @jax.jit
    def V(th):
        return lc.value(
            lc.Problem(system, control, cost, obj),
            th,
            options=lc.SolverOptions(rtol=1e-11, atol=1e-13),
        )

    plus = jax.tree.map(lambda a, b: a + h * b, theta, d)
    minus = jax.tree.map(lambda a, b: a - h * b, theta, d)
    fd = (V(plus) - V(minus)) / (2 * h)
    dd = jnp.concatenate([x.ravel() for x in jax.tree.leaves(d)])
    print("FD rel", abs(float(jnp.dot(g_cont, dd) - fd) / float(fd)), "adj rel", rel)
    np.testing.assert_allclose(jnp.dot(g_cont, dd), fd, rtol=1e-6)
