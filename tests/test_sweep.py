"""`lc.sweep`: one vmapped, sharded optimisation equals a loop of `lc.optimize`."""

import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

import lecontrol as lc

T = 0.6

# Run in a fresh interpreter: the device count must be set before JAX starts.
# The sweep is `single-neuron-sweep`'s own (quick values, fewer iterations): 16
# problems varying gamma, sigma, beta, lambda and the horizon (so the knots and
# the optimiser's step depend on the traced horizon), 16 = 8 per device.
SHARDED_SCRIPT = textwrap.dedent(
    """
    import sys

    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    import lecontrol as lc
    from lecontrol.experiments import single_neuron_sweep as sns

    steps = 8
    cfg = sns.EXPERIMENT.default_config(quick=True).replace(
        {"optimiser.iterations": steps}, source="test"
    )
    params, _ = sns.points(cfg)
    params = {k: v[:-1] for k, v in params.items()}  # 15: padded to 16
    n = len(params["horizon"])
    build, opt = sns.problem(cfg), sns.optimizer(cfg)
    out = {"device_count": jax.device_count()}
    for name, devices in (("sharded", None), ("single", jax.devices()[:1])):
        res = lc.sweep.optimize_batch(
            build, params, optimizer=opt, steps=steps, devices=devices
        )
        out[f"{name}_devices"] = res.num_devices
        for field in ("theta", "values", "grad_norms", "best_value",
                      "best_iteration", "iterations"):
            out[f"{name}_{field}"] = getattr(res, field)
    # 8 problems per device in groups of 3, 3 and 2, one group after another.
    res = lc.sweep.optimize_batch(
        build, params, optimizer=opt, steps=steps, batch_size=3
    )
    for field in ("theta", "values", "grad_norms", "best_value", "best_iteration"):
        out[f"grouped_{field}"] = getattr(res, field)
    traj = lc.sweep.solve_batch(build, params, out["sharded_theta"], num_times=7)
    out["batch_V"], out["batch_loss"] = traj.V, traj.loss
    loop = {k: [] for k in ("theta", "values", "grad_norms", "best_value",
                            "best_iteration", "solve_V", "solve_loss")}
    for i in range(n):
        p = {k: v[i] for k, v in params.items()}
        s = build(p)
        r = lc.optimize(*s, optimizer=opt(p), steps=steps)
        for field in ("theta", "values", "grad_norms", "best_value", "best_iteration"):
            loop[field].append(getattr(r, field))
        tr = lc.solve(s.problem, jnp.asarray(out["sharded_theta"][i]),
                      ts=jnp.linspace(0.0, s.objective.T, 7))
        loop["solve_V"].append(tr.V)
        loop["solve_loss"].append(tr.loss)
    out |= {f"loop_{k}": v for k, v in loop.items()}
    out["params"] = np.stack([params[k] for k in sorted(params)], axis=1)
    np.savez(sys.argv[1], **{k: np.asarray(v) for k, v in out.items()})
    """
)


