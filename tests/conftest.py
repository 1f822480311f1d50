"""Test configuration: float64 everywhere, shared fixtures."""

import jax

jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402

import lecontrol as lc  # noqa: E402


class NanLossSystem(lc.systems.AbstractLearningSystem):
    """dw/dt = -w + 1 + g (finite dynamics), but the expected loss
    0.01 log(1 / (0.3 - g)) + (w - 2)²/2 is nan once the control passes 0.3."""

    @property
    def control_shape(self):
        return ()

    def init_state(self):
        return jax.numpy.asarray(0.0)

    def vector_field(self, t, w, g):
        return -w + 1.0 + g

    def loss(self, t, w, g):
        return -jax.numpy.log(0.3 - g) * 0.01 + 0.5 * (w - 2.0) ** 2


@pytest.fixture
def neuron_problem():
    """The paper's single-neuron problem on a short horizon."""
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    system = lc.systems.SingleNeuronGain(task, lam=0.1, tau=1.0, w0=0.0)
    T = 0.6
    control = lc.controls.PiecewiseLinear(
        jax.numpy.linspace(0.0, T, 13), shape=system.control_shape, lower=0.0, upper=0.5
    )
    cost = lc.costs.Quadratic(beta=0.3)
    objective = lc.Objective(T=T, gamma=0.99, eta=1.0)
    return lc.Problem(system, control, cost, objective)


@pytest.fixture(autouse=True, scope="module")
def _fresh_compilation_caches():
    """Drop JAX's compiled functions after each test module, so a long-lived
    test worker does not accumulate thousands of executables (a worker that
    ran the whole suite once crashed in XLA's compiler near its end)."""
    yield
    jax.clear_caches()
