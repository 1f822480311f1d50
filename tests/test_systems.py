"""Two-layer learning systems (docs/systems/: two-layer, gain, learning rate, MAML, tanh) and the neuron basis.

What is checked, with tolerances (float64):

- vector fields equal −(1/τ)·jax.grad of the expected loss with the control
  factors of the paper's equations (to 1e-12 relative);
- expected losses equal sample averages: exactly (1e-10) for the empirical
  distribution of a fixed sample, and within 5 standard errors of a
  Monte-Carlo estimate for a Gaussian task;
- the tanh Taylor approximation against the real tanh network, with its
  O(scale⁴) error;
- shapes, argument validation and the bounds of `NeuronBasis`;
- dV/dθ by `ContinuousAdjoint` vs `CheckpointAdjoint` vs central finite
  differences on a short horizon, solves at rtol=1e-8, atol=1e-10: agreement
  within 1e-6 relative (measured ~1e-8).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from jaxtyping import Array

import lecontrol as lc

N_IN, N_OUT, H = 3, 2, 3
SOLVE = dict(rtol=1e-8, atol=1e-10)


class LinearGaussianTask(lc.tasks.AbstractTask):
    """x ~ N(m, L Lᵀ), y = A x + noise·ε: every moment in closed form."""

    A: Array
    m: Array
    L: Array
    noise: float

    @property
    def Sx(self):
        return self.L @ self.L.T + jnp.outer(self.m, self.m)

    @property
    def Sxy(self):
        return self.Sx @ self.A.T

    @property
    def Sy(self):
        return self.A @ self.Sx @ self.A.T + self.noise**2 * jnp.eye(self.A.shape[0])

    def mean_x(self):
        return self.m

    def mean_y(self):
        return self.A @ self.m

    def sample(self, key, n):
        k1, k2 = jax.random.split(key)
        x = self.m + jax.random.normal(k1, (n, self.m.shape[0])) @ self.L.T
        y = x @ self.A.T + self.noise * jax.random.normal(k2, (n, self.A.shape[0]))
        return x, y


class EmpiricalTask(lc.tasks.AbstractTask):
    """The empirical distribution of a fixed sample (its moments are exact)."""

    x: Array
    y: Array

    @property
    def Sx(self):
        return self.x.T @ self.x / self.x.shape[0]

    @property
    def Sxy(self):
        return self.x.T @ self.y / self.x.shape[0]

    @property
    def Sy(self):
        return self.y.T @ self.y / self.x.shape[0]

    def mean_x(self):
        return self.x.mean(0)

    def sample(self, key, n):
        i = jax.random.randint(key, (n,), 0, self.x.shape[0])
        return self.x[i], self.y[i]


def make_task(seed, n_in=N_IN, n_out=N_OUT):
    k = jax.random.split(jax.random.key(seed), 3)
    A = jax.random.normal(k[0], (n_out, n_in))
    m = 0.5 * jax.random.normal(k[1], (n_in,))
    L = 0.5 * jax.random.normal(k[2], (n_in, n_in)) + jnp.eye(n_in)
    return LinearGaussianTask(A, m, L, 0.3)


def random_like(tree, key, scale=1.0):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    new = [scale * jax.random.normal(k, jnp.shape(x)) for k, x in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, new)


def gains(key, scale=0.3):
    k1, k2 = jax.random.split(key)
    return (
        jax.random.uniform(k1, (H, N_IN), minval=-scale, maxval=scale),
        jax.random.uniform(k2, (N_OUT, H), minval=-scale, maxval=scale),
    )


def rel(a, b):
    a, _ = ravel_pytree(a)
    b, _ = ravel_pytree(b)
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def two_layer_kwargs(seed=0):
    return dict(hidden=H, lam=0.05, tau=0.7, seed=seed, scale=0.5)


# ------------------------------------------------------- vector field = −∇⟨L⟩/τ


def test_two_layer_linear_is_gradient_flow_and_ignores_control():
    task = make_task(0)
    s = lc.systems.TwoLayerLinear(task, **two_layer_kwargs())
    w = random_like(s.init_state(), jax.random.key(1))
    want = jax.tree.map(lambda d: -d / s.tau, jax.grad(s.loss, argnums=1)(0.0, w, 0.0))
    assert rel(s.vector_field(0.0, w, 0.0), want) < 1e-12
    # The control has no effect: g enters neither the dynamics nor the loss.
    assert rel(s.vector_field(0.0, w, 0.37), want) == 0.0
    assert s.loss(0.0, w, 0.37) == s.loss(0.0, w, 0.0)
    # The paper's formula, written out: τ dW1 = W2ᵀ(Σxyᵀ − WΣx) − λW1.
    W1, W2 = w
    E = task.Sxy.T - W2 @ W1 @ task.Sx
    assert rel(s.vector_field(0.0, w, 0.0)[0], (W2.T @ E - s.lam * W1) / s.tau) < 1e-12
    assert rel(s.vector_field(0.0, w, 0.0)[1], (E @ W1.T - s.lam * W2) / s.tau) < 1e-12


def test_two_layer_gain_is_gradient_flow_in_raw_weights():
    task = make_task(0)
    s = lc.systems.TwoLayerGain(task, **two_layer_kwargs())
    w = random_like(s.init_state(), jax.random.key(1))
    g = gains(jax.random.key(2))
    want = jax.tree.map(lambda d: -d / s.tau, jax.grad(s.loss, argnums=1)(0.0, w, g))
    assert rel(s.vector_field(0.0, w, g), want) < 1e-12
    # Zero gains give the plain two-layer network.
    lin = lc.systems.TwoLayerLinear(task, **two_layer_kwargs())
    zero = jax.tree.map(jnp.zeros_like, g)
    assert rel(s.vector_field(0.0, w, zero), lin.vector_field(0.0, w, 0.0)) < 1e-14
    assert abs(s.loss(0.0, w, zero) - lin.loss(0.0, w, 0.0)) < 1e-12
    # The loss sees the effective weights, the regulariser the raw ones.
    (W1, W2), (G1, G2) = w, g
    We1, We2 = (1 + G1) * W1, (1 + G2) * W2
    expect = lin.loss(0.0, (We1, We2), 0.0) + 0.5 * s.lam * (
        jnp.sum(W1**2) + jnp.sum(W2**2) - jnp.sum(We1**2) - jnp.sum(We2**2)
    )
    assert abs(s.loss(0.0, w, g) - expect) < 1e-12


def test_learning_rate_scales_the_gradient():
    task = make_task(0)
    s = lc.systems.LearningRate(task, **two_layer_kwargs())
    lin = lc.systems.TwoLayerLinear(task, **two_layer_kwargs())
    w = random_like(s.init_state(), jax.random.key(1))
    rho = jnp.asarray(-0.35)
    grad = jax.grad(lin.loss, argnums=1)(0.0, w, 0.0)
    want = jax.tree.map(lambda d: -(1 + rho) * d / s.tau, grad)
    assert rel(s.vector_field(0.0, w, rho), want) < 1e-12
    assert s.loss(0.0, w, rho) == lin.loss(0.0, w, 0.0)


def test_maml_each_task_descends_its_own_loss():
    tasks = [make_task(i) for i in range(3)]
    s = lc.systems.MAML(tasks, hidden=H, lam=0.05, tau=0.7)
    g = s.gaussian_init(seed=4, scale=0.5)
    u = random_like(s.init_state(), jax.random.key(1), scale=0.3)
    # ⟨L⟩ is the mean over tasks, so du_k/dt = −(K/τ) ∂⟨L⟩/∂u_k = −∇L_k(g + u_k)/τ.
    K = len(tasks)
    grad = jax.grad(s.loss, argnums=1)(0.0, u, g)
    want = jax.tree.map(lambda d: -K * d / s.tau, grad)
    assert rel(s.vector_field(0.0, u, g), want) < 1e-12
    # Task by task: the two-layer network of that task, at weights g + u_k.
    losses = []
    for k, task in enumerate(tasks):
        lin = lc.systems.TwoLayerLinear(task, hidden=H, lam=0.05, tau=0.7)
        wk = (g[0] + u[0][k], g[1] + u[1][k])
        vk = jax.tree.map(lambda x, k=k: x[k], s.vector_field(0.0, u, g))
        assert rel(vk, lin.vector_field(0.0, wk, 0.0)) < 1e-12
        losses.append(lin.loss(0.0, wk, 0.0))
    assert abs(s.loss(0.0, u, g) - np.mean(losses)) < 1e-12


def test_tanh_taylor_is_gradient_flow_and_reduces_to_gain_for_centred_inputs():
    task = make_task(0)
    s = lc.systems.TanhTaylor(task, **two_layer_kwargs(), mean_y=task.mean_y())
    w = random_like(s.init_state(), jax.random.key(1))
    g = gains(jax.random.key(2))
    want = jax.tree.map(lambda d: -d / s.tau, jax.grad(s.loss, argnums=1)(0.0, w, g))
    assert rel(s.vector_field(0.0, w, g), want) < 1e-12
    # With ⟨x⟩ = 0 the expansion point is 0: tanh(0) = 0, tanh'(0) = 1, so the
    # approximation is the linear gain network, whatever ⟨y⟩ is.
    centred = lc.systems.TanhTaylor(
        task, **two_layer_kwargs(), mean_x=jnp.zeros(N_IN), mean_y=task.mean_y()
    )
    gain = lc.systems.TwoLayerGain(task, **two_layer_kwargs())
    assert abs(centred.loss(0.0, w, g) - gain.loss(0.0, w, g)) < 1e-12
    assert rel(centred.vector_field(0.0, w, g), gain.vector_field(0.0, w, g)) < 1e-12


# ----------------------------------------------------------- loss vs samples


def _sample_losses(predict, x, y, reg):
    return 0.5 * jnp.sum((y - predict(x)) ** 2, axis=1) + reg


def test_two_layer_losses_equal_sample_averages():
    x, y = make_task(0).sample(jax.random.key(7), 500)
    emp = EmpiricalTask(x, y)
    w = random_like((jnp.zeros((H, N_IN)), jnp.zeros((N_OUT, H))), jax.random.key(1))
    g = gains(jax.random.key(2))
    (W1, W2), (G1, G2) = w, g
    reg = 0.5 * 0.05 * (jnp.sum(W1**2) + jnp.sum(W2**2))
    lin = lc.systems.TwoLayerLinear(emp, **two_layer_kwargs())
    direct = _sample_losses(lambda x: x @ (W2 @ W1).T, x, y, reg)
    assert abs(lin.loss(0.0, w, 0.0) - direct.mean()) < 1e-10 * direct.mean()
    gain = lc.systems.TwoLayerGain(emp, **two_layer_kwargs())
    We = ((1 + G2) * W2) @ ((1 + G1) * W1)
    direct = _sample_losses(lambda x: x @ We.T, x, y, reg)
    assert abs(gain.loss(0.0, w, g) - direct.mean()) < 1e-10 * direct.mean()


def test_two_layer_gain_loss_matches_monte_carlo():
    task = make_task(0)
    s = lc.systems.TwoLayerGain(task, **two_layer_kwargs())
    w = random_like(s.init_state(), jax.random.key(1))
    g = gains(jax.random.key(2))
    (W1, W2), (G1, G2) = w, g
    We = ((1 + G2) * W2) @ ((1 + G1) * W1)
    reg = 0.5 * s.lam * (jnp.sum(W1**2) + jnp.sum(W2**2))
    x, y = task.sample(jax.random.key(11), 200_000)
    losses = _sample_losses(lambda x: x @ We.T, x, y, reg)
    se = losses.std() / np.sqrt(losses.shape[0])
    assert abs(s.loss(0.0, w, g) - losses.mean()) < 5 * se


def test_tanh_taylor_equals_linearised_network_and_approximates_tanh():
    x, y = make_task(0).sample(jax.random.key(7), 2000)
    emp = EmpiricalTask(x, y)
    g = gains(jax.random.key(2))
    (G1, G2) = g
    shape = (jnp.zeros((H, N_IN)), jnp.zeros((N_OUT, H)))
    base = random_like(shape, jax.random.key(1))
    errors = []
    for scale in (0.05, 0.025, 0.0125):  # |W̃1(x − ⟨x⟩)| ≈ 0.1, 0.05, 0.025
        W1, W2 = jax.tree.map(lambda a, scale=scale: scale * a, base)
        s = lc.systems.TanhTaylor(emp, W1_0=W1, W2_0=W2, lam=0.0, mean_y=y.mean(0))
        W1e, W2e = (1 + G1) * W1, (1 + G2) * W2
        m = x.mean(0)
        a = W1e @ m

        def linearised(x, W1e=W1e, W2e=W2e, a=a, m=m):
            h = jnp.tanh(a) + (1 - jnp.tanh(a) ** 2) * ((x - m) @ W1e.T)
            return h @ W2e.T

        approx = s.loss(0.0, (W1, W2), g)
        # Exact: the closed form is the loss of the linearised network.
        exact_lin = _sample_losses(linearised, x, y, 0.0).mean()
        assert abs(approx - exact_lin) < 1e-12 * exact_lin
        # The real tanh network, on the same samples.
        real = _sample_losses(
            lambda x, s=s, w=(W1, W2): s.predict(w, g, x), x, y, 0.0
        ).mean()
        signal = abs(real - emp.Sy.trace() / 2)  # the weight-dependent part, O(scale²)
        errors.append(float(abs(approx - real)))
        assert errors[-1] < 0.05 * signal
    # The Taylor remainder is O(scale⁴): halving the weights divides it by ≈ 16.
    assert errors[0] / errors[1] > 10 and errors[1] / errors[2] > 10


# --------------------------------------------------------- shapes and checks


def test_shapes_and_initial_weights():
    task = make_task(0)
    for cls in (lc.systems.TwoLayerGain, lc.systems.TanhTaylor):
        s = cls(task, hidden=5)  # TanhTaylor estimates ⟨y⟩ from samples here
        W1, W2 = s.init_state()
        assert s.control_shape == ((5, N_IN), (N_OUT, 5)) == (W1.shape, W2.shape)
        g = jax.tree.map(jnp.zeros, s.control_shape, is_leaf=lc.controls.is_shape)
        dw = s.vector_field(0.0, (W1, W2), g)
        assert jax.tree.map(jnp.shape, dw) == ((5, N_IN), (N_OUT, 5))
    for cls in (lc.systems.TwoLayerLinear, lc.systems.LearningRate):
        s = cls(task, hidden=5)
        assert s.control_shape == ()
        assert jax.tree.map(jnp.shape, s.init_state()) == ((5, N_IN), (N_OUT, 5))
    # Gaussian initialisation: seeded, reproducible, standard deviation `scale`.
    a = lc.systems.TwoLayerLinear(task, hidden=400, seed=3, scale=0.2)
    b = lc.systems.TwoLayerLinear(task, hidden=400, seed=3, scale=0.2)
    c = lc.systems.TwoLayerLinear(task, hidden=400, seed=4, scale=0.2)
    assert jnp.array_equal(a.W1_0, b.W1_0) and not jnp.array_equal(a.W1_0, c.W1_0)
    std = jnp.std(jnp.concatenate([a.W1_0.ravel(), a.W2_0.ravel()]))
    assert abs(std - 0.2) < 0.01  # 2000 draws: the sample std has s.e. ≈ 0.003
    # Given weights fix `hidden`; a given weight overrides the draw.
    W1 = jnp.ones((2, N_IN))
    s = lc.systems.TwoLayerLinear(task, W1_0=W1, scale=0.1)
    assert s.hidden == 2 and jnp.array_equal(s.W1_0, W1) and s.W2_0.shape == (N_OUT, 2)
    # MAML: displacement state with a leading task axis, starting at zero.
    m = lc.systems.MAML([make_task(0), make_task(1)], hidden=4)
    assert m.control_shape == ((4, N_IN), (N_OUT, 4))
    U1, U2 = m.init_state()
    assert U1.shape == (2, 4, N_IN) and U2.shape == (2, N_OUT, 4)
    assert not jnp.any(U1) and not jnp.any(U2)
    assert m.Sx.shape == (2, N_IN, N_IN) and m.Sxy.shape == (2, N_IN, N_OUT)


def test_constructors_reject_bad_arguments():
    task = make_task(0)
    with pytest.raises(ValueError, match="hidden"):
        lc.systems.TwoLayerGain(task)
    with pytest.raises(ValueError, match="W1_0"):
        lc.systems.TwoLayerGain(
            task, W1_0=jnp.ones((3, N_IN + 1)), W2_0=jnp.ones((N_OUT, 3))
        )
    with pytest.raises(ValueError, match="W2_0"):
        lc.systems.LearningRate(
            task, W1_0=jnp.ones((3, N_IN)), W2_0=jnp.ones((N_OUT, 4))
        )
    with pytest.raises(ValueError, match="hidden=4"):
        lc.systems.TwoLayerLinear(task, hidden=4, W1_0=jnp.ones((3, N_IN)))
    with pytest.raises(ValueError, match="lam"):
        lc.systems.TwoLayerLinear(task, hidden=2, lam=-1.0)
    with pytest.raises(ValueError, match="tau"):
        lc.systems.LearningRate(task, hidden=2, tau=0.0)
    with pytest.raises(ValueError, match="non-finite"):
        lc.systems.TwoLayerGain(
            task, W1_0=jnp.full((2, N_IN), jnp.nan), W2_0=jnp.ones((N_OUT, 2))
        )
    with pytest.raises(ValueError, match="mean_x"):
        lc.systems.TanhTaylor(
            task, hidden=2, mean_x=jnp.zeros(N_IN + 1), mean_y=jnp.zeros(N_OUT)
        )
    with pytest.raises(ValueError, match="same numbers of inputs"):
        lc.systems.MAML([make_task(0), make_task(1, n_in=4)], hidden=2)
    with pytest.raises(ValueError, match="non-empty"):
        lc.systems.MAML([], hidden=2)
    # A control of the wrong shape is refused by lc.value.
    s = lc.systems.TwoLayerGain(task, hidden=2)
    control = lc.controls.PiecewiseLinear(jnp.linspace(0, 1, 3), shape=())
    with pytest.raises(ValueError, match="control_shape"):
        lc.value(
            lc.Problem(s, control, lc.costs.Quadratic(0.1), lc.Objective(T=1.0)),
            control.init(0.0),
        )


def test_neuron_basis_expands_and_delegates():
    shape = ((H, N_IN), (N_OUT, H))
    inner = lc.controls.PiecewiseLinear(
        jnp.linspace(0, 1, 4), shape=(N_OUT,), lower=-0.5, upper=0.5
    )
    control = lc.controls.NeuronBasis(inner, shape)  # rows of the last leaf (G2)
    theta = jax.random.uniform(jax.random.key(0), (4, N_OUT), minval=-0.5, maxval=0.5)
    for t in (0.0, 0.2, 0.5, 1.0):
        G1, G2 = control(theta, t)
        nu = inner(theta, t)
        assert G1.shape == (H, N_IN) and not jnp.any(G1)
        assert jnp.array_equal(G2, jnp.broadcast_to(nu[:, None], (N_OUT, H)))
    assert (control.lower, control.upper) == (-0.5, 0.5)
    assert jnp.array_equal(control.jump_times(), inner.jump_times())
    assert jnp.array_equal(control.breakpoints(1.0), inner.breakpoints(1.0))
    assert control.init(0.1).shape == (4, N_OUT)
    assert jnp.array_equal(control.project(3 * theta), jnp.clip(3 * theta, -0.5, 0.5))
    with pytest.raises(ValueError, match="theta"):
        control.check_theta(jnp.zeros((4, H)))
    # Columns of the first leaf: one coefficient per input unit.
    cols = lc.controls.NeuronBasis(
        lc.controls.Constant(shape=(N_IN,)), shape, leaf=0, axis=1
    )
    G1, G2 = cols(jnp.arange(N_IN, dtype=float), 0.3)
    assert jnp.array_equal(
        G1, jnp.broadcast_to(jnp.arange(N_IN, dtype=float), (H, N_IN))
    )
    assert not jnp.any(G2)
    with pytest.raises(ValueError, match="inner"):
        lc.controls.NeuronBasis(lc.controls.Constant(shape=(H,)), shape)
    with pytest.raises(ValueError, match="axis"):
        lc.controls.NeuronBasis(inner, shape, axis=2)


# ------------------------------------------------------------------- gradients


def _check_gradients(f, p, *, tol=1e-6, eps=1e-4, directions=2):
    """dV/dp: continuous adjoint vs checkpoint vs central finite differences.

    `f(p, adjoint)` returns V. Finite differences use the checkpoint solve (the
    same rtol=1e-8); with eps=1e-4 their truncation error is ~1e-9 relative.
    """
    g_cont = jax.jit(jax.grad(lambda p: f(p, lc.ContinuousAdjoint())))(p)
    vg = jax.jit(jax.value_and_grad(lambda p: f(p, lc.CheckpointAdjoint())))
    _, g_ckpt = vg(p)
    assert rel(g_cont, g_ckpt) < tol
    flat, unravel = ravel_pytree(p)
    gc, _ = ravel_pytree(g_cont)
    for k in range(directions):
        d = jax.random.normal(jax.random.key(100 + k), flat.shape)
        fd = (vg(unravel(flat + eps * d))[0] - vg(unravel(flat - eps * d))[0]) / (
            2 * eps
        )
        assert abs(gc @ d - fd) < tol * abs(fd), (float(gc @ d), float(fd))
    return g_cont


T = 0.8
KNOTS = jnp.linspace(0.0, T, 5)


@pytest.mark.slow
def test_gradients_two_layer_linear_initial_weights_and_lam():
    """TwoLayerLinear ignores the control: differentiate V in W1_0, W2_0 and λ
    instead (λ(0) and the parameter quadrature of the continuous adjoint)."""
    task = make_task(0)
    s0 = lc.systems.TwoLayerLinear(task, **two_layer_kwargs())
    control = lc.controls.PiecewiseLinear(KNOTS, shape=(), lower=-1, upper=1)
    theta = control.init(0.2)
    cost, obj = lc.costs.Quadratic(0.5), lc.Objective(T=T, gamma=0.9, eta=1.5)

    def f(p, adjoint):
        W1, W2, lam = p
        s = lc.systems.TwoLayerLinear(task, W1_0=W1, W2_0=W2, lam=lam, tau=0.7)
        return lc.value(
            lc.Problem(s, control, cost, obj),
            theta,
            adjoint=adjoint,
            options=lc.SolverOptions(**SOLVE),
        )

    _check_gradients(f, (s0.W1_0, s0.W2_0, s0.lam))


@pytest.mark.slow
def test_gradients_two_layer_gain():
    s = lc.systems.TwoLayerGain(make_task(0), **two_layer_kwargs())
    control = lc.controls.PiecewiseLinear(
        KNOTS, shape=s.control_shape, lower=-0.5, upper=0.5
    )
    theta = jax.tree.map(
        lambda x: jax.random.uniform(
            jax.random.key(1), x.shape, minval=-0.3, maxval=0.3
        ),
        control.init(0.0),
    )
    cost, obj = lc.costs.ExpQuadratic(0.3), lc.Objective(T=T, gamma=0.9, eta=1.0)

    def f(th, adjoint):
        return lc.value(
            lc.Problem(s, control, cost, obj),
            th,
            adjoint=adjoint,
            options=lc.SolverOptions(**SOLVE),
        )

    _check_gradients(f, theta)


@pytest.mark.slow
def test_gradients_two_layer_gain_neuron_basis():
    s = lc.systems.TwoLayerGain(make_task(0), **two_layer_kwargs())
    inner = lc.controls.PiecewiseLinear(KNOTS, shape=(N_OUT,), lower=-0.5, upper=0.5)
    control = lc.controls.NeuronBasis(inner, s.control_shape, leaf=1, axis=0)
    theta = jax.random.uniform(jax.random.key(1), (5, N_OUT), minval=-0.3, maxval=0.3)
    cost, obj = lc.costs.ExpQuadratic(0.3), lc.Objective(T=T, gamma=0.9, eta=1.0)

    def f(th, adjoint):
        return lc.value(
            lc.Problem(s, control, cost, obj),
            th,
            adjoint=adjoint,
            options=lc.SolverOptions(**SOLVE),
        )

    grad = _check_gradients(f, theta)
    # The paper's own method through the wrapper, against its own finite
    # differences (fixed grid, so differences are smooth) and the adaptive value.
    euler = lc.EulerUnrolled(dt=T / 1600)
    vg = jax.jit(jax.value_and_grad(lambda th: f(th, euler)))
    V, g_euler = vg(theta)
    d = jax.random.normal(jax.random.key(3), theta.shape)
    fd = (vg(theta + 1e-4 * d)[0] - vg(theta - 1e-4 * d)[0]) / 2e-4
    assert abs(jnp.vdot(g_euler, d) - fd) < 1e-7 * abs(fd)
    # Euler's O(dt) discretisation error: measured 1.2e-2 at dt = T/400 and
    # 3.1e-3 at dt = T/1600 relative to the adaptive gradient.
    assert rel(g_euler, grad) < 6e-3


@pytest.mark.slow
def test_gradients_learning_rate():
    s = lc.systems.LearningRate(make_task(0), **two_layer_kwargs())
    control = lc.controls.PiecewiseLinear(KNOTS, shape=(), lower=-1, upper=1)
    theta = jnp.array([0.1, -0.4, 0.3, 0.0, 0.6])
    cost, obj = (
        lc.costs.Quadratic(0.5, offset=0.1),
        lc.Objective(T=T, gamma=0.9, eta=1.0),
    )

    def f(th, adjoint):
        return lc.value(
            lc.Problem(s, control, cost, obj),
            th,
            adjoint=adjoint,
            options=lc.SolverOptions(**SOLVE),
        )

    _check_gradients(f, theta)


@pytest.mark.slow
def test_gradients_maml_constant_control():
    s = lc.systems.MAML([make_task(i) for i in range(3)], hidden=H, lam=0.05, tau=0.7)
    control = lc.controls.Constant(shape=s.control_shape)
    theta = control.init(s.gaussian_init(seed=4, scale=0.5))
    cost, obj = lc.costs.Quadratic(0.0), lc.Objective(T=T, gamma=1.0, eta=1.0)

    def f(th, adjoint):
        return lc.value(
            lc.Problem(s, control, cost, obj),
            th,
            adjoint=adjoint,
            options=lc.SolverOptions(**SOLVE),
        )

    _check_gradients(f, theta)


def test_maml_of_one_task_is_the_two_layer_network_from_g():
    """The displacement state is exact: V equals TwoLayerLinear's from w(0) = g."""
    task = make_task(0)
    s = lc.systems.MAML(task, hidden=H, lam=0.05, tau=0.7)
    g = s.gaussian_init(seed=4, scale=0.5)
    lin = lc.systems.TwoLayerLinear(task, W1_0=g[0], W2_0=g[1], lam=0.05, tau=0.7)
    cost, obj = lc.costs.Quadratic(0.0), lc.Objective(T=T, gamma=1.0, eta=1.0)
    V_maml = lc.value(
        lc.Problem(s, lc.controls.Constant(shape=s.control_shape), cost, obj),
        g,
        options=lc.SolverOptions(**SOLVE),
    )
    scalar = lc.controls.Constant(shape=())
    V_lin = lc.value(
        lc.Problem(lin, scalar, cost, obj),
        scalar.init(0.0),
        options=lc.SolverOptions(**SOLVE),
    )
    assert abs(V_maml - V_lin) < 1e-7 * abs(V_lin)