@pytest.mark.slow
def test_sharded_sweep_equals_unsharded_and_loop(tmp_path):
    path = tmp_path / "sweep.npz"
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = dict(np.load(path))
    assert int(r["device_count"]) == 2
    assert int(r["sharded_devices"]) == 2 and int(r["single_devices"]) == 1

    # Sharding across devices changes nothing.
    for field in ("theta", "values", "grad_norms", "best_value"):
        np.testing.assert_allclose(
            r[f"sharded_{field}"], r[f"single_{field}"], rtol=1e-12, atol=1e-15
        )
    np.testing.assert_array_equal(
        r["sharded_best_iteration"], r["single_best_iteration"]
    )
    np.testing.assert_array_equal(r["sharded_iterations"], 8)
    # So does computing each device's share in groups (`batch_size`).
    for field in ("theta", "values", "grad_norms", "best_value"):
        np.testing.assert_allclose(
            r[f"grouped_{field}"], r[f"sharded_{field}"], rtol=3e-8, atol=1e-13
        )
    np.testing.assert_array_equal(
        r["grouped_best_iteration"], r["sharded_best_iteration"]
    )

    # The vmapped scan is the optimisation loop of lc.optimize, to round-off
    # (L-BFGS-B's discounted metric spans five orders of magnitude at the
    # smallest gamma; measured: 7.7e-9 relative in one gradient norm after
    # six iterations).
    for field in ("theta", "values", "grad_norms", "best_value"):
        np.testing.assert_allclose(
            r[f"sharded_{field}"], r[f"loop_{field}"], rtol=3e-8, atol=1e-13
        )
    np.testing.assert_array_equal(r["sharded_best_iteration"], r["loop_best_iteration"])
    np.testing.assert_allclose(r["batch_V"], r["loop_solve_V"], rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(
        r["batch_loss"], r["loop_solve_loss"], rtol=1e-9, atol=1e-13
    )
    np.testing.assert_allclose(r["batch_V"][:, -1], r["sharded_best_value"], rtol=1e-9)

    # Each problem got its own parameters, and the optimisation did something.
    theta = r["sharded_theta"]
    distinct_params = {tuple(p) for p in r["params"]}
    assert len({tuple(np.round(t, 12)) for t in theta}) == len(distinct_params) > 8
    assert np.all(r["sharded_best_value"] > r["sharded_values"][:, 0] + 1e-7)


# ------------------------------------------------------------- in process


def _build(p):
    """A small single-neuron problem with the cost scale `p`."""
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    system = lc.systems.SingleNeuronGain(task, lam=0.1)
    control = lc.controls.PiecewiseLinear(jnp.linspace(0.0, T, 7), lower=0.0, upper=0.5)
    problem = lc.Problem(
        system, control, lc.costs.Quadratic(beta=p), lc.Objective(T=T, gamma=0.99)
    )
    return problem, control.init(0.1)


@pytest.mark.slow
def test_lbfgs_first_step_matches_loop():
    """LBFGS builds its solver state in its first step (outside the scan)."""
    betas = jnp.array([0.1, 1.0])
    opt = lc.optimizers.LBFGS()
    res = lc.sweep.optimize_batch(_build, betas, optimizer=opt, steps=4)
    assert res.values.shape == (2, 4) and res.theta.shape == (2, 7)
    for i, beta in enumerate(betas):
        r = lc.optimize(*_build(beta), optimizer=opt, steps=4)
        np.testing.assert_allclose(res.values[i], r.values, rtol=1e-9)
        np.testing.assert_allclose(res.theta[i], r.theta, rtol=1e-9, atol=1e-12)
        assert res.best_iteration[i] == r.best_iteration
    assert np.all(res.best_value > res.values[:, 0])
    assert np.all(res.theta >= 0.0) and np.all(res.theta <= 0.5)


def test_bad_inputs_are_reported_before_compiling():
    opt = lc.optimizers.Adam(lr=0.1)
    with pytest.raises(ValueError, match="parameter value 1.*beta"):
        lc.sweep.optimize_batch(_build, jnp.array([0.1, -1.0]), optimizer=opt, steps=2)
    with pytest.raises(ValueError, match="same leading"):
        lc.sweep.optimize_batch(
            lambda p: _build(p["a"]),
            {"a": jnp.ones(2), "b": jnp.ones(3)},
            optimizer=opt,
            steps=2,
        )
    with pytest.raises(ValueError, match="empty"):
        lc.sweep.optimize_batch(_build, jnp.ones(0), optimizer=opt, steps=2)
    with pytest.raises(TypeError, match=r"\(problem, theta0\)"):
        lc.sweep.optimize_batch(
            lambda p: _build(p)[0], jnp.ones(2), optimizer=opt, steps=2
        )
    with pytest.raises(TypeError, match="optimiser"):
        lc.sweep.optimize_batch(_build, jnp.ones(2), optimizer=0.1, steps=2)
    with pytest.raises(ValueError, match="steps"):
        lc.sweep.optimize_batch(_build, jnp.ones(2), optimizer=opt, steps=-1)
    with pytest.raises(ValueError, match="thetas"):
        lc.sweep.solve_batch(_build, jnp.ones(2), jnp.zeros((3, 7)))
    for bad, error in ((0, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="batch_size"):
            lc.sweep.optimize_batch(
                _build, jnp.ones(2), optimizer=opt, steps=2, batch_size=bad
            )
        with pytest.raises(error, match="batch_size"):
            lc.sweep.solve_batch(_build, jnp.ones(2), jnp.zeros((2, 7)), batch_size=bad)


def _build_lr(p):
    """`_build` with unbounded-above coefficients, and its learning rate."""
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    system = lc.systems.SingleNeuronGain(task, lam=0.1)
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0.0, T, 7), lower=0.0, upper=1e200
    )
    problem = lc.Problem(
        system, control, lc.costs.Quadratic(beta=p["beta"]), lc.Objective(T=T)
    )
    return problem, control.init(0.1)


