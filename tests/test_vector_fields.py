"""Every learning system's vector field is the gradient flow of its expected loss.

Each vector field must equal $-\\partial\\langle L\\rangle/\\partial W$
(divided by $\\tau$, times the control factors its equation prescribes). For the
gain systems the factor is 1: $\\dot w = -\\tfrac1\\tau\\nabla_w\\langle L\\rangle$.

To add a system: append `(name, factory)` to `SYSTEMS`, where
`factory(key) -> (system, w, g)` draws random parameters, weights and control
from `key`. If its flow is not the plain $-\\frac1\\tau\\nabla_w\\langle L\\rangle$
(e.g. a learning-rate factor $(1 + \\rho)$, or an auxiliary weighted loss),
register the prescribed flow in `PRESCRIBED_FLOW[name]`.

Tolerances: vector field vs `jax.grad` 1e-12 relative (float64; both are the
same polynomial, so only round-off separates them). Expected loss vs a
Monte-Carlo mean of the per-sample loss over 200k samples: 5 standard errors
of that mean (a fixed key; a correct formula fails with probability ~6e-7).
"""

from __future__ import annotations

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import lecontrol as lc
from lecontrol.tasks import AbstractTask

GRAD_RTOL = 1e-12
MC_SAMPLES = 200_000
MC_SIGMAS = 5.0


class GaussianMoments(AbstractTask):
    """Zero-mean jointly Gaussian (x, y) with a given joint second moment."""

    joint: jax.Array
    n_in: int = eqx.field(static=True)

    @property
    def Sx(self):
        return self.joint[: self.n_in, : self.n_in]

    @property
    def Sxy(self):
        return self.joint[: self.n_in, self.n_in :]

    @property
    def Sy(self):
        return self.joint[self.n_in :, self.n_in :]

    def sample(self, key, n):
        vals, vecs = jnp.linalg.eigh(self.joint)
        root = vecs * jnp.sqrt(jnp.clip(vals, 0.0))
        z = jax.random.normal(key, (n, self.joint.shape[0])) @ root.T
        return z[:, : self.n_in], z[:, self.n_in :]


def random_moments(key, n_in, n_out) -> GaussianMoments:
    d = n_in + n_out
    M = jax.random.normal(key, (d, d + 2)) / np.sqrt(d)
    joint = M @ M.T
    return GaussianMoments(joint=(joint + joint.T) / 2, n_in=n_in)


# ------------------------------------------------------------------ the registry


def _uniform(key, lo, hi, shape=()):
    return jax.random.uniform(key, shape, minval=lo, maxval=hi, dtype=float)


def single_neuron(key):
    k = jax.random.split(key, 7)
    task = lc.tasks.TwoGaussians(mu=_uniform(k[0], -3, 3), sigma=_uniform(k[1], 0, 2))
    system = lc.systems.SingleNeuronGain(
        task, lam=_uniform(k[2], 0, 2), tau=_uniform(k[3], 0.2, 3), w0=0.0
    )
    return system, _uniform(k[4], -3, 3), _uniform(k[5], -1, 1)


def single_layer(key):
    k = jax.random.split(key, 6)
    n_in, n_out = 4, 3
    system = lc.systems.SingleLayerGain(
        random_moments(k[0], n_in, n_out),
        lam=_uniform(k[1], 0, 2),
        tau=_uniform(k[2], 0.2, 3),
    )
    W = jax.random.normal(k[3], (n_out, n_in))
    G = _uniform(k[4], -1, 1, (n_out, n_in))
    return system, W, G


def single_layer_on_two_gaussians(key):
    k = jax.random.split(key, 6)
    task = lc.tasks.TwoGaussians(mu=_uniform(k[0], -3, 3), sigma=_uniform(k[1], 0, 2))
    system = lc.systems.SingleLayerGain(
        task, lam=_uniform(k[2], 0, 2), tau=_uniform(k[3], 0.2, 3)
    )
    return system, _uniform(k[4], -3, 3, (1, 1)), _uniform(k[5], -1, 1, (1, 1))


SYSTEMS = [
    ("SingleNeuronGain", single_neuron),
    ("SingleLayerGain", single_layer),
    ("SingleLayerGain-1x1", single_layer_on_two_gaussians),
]


def gradient_flow(system, t, w, g):
    r"""$-\frac1\tau\nabla_w\langle L\rangle$ (gain systems: control factor 1)."""
    grad = jax.grad(system.loss, argnums=1)(t, w, g)
    return jax.tree.map(lambda x: -x / system.tau, grad)


