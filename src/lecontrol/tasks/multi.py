"""Several tasks at once (concatenation) or in turn (a switching schedule)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray, Real

from .._checks import check_finite, check_finite_fields, concrete
from .base import AbstractTask
from .correlated import CorrelatedGaussians
from .digits import Digits
from .gaussians import TwoGaussians
from .semantic import SemanticHierarchy


@functools.singledispatch
def target_mean(task: AbstractTask) -> Float[Array, " outputs"]:
    r"""$\langle y\rangle$ of a task.

    Known in closed form (or from data) for the tasks of `lc.tasks`; for any
    other task it is estimated from 100 000 samples drawn with
    `jax.random.key(0)`, like `AbstractTask.mean_x`. Register an exact value for
    your own task class with `@target_mean.register`.
    """
    _, y = task.sample(jax.random.key(0), 100_000)
    return y.mean(0)


@target_mean.register
def _(task: TwoGaussians):
    return jnp.zeros(1)


@target_mean.register(CorrelatedGaussians)
@target_mean.register(SemanticHierarchy)
@target_mean.register(Digits)
def _(task):
    return task.mean_y()


def _check_constant(task: AbstractTask, name: str) -> None:
    """Raise if `task` declares jump times (its statistics change in time)."""
    if jnp.shape(task.jump_times())[0]:
        raise ValueError(
            f"`{name}` ({type(task).__name__}) changes in time (it declares jump "
            "times); only constant tasks can be combined here. Switch between "
            "constant tasks with one SwitchingTasks instead."
        )


def _slices(sizes: Sequence[int]) -> tuple[tuple[int, int], ...]:
    ends = np.cumsum(sizes)
    return tuple((int(e - s), int(e)) for s, e in zip(sizes, ends))


class ConcatenatedTasks(AbstractTask):
    r"""$N_\tau$ tasks seen at once: inputs and outputs concatenated (the paper's App. H.2).

    One sample is $x = (x_1; \dots; x_{N_\tau})$, $y = (y_1; \dots; y_{N_\tau})$
    with the pairs $(x_\tau, y_\tau)$ drawn independently from each task. Hence
    $\Sigma_x$ is the block matrix with the tasks' $\Sigma_{x,\tau}$ on the
    diagonal and $\langle x_i\rangle\langle x_j\rangle^\top$ off it, and
    likewise $\Sigma_y$. The cross-moment of task $\tau$,

    $$\Sigma_{xy\tau} = \langle x\,y_\tau^\top\rangle \text{ (embedded in the
    output columns of } \tau\text{)},\quad
    \text{row block } i = \begin{cases}\Sigma_{xy,\tau} & i = \tau\\
    \langle x_i\rangle\langle y_\tau\rangle^\top & i\ne\tau,\end{cases}$$

    is zero outside task $\tau$'s output columns; inside them it is zero outside
    the diagonal block whenever $\langle y_\tau\rangle = 0$ (e.g. ±1 pair tasks
    with balanced classes); the paper's Eq. 71 has the same blocks. The off-diagonal
    blocks are kept so that the statistics are exactly those of `sample`.
    $\Sigma_{xy} = \sum_\tau \Sigma_{xy\tau}$.

    The statistics are computed once, at construction, from each task's
    `Sx`, `Sxy`, `Sy`, `mean_x` and `target_mean`.

    **Arguments:**

    - `tasks`: a sequence of at least one `AbstractTask`.
    """

    tasks: tuple[AbstractTask, ...]
    input_slices: tuple[tuple[int, int], ...] = eqx.field(static=True)
    output_slices: tuple[tuple[int, int], ...] = eqx.field(static=True)
    _Sx: Float[Array, "inputs inputs"]
    _Sxy: Float[Array, "inputs outputs"]
    _Sy: Float[Array, "outputs outputs"]
    _mean_x: Float[Array, " inputs"]
    _mean_y: Float[Array, " outputs"]

    def __init__(self, tasks: Sequence[AbstractTask]):
        tasks = tuple(tasks)
        if len(tasks) == 0:
            raise ValueError(
                "`tasks` of ConcatenatedTasks must hold at least one task."
            )
        for i, t in enumerate(tasks):
            if not isinstance(t, AbstractTask):
                raise TypeError(
                    f"`tasks[{i}]` must be an lc.tasks.AbstractTask; got "
                    f"{type(t).__name__}."
                )
            _check_constant(t, f"tasks[{i}] of ConcatenatedTasks")
        self.tasks = tasks
        self.input_slices = _slices([t.n_inputs for t in tasks])
        self.output_slices = _slices([t.n_outputs for t in tasks])
        mx = [jnp.asarray(t.mean_x(), dtype=float) for t in tasks]
        my = [jnp.asarray(target_mean(t), dtype=float) for t in tasks]
        for i, (a, b) in enumerate(zip(mx, my)):
            check_finite(f"mean_x() of tasks[{i}]", a)
            check_finite(f"target_mean() of tasks[{i}]", b)
        n = len(tasks)
        self._Sx = jnp.block(
            [
                [tasks[i].Sx if i == j else jnp.outer(mx[i], mx[j]) for j in range(n)]
                for i in range(n)
            ]
        )
        self._Sy = jnp.block(
            [
                [tasks[i].Sy if i == j else jnp.outer(my[i], my[j]) for j in range(n)]
                for i in range(n)
            ]
        )
        self._Sxy = jnp.block(
            [
                [tasks[i].Sxy if i == j else jnp.outer(mx[i], my[j]) for j in range(n)]
                for i in range(n)
            ]
        )
        self._mean_x = jnp.concatenate(mx)
        self._mean_y = jnp.concatenate(my)

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def Sx(self) -> Float[Array, "inputs inputs"]:
        return self._Sx

    @property
    def Sxy(self) -> Float[Array, "inputs outputs"]:
        return self._Sxy

    @property
    def Sy(self) -> Float[Array, "outputs outputs"]:
        return self._Sy

    def mean_x(self) -> Float[Array, " inputs"]:
        return self._mean_x

    def mean_y(self) -> Float[Array, " outputs"]:
        return self._mean_y

    def output_task(self) -> np.ndarray:
        """The task index of every output, shape `(outputs,)` (a numpy constant)."""
        return np.concatenate(
            [np.full(b - a, i) for i, (a, b) in enumerate(self.output_slices)]
        )

    def output_mask(self, task: int) -> Float[Array, " outputs"]:
        """1 on the outputs of task `task`, 0 elsewhere."""
        return jnp.asarray(self.output_task() == task, dtype=float)

    def Sxy_task(self, task: int) -> Float[Array, "inputs outputs"]:
        r"""$\Sigma_{xy\tau}$: `Sxy` with every column outside task `task` zeroed."""
        return self._Sxy * self.output_mask(task)[None, :]

    def sample(self, key: PRNGKeyArray, n: int):
        keys = jax.random.split(key, self.n_tasks)
        xs, ys = zip(*(t.sample(k, n) for t, k in zip(self.tasks, keys)))
        return jnp.concatenate(xs, axis=1), jnp.concatenate(ys, axis=1)


@target_mean.register
def _(task: ConcatenatedTasks):
    return task.mean_y()


class SwitchingTasks(AbstractTask):
    r"""A schedule that cycles through tasks, switching every `period` time units.

    Task $k \bmod N$ is active on $[k T_s, (k+1) T_s)$, $k = 0, 1, \dots$: the
    statistics are piecewise constant in time and jump at the switch times
    $T_s, 2T_s, \dots$ strictly inside $(0, \text{horizon})$ (the paper's Sec. 6, Task Switch).
    At a switch time itself the new task is active. The active task is found by
    comparing $t$ with the stored `switch_times`, the exact floats that solvers
    are told to step onto, so an evaluation just before a switch always sees
    the old task.

    It is an `AbstractTask` whose statistics change in time: systems read them
    with `Sx_at(t)`, `Sxy_at(t)`, `Sy_at(t)` and draw samples with
    `sample_at(key, n, t)`, and `jump_times()` declares the switches. So any
    system built on a task runs on a schedule, e.g.
    `lc.systems.TwoLayerGain(SwitchingTasks([a, b], period, T), hidden=8)`
    (the paper's task switch, Sec. 6). `Sx`, `Sxy`, `Sy`, `sample` and `mean_x` without a
    time are those of the first task, active at $t = 0$.

    **Arguments:**

    - `tasks`: at least one constant `AbstractTask` (no jump times of its own),
      all with the same numbers of inputs and outputs.
    - `period`: time $T_s > 0$ between switches.
    - `horizon`: the learning period $T > 0$ the schedule covers (its switch
      times are those in $(0, T)$). No switch is declared past it: the task
      active at the last switch stays active, so pass the objective's $T$.
    """

    tasks: tuple[AbstractTask, ...]
    period: float = eqx.field(static=True)
    horizon: float = eqx.field(static=True)
    switch_times: Float[Array, " switches"]
    Sx_stack: Float[Array, "tasks inputs inputs"]
    Sxy_stack: Float[Array, "tasks inputs outputs"]
    Sy_stack: Float[Array, "tasks outputs outputs"]
    mean_x_stack: Float[Array, "tasks inputs"]

    def __init__(self, tasks: Sequence[AbstractTask], period, horizon):
        tasks = tuple(tasks)
        if len(tasks) == 0:
            raise ValueError("`tasks` of SwitchingTasks must hold at least one task.")
        for i, t in enumerate(tasks):
            if not isinstance(t, AbstractTask):
                raise TypeError(
                    f"`tasks[{i}]` must be an lc.tasks.AbstractTask; got "
                    f"{type(t).__name__}."
                )
            _check_constant(t, f"tasks[{i}] of SwitchingTasks")
            if (t.n_inputs, t.n_outputs) != (tasks[0].n_inputs, tasks[0].n_outputs):
                raise ValueError(
                    f"All tasks of SwitchingTasks must have the same numbers of "
                    f"inputs and outputs; tasks[0] has {tasks[0].n_inputs} and "
                    f"{tasks[0].n_outputs}, tasks[{i}] has {t.n_inputs} and "
                    f"{t.n_outputs}."
                )
        period_c, horizon_c = concrete(period), concrete(horizon)
        if period_c is None or horizon_c is None:
            raise ValueError(
                "`period` and `horizon` of SwitchingTasks must be concrete numbers "
                "(the number of switches is static); do not trace them."
            )
        period, horizon = float(period_c), float(horizon_c)
        if not (np.isfinite(period) and period > 0):
            raise ValueError(f"`period` must be finite and > 0; got {period}.")
        if not (np.isfinite(horizon) and horizon > 0):
            raise ValueError(f"`horizon` must be finite and > 0; got {horizon}.")
        self.tasks = tasks
        self.period, self.horizon = period, horizon
        k = np.arange(1, int(np.ceil(horizon / period)) + 1)
        times = k * period
        self.switch_times = jnp.asarray(times[times < horizon], dtype=float)
        self.Sx_stack = jnp.stack([t.Sx for t in tasks])
        self.Sxy_stack = jnp.stack([t.Sxy for t in tasks])
        self.Sy_stack = jnp.stack([t.Sy for t in tasks])
        self.mean_x_stack = jnp.stack([jnp.asarray(t.mean_x()) for t in tasks])

    def __check_init__(self):
        check_finite_fields("SwitchingTasks", self)

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def Sx(self) -> Float[Array, "inputs inputs"]:
        r"""$\Sigma_x$ of the first task (active at $t = 0$); see `Sx_at`."""
        return self.Sx_stack[0]

    @property
    def Sxy(self) -> Float[Array, "inputs outputs"]:
        r"""$\Sigma_{xy}$ of the first task (active at $t = 0$); see `Sxy_at`."""
        return self.Sxy_stack[0]

    @property
    def Sy(self) -> Float[Array, "outputs outputs"]:
        r"""$\Sigma_y$ of the first task (active at $t = 0$); see `Sy_at`."""
        return self.Sy_stack[0]

    def mean_x(self) -> Float[Array, " inputs"]:
        r"""$\langle x\rangle$ of the first task (active at $t = 0$); see `mean_x_at`."""
        return self.mean_x_stack[0]

    def active(self, t: Real[Array, ""]) -> Int[Array, ""]:
        """Index of the task active at time `t`."""
        switches = jax.lax.stop_gradient(self.switch_times)
        k = jnp.searchsorted(switches, t, side="right")
        return k % self.n_tasks

    def Sx_at(self, t) -> Float[Array, "inputs inputs"]:
        return self.Sx_stack[self.active(t)]

    def Sxy_at(self, t) -> Float[Array, "inputs outputs"]:
        return self.Sxy_stack[self.active(t)]

    def Sy_at(self, t) -> Float[Array, "outputs outputs"]:
        return self.Sy_stack[self.active(t)]

    def mean_x_at(self, t) -> Float[Array, " inputs"]:
        return self.mean_x_stack[self.active(t)]

    def jump_times(self) -> Float[Array, " switches"]:
        """The switch times in $(0, \\text{horizon})$."""
        return jax.lax.stop_gradient(self.switch_times)

    def sample(self, key: PRNGKeyArray, n: int) -> tuple[Array, Array]:
        """Draw `n` pairs from the first task (active at $t = 0$); see `sample_at`."""
        return self.tasks[0].sample(key, n)

    def sample_at(self, key: PRNGKeyArray, n: int, t) -> tuple[Array, Array]:
        """Draw `n` pairs from the task active at time `t`."""
        branches = [lambda k, task=task: task.sample(k, n) for task in self.tasks]
        return jax.lax.switch(self.active(t), branches, key)
