r"""Real minibatch SGD with a control schedule applied: the check of the ODE.

Every learning system's vector field is the gradient-flow limit of SGD on a
minibatch loss, its `batch_loss(t, w, g, x, y)`:
$\mathbb E[-\nabla_w\,\text{batch\_loss}] = h(w, g)$. `simulate` runs that SGD,

$$w_{i+1} = w_i - \alpha\,\nabla_w\,\text{batch\_loss}\big(t_i, w_i, g(t_i),
x_i, y_i\big),\qquad t_i = i\alpha,$$

(a learning rule that is not a gradient, such as feedback alignment, defines
its step as `batch_update` instead: $w_{i+1} = w_i - \alpha\,$`batch_update`),
with a fresh batch $(x_i, y_i)$ of `batch_size` samples at every step, drawn by
the system's `sample_batch(key, t_i, batch_size)` (or from `data=`), so $N$
steps cover the time $T = N\alpha$ of the ODE (the paper's App. G.1, Eqs. 35-37, with the
system's $\tau$ inside `batch_loss` like inside `vector_field`). As
$\alpha \to 0$ the SGD weights follow the ODE; the expected loss
`system.loss` evaluated on them is the theory-versus-simulation curve of the
paper. How each system's control enters SGD is written in its `batch_loss`:
gains multiply the weights in the forward pass, a learning-rate multiplier
scales the step, engagement coefficients weight the losses of tasks or classes
in the gradient (performance stays unweighted) or, for category engagement with
`class_proportions=True`, set how many samples of each class a batch holds;
MAML runs every task's SGD from the shared initialisation $g$, and
`TanhTaylor` trains the real tanh network (not its Taylor approximation).

Runs are seeded and vectorised: `jax.vmap` over seeds, `jax.lax.scan` over
steps.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree, Real

from ._checks import concrete
from .costs import Quadratic
from .objective import Objective, Problem, _posed
from .systems import AbstractLearningSystem, CategoryEngagement
from .tasks import AbstractTask

# ------------------------------------------------------------------ data sources


class _AbstractData(eqx.Module):
    """Where SGD's minibatches come from, and the gradient they give."""

    @abc.abstractmethod
    def gradient(self, system, key, t, w, g, n: int):
        """The minibatch gradient of SGD's step at time `t` with control `g`."""


