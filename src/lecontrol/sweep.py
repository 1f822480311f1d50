r"""Parameter sweeps: optimise many control problems as one vmapped computation.

A sweep asks the same question (the control maximising $V$) for many values of
a hyperparameter: the discount $\gamma$, the cost scale $\beta$, the noise
$\sigma$, the horizon $T$, … Each value defines a problem. Here a problem is
built by a function of one parameter value, and the optimisation loop of
`lc.optimize` itself — value and gradient by the chosen strategy, the
optimiser's update and the projection onto the bounds, best-so-far tracking,
stopping rules and result codes, compiled in chunks of iterations with
checkpoints between them — is `jax.vmap`ped over the parameter values (each
problem stops on its own: a diverging one is marked by its result code while
the others finish) and sharded across `jax.devices()` with
`jax.sharding` (a one-axis `Mesh`, the batch split along it by
`NamedSharding(mesh, PartitionSpec("batch"))`, so each device computes its
slice of the batch). The batch is placed round robin (device $d$ of $D$
holds problems $d, d + D, \dots$), so that neighbours, usually alike in cost,
run side by side: the devices' adaptive loops advance together. Results and
checkpoints are in problem order. On CPU,
`jax.config.update("jax_num_cpu_devices", N)` right after importing JAX (or
`lecontrol run --devices N`) makes N devices, each on its own core. Across
machines, call `jax.distributed.initialize()` first and run the same sweep in every process:
each process then optimises its own block of the batch on its own devices
(`jax.local_devices()`), with no communication inside the loop, and one
`process_allgather` at the end gives every process the whole batch
(docs/performance.md shows a SLURM launch). Pass `devices=jax.devices()` to
shard one computation across every host's devices instead.

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

import typing
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
from .checkpoint import Checkpointer
from .objective import Problem, Trajectory, _options, _posed, solve
from .optimize import (
    RESULTS,
    _advance,
    _chunk_length,
    _diagnose,
    _drive,
    _first,
    _gtol,
    _loop_numerics,
    _message,
    _Runner,
    _Setup,
    _start,
    _state_is_stable,
    _static_after_step,
    result_name,
)
from .optimizers import AbstractOptimizer

__all__ = [
    "Segment",
    "SweepResult",
    "one_at_a_time",
    "optimize_batch",
    "solve_batch",
    "split",
]

BATCH_AXIS = "batch"

Build = Callable[[PyTree[Array]], tuple[Problem, PyTree[Array]]]


class SweepResult(eqx.Module):
    """What `optimize_batch` found, one entry per parameter value.

    Every array has a leading axis over the parameter values (the batch).

    - `theta`: the best coefficients seen (highest finite $V$) per value.
    - `values`: $V$ at each iteration's starting point, shape `(batch, steps)`;
      `values[:, 0]` is $V$ at `theta0`. Iterations a problem did not count
      (after it stopped: converged, or failed) are `nan`.
    - `grad_norms`: $\\lVert\\nabla_\\theta V\\rVert_2$ per iteration, like `values`.
    - `projected_grad_norms`: the projected-gradient norm per iteration (what
      `gtol` is compared with), like `values`.
    - `best_value`, `best_iteration`: $V$ of `theta` and the iteration that
      evaluated it (`iterations` means the final coefficients, evaluated after
      the loop).
    - `projected_grad_norm`: the projected-gradient norm at `theta`, per value
      (as `lc.OptimizeResult.projected_grad_norm`).
    - `iterations`: iterations completed with a finite $V$ and gradient, per
      value (as `lc.optimize` counts them).
    - `result`: the `lc.RESULTS` code of every problem (`lc.result_name`
      gives the names): a diverging problem is marked `nonfinite`,
      `max_steps_reached` or `solver_failed` while the others finish.
    - `message`: why each problem stopped, in words.
    - `final_theta`: the coefficients where the optimiser stopped.
    - `wall_time`: seconds for the whole batch, compilation included.
    - `num_devices`: how many devices the batch was sharded across.
    """

    theta: PyTree[np.ndarray]
    values: np.ndarray
    grad_norms: np.ndarray
    projected_grad_norms: np.ndarray
    best_value: np.ndarray
    best_iteration: np.ndarray
    projected_grad_norm: np.ndarray
    iterations: np.ndarray
    result: RESULTS
    message: list[str]
    final_theta: PyTree[np.ndarray]
    wall_time: float
    num_devices: int

    @property
    def status(self) -> np.ndarray:
        """The name of every problem's `result`."""
        return result_name(self.result)

    @property
    def completed(self) -> np.ndarray:
        """Whether each problem ended without failing (`completed`, `converged`)."""
        return np.isin(self.status, ("completed", "converged", "stopped"))


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