PRESCRIBED_FLOW = {}  # name -> (system, t, w, g) -> dw/dt, when not gradient_flow


# ------------------------------------------------------------------ the checks


def assert_field_is_flow(name, factory, key):
    system, w, g = factory(key)
    t = jnp.asarray(0.3)
    got = system.vector_field(t, w, g)
    want = PRESCRIBED_FLOW.get(name, gradient_flow)(system, t, w, g)
    assert jax.tree.structure(got) == jax.tree.structure(w)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert x.shape == y.shape
        scale = max(float(jnp.max(jnp.abs(y))), 1e-12)
        err = float(jnp.max(jnp.abs(x - y))) / scale
        assert err <= GRAD_RTOL, f"{name}: relative error {err:.3g}"


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name, factory", SYSTEMS, ids=[n for n, _ in SYSTEMS])
def test_vector_field_is_gradient_flow(name, factory, seed):
    assert_field_is_flow(name, factory, jax.random.key(seed))


@settings(max_examples=10, deadline=None)
@given(case=st.sampled_from(SYSTEMS), seed=st.integers(0, 2**31 - 1))
def test_vector_field_is_gradient_flow_property(case, seed):
    name, factory = case
    assert_field_is_flow(name, factory, jax.random.key(seed))


def test_gradient_flow_check_can_fail():
    """Guard: a plausible slip (gain missing on the drive term) is caught."""
    system, w, g = single_neuron(jax.random.key(0))
    t = jnp.asarray(0.0)
    sx, sxy = system.task.Sx[0, 0], system.task.Sxy[0, 0]
    wrong = (sxy - w * (sx * (1 + g) ** 2 + system.lam)) / system.tau
    good = gradient_flow(system, t, w, g)
    assert jnp.abs(wrong - good) > GRAD_RTOL * jnp.abs(good)


# ------------------------------------------------------------------ Monte Carlo


def per_sample_loss_neuron(system, x, y, w, g):
    r"""$L = \tfrac12(y - x w\tilde g)^2 + \tfrac12\lambda w^2$ (the paper's App. G.1, Eq. 32)."""
    yhat = x[:, 0] * w * (1 + g)
    return 0.5 * (y[:, 0] - yhat) ** 2 + 0.5 * system.lam * w**2


def per_sample_loss_layer(system, x, y, W, G):
    r"""$L = \tfrac12\lVert y - (\tilde G\circ W)x\rVert^2 + \tfrac\lambda2\lVert W\rVert_F^2$."""
    yhat = x @ ((1 + G) * W).T
    return 0.5 * jnp.sum((y - yhat) ** 2, axis=1) + 0.5 * system.lam * jnp.sum(W**2)


MC_CASES = [
    ("SingleNeuronGain", single_neuron, per_sample_loss_neuron),
    ("SingleLayerGain-1x1", single_layer_on_two_gaussians, per_sample_loss_layer),
    ("SingleLayerGain", single_layer, per_sample_loss_layer),
]


@pytest.mark.parametrize(
    "name, factory, per_sample", MC_CASES, ids=[c[0] for c in MC_CASES]
)
def test_expected_loss_matches_monte_carlo(name, factory, per_sample):
    system, w, g = factory(jax.random.key(11))
    x, y = system.task.sample(jax.random.key(12), MC_SAMPLES)
    losses = per_sample(system, x, y, w, g)
    mean = float(jnp.mean(losses))
    stderr = float(jnp.std(losses)) / np.sqrt(MC_SAMPLES)
    formula = float(system.loss(0.0, w, g))
    # Power: the standard error is small against the loss itself (< 1%).
    assert stderr < 1e-2 * abs(formula)
    assert abs(mean - formula) <= MC_SIGMAS * stderr, (
        f"{name}: <L> = {formula}, Monte-Carlo {mean} +- {stderr}"
    )


def test_task_sample_moments_match_statistics():
    """The samplers used above really have the declared second moments (5 SE)."""
    for task in (
        lc.tasks.TwoGaussians(mu=1.3, sigma=0.6),
        random_moments(jax.random.key(13), 4, 3),
    ):
        x, y = task.sample(jax.random.key(14), MC_SAMPLES)
        z = jnp.concatenate([x, y], axis=1)
        outer = z[:, :, None] * z[:, None, :]
        mean = jnp.mean(outer, axis=0)
        se = jnp.std(outer, axis=0) / np.sqrt(MC_SAMPLES)
        want = jnp.block([[task.Sx, task.Sxy], [task.Sxy.T, task.Sy]])
        assert jnp.all(jnp.abs(mean - want) <= MC_SIGMAS * se + 1e-12)
