r"""Parameter sweeps: optimise many control problems as one vmapped computation.

A sweep asks the same question (the control maximising $V$) for many values of
a hyperparameter: the discount $\gamma$, the cost scale $\beta$, the noise
$\sigma$, the horizon $T$, … Each value defines a problem. Here a problem is
built by a function of one parameter value, and the whole optimisation loop —
value and gradient by the chosen strategy, the optimiser's update and the
projection onto the bounds — is a `jax.lax.scan` over iterations, `jax.vmap`ped
over the parameter values and sharded across `jax.devices()` with
`jax.sharding` (a one-axis `Mesh`, the batch split along it by
`NamedSharding(mesh, PartitionSpec("batch"))`, so each device computes its
slice of the batch). On CPU,
`XLA_FLAGS=--xla_force_host_platform_device_count=N` (set before importing
JAX) makes N devices to test with. Across machines, call
`jax.distributed.initialize()` first and run the same sweep in every process:
`jax.devices()` then lists every host's devices, and the results are gathered
on every host.

```python
import jax.numpy as jnp
import lecontrol as lc

def build(beta):
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    system = lc.systems.SingleNeuronGain(task, lam=0.1)
    control = lc.controls.PiecewiseLinear(jnp.linspace(0, 0.6, 31), lower=0.0,
                                          upper=0.5)
    problem = lc.Problem(system, control, lc.costs.Quadratic(beta=beta),
                         lc.Objective(T=0.6, gamma=0.99))
    return problem, control.init(0.0)

res = lc.sweep.optimize_batch(
    build, jnp.linspace(0.1, 2.0, 30),
    optimizer=lc.optimizers.ProjectedGradientAscent(lr=0.4), steps=700)
res.theta          # best coefficients, leading axis over the 30 values of beta
```

Every value in the problem that the parameter changes must be a floating-point
array field of a module (system, cost, objective, control knots), which is how
the library's constructors store them; Python floats used as static fields
(e.g. control bounds) and array shapes must be the same for every value.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, PyTree

from ._dynamics import SolverOptions
from .adjoint import AbstractGradientStrategy, ContinuousAdjoint
from .objective import Problem, Trajectory, _options, _posed, solve
from .optimize import _grad_norm
from .optimizers import AbstractOptimizer

__all__ = ["SweepResult", "optimize_batch", "solve_batch"]

BATCH_AXIS = "batch"

Build = Callable[[PyTree[Array]], tuple[Problem, PyTree[Array]]]


class SweepResult(eqx.Module):
    """What `optimize_batch` found, one entry per parameter value.

    Every array has a leading axis over the parameter values (the batch).

    - `theta`: the best coefficients seen (highest finite $V$) per value.
    - `values`: $V$ at each iteration's starting point, shape `(batch, steps)`;
      `values[:, 0]` is $V$ at `theta0`. From the first iteration whose $V$ or
      gradient is not finite on, a problem stops (keeping its best $\\theta$)
      and its entries are `nan`.
    - `grad_norms`: $\\lVert\\nabla_\\theta V\\rVert_2$ per iteration, like `values`.
    - `best_value`, `best_iteration`: $V$ of `theta` and the iteration that
      evaluated it (`steps` means the final coefficients, evaluated after the loop).
    - `iterations`: iterations completed with a finite $V$ and gradient, per
      value (as `lc.optimize` counts them).
    - `completed`: whether every iteration had a finite $V$ and gradient.
    - `final_theta`: the coefficients where the optimiser stopped.
    - `wall_time`: seconds for the whole batch, compilation included.
    - `num_devices`: how many devices the batch was sharded across.
    """

    theta: PyTree[np.ndarray]
    values: np.ndarray
    grad_norms: np.ndarray
    best_value: np.ndarray
    best_iteration: np.ndarray
    iterations: np.ndarray
    completed: np.ndarray
    final_theta: PyTree[np.ndarray]
    wall_time: float
    num_devices: int


# ----------------------------------------------------------------- the batch


def _batch_size(params) -> int:
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError(
            "`params` holds no arrays; pass the parameter values as an array (or a "
            "pytree of arrays) with a leading axis over the values."
        )
    sizes = {int(jnp.shape(x)[0]) if jnp.ndim(x) else -1 for x in leaves}
    if -1 in sizes or len(sizes) != 1:
        raise ValueError(
            "Every array in `params` needs the same leading (batch) axis; got shapes "
            f"{[jnp.shape(x) for x in leaves]}. Stack the values of each parameter "
            "along axis 0."
        )
    (n,) = sizes
    if n == 0:
        raise ValueError("`params` is empty: pass at least one parameter value.")
    return n


def _element(params, i: int):
    return jax.tree.map(lambda x: x[i], params)


def _as_arrays(params):
    return jax.tree.map(lambda x: jnp.asarray(x), params)


def _resolve_devices(devices: Sequence[jax.Device] | None) -> list[jax.Device]:
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("`devices` is empty; pass None for every device.")
    return devices


def _sharded_vmap(fn: Callable, params, devices: list[jax.Device]):
    """`jax.vmap(fn)(params)` with the batch split across `devices`.

    The batch is padded to a multiple of the device count by repeating its last
    value (so every padded entry is a valid problem) and placed on a one-axis
    `Mesh` with `NamedSharding(mesh, PartitionSpec("batch"))`; the vmapped
    function is compiled with that sharding for its inputs and outputs, so
    XLA's SPMD partitioner gives each device its slice of the batch (the only
    communication is the "is any problem still running" test of the adaptive
    solves' loops). The padding is dropped again.
    """
    n = _batch_size(params)
    pad = (-n) % len(devices)
    if pad:
        params = jax.tree.map(
            lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]), params
        )
    mesh = Mesh(np.asarray(devices), (BATCH_AXIS,))
    sharding = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
    params = jax.device_put(params, sharding)
    # `jax.shard_map` would also do, but equinox's checkpointed while loop
    # (CheckpointAdjoint) cannot be differentiated inside it.
    mapped = jax.jit(jax.vmap(fn), in_shardings=(sharding,), out_shardings=sharding)
    out = mapped(params)
    if jax.process_count() > 1:  # multi-host: gather every host's slices
        from jax.experimental import multihost_utils

        out = multihost_utils.process_allgather(out, tiled=True)
    return jax.tree.map(lambda x: np.asarray(x)[:n], out)


def _check_build(build: Build, p, i: int):
    """Build problem `i` with concrete values, so constructors check them."""
    try:
        built = build(p)
    except (ValueError, TypeError) as e:
        raise type(e)(f"building the problem of parameter value {i} failed: {e}") from e
    if not (isinstance(built, (tuple, list)) and len(built) == 2):
        raise TypeError(
            "`build(p)` must return (problem, theta0), the positional arguments of "
            f"lc.optimize; got {type(built).__name__}."
        )
    problem, theta0 = built
    try:
        _posed(problem, theta0)
    except (ValueError, TypeError) as e:
        raise type(e)(f"the problem of parameter value {i} is invalid: {e}") from e
    return built


def _optimizer_for(optimizer) -> Callable[[Any], AbstractOptimizer]:
    if isinstance(optimizer, AbstractOptimizer):
        return lambda p: optimizer
    if callable(optimizer):
        return optimizer
    raise TypeError(
        "`optimizer` must be an lc.optimizers optimiser, or a function of one "
        f"parameter value returning one; got {type(optimizer).__name__}."
    )


def _state_is_stable(optimizer, theta, state, control) -> bool:
    """Whether a step keeps the optimiser state's structure (scan needs that).

    `LBFGS` creates its solver state in its first step; such optimisers get
    their first step outside the scan. Checked by tracing one step with a
    stand-in gradient, which costs no ODE solve.
    """

    def stand_in(th):
        return jnp.zeros(()), th

    after = eqx.filter_eval_shape(
        lambda th, st: optimizer.step(stand_in, th, st, control)[1], theta, state
    )
    before = eqx.filter_eval_shape(lambda st: st, state)
    arrays = [
        (a.shape, a.dtype) if isinstance(a, jax.ShapeDtypeStruct) else None
        for a in jax.tree.leaves(after)
    ]
    return jax.tree.structure(after) == jax.tree.structure(before) and arrays == [
        (a.shape, a.dtype) if isinstance(a, jax.ShapeDtypeStruct) else None
        for a in jax.tree.leaves(before)
    ]


def _where(flag, a, b):
    """`a` where `flag`, else `b`, leaf by leaf (non-array leaves from `a`)."""
    return jax.tree.map(
        lambda x, y: jnp.where(flag, x, y) if eqx.is_array(x) else x, a, b
    )


def _optimize_one(p, *, build, optimizer_for, steps, adjoint, numerics, peel):
    problem, theta0 = build(p)
    control = problem.control
    problem = _posed(problem, theta0)
    optimizer = optimizer_for(p)

    def value(th):
        return adjoint.value(eqx.tree_at(lambda r: r.theta, problem, th), numerics)

    value_and_grad = jax.value_and_grad(value)

    def body(carry, i, *, same_state=True):
        theta, state, best_V, best_theta, best_i, alive = carry
        new_theta, new_state, V, grad = optimizer.step(
            value_and_grad, theta, state, control
        )
        gnorm = _grad_norm(grad)
        # Iteration `steps` only evaluates the final coefficients (`lc.optimize`
        # does that after its loop): its gradient and update are not used.
        final = i == steps
        finite = jnp.isfinite(V) & (final | jnp.isfinite(gnorm))
        better = alive & finite & (V > best_V)
        best_V = jnp.where(better, V, best_V)
        best_theta = _where(better, theta, best_theta)
        best_i = jnp.where(better, i, best_i)
        counted = alive & finite & ~final
        record = (jnp.where(counted, V, jnp.nan), jnp.where(counted, gnorm, jnp.nan))
        alive_next = jnp.where(final, alive, alive & finite)
        update = alive_next & ~final
        theta = _where(update, new_theta, theta)
        # A state whose structure the step changes (LBFGS's first) is taken as is.
        state = _where(update, new_state, state) if same_state else new_state
        return (theta, state, best_V, best_theta, best_i, alive_next), (
            *record,
            counted,
        )

    theta = control.project(theta0)
    state = optimizer.init(theta, control)
    carry = (
        theta,
        state,
        jnp.asarray(-jnp.inf, dtype=float),
        theta,
        jnp.asarray(0),
        jnp.asarray(True),
    )
    # One value-and-gradient per iteration plus one for the final coefficients,
    # all in one scan (so the solves are compiled once).
    records = []
    start = 0
    if peel:
        # The first step changes the state's structure: take it outside the scan.
        carry, first = body(carry, jnp.asarray(0), same_state=False)
        records.append(jax.tree.map(lambda x: x[None], first))
        start = 1
    # The scan carries arrays only: the optimiser state's other leaves (e.g. the
    # jaxprs in LBFGS's state) are those of the state entering it.
    theta, state, *others = carry
    dynamic, static = eqx.partition(state, eqx.is_array)

    def scan_body(c, i):
        theta, dynamic, *others = c
        c, record = body((theta, eqx.combine(dynamic, static), *others), i)
        theta, state, *others = c
        return (theta, eqx.filter(state, eqx.is_array), *others), record

    carry, rest = jax.lax.scan(
        scan_body, (theta, dynamic, *others), jnp.arange(start, steps + 1)
    )
    records.append(rest)
    values, norms, counted = (
        jnp.concatenate([r[k] for r in records])[:steps] for k in range(3)
    )
    theta, _, best_V, best_theta, best_i, alive = carry
    return best_theta, values, norms, best_V, best_i, jnp.sum(counted), alive, theta


def optimize_batch(
    build: Build,
    params: PyTree[Array],
    *,
    optimizer: AbstractOptimizer | Callable[[Any], AbstractOptimizer],
    steps: int,
    adjoint: AbstractGradientStrategy = ContinuousAdjoint(),
    options: SolverOptions = SolverOptions(),
    devices: Sequence[jax.Device] | None = None,
) -> SweepResult:
    r"""Maximise $V$ for every parameter value at once: `lc.optimize`, vmapped.

    For each value $p_i$ in `params`, `build(p_i)` gives a problem and the
    optimiser runs `steps` iterations on it, exactly as `lc.optimize` does
    (same value-and-gradient, same update and projection, best $\theta$ kept).
    All values run as one computation: a `lax.scan` over iterations, vmapped
    over the values and sharded across `devices` (the batch is padded to a
    multiple of the device count). Results equal those of a Python loop of
    `lc.optimize` up to floating-point round-off.

    Each problem is first built once with concrete values, so the
    constructors' checks report a bad value (naming its index) before
    anything is compiled. A solver failure in any problem stops the whole
    batch with the solver's advice (raise `max_steps`, loosen `rtol`, …).

    **Arguments:**

    - `build`: a function `p -> (problem, theta0)` (the positional arguments
      of `lc.optimize`) of one parameter value.
      Under `vmap`, `p` is traced: use it only as array data (e.g.
      `lc.costs.Quadratic(beta=p)`, knots `jnp.linspace(0, p, K)`), never for
      shapes or Python control flow.
    - `params`: the parameter values, an array or pytree of arrays with a
      leading axis over the values.
    - `optimizer`: `lc.optimizers.ProjectedGradientAscent`, `Adam` or `LBFGS`;
      or a function of one parameter value returning one (e.g. a learning
      rate that depends on the horizon).
    - `steps`: iterations (the same for every value).
    - `adjoint`, `options`: as `lc.optimize`.
    - `devices`: the devices to shard across (default `jax.devices()`; pass
      `jax.devices()[:1]` for an unsharded run).

    **Returns:** a `SweepResult`, every field with a leading axis over the
    parameter values.
    """
    steps = int(steps)
    if steps < 0:
        raise ValueError(f"`steps` must be >= 0; got {steps}.")
    numerics = _options(options)
    devices = _resolve_devices(devices)
    params = _as_arrays(params)
    n = _batch_size(params)
    optimizer_for = _optimizer_for(optimizer)
    built = [_check_build(build, _element(params, i), i) for i in range(n)]
    opt0 = optimizer_for(_element(params, 0))
    if not isinstance(opt0, AbstractOptimizer):
        raise TypeError(
            "`optimizer(p)` must return an lc.optimizers optimiser; got "
            f"{type(opt0).__name__}."
        )
    problem0, theta0 = built[0]
    control0 = problem0.control
    theta0 = control0.project(theta0)
    peel = not _state_is_stable(opt0, theta0, opt0.init(theta0, control0), control0)

    def one(p):
        return _optimize_one(
            p,
            build=build,
            optimizer_for=optimizer_for,
            steps=steps,
            adjoint=adjoint,
            numerics=numerics,
            peel=peel,
        )

    start = time.perf_counter()
    out = _sharded_vmap(one, params, devices)
    wall = time.perf_counter() - start
    best_theta, values, norms, best_V, best_i, iterations, alive, final = out
    return SweepResult(
        theta=best_theta,
        values=values.reshape(n, steps),
        grad_norms=norms.reshape(n, steps),
        best_value=best_V,
        best_iteration=best_i,
        iterations=iterations,
        completed=alive,
        final_theta=final,
        wall_time=wall,
        num_devices=len(devices),
    )


def solve_batch(
    build: Build,
    params: PyTree[Array],
    thetas: PyTree[Array],
    *,
    num_times: int = 201,
    options: SolverOptions = SolverOptions(),
    devices: Sequence[jax.Device] | None = None,
) -> Trajectory:
    r"""`lc.solve` for every parameter value at once, with its own coefficients.

    Problem $i$ is `build(params[i])` with the coefficients `thetas[i]` (e.g.
    `SweepResult.theta`), solved at `num_times` equally spaced times from 0 to
    its own horizon $T_i$. Vmapped and sharded like `optimize_batch`.

    **Arguments:**

    - `build`, `params`, `options`, `devices`: as
      `optimize_batch` (the `theta0` that `build` returns is not used).
    - `thetas`: coefficients with a leading axis over the parameter values.
    - `num_times`: samples per trajectory (at least 2).

    **Returns:** a `Trajectory` whose arrays have a leading axis over the
    parameter values (`ts[i]` runs from 0 to $T_i$).
    """
    if int(num_times) < 2:
        raise ValueError(f"`num_times` must be >= 2; got {num_times}.")
    params = _as_arrays(params)
    thetas = _as_arrays(thetas)
    n = _batch_size(params)
    if _batch_size(thetas) != n:
        raise ValueError(
            f"`thetas` has {_batch_size(thetas)} entries along its leading axis but "
            f"`params` has {n}: pass one set of coefficients per parameter value."
        )
    for i in range(n):
        _check_build(build, _element(params, i), i)
    fraction = jnp.linspace(0.0, 1.0, int(num_times))

    def one(args):
        p, theta = args
        problem, _ = build(p)
        ts = fraction * problem.objective.T
        return solve(problem, theta, ts=ts, options=options)

    return _sharded_vmap(one, (params, thetas), _resolve_devices(devices))