class _Placement(eqx.Module):
    """A batch padded to a multiple of the device count, on a one-axis `Mesh`."""

    n: int = eqx.field(static=True)
    mesh: Mesh = eqx.field(static=True)
    batch_size: int | None = eqx.field(static=True, default=None)

    @property
    def sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(BATCH_AXIS))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def order(self) -> np.ndarray:
        """The problem at each row of the placed batch: round robin over the
        devices (device $d$ of $D$ holds problems $d, d + D, d + 2D, \dots$),
        so that neighbours in the batch, which are usually alike in cost (a
        sweep in the order of its values), run side by side on different
        devices. The devices' adaptive loops advance together (their stopping
        test spans the batch), so neighbours side by side waste least:
        MAML's 18 horizons on 2 CPU devices took 39 s round robin against
        45 s in blocks (61 s on one device; 150 Adam iterations,
        `benchmarks/sweep_devices.py`)."""
        devices = self.mesh.devices.size
        rows = self.n + (-self.n) % devices
        return np.arange(rows).reshape(-1, devices).T.ravel()

    def pad(self, params):
        """Pad by repeating the last value (so every padded entry is a valid
        problem) and place the batch on the devices."""
        n, devices = self.n, self.mesh.devices.size
        pad = (-n) % devices
        if pad:
            params = jax.tree.map(
                lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]),
                params,
            )
        return self.put(params)

    def put(self, batch):
        """A padded batch in problem order, placed on the devices (`order`)."""
        if self.mesh.devices.size > 1:
            batch = jax.tree.map(lambda x: jnp.asarray(x)[self.order], batch)
        return jax.device_put(batch, self.sharding)

    def jit(self, fn: Callable, batched_args: int, extra_args: int = 0) -> Callable:
        """`fn` over the batch of its first `batched_args` arguments, compiled
        with the batch split across the mesh (the others replicated): vmapped,
        or with `batch_size` in groups of that many, one after another."""
        shardings = (self.sharding,) * batched_args + (self.replicated,) * extra_args
        # `jax.shard_map` would also do, but equinox's checkpointed while loop
        # (CheckpointAdjoint) cannot be differentiated inside it.
        return jax.jit(
            self._over_batch(fn, batched_args, extra_args),
            in_shardings=shardings,
            out_shardings=self.sharding,
        )

    def _over_batch(self, fn: Callable, batched_args: int, extra_args: int):
        if self.batch_size is None:
            return jax.vmap(fn, in_axes=(0,) * batched_args + (None,) * extra_args)
        devices = self.mesh.devices.size

        def grouped(*args):
            # One block per device (the sharded axis), mapped within it.
            batched, rest = args[:batched_args], args[batched_args:]
            blocks = jax.tree.map(
                lambda x: x.reshape(devices, -1, *x.shape[1:]), batched
            )

            def on_device(block):
                return jax.lax.map(
                    lambda xs: fn(*xs, *rest), block, batch_size=self.batch_size
                )

            out = jax.vmap(on_device)(blocks)
            return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), out)

        return grouped

    def gather(self, out, *, trim: bool = True):
        """Every host's slices as numpy arrays (the padding dropped if `trim`)."""
        here = jax.process_index()
        if any(d.process_index != here for d in self.mesh.devices.flat):
            # The mesh spans several hosts: gather every host's slices.
            from jax.experimental import multihost_utils

            out = multihost_utils.process_allgather(out, tiled=True)
        back = np.argsort(self.order)  # rows back in problem order

        def host(x):
            x = np.asarray(x)
            x = x[back] if self.mesh.devices.size > 1 else x
            return x[: self.n] if trim else x

        return jax.tree.map(host, out)


def _placement(
    params, devices: list[jax.Device], batch_size: int | None = None
) -> _Placement:
    mesh = Mesh(np.asarray(devices), (BATCH_AXIS,))
    return _Placement(_batch_size(params), mesh, _group_size(batch_size))


def _group_size(batch_size: int | None) -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(
            f"`batch_size` must be an int >= 1 or None; got {type(batch_size).__name__}."
        )
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1 or None; got {batch_size}.")
    return int(batch_size)