def _maml_values(s, inits, T_=1.0):
    problem = lc.Problem(
        s,
        lc.controls.Constant(shape=s.control_shape),
        lc.costs.Quadratic(0.0),
        lc.Objective(T=T_, gamma=1.0, eta=1.0),
    )
    options = lc.SolverOptions(**SOLVE, max_steps=100_000)
    return np.array([float(lc.value(problem, g, options=options)) for g in inits])


def test_maml_loss_floor_is_each_tasks_least_squares_fit():
    """`loss_floor` against each task's normal equations, solved here, and
    reached by the network: W2 @ W1 = W* gives the floor exactly."""
    tasks = [make_task(i) for i in range(3)]
    s = lc.systems.MAML(tasks, hidden=H, lam=0.0)
    floors, best = [], []
    for task in tasks:
        Sx, Sxy = np.asarray(task.Sx), np.asarray(task.Sxy)
        W = np.linalg.solve(Sx, Sxy).T  # argmin of tr(-2 W Sxy + W Sx W^T)
        best.append(W)
        floors.append(0.5 * np.trace(np.asarray(task.Sy) - W @ Sxy))
    assert float(s.loss_floor()) == pytest.approx(np.mean(floors), rel=1e-12)
    # Each task alone at its own fit: W1 = I (H = N_IN), W2 = W*.
    for task, W, floor in zip(tasks, best, floors):
        one = lc.systems.MAML(task, hidden=N_IN, lam=0.0)
        g = (jnp.eye(N_IN), jnp.asarray(W))
        u = one.init_state()
        assert float(one.loss(0.0, u, g)) == pytest.approx(floor, rel=1e-10)
    with pytest.raises(ValueError, match="`lam`"):
        lc.systems.MAML(tasks, hidden=H, lam=0.1).loss_floor()
    with pytest.raises(ValueError, match="`hidden`"):
        lc.systems.MAML(tasks, hidden=1, lam=0.0).loss_floor()
    with pytest.raises(ValueError, match="`hidden`"):
        lc.systems.MAML(tasks, hidden=N_OUT, lam=0.0).zero_product_init(1.0)