def test_a_diverging_problem_stops_alone():
    """An absurd learning rate throws one problem's control to 1e200, where
    the dynamics cannot be solved: that problem is marked and keeps its best
    theta, the others finish with the values of their single runs."""
    params = {"beta": jnp.array([0.1, 0.3, 0.3]), "lr": jnp.array([2.0, 1e250, 1.0])}

    def opt(p):
        return lc.optimizers.ProjectedGradientAscent(lr=p["lr"])

    steps = 6
    res = lc.sweep.optimize_batch(_build_lr, params, optimizer=opt, steps=steps)
    assert list(res.status) == ["completed", "max_steps_reached", "completed"]
    assert list(res.completed) == [True, False, True]
    assert "stopped at iteration 1" in res.message[1]
    assert "max_steps" in res.message[1]
    np.testing.assert_array_equal(res.iterations, [steps, 1, steps])
    assert res.best_iteration[1] == 0 and np.all(np.isnan(res.values[1, 1:]))
    np.testing.assert_array_equal(res.theta[1], _build_lr({"beta": 0.3})[1])
    for i in (0, 2):
        p = {k: v[i] for k, v in params.items()}
        r = lc.optimize(*_build_lr(p), optimizer=opt(p), steps=steps)
        assert r.status == res.status[i]
        np.testing.assert_allclose(res.values[i], r.values, rtol=1e-10)
        np.testing.assert_allclose(res.grad_norms[i], r.grad_norms, rtol=1e-9)
        np.testing.assert_allclose(res.theta[i], r.theta, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(res.best_value[i], r.best_value, rtol=1e-10)
        assert res.best_iteration[i] == r.best_iteration


def test_batch_gtol_and_chunks():
    """Each problem stops at its own projected-gradient tolerance; neither the
    chunk length nor computing the problems one at a time (`batch_size=1`,
    `jax.lax.map` instead of `jax.vmap`) changes the result."""
    betas = jnp.array([0.1, 1.0])
    opt = lc.optimizers.ProjectedGradientAscent(lr=3.0)
    kw = dict(optimizer=opt, steps=40, gtol=1e-3)
    res = lc.sweep.optimize_batch(_build, betas, chunk=7, **kw)
    again = lc.sweep.optimize_batch(_build, betas, chunk=40, **kw)
    for field in ("values", "grad_norms", "theta", "best_value", "iterations"):
        np.testing.assert_array_equal(getattr(res, field), getattr(again, field))
    mapped = lc.sweep.optimize_batch(_build, betas, chunk=7, batch_size=1, **kw)
    np.testing.assert_array_equal(mapped.iterations, res.iterations)
    np.testing.assert_array_equal(mapped.status, res.status)
    for field in ("values", "grad_norms", "theta", "best_value"):
        np.testing.assert_allclose(
            getattr(mapped, field), getattr(res, field), rtol=1e-10, atol=1e-14
        )
    solved = lc.sweep.solve_batch(_build, betas, res.theta, num_times=5)
    one = lc.sweep.solve_batch(_build, betas, res.theta, num_times=5, batch_size=1)
    np.testing.assert_allclose(one.V, solved.V, rtol=1e-10, atol=1e-14)
    # Without the weights: the same scalars, batched and one at a time.
    for bs in (None, 1):
        light = lc.sweep.solve_batch(
            _build, betas, res.theta, num_times=5, batch_size=bs, weights=False
        )
        assert light.w is None and light.g is None
        for field in ("loss", "v", "V"):
            np.testing.assert_allclose(
                getattr(light, field), getattr(solved, field), rtol=1e-10, atol=1e-14
            )
    for i, beta in enumerate(betas):
        r = lc.optimize(*_build(beta), **kw)
        assert r.status == res.status[i]
        assert r.iterations == res.iterations[i]
        np.testing.assert_allclose(res.values[i, : r.iterations], r.values, rtol=1e-10)
    assert "converged" in set(res.status)


def test_one_at_a_time_batch_and_split():
    params, segments = lc.sweep.one_at_a_time(
        {"gamma": 0.9, "beta": 0.3}, {"beta": [0.1, 1.0], "gamma": [0.5]}
    )
    np.testing.assert_array_equal(params["beta"], [0.3, 0.1, 1.0, 0.3])
    np.testing.assert_array_equal(params["gamma"], [0.9, 0.9, 0.9, 0.5])
    out = lc.sweep.split(segments, {"V": np.arange(4.0)})
    assert out["default_V"] == 0.0
    np.testing.assert_array_equal(out["beta_V"], [1.0, 2.0])
    np.testing.assert_array_equal(out["gamma_V"], [3.0])
    np.testing.assert_array_equal(out["beta_values"], [0.1, 1.0])
    with pytest.raises(ValueError, match="beta"):
        lc.sweep.one_at_a_time({"beta": 0.3}, {"beta": []})