def _sharded_vmap(
    fn: Callable, params, devices: list[jax.Device], batch_size: int | None = None
):
    """`jax.vmap(fn)(params)` with the batch split across `devices` (in groups
    of `batch_size` with `jax.lax.map` if given).

    The batch is padded to a multiple of the device count by repeating its last
    value (so every padded entry is a valid problem) and placed on a one-axis
    `Mesh` with `NamedSharding(mesh, PartitionSpec("batch"))`; the vmapped
    function is compiled with that sharding for its inputs and outputs, so
    XLA's SPMD partitioner gives each device its slice of the batch (the only
    communication is the "is any problem still running" test of the adaptive
    solves' loops). The padding is dropped again.
    """
    place = _placement(params, devices, batch_size)
    return place.gather(place.jit(fn, 1)(place.pad(params)))


# ------------------------------------------------ several processes


def _my_rows(n: int) -> np.ndarray:
    r"""This process's rows of a batch of `n`: contiguous blocks of
    $\lceil n/P\rceil$ rows, the last ones padded by repeating row $n - 1$ (so
    every process computes the same number of valid problems)."""
    count, index = jax.process_count(), jax.process_index()
    per = -(-n // count)
    return np.minimum(np.arange(index * per, (index + 1) * per), n - 1)


def _take(tree, rows: np.ndarray):
    return jax.tree.map(lambda x: x[rows], tree)


def _gather_rows(tree, n: int):
    """Every process's rows of `tree`'s arrays, in batch order (one collective:
    `process_allgather`), the padding dropped; other leaves as they are."""
    from jax.experimental import multihost_utils

    arrays, rest = eqx.partition(tree, eqx.is_array)
    arrays = multihost_utils.process_allgather(arrays, tiled=True)
    arrays = jax.tree.map(lambda x: np.asarray(x)[:n], arrays)
    return eqx.combine(arrays, rest)


def _optimize_across_processes(build, params, *, progress, **kw) -> SweepResult:
    """`optimize_batch` under `jax.distributed`: each process optimises its
    share of the batch on its own devices, with no communication inside the
    loop, and the results are gathered on every process at the end."""
    params = _as_arrays(params)
    n = _batch_size(params)
    for i in range(n):  # every process checks every value, as a single one would
        _check_build(build, _element(params, i), i)
    mine = progress and jax.process_index() == 0
    local = optimize_batch(
        build,
        _take(params, _my_rows(n)),
        devices=jax.local_devices(),
        progress=mine,
        **kw,
    )
    rows = {
        k: getattr(local, k)
        for k in (
            "theta",
            "values",
            "grad_norms",
            "projected_grad_norms",
            "best_value",
            "best_iteration",
            "projected_grad_norm",
            "iterations",
            "result",
            "final_theta",
        )
    }
    rows = _gather_rows(rows, n)
    wall = _gather_rows({"wall": np.asarray([local.wall_time])}, jax.process_count())
    names = result_name(rows["result"])
    gtol = _gtol(kw["gtol"])
    messages = [
        _message(
            str(names[i]),
            iterations=int(rows["iterations"][i]),
            steps=kw["steps"],
            best_iteration=int(rows["best_iteration"][i]),
            gtol=gtol,
        )
        for i in range(n)
    ]
    return SweepResult(
        **rows,
        message=messages,
        wall_time=float(np.max(wall["wall"])),
        num_devices=local.num_devices * jax.process_count(),
    )


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


def optimize_batch(
    build: Build,
    params: PyTree[Array],
    *,
    optimizer: AbstractOptimizer | Callable[[Any], AbstractOptimizer],
    steps: int,
    gtol: float | None = None,
    adjoint: AbstractGradientStrategy = ContinuousAdjoint(),
    options: SolverOptions = SolverOptions(),
    devices: Sequence[jax.Device] | None = None,
    checkpoint: Checkpointer | None = None,
    progress: bool = False,
    chunk: int | None = None,
    batch_size: int | None = None,
) -> SweepResult:
    r"""Maximise $V$ for every parameter value at once: `lc.optimize`, vmapped.

    For each value $p_i$ in `params`, `build(p_i)` gives a problem and the
    optimiser runs up to `steps` iterations on it with the loop of
    `lc.optimize` itself (same value-and-gradient, update, projection, best
    $	heta$ and stopping rules), `jax.vmap`ped over the values and sharded
    across `devices` (the batch is padded to a multiple of the device count).
    Results equal those of a Python loop of `lc.optimize` up to floating-point
    round-off.

    Each problem carries its own result code: one that diverges (non-finite
    $V$, failed solve) or converges (`gtol`) stops, keeping its best
    $	heta$, while the others go on. Each problem is first built once with
    concrete values, so the constructors' checks report a bad value (naming
    its index) before anything is compiled.

    **Arguments:**

    - `build`: a function `p -> (problem, theta0)` (the positional arguments
      of `lc.optimize`) of one parameter value.
      Under `vmap`, `p` is traced: use it only as array data (e.g.
      `lc.costs.Quadratic(beta=p)`, knots `jnp.linspace(0, p, K)`), never for
      shapes or Python control flow.
    - `params`: the parameter values, an array or pytree of arrays with a
      leading axis over the values.
    - `optimizer`: `lc.optimizers.ProjectedGradientAscent`, `Adam`, `LBFGSB`
      or `LBFGS`;
      or a function of one parameter value returning one (e.g. a learning
      rate that depends on the horizon).
    - `steps`: iterations at most (the same for every value).
    - `gtol`, `adjoint`, `options`, `progress`, `chunk`: as `lc.optimize`.
    - `devices`: the devices to shard across (default `jax.devices()`; pass
      `jax.devices()[:1]` for an unsharded run). Under `jax.distributed`
      with several processes the default splits the batch by process instead
      (module docstring); `checkpoint` is then refused.
    - `checkpoint`: a `lecontrol.checkpoint.Checkpointer`, as in
      `lc.optimize`: the whole batch is saved (arrays with a batch axis) and
      a resumed batch ends bitwise as an uninterrupted one.
    - `batch_size`: how many problems each device computes together
      (`jax.lax.map`'s `batch_size`); the groups run one after another.
      Default `None`: the device's whole share at once (`jax.vmap`). Under
      `vmap`, adaptive solves take as many steps as the longest of the batch
      and every step selects over every problem's whole state, so on CPU
      `batch_size=1` can be several times faster when the problems' step
      counts differ (docs/performance.md, "Sweeps: vmap or one at a time").

    **Returns:** a `SweepResult`, every field with a leading axis over the
    parameter values.
    """
    steps = int(steps)
    if steps < 0:
        raise ValueError(f"`steps` must be >= 0; got {steps}.")
    batch_size = _group_size(batch_size)
    if devices is None and jax.process_count() > 1:
        if checkpoint is not None:
            raise ValueError(
                "`checkpoint` is not supported across several processes "
                f"(jax.process_count() = {jax.process_count()}): every process "
                "would write the same file. Checkpoint a single-process sweep, or "
                "pass `devices` to shard one computation across every host."
            )
        kw = dict(optimizer=optimizer, steps=steps, gtol=gtol, adjoint=adjoint)
        kw |= dict(options=options, chunk=chunk, batch_size=batch_size)
        return _optimize_across_processes(build, params, progress=progress, **kw)
    gtol_value = _gtol(gtol)
    chunk = _chunk_length(chunk)
    numerics = _loop_numerics(_options(options))
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
    gtol_array = jnp.asarray(gtol_value, dtype=jnp.result_type(float))

    def setup(p) -> tuple[_Setup, Any]:
        problem, theta0 = build(p)
        posed = _posed(problem, theta0)
        opt = optimizer_for(p).bind(problem)
        s = _Setup(posed, opt, adjoint.bind(posed), numerics, gtol_array)
        return s, theta0

    # The optimiser state's non-array leaves, and whether the first step
    # changes its structure, from the first problem (the same for all).
    problem0, theta00 = built[0]
    s0, _ = setup(_element(params, 0))
    carry0, static = _start(s0, theta00, None, steps)
    stable = _state_is_stable(
        opt0, carry0.theta, eqx.combine(carry0.state, static), problem0.control
    )
    static_after = static if stable else _static_after_step(s0, carry0, static)

    place = _placement(params, devices, batch_size)
    padded = place.pad(params)
    start = place.jit(lambda p: _start(*setup(p), None, steps)[0], 1)
    advance = place.jit(
        lambda p, c, stop: _advance(c, setup(p)[0], static_after, stop), 2, 1
    )
    first = place.jit(lambda p, c: _first(c, setup(p)[0], static), 2)
    diagnose = place.jit(lambda p, c: _diagnose(c, setup(p)[0]), 2)
    runner = _Runner(
        advance=lambda c, stop: advance(padded, c, stop),
        first=None if stable else lambda c: first(padded, c),
        diagnose=lambda c: diagnose(padded, c),
        to_host=lambda c: place.gather(c, trim=False),
        to_device=lambda c: jax.device_put(c, place.sharding),
        from_host=place.put,
        batched=True,
    )
    carry, _, wall = _drive(
        runner,
        start(padded),
        steps=steps,
        chunk=chunk,
        checkpoint=checkpoint,
        signature=f"{opt0!r} for a batch of {n}",
        progress=progress,
        callback=None,
    )
    carry = place.gather(carry)
    result, best_iteration = carry.result, carry.best_iteration
    names = result_name(result)
    messages = [
        _message(
            str(names[i]),
            iterations=int(carry.iteration[i]),
            steps=steps,
            best_iteration=int(best_iteration[i]),
            gtol=gtol_value,
        )
        for i in range(n)
    ]
    return SweepResult(
        theta=carry.best_theta,
        values=carry.values.reshape(n, steps),
        grad_norms=carry.grad_norms.reshape(n, steps),
        projected_grad_norms=carry.pg_norms.reshape(n, steps),
        best_value=carry.best_value,
        best_iteration=best_iteration,
        projected_grad_norm=carry.best_pg_norm,
        iterations=carry.iteration,
        result=result,
        message=messages,
        final_theta=carry.theta,
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
    batch_size: int | None = None,
    weights: bool = True,
) -> Trajectory:
    r"""`lc.solve` for every parameter value at once, with its own coefficients.

    Problem $i$ is `build(params[i])` with the coefficients `thetas[i]` (e.g.
    `SweepResult.theta`), solved at `num_times` equally spaced times from 0 to
    its own horizon $T_i$. Vmapped and sharded like `optimize_batch`.

    **Arguments:**

    - `build`, `params`, `options`, `devices`, `batch_size`: as
      `optimize_batch` (the `theta0` that `build` returns is not used).
    - `thetas`: coefficients with a leading axis over the parameter values.
    - `num_times`: samples per trajectory (at least 2).
    - `weights`: as `lc.solve` (`False`: only loss, $v$ and $V$ are kept).

    **Returns:** a `Trajectory` whose arrays have a leading axis over the
    parameter values (`ts[i]` runs from 0 to $T_i$).
    """
    if int(num_times) < 2:
        raise ValueError(f"`num_times` must be >= 2; got {num_times}.")
    batch_size = _group_size(batch_size)
    params = _as_arrays(params)
    thetas = _as_arrays(thetas)
    if devices is None and jax.process_count() > 1:
        rows = _my_rows(_batch_size(params))
        local = solve_batch(
            build,
            _take(params, rows),
            _take(thetas, rows),
            num_times=num_times,
            options=options,
            devices=jax.local_devices(),
            batch_size=batch_size,
            weights=weights,
        )
        return _gather_rows(local, _batch_size(params))
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
        return solve(problem, theta, ts=ts, options=options, weights=weights)

    devices = _resolve_devices(devices)
    return _sharded_vmap(one, (params, thetas), devices, batch_size)


# ------------------------------------------------ one parameter at a time


class Segment(typing.NamedTuple):
    """One sweep inside the batch: `values` of `name` at `rows` of the batch."""

    name: str
    values: np.ndarray
    rows: slice


def one_at_a_time(
    default: dict[str, float], sweeps: dict[str, Sequence[float]]
) -> tuple[dict[str, np.ndarray], list[Segment]]:
    """A batch that varies one parameter at a time around a default point.

    Row 0 is the `default` point (parameter name → value); then each sweep
    (parameter name → values) sets that parameter to each of its values, the
    others at default.

    **Returns:** `(params, segments)`: an array over the batch per parameter
    (the `params` of `optimize_batch` and `solve_batch`), and the rows of each
    sweep (`split` cuts per-row results by them).

    ```python
    params, segments = lc.sweep.one_at_a_time(
        {"gamma": 0.99, "beta": 0.3}, {"beta": [0.1, 1.0]}
    )
    params["beta"]  # [0.3, 0.1, 1.0]; params["gamma"]: [0.99, 0.99, 0.99]
    ```
    """
    rows, segments = [default], []
    for name, values in sweeps.items():
        if not len(values):
            raise ValueError(f"the {name} sweep has no values.")
        rows += [{**default, name: float(v)} for v in values]
        at = slice(len(rows) - len(values), len(rows))
        segments.append(Segment(name, np.asarray(values, dtype=float), at))
    params = {k: np.asarray([r[k] for r in rows], dtype=float) for k in default}
    return params, segments


def split(segments: Sequence[Segment], per_row: dict) -> dict[str, np.ndarray]:
    """Per-row results of a `one_at_a_time` batch, cut per sweep: for each
    `field` of `per_row` (arrays with the batch as leading axis), the arrays
    `default_{field}` (row 0) and `{sweep}_{field}` (that sweep's rows), and
    `{sweep}_values`."""
    out = {f"{s.name}_values": s.values for s in segments}
    for field, arr in per_row.items():
        out[f"default_{field}"] = np.asarray(arr[0])
        out |= {f"{s.name}_{field}": np.asarray(arr[s.rows]) for s in segments}
    return out