@pytest.mark.slow
def test_maml_value_has_no_finite_maximiser():
    """With lam = 0, V rises towards -<L>* T along zero_product_init as the
    scale s grows, the gap shrinking as s^-2 (effect: the gap shrinks over
    5x from s = 10 to 30, margin 5), and never reaches it. Negative controls:
    the same weights with a nonzero product (Gaussian), and lam > 0 (the
    regulariser's cost grows as s^2): along both the gap grows."""
    tasks = [make_task(i) for i in range(3)]
    scales = (1.0, 3.0, 10.0, 30.0)
    s = lc.systems.MAML(tasks, hidden=H, lam=0.0)
    sup = -float(s.loss_floor())  # times T = 1 (_maml_values' horizon)
    gap = sup - _maml_values(s, [s.zero_product_init(c, seed=2) for c in scales])
    for c in scales:
        W1, W2 = s.zero_product_init(c, seed=2)
        assert float(jnp.abs(W2 @ W1).max()) < 1e-12 * c**2
    assert np.all(gap > 0) and np.all(np.diff(gap) < 0), gap
    assert gap[-2] / gap[-1] > 5, gap  # s^-2: about 9
    normal = [s.gaussian_init(seed=2, scale=c) for c in scales]
    gap_normal = sup - _maml_values(s, normal)
    assert not gap_normal[-2] / gap_normal[-1] > 5, gap_normal
    regular = lc.systems.MAML(tasks, hidden=H, lam=0.05)
    gap_regular = sup - _maml_values(
        regular, [s.zero_product_init(c, seed=2) for c in scales]
    )
    assert not gap_regular[-2] / gap_regular[-1] > 5, gap_regular