class _AbstractSampledData(_AbstractData):
    """Batches drawn independently of the control, fed to `system.batch_loss`."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, t: Real[Array, ""], n: int):
        """A batch `(x, y)` of `n` samples for the step at time `t`."""

    def gradient(self, system, key, t, w, g, n: int):
        x, y = self.sample(key, t, n)
        return system.batch_update(t, w, g, x, y)


class _TaskData(_AbstractSampledData):
    task: AbstractTask

    def sample(self, key, t, n):
        return self.task.sample_at(key, n, t)


class _PerTaskData(_AbstractSampledData):
    tasks: tuple[AbstractTask, ...]

    def sample(self, key, t, n):
        keys = jax.random.split(key, len(self.tasks))
        xs, ys = zip(*(task.sample_at(k, n, t) for task, k in zip(self.tasks, keys)))
        return jnp.stack(xs), jnp.stack(ys)


class _ClassProportions(_AbstractData):
    r"""Batches whose class counts follow the control: $\mathbb E\,n_c = \varphi_c B/C$.

    The training samples are sorted by class (`start`, `count` locate class
    $c$'s rows). A step draws `per_class` rows of every class uniformly with
    replacement and keeps the first $n_c$ of class $c$, where
    $n_c = \lfloor v_c\rfloor + \text{Bernoulli}(v_c - \lfloor v_c\rfloor)$,
    $v_c = \varphi_c(t)B/C$ (stochastic rounding, so $\mathbb E\,n_c = v_c$
    exactly); `per_class` bounds $n_c$ over the whole schedule.
    """

    x: Float[Array, "N inputs"]
    y: Float[Array, "N outputs"]
    start: Int[Array, " classes"]
    count: Int[Array, " classes"]
    per_class: int = eqx.field(static=True)

    def draw(self, key, phi, n):
        """Rows `(x, y)` of a batch with mask, `per_class` rows per class."""
        C, m = self.start.shape[0], self.per_class
        k_round, k_rows = jax.random.split(key)
        v = phi * n / C
        n_c = jnp.floor(v) + (jax.random.uniform(k_round, (C,)) < v - jnp.floor(v))
        rows = self.start[:, None] + jax.random.randint(
            k_rows, (C, m), 0, self.count[:, None]
        )
        mask = jnp.arange(m)[None, :] < n_c[:, None]
        rows, mask = rows.reshape(-1), mask.reshape(-1)
        return self.x[rows], self.y[rows], mask.astype(self.x.dtype)

    def gradient(self, system, key, t, w, g, n):
        x, y, mask = self.draw(key, g, n)
        return jax.grad(system.class_batch_loss, argnums=1)(t, w, x, y, mask, n)


def _class_proportions(system, data, control, theta, ts, batch_size):
    """The class-proportion data source, with its inputs checked."""
    if not isinstance(system, CategoryEngagement):
        raise ValueError(
            "`class_proportions=True` applies a CategoryEngagement control as class "
            f"proportions in the batches; {type(system).__name__} has no classes."
        )
    task = system.task if data is None else data
    x, y, labels = (getattr(task, f"{a}_train", None) for a in ("x", "y", "labels"))
    classes = getattr(task, "classes", None)
    if x is None or y is None or labels is None or classes is None:
        raise ValueError(
            "Class-proportion batches sample each class separately, so the task "
            "must hold labelled training samples (`x_train`, `y_train`, "
            f"`labels_train`, `classes`), as lc.tasks.Digits does; "
            f"{type(task).__name__} does not."
        )
    C = system.control_shape[0]
    if len(classes) != C:
        raise ValueError(
            f"The task has {len(classes)} classes but the system {C} outputs; class "
            "proportions need one output (and one engagement coefficient) per class."
        )
    labels = np.asarray(labels)
    position = {int(c): i for i, c in enumerate(classes)}
    cls = np.array([position.get(int(lab), -1) for lab in labels])
    count = np.bincount(cls[cls >= 0], minlength=C)
    if np.any(count == 0):
        raise ValueError(
            f"Classes {[classes[i] for i in np.flatnonzero(count == 0)]} have no "
            "training samples."
        )
    order = np.argsort(cls, kind="stable")[np.sum(cls < 0) :]
    phi = np.asarray(jax.vmap(lambda t: control(theta, t))(ts))
    if not np.all(np.isfinite(phi)) or np.any(phi < 0):
        raise ValueError(
            "Class proportions need a finite, non-negative control phi(t) at every "
            f"step; its range over the schedule is [{np.nanmin(phi)}, {np.nanmax(phi)}]."
        )
    per_class = int(np.floor(np.max(phi) * batch_size / C)) + 1
    return _ClassProportions(
        x=jnp.asarray(x)[order],
        y=jnp.asarray(y)[order],
        start=jnp.asarray(np.concatenate([[0], np.cumsum(count)[:-1]])),
        count=jnp.asarray(count),
        per_class=per_class,
    )


def _as_data(data) -> _AbstractSampledData:
    if isinstance(data, AbstractTask):
        return _TaskData(data)
    if isinstance(data, (list, tuple)) and data:
        if all(isinstance(d, AbstractTask) for d in data):
            return _PerTaskData(tuple(data))
    raise TypeError(
        "`data` must be an lc.tasks.AbstractTask (a SwitchingTasks schedule too), or "
        "a non-empty sequence of tasks (one batch per task, for MAML); got "
        f"{type(data).__name__}."
    )


class _SystemData(_AbstractSampledData):
    """The system's own minibatches: its `sample_batch(key, t, n)`."""

    system: AbstractLearningSystem

    def sample(self, key, t, n):
        return self.system.sample_batch(key, t, n)


# ----------------------------------------------------------------------- result


class SimulationResult(eqx.Module):
    r"""Minibatch SGD runs, one per seed, recorded every `record_every` steps.

    - `ts`: record times $i\alpha$ for steps $i = 0, k, 2k, \dots, N$
      (the first record is the initial state).
    - `loss`: expected loss `system.loss(t, w, g(t))` at the SGD weights,
      shape `(seeds, records)`; compare with `lc.solve(...).loss` at `ts`.
      (For engagement systems this is the unweighted performance loss. For
      `TanhTaylor` it is the Taylor approximation evaluated at the real
      network's weights; the real network's loss is `system.batch_loss` on a
      large held-out sample, e.g. `jax.vmap(jax.vmap(lambda w:
      system.batch_loss(t, w, g, x, y)))(result.w)`.)
    - `w`: SGD weights, pytree with leading axes `(seeds, records)`.
    - `g`: the control at `ts` (pytree, leading axis over records).
    """

    ts: Float[Array, " records"]
    loss: Float[Array, "seeds records"]
    w: PyTree[Float[Array, "seeds records ..."]]
    g: PyTree[Float[Array, "records ..."]]

    @property
    def mean_loss(self) -> Float[Array, " records"]:
        """Loss averaged over seeds."""
        return jnp.mean(self.loss, axis=0)

    @property
    def stderr_loss(self) -> Float[Array, " records"]:
        """Standard error of `mean_loss` across seeds (zero for one seed)."""
        n = self.loss.shape[0]
        if n < 2:
            return jnp.zeros(self.loss.shape[1:])
        return jnp.std(self.loss, axis=0, ddof=1) / np.sqrt(n)


# ------------------------------------------------------------------------- verb


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    if value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value}.")
    return int(value)


