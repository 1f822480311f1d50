"""Test configuration: float64 everywhere, shared fixtures."""

import jax

jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402

import lecontrol as lc  # noqa: E402


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