@pytest.mark.slow
def test_gradients_tanh_taylor():
    task = make_task(0)
    s = lc.systems.TanhTaylor(task, **two_layer_kwargs(), mean_y=task.mean_y())
    control = lc.controls.PiecewiseLinear(
        KNOTS, shape=s.control_shape, lower=-0.5, upper=0.5
    )
    theta = jax.tree.map(
        lambda x: jax.random.uniform(
            jax.random.key(1), x.shape, minval=-0.3, maxval=0.3
        ),
        control.init(0.0),
    )
    cost, obj = lc.costs.ExpQuadratic(0.3), lc.Objective(T=T, gamma=0.9, eta=1.0)

    def f(th, adjoint):
        return lc.value(
            lc.Problem(s, control, cost, obj),
            th,
            adjoint=adjoint,
            options=lc.SolverOptions(**SOLVE),
        )

    _check_gradients(f, theta)


def test_systems_work_under_jit_and_vmap():
    """The systems are pytrees: vmap over a batch of gain controls."""
    s = lc.systems.TwoLayerGain(make_task(0), **two_layer_kwargs())
    w = s.init_state()
    G = jax.vmap(lambda k: gains(k))(jax.random.split(jax.random.key(0), 4))
    out = eqx.filter_jit(jax.vmap(lambda g: s.loss(0.0, w, g)))(G)
    assert out.shape == (4,)
    assert abs(out[1] - s.loss(0.0, w, jax.tree.map(lambda x: x[1], G))) < 1e-12