def _keys(seeds) -> PRNGKeyArray:
    if isinstance(seeds, jax.Array) and jax.dtypes.issubdtype(
        seeds.dtype, jax.dtypes.prng_key
    ):
        if seeds.ndim != 1 or seeds.shape[0] == 0:
            raise ValueError(
                f"`seeds` given as PRNG keys must be a non-empty 1-D key array; got "
                f"shape {seeds.shape}."
            )
        return seeds
    if isinstance(seeds, (int, np.integer)):
        raise ValueError(
            f"`seeds` must be a sequence of integer seeds, one per run; got the "
            f"single int {seeds}. Pass seeds=range({seeds}) for {seeds} runs or "
            f"seeds=[{seeds}] for one run with seed {seeds}."
        )
    arr = np.asarray(list(seeds) if isinstance(seeds, range) else seeds)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            "`seeds` must be a non-empty 1-D sequence of integers (e.g. range(16)) "
            f"or a 1-D array of jax.random keys; got {seeds!r}."
        )
    return jax.vmap(jax.random.key)(jnp.asarray(arr))


@eqx.filter_jit
def _run(system, control, theta, data, keys, alpha, steps, batch_size, every):
    blocks = steps // every

    def one_seed(key):
        def sgd_step(w, i):
            t = i * alpha
            g = control(theta, t)
            grad = data.gradient(
                system, jax.random.fold_in(key, i), t, w, g, batch_size
            )
            return jax.tree.map(lambda a, d: a - alpha * d, w, grad), None

        def block(w, j):
            w, _ = jax.lax.scan(sgd_step, w, j * every + jnp.arange(every))
            return w, w

        w0 = system.init_state()
        _, ws = jax.lax.scan(block, w0, jnp.arange(blocks))
        return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), w0, ws)

    ws = jax.vmap(one_seed)(keys)
    ts = jnp.arange(blocks + 1) * every * alpha
    gs = jax.vmap(lambda t: control(theta, t))(ts)
    per_record = jax.vmap(system.loss)
    loss = jax.vmap(lambda w: per_record(ts, w, gs))(ws)
    return ts, loss, ws, gs


