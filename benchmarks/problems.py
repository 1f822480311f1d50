"""The benchmark problems of issue 6, built from the public API.

Each problem is the paper's configuration (its Tables 1-5): horizon T = N·α,
knots on [0, T], box bounds, cost and discount. `scale_N` multiplies the
number of SGD steps (the horizon) at a fixed number of knots, for the
memory-scaling measurement.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

import lecontrol as lc


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    system: lc.systems.AbstractLearningSystem
    control: lc.controls.AbstractControl
    cost: lc.costs.AbstractCost
    objective: lc.Objective
    alpha: float  # SGD learning rate = EulerUnrolled's dt
    steps: int  # N

    @property
    def problem(self) -> lc.Problem:
        return lc.Problem(self.system, self.control, self.cost, self.objective)

    def theta(self, seed: int = 0, amplitude: float = 0.2):
        """A fixed, smooth, non-trivial control inside the bounds.

        Optimised controls act early and decay, so each coefficient follows
        a decaying profile in time with a random (seeded) per-weight amplitude.
        """
        theta = self.control.init(0.0)
        leaves, tree = jax.tree.flatten(theta)
        keys = jax.random.split(jax.random.key(seed), len(leaves))
        lo = max(self.control.lower, -amplitude)
        hi = min(self.control.upper, amplitude)
        out = []
        for k, x in zip(keys, leaves):
            decay = jnp.exp(-3.0 * jnp.linspace(0.0, 1.0, x.shape[0]))
            decay = decay.reshape((-1,) + (1,) * (x.ndim - 1))
            amp = jax.random.uniform(k, x.shape[1:], minval=lo, maxval=hi)
            mid = 0.5 * (lo + hi)
            out.append(mid + (amp - mid) * decay)
        return jax.tree.unflatten(tree, out)


def _pwl(system, T, knots, lower, upper):
    return lc.controls.PiecewiseLinear(
        jnp.linspace(0.0, T, knots),
        shape=system.control_shape,
        lower=lower,
        upper=upper,
    )


def single_neuron(scale_N: int = 1) -> Problem:
    alpha, N = 1e-3, 600 * scale_N
    T = N * alpha
    system = lc.systems.SingleNeuronGain(lc.tasks.TwoGaussians(2.0, 1.0), lam=0.1)
    return Problem(
        "single-neuron",
        system,
        _pwl(system, T, 61, 0.0, 0.5),
        lc.costs.Quadratic(0.3),
        lc.Objective(T, 0.99, 1.0),
        alpha,
        N,
    )


def _gain(name, task, hidden, scale_N, knots=201):
    alpha, N = 5e-3, 16000 * scale_N
    T = N * alpha
    system = lc.systems.TwoLayerGain(task, hidden=hidden, lam=0.01, seed=0, scale=0.1)
    return Problem(
        name,
        system,
        _pwl(system, T, knots, -0.5, 0.5),
        lc.costs.ExpQuadratic(0.3),
        lc.Objective(T, 0.99, 1.0),
        alpha,
        N,
    )


def gain_gaussians(scale_N: int = 1) -> Problem:
    return _gain("gain-gaussians", lc.tasks.CorrelatedGaussians(), 6, scale_N)


def gain_semantic(scale_N: int = 1) -> Problem:
    return _gain("gain-semantic", lc.tasks.SemanticHierarchy(4), 30, scale_N)


def gain_digits(scale_N: int = 1) -> Problem:
    return _gain("gain-digits", lc.tasks.Digits.load(classes=(1, 3)), 50, scale_N)


def task_engagement(scale_N: int = 1) -> Problem:
    alpha, N = 5e-3, 13000 * scale_N
    T = N * alpha
    tasks = lc.tasks.ConcatenatedTasks(
        [lc.tasks.Digits.load(classes=c) for c in ((0, 1), (7, 1), (8, 9))]
    )
    system = lc.systems.TaskEngagement(tasks, hidden=20, lam=0.0, seed=0, scale=0.1)
    return Problem(
        "task-engagement",
        system,
        _pwl(system, T, 131, 0.0, 2.0),
        lc.costs.Quadratic(0.1, offset=1.0),
        lc.Objective(T, 0.99, 1.0),
        alpha,
        N,
    )


PROBLEMS = {
    "single-neuron": single_neuron,
    "gain-gaussians": gain_gaussians,
    "gain-semantic": gain_semantic,
    "gain-digits": gain_digits,
    "task-engagement": task_engagement,
}