# ------------------------------------------------ user-written gradient-flow system


def _value(system, control, theta, cost, objective, adjoint):
    return lc.value(
        lc.Problem(system, control, cost, objective),
        theta,
        adjoint=adjoint,
        options=lc.SolverOptions(**SOLVE),
    )


class WeightedTanhRegression(lc.systems.AbstractGradientFlowSystem):
    r"""$\hat y = W_2\tanh(W_1x)$ on a fixed sample; the learner descends the
    output-weighted loss $\frac12\sum_o (1 + g_o)\langle(y_o-\hat y_o)^2\rangle$,
    performance is the unweighted loss (so `loss` overrides the default)."""

    x: Array
    y: Array
    W1_0: Array
    W2_0: Array
    tau: Array

    @property
    def control_shape(self):
        return (self.y.shape[1],)

    def init_state(self):
        return {"W1": self.W1_0, "W2": self.W2_0}

    def _errors(self, w):
        pred = jnp.tanh(self.x @ w["W1"].T) @ w["W2"].T
        return 0.5 * jnp.mean((self.y - pred) ** 2, axis=0)

    def learning_loss(self, t, w, g):
        return jnp.sum((1.0 + g) * self._errors(w))

    def loss(self, t, w, g):
        return jnp.sum(self._errors(w))