def simulate(
    problem: Problem,
    theta: PyTree[Array],
    *,
    alpha: float,
    steps: int,
    batch_size: int,
    seeds: Sequence[int] | Int[Array, " seeds"] | PRNGKeyArray = (0,),
    record_every: int = 1,
    data: AbstractTask | Sequence[AbstractTask] | None = None,
    class_proportions: bool = False,
) -> SimulationResult:
    r"""Run real minibatch SGD on the problem's system with $g(t;\theta)$ applied.

    Step $i$ draws a batch $(x_i, y_i)$ of `batch_size` fresh samples and sets
    $w_{i+1} = w_i - \alpha\,$`system.batch_update`$(t_i, w_i, g(t_i), x_i,
    y_i)$ with $t_i = i\alpha$ (by default $\nabla_w$`batch_loss`; a rule that
    is not a gradient, such as feedback alignment, defines its own). Since its
    expected negative is the system's vector field, the mean over seeds follows the
    ODE of `lc.solve` up to $O(\alpha)$ (Euler discretisation and the bias of
    SGD noise in the loss, which shrinks as $\alpha/B$) plus the seed-average's
    sampling error. The horizon is $T = $ `steps`$\cdot\alpha$, which must be the
    control's horizon (its last knot), as for `lc.value`.

    The batch key of step $i$ of a run is `jax.random.fold_in(key, i)` with the
    run's key `jax.random.key(seed)`: the same seed always gives the same run.

    **Arguments:**

    - `problem`: an `lc.Problem`. Its system must implement
      `batch_loss(t, w, g, x, y)` (the minibatch loss) and
      `sample_batch(key, t, n)` (where its batches come from; not needed when
      `data=` is given). A system without them raises `NotImplementedError`
      naming the missing member; nothing here depends on the system's class.
      Its control gives the schedule $g(t;\theta)$; its cost and objective
      are not used.
    - `theta`: the control's coefficients (e.g. `result.theta` of
      `lc.optimize`).
    - `alpha`: SGD learning rate $\alpha > 0$ (= the time per step).
    - `steps`: number of SGD steps $N$.
    - `batch_size`: samples per step $B$.
    - `seeds`: a sequence of integer seeds (one run each; e.g. `range(16)`), or
      a 1-D array of `jax.random` keys.
    - `record_every`: record every $k$-th step ($k$ must divide `steps`).
    - `data`: where the samples come from. Default: the system's own
      `sample_batch` (for the library's systems, their task). For `MAML` pass its
      tasks, `[task_1, ..., task_K]`: each step then draws one batch per task,
      `x` of shape `(K, B, inputs)`. Any `lc.tasks.AbstractTask` (drawn with
      its `sample_at(key, n, t)`) may replace a system's own samples, e.g. a
      finite training set.
    - `class_proportions`: for `CategoryEngagement` only. Apply $\varphi(t)$ as
      *class proportions* in the batches (the paper's App. H.3, Eq. 77) instead
      of as output weights: step $i$'s batch holds $n_c$ samples of class $c$,
      drawn uniformly from that class's training samples, with
      $\mathbb E\,n_c = \varphi_c(t_i)B/C$ (stochastic rounding of
      $\varphi_cB/C$), and the gradient is that of the unweighted loss summed
      over the batch and divided by $B$ (`CategoryEngagement.class_batch_loss`).
      In expectation this is gradient flow on $\sum_c\frac{\varphi_c}{C}L_c$
      ($L_c$: the loss on class $c$), not on `aux_loss`. The task (or `data`)
      must hold labelled training samples, as `lc.tasks.Digits` does, with one
      output per class.

    **Returns:** a `SimulationResult` (`ts`, `loss` of shape `(seeds, records)`,
    `w`, `g`).
    """
    if not isinstance(problem, Problem):
        raise TypeError(
            "`problem` must be an lc.Problem(system, control, cost, objective); got "
            f"{type(problem).__name__}."
        )
    system, control = problem.system, problem.control
    steps = _positive_int("steps", steps)
    batch_size = _positive_int("batch_size", batch_size)
    record_every = _positive_int("record_every", record_every)
    if steps % record_every:
        raise ValueError(
            f"`record_every` ({record_every}) must divide `steps` ({steps}) so that "
            "the last record is the final state."
        )
    a = concrete(alpha)
    if a is None or a.shape != () or not (np.isfinite(a) and a > 0):
        raise ValueError(
            f"`alpha` (the SGD learning rate) must be a finite number > 0; got {alpha!r}."
        )
    alpha = float(a)
    T = steps * alpha
    try:
        _posed(Problem(system, control, Quadratic(0.0), Objective(T=T)), theta)
    except ValueError as err:
        raise ValueError(
            f"{err} (lc.simulate runs steps * alpha = {steps} * {alpha} = {T} time "
            "units; the control must cover exactly that horizon.)"
        ) from err
    if class_proportions:
        data = _class_proportions(
            system, data, control, theta, jnp.arange(steps) * alpha, batch_size
        )
    else:
        data = _SystemData(system) if data is None else _as_data(data)
        _check_batch(system, control, theta, data, batch_size)
    keys = _keys(seeds)
    ts, loss, w, g = _run(
        system,
        control,
        theta,
        data,
        keys,
        jnp.asarray(alpha),
        steps,
        batch_size,
        record_every,
    )
    return SimulationResult(ts=ts, loss=loss, w=w, g=g)


def _check_batch(system, control, theta, data, batch_size) -> None:
    """Trace one batch and one gradient to turn shape mismatches into clear errors."""
    t = jnp.zeros(())
    key = jax.random.key(0)
    x, y = jax.eval_shape(lambda k: data.sample(k, t, batch_size), key)

    def probe(x, y):
        w = system.init_state()
        return system.batch_update(t, w, control(theta, t), x, y)

    try:
        grad = jax.eval_shape(probe, x, y)
    except (TypeError, ValueError, IndexError) as err:
        raise ValueError(
            f"The batches of `data` (x {x.shape}, y {y.shape}) do not fit "
            f"{type(system).__name__}.batch_loss: {err}"
        ) from err
    want = jax.tree.map(jnp.shape, system.init_state())
    got = jax.tree.map(lambda s: s.shape, grad)
    if want != got:
        raise ValueError(
            f"{type(system).__name__}.batch_loss returns a gradient shaped {got}; "
            f"the weights are shaped {want}. Check the batch layout of `data`."
        )
