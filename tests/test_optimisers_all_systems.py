"""Every learning system and every optimiser: a few steps of `lc.optimize` raise V.

Each system of `lc.systems` is built on a tiny problem (hidden ≤ 3, horizon
T = 0.5, three knots) with the paper's kind of control, bounds and cost, and
optimised for 4 iterations from a starting control that is not optimal, with
`ProjectedGradientAscent` (every system) and `Adam` and `LBFGS` (a scalar and
a pytree control) under the default gradient strategy (`ContinuousAdjoint`). Checked: the loop completes, the best V
exceeds the starting V by more than 1e-6·|V| (the solve's rtol is 1e-7, so this
is not solver noise), and the returned θ lies within the control's bounds.

Cost: every (system, optimiser) pair is its own XLA compilation of the forward
and costate solves, since `lc.optimize` jit-compiles the optimiser's step
together with the gradient, so nothing is shared between optimisers. Measured
on 2 shared CPU cores: ~7 s CPU per case for `ProjectedGradientAscent`, ~6 s
for `Adam`, ~16 s for `LBFGS` (its step traces the gradient several times);
about 2 minutes for the file (5 with every optimiser on every system).
`V(θ0)` and the final evaluation share one compilation per system. Every
case is marked `slow` (deselect with `-m "not slow"`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lecontrol as lc

T = 0.5
KNOTS = jnp.linspace(0.0, T, 3)


def _pl(system, lower, upper):
    return lc.controls.PiecewiseLinear(
        KNOTS, shape=system.control_shape, lower=lower, upper=upper
    )


def _objective(gamma=0.99):
    return lc.Objective(T=T, gamma=gamma, eta=1.0)


def _gaussians():
    return lc.tasks.CorrelatedGaussians()


def single_neuron():
    s = lc.systems.SingleNeuronGain(lc.tasks.TwoGaussians(mu=2.0, sigma=1.0), lam=0.1)
    c = _pl(s, 0.0, 0.5)
    return s, c, lc.costs.Quadratic(0.3), _objective(), c.init(0.0), 0.5


def single_layer():
    s = lc.systems.SingleLayerGain(_gaussians(), lam=0.01)
    c = _pl(s, -0.5, 0.5)
    return s, c, lc.costs.ExpQuadratic(0.3), _objective(), c.init(0.0), 0.5


def two_layer_linear():
    # The control has no effect here: only its cost counts, so V rises by
    # moving the costly starting control towards 0.
    s = lc.systems.TwoLayerLinear(_gaussians(), hidden=3, lam=0.01, scale=0.3)
    c = _pl(s, -0.5, 0.5)
    return s, c, lc.costs.Quadratic(0.3), _objective(), c.init(0.3), 1.0


def two_layer_gain():
    s = lc.systems.TwoLayerGain(_gaussians(), hidden=3, lam=0.01, scale=0.3)
    c = _pl(s, -0.5, 0.5)
    return s, c, lc.costs.ExpQuadratic(0.3), _objective(), c.init(0.0), 0.5


def feedback_alignment():
    s = lc.systems.FeedbackAlignment(_gaussians(), hidden=3, lam=0.01, scale=0.3)
    c = _pl(s, -0.5, 0.5)
    return s, c, lc.costs.ExpQuadratic(0.3), _objective(), c.init(0.0), 0.5


def learning_rate():
    s = lc.systems.LearningRate(_gaussians(), hidden=3, scale=0.3)
    c = _pl(s, -1.0, 1.0)
    return s, c, lc.costs.Quadratic(0.1), _objective(), c.init(0.0), 0.5


def task_engagement():
    tasks = lc.tasks.ConcatenatedTasks(
        [_gaussians(), lc.tasks.CorrelatedGaussians(mu=(-2.0, 2.0), p=0.2)]
    )
    s = lc.systems.TaskEngagement(tasks, hidden=3, scale=0.3)
    c = _pl(s, 0.0, 2.0)
    cost = lc.costs.Quadratic(0.1, offset=1.0)  # attentive
    return s, c, cost, _objective(), c.init(1.0), 0.5


def category_engagement():
    s = lc.systems.CategoryEngagement(
        lc.tasks.SemanticHierarchy(2), hidden=3, scale=0.3
    )
    c = _pl(s, 0.0, 2.0)
    cost = lc.costs.FixedNorm(0.1, 3.0)  # fixed total engagement ‖φ‖² = C
    return s, c, cost, _objective(), c.init(1.0), 0.5


def task_switch():
    sw = lc.tasks.SwitchingTasks(
        [_gaussians(), lc.tasks.CorrelatedGaussians(mu=(-2.0, 2.0), p=0.2)],
        period=0.3,
        horizon=T,
    )
    s = lc.systems.TwoLayerGain(sw, hidden=3, lam=0.001, scale=0.3)
    c = _pl(s, -0.5, 0.5)
    return s, c, lc.costs.ExpQuadratic(0.3), _objective(), c.init(0.0), 0.5


def maml():
    tasks = [_gaussians(), lc.tasks.CorrelatedGaussians(mu=(-2.0, 2.0), p=0.2)]
    s = lc.systems.MAML(tasks, hidden=3)
    c = lc.controls.Constant(shape=s.control_shape)
    theta0 = s.gaussian_init(seed=0, scale=0.3)
    return s, c, lc.costs.Quadratic(0.0), _objective(gamma=1.0), theta0, 0.5


def tanh_taylor():
    task = _gaussians()
    s = lc.systems.TanhTaylor(task, hidden=3, scale=0.3, mean_y=task.mean_y())
    c = _pl(s, -0.5, 0.5)
    return s, c, lc.costs.ExpQuadratic(0.3), _objective(), c.init(0.0), 0.5


BUILDERS = {
    "SingleNeuronGain": single_neuron,
    "SingleLayerGain": single_layer,
    "TwoLayerLinear": two_layer_linear,
    "TwoLayerGain": two_layer_gain,
    "FeedbackAlignment": feedback_alignment,
    "LearningRate": learning_rate,
    "TaskEngagement": task_engagement,
    "CategoryEngagement": category_engagement,
    "TwoLayerGain:switching": task_switch,
    "MAML": maml,
    "TanhTaylor": tanh_taylor,
}

OPTIMIZERS = {
    "pga": lambda lr: lc.optimizers.ProjectedGradientAscent(lr=lr),
    "adam": lambda lr: lc.optimizers.Adam(lr=0.05),
    "lbfgs": lambda lr: lc.optimizers.LBFGS(),
}


def test_every_system_of_lc_systems_is_covered():
    public = {
        name
        for name in dir(lc.systems)
        if isinstance(getattr(lc.systems, name), type)
        and issubclass(getattr(lc.systems, name), lc.systems.AbstractLearningSystem)
        and not name.startswith("Abstract")
    }
    assert public == {name.split(":")[0] for name in BUILDERS}


@functools.cache
def problem(name):
    """The problem and V at its starting control (compiled once per system)."""
    system, control, cost, obj, theta0, lr = BUILDERS[name]()
    assert type(system).__name__ == name.split(":")[0]
    # steps=0 evaluates V(θ0) (and its gradient) by the loop's own evaluation,
    # as every run evaluates its final coefficients.
    start = lc.optimize(lc.Problem(system, control, cost, obj), theta0, steps=0)
    return system, control, cost, obj, theta0, lr, start.best_value


# Every system with projected gradient ascent (what the system contributes is
# its gradient), and every optimiser on two systems (a scalar and a pytree
# control): the optimisers' steps do not depend on the system otherwise.
CASES = [(name, "pga") for name in BUILDERS] + [
    (name, opt)
    for name in ("SingleNeuronGain", "TwoLayerGain")
    for opt in OPTIMIZERS
    if opt != "pga"
]


@pytest.mark.slow
@pytest.mark.parametrize("name, optimizer", CASES)
def test_few_steps_of_each_optimizer_raise_value(name, optimizer):
    system, control, cost, obj, theta0, lr, V0 = problem(name)
    res = lc.optimize(
        lc.Problem(system, control, cost, obj),
        theta0,
        optimizer=OPTIMIZERS[optimizer](lr),
        steps=4,
    )
    assert res.status == "completed", res.message
    assert np.isfinite(V0) and res.iterations == 4
    assert res.best_value > V0 + 1e-6 * abs(V0), (res.values, res.best_value, V0)
    for leaf in jax.tree.leaves(res.theta):
        assert float(jnp.min(leaf)) >= control.lower
        assert float(jnp.max(leaf)) <= control.upper