def _weighted_tanh(seed=0):
    k = jax.random.split(jax.random.key(seed), 4)
    x = jax.random.normal(k[0], (40, N_IN))
    y = jnp.tanh(x @ jax.random.normal(k[1], (N_IN, N_OUT)))
    return WeightedTanhRegression(
        x=x,
        y=y,
        W1_0=0.5 * jax.random.normal(k[2], (H, N_IN)),
        W2_0=0.5 * jax.random.normal(k[3], (N_OUT, H)),
        tau=jnp.asarray(0.7),
    )


def test_gradient_flow_system_field_is_minus_grad_of_learning_loss():
    s = _weighted_tanh()
    w = random_like(s.init_state(), jax.random.key(5))
    g = jnp.array([0.3, -0.4])
    want = jax.tree.map(
        lambda d: -d / 0.7, jax.grad(s.learning_loss, argnums=1)(0.0, w, g)
    )
    assert rel(s.vector_field(0.0, w, g), want) < 1e-12
    # Performance is the unweighted loss; it equals learning_loss at g = 0 only.
    assert abs(s.loss(0.0, w, g) - s.learning_loss(0.0, w, g)) > 1e-3
    np.testing.assert_allclose(
        s.loss(0.0, w, jnp.zeros(2)), s.learning_loss(0.0, w, jnp.zeros(2))
    )


def test_gradient_flow_system_requires_its_members():
    class NoLoss(lc.systems.AbstractGradientFlowSystem):
        tau: float = 1.0

        @property
        def control_shape(self):
            return ()

        def init_state(self):
            return jnp.zeros(())

    with pytest.raises(TypeError, match="learning_loss"):
        NoLoss()


@pytest.mark.slow
def test_gradients_user_gradient_flow_system():
    s = _weighted_tanh()
    control = lc.controls.PiecewiseLinear(
        KNOTS, shape=s.control_shape, lower=-0.5, upper=0.5
    )
    theta = jax.random.uniform(
        jax.random.key(2), control.init(0.0).shape, minval=-0.3, maxval=0.3
    )
    cost, obj = lc.costs.Quadratic(0.2), lc.Objective(T=T, gamma=0.9, eta=1.0)
    assert np.isfinite(_value(s, control, theta, cost, obj, lc.ContinuousAdjoint()))

    def f(th, adjoint):
        return _value(s, control, th, cost, obj, adjoint)

    _check_gradients(f, theta)
