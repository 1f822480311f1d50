"""The public problem object, the solver options and the absence of global side
effects (issue 11, items 1 and 6)."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lecontrol as lc


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_leaves_jax_config_alone():
    out = _run(
        """
        import jax
        before = jax.config.jax_enable_x64
        import lecontrol
        import lecontrol.experiments, lecontrol.cli, lecontrol.closed_form
        print(before, jax.config.jax_enable_x64)
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_float32_with_float64_tolerances_warns():
    """In float32 the default rtol (1e-7) cannot be met: say how to fix it."""
    out = _run(
        """
        import warnings
        import jax.numpy as jnp
        import lecontrol as lc

        system = lc.systems.SingleNeuronGain(lc.tasks.TwoGaussians(2.0, 1.0), lam=0.1)
        control = lc.controls.PiecewiseLinear(jnp.linspace(0.0, 0.5, 6), upper=0.5)
        problem = lc.Problem(system, control, lc.costs.Quadratic(0.3),
                             lc.Objective(T=0.5, gamma=0.99))
        theta = control.init(0.0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            V_tight = lc.value(problem, theta)
        print("TIGHT", len(caught), caught[0].message if caught else "")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            V_loose = lc.value(problem, theta, options=lc.SolverOptions(rtol=1e-4,
                                                                      atol=1e-6))
        print("LOOSE", len(caught), V_loose.dtype)
        """
    )
    assert out.returncode == 0, out.stderr
    tight, loose = out.stdout.strip().splitlines()
    assert tight.startswith("TIGHT 1 ")
    assert "float32" in tight and "jax_enable_x64" in tight and "rtol" in tight
    assert loose == "LOOSE 0 float32"


def test_float64_tolerances_do_not_warn(recwarn, neuron_problem):
    lc.value(neuron_problem, neuron_problem.control.init(0.0))
    assert not [w for w in recwarn if "float32" in str(w.message)]


def test_cli_runs_in_float64(tmp_path):
    """The command line switches on float64 itself: its arrays are float64."""
    out = _run(
        f"""
        import numpy as np
        from lecontrol.cli import main
        status = main(["run", "single-neuron", "--quick", "--set",
                       "optimiser.iterations=1",
                       "--out", {str(tmp_path / "run")!r}])
        data = np.load({str(tmp_path / "run" / "results.npz")!r})
        print(status, data["control_V"].dtype)
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["0", "float64"]


def test_problem_is_a_pytree_and_vmaps(neuron_problem):
    """A batch of problems (here over the cost scale) is one `jax.vmap`."""
    theta = neuron_problem.control.init(0.2)
    betas = jnp.asarray([0.1, 0.3, 1.0])

    def V(beta):
        problem = lc.Problem(
            neuron_problem.system,
            neuron_problem.control,
            lc.costs.Quadratic(beta=beta),
            neuron_problem.objective,
        )
        return lc.value(problem, theta)

    batched = jax.vmap(V)(betas)
    single = [float(V(b)) for b in betas]
    np.testing.assert_allclose(batched, single, rtol=1e-12)
    # V falls with the cost scale at a fixed non-zero control.
    assert batched[0] > batched[1] > batched[2]


def test_verbs_take_problem_then_theta(neuron_problem):
    theta = neuron_problem.control.init(0.1)
    options = lc.SolverOptions(rtol=1e-9, atol=1e-11)
    V = lc.value(neuron_problem, theta, options=options)
    traj = lc.solve(neuron_problem, theta, ts=jnp.asarray([0.0, 0.6]), options=options)
    np.testing.assert_allclose(traj.V[-1], V, rtol=1e-12)
    ts = jnp.linspace(0.0, 0.6, 9)
    full = lc.solve(neuron_problem, theta, ts=ts, options=options)
    light = lc.solve(neuron_problem, theta, ts=ts, options=options, weights=False)
    assert light.w is None and light.g is None
    for field in ("loss", "v", "V", "num_steps"):
        np.testing.assert_allclose(
            getattr(light, field), getattr(full, field), rtol=1e-13
        )
    assert np.ptp(np.asarray(light.loss)) > 0  # the loss moves: a real comparison
    res = lc.optimize(neuron_problem, theta, steps=2, options=options)
    assert res.iterations == 2
    with pytest.raises(TypeError, match="positional"):
        lc.value(neuron_problem, theta, lc.ContinuousAdjoint())  # type: ignore[misc]


def test_solver_options_defaults_are_the_documented_values():
    o = lc.SolverOptions()
    assert (o.rtol, o.atol, o.max_steps, o.dt0) == (1e-7, 1e-9, 4096, None)
    assert type(o.solver).__name__ == "Tsit5"
