"""`lc.sweep` under `jax.distributed`: two local CPU processes (gloo
collectives) each optimise and solve their share of a batch, and every process
ends with the whole batch, equal to the single-process sweep."""

import os
import socket
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

import lecontrol as lc

BUILD = '''
import jax.numpy as jnp
import lecontrol as lc

def build(beta):
    """A small single-neuron problem with the cost scale `beta`."""
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    system = lc.systems.SingleNeuronGain(task, lam=0.1)
    control = lc.controls.PiecewiseLinear(jnp.linspace(0, 0.6, 11), lower=0.0, upper=0.5)
    problem = lc.Problem(system, control, lc.costs.Quadratic(beta=beta),
                         lc.Objective(T=0.6, gamma=0.99))
    return problem, control.init(0.0)

BETAS = jnp.asarray([0.1, 0.4, 0.9, 1.5, 2.0])  # odd: the last process pads
'''

WORKER = (
    textwrap.dedent(
        """
    import sys
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    port, pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    jax.distributed.initialize(
        coordinator_address=f"localhost:{port}", num_processes=2, process_id=pid
    )
    import numpy as np
    import lecontrol as lc
    """
    )
    + BUILD
    + textwrap.dedent(
        """
    res = lc.sweep.optimize_batch(
        build, BETAS, optimizer=lc.optimizers.LBFGSB(), steps=30, gtol=1e-9
    )
    tr = lc.sweep.solve_batch(build, BETAS, res.theta, num_times=9)
    np.savez(
        out,
        processes=jax.process_count(),
        num_devices=res.num_devices,
        theta=res.theta,
        best_value=res.best_value,
        iterations=res.iterations,
        result=np.asarray(lc.result_name(res.result)),
        message=np.asarray(res.message),
        V=tr.V,
        loss=tr.loss,
    )
    """
    )
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    port, outs = _free_port(), [tmp_path / f"process{i}.npz" for i in (0, 1)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(port), str(i), str(outs[i])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in (0, 1)
    ]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]

    # The single-process sweep, here.
    namespace: dict = {}
    exec(BUILD, namespace)
    build, betas = namespace["build"], namespace["BETAS"]
    res = lc.sweep.optimize_batch(
        build, betas, optimizer=lc.optimizers.LBFGSB(), steps=30, gtol=1e-9
    )
    tr = lc.sweep.solve_batch(build, betas, res.theta, num_times=9)
    theta = np.asarray(res.theta)
    # The problems differ, so a batch gathered out of order would not match.
    assert np.min(np.abs(np.diff(np.asarray(res.best_value)))) > 1e-4

    for out in outs:
        r = np.load(out)
        assert int(r["processes"]) == 2 and int(r["num_devices"]) == 2
        np.testing.assert_allclose(r["theta"], theta, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(r["best_value"], res.best_value, rtol=1e-12)
        np.testing.assert_array_equal(r["iterations"], res.iterations)
        assert list(r["result"]) == list(lc.result_name(res.result))
        assert list(r["message"]) == list(res.message)
        np.testing.assert_allclose(r["V"], tr.V, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(r["loss"], tr.loss, rtol=1e-10, atol=1e-13)


def test_a_checkpoint_is_refused_across_processes(monkeypatch):
    import jax

    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(ValueError, match="`checkpoint` is not supported"):
        lc.sweep.optimize_batch(
            lambda p: None,
            jnp.ones(2),
            optimizer=lc.optimizers.LBFGSB(),
            steps=1,
            checkpoint=object(),
        )
