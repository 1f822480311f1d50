r"""The optimisation loop: maximise $V(\theta)$ with an optimiser strategy.

One loop serves a single problem (`lc.optimize`) and a batch of problems
(`lc.sweep.optimize_batch`, the same loop under `jax.vmap`). Its state is a
carry of arrays (`_Carry`); one iteration (`_iterate`) evaluates $V$ and
$\nabla_\theta V$, records them, keeps the best $\theta$ seen, tests the
stopping rules and lets the optimiser move $\theta$. Chunks of iterations run
compiled (a `lax.while_loop`, which under `vmap` keeps running while any
problem of the batch is); between chunks, in Python, the progress bar moves,
the callback is called and checkpoints are written. The value path does not
raise inside the loop (`SolverOptions(throw=False)`): a failed solve gives a
non-finite $V$, which stops that problem alone with a result code
(`RESULTS`), in the style of diffrax and optimistix.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PyTree

from ._dynamics import SOLVER_ADVICE, SolverOptions, forward_solve
from .adjoint import AbstractGradientStrategy, ContinuousAdjoint
from .checkpoint import Checkpointer
from .objective import Problem, _options, _posed
from .optimizers import AbstractOptimizer, ProjectedGradientAscent

DEFAULT_CHUNK = 25


class RESULTS(eqx.Enumeration):
    """Why an optimisation stopped (`OptimizeResult.result`).

    `RESULTS[result]` is the explanation; `result_name(result)` the name.
    """

    completed = "ran every iteration asked for."
    converged = "the projected-gradient norm fell below `gtol`."
    stalled = (
        "the optimiser found no ascent even along the gradient (its line search "
        "failed twice in a row): the error of V at the solver's tolerances, or "
        "solves that fail at the trial points, hide any further progress. "
        "Tighten `SolverOptions.rtol`/`atol`, or raise `max_steps`."
    )
    stopped = "stopped by the callback."
    nonfinite = (
        "V or its gradient is not finite (nan or inf): the learning dynamics "
        "diverged, or the costate solve failed. Lower the learning rate, or check "
        "the task statistics, the control bounds and the time constant."
    )
    max_steps_reached = SOLVER_ADVICE.format(
        what="max_steps reached; if the weights diverge (a non-finite state makes "
        "every step fail), more steps will not help: check the task statistics, "
        "bounds and time constant",
        max_steps="`SolverOptions.max_steps`",
    )
    solver_failed = SOLVER_ADVICE.format(
        what="step size underflow or non-finite state",
        max_steps="`SolverOptions.max_steps`",
    )


_NAMES = sorted(
    RESULTS._name_to_item, key=lambda k: int(RESULTS._name_to_item[k]._value)
)
_OK = ("completed", "converged", "stopped", "stalled")


def result_name(result: RESULTS):
    """The name of a result code (`"completed"`, …), or an array of names for a
    batch of codes."""
    index = np.asarray(result._value)
    if index.ndim == 0:
        return _NAMES[int(index)]
    return np.asarray(_NAMES)[index]


class OptimizeResult(eqx.Module):
    """What `optimize` found.

    - `theta`: the best coefficients seen (highest finite $V$), or on
      convergence the converged ones, which meet `gtol` (an earlier iterate's
      $V$ may be higher by the adaptive solver's noise, or for a non-monotone
      optimiser such as Adam: `values` shows it).
    - `values`: $V$ at each iteration's starting point.
    - `grad_norms`: $\\lVert\\nabla_\\theta V\\rVert_2$ at each iteration.
    - `projected_grad_norms`: the projected-gradient norm
      $\\lVert\\Pi_{[l,u]}(\\theta + \\nabla_\\theta V) - \\theta\\rVert_2$ at
      each iteration (what `gtol` is compared with; zero at a bound-constrained
      optimum).
    - `best_value`, `best_iteration`: $V$ of `theta` and when it was found
      (`iterations` means the final coefficients, evaluated after the loop).
    - `projected_grad_norm`: the projected-gradient norm at `theta` (from its
      iteration, or from the evaluation of the final coefficients after the
      loop, which is one more run of the loop's own evaluation: $V$ and
      gradient, with the optimiser's step discarded).
    - `iterations`: iterations completed with a finite $V$ and gradient.
    - `wall_time`: seconds, compilation included.
    - `result`: a `RESULTS` code: `completed`, `converged` (projected-gradient
      norm below `gtol`), `stopped` (by the callback), or a failure —
      `nonfinite` ($V$ or its gradient not finite), `max_steps_reached` or
      `solver_failed` (the ODE solve of the learning dynamics failed). After a
      failure `values` and `grad_norms` hold the finite iterations before it
      and `theta` the best of them.
    - `message`: why it stopped, in words (from `result`).
    - `final_theta`, `state`: where the optimiser stands, to resume from (after
      a failure, the coefficients that failed).
    """

    theta: PyTree[Array]
    values: np.ndarray
    grad_norms: np.ndarray
    projected_grad_norms: np.ndarray
    best_value: float
    best_iteration: int
    projected_grad_norm: float
    iterations: int
    wall_time: float
    result: RESULTS
    message: str
    final_theta: PyTree[Array]
    state: PyTree

    @property
    def status(self) -> str:
        """The name of `result` (`"completed"`, `"nonfinite"`, …)."""
        return result_name(self.result)


# ------------------------------------------------------------------ the loop


class _Carry(eqx.Module):
    """Where the loop stands (arrays only: it is a `while_loop` carry, vmapped
    for a batch, and what a checkpoint saves)."""

    iteration: Int[Array, ""]  # counted iterations (index of the next one)
    theta: PyTree[Array]
    state: PyTree[Array]  # the array leaves of the optimiser state
    best_value: Float[Array, ""]
    best_theta: PyTree[Array]
    best_iteration: Int[Array, ""]
    best_pg_norm: Float[Array, ""]  # the projected-gradient norm at best_theta
    values: Float[Array, " steps"]
    grad_norms: Float[Array, " steps"]
    pg_norms: Float[Array, " steps"]
    result: RESULTS
    done: Bool[Array, ""]  # stopped early (converged or failed)


class _Setup(eqx.Module):
    """One problem as the loop sees it (built inside `vmap` for a batch)."""

    posed: eqx.Module
    optimizer: AbstractOptimizer
    adjoint: AbstractGradientStrategy
    numerics: SolverOptions
    gtol: Float[Array, ""]


def _grad_norm(grad) -> Array:
    return jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grad)))


def _pg_norm(control, theta, grad) -> Array:
    """The norm of the projected gradient $\\Pi_{[l,u]}(\\theta + \\nabla_\\theta
    V) - \\theta$ of the box: zero at a (bound-constrained) optimum."""
    ascent = control.project(jax.tree.map(lambda x, g: x + g, theta, grad))
    return _grad_norm(jax.tree.map(lambda a, x: a - x, ascent, theta))


def _where(flag, a, b):
    """`a` where `flag`, else `b`, leaf by leaf."""
    return jax.tree.map(lambda x, y: jnp.where(flag, x, y), a, b)


def _is_array_like(x) -> bool:
    return eqx.is_array(x) or isinstance(x, jax.ShapeDtypeStruct)


def _value_and_grad(s: _Setup):
    def vg(theta):
        # Differentiate θ alone: the system may hold data (even integer arrays)
        # that needs no gradient.
        def V(th):
            return s.adjoint.value(
                eqx.tree_at(lambda q: q.theta, s.posed, th), s.numerics
            )

        return jax.value_and_grad(V)(theta)

    return vg


def _start(s: _Setup, theta0, state, steps: int) -> tuple[_Carry, PyTree]:
    """The carry before the first iteration, and the optimiser state's
    non-array leaves."""
    control = s.posed.control
    theta = control.project(theta0)
    if state is None:
        state = s.optimizer.init(theta, control)
    dynamic, static = eqx.partition(state, eqx.is_array)
    dtype = jnp.result_type(float)
    carry = _Carry(
        iteration=jnp.asarray(0),
        theta=theta,
        state=dynamic,
        best_value=jnp.asarray(-jnp.inf, dtype=dtype),
        best_theta=theta,
        best_iteration=jnp.asarray(0),
        best_pg_norm=jnp.asarray(jnp.nan, dtype=dtype),
        values=jnp.full((steps,), jnp.nan, dtype=dtype),
        grad_norms=jnp.full((steps,), jnp.nan, dtype=dtype),
        pg_norms=jnp.full((steps,), jnp.nan, dtype=dtype),
        result=RESULTS.completed,
        done=jnp.asarray(False),
    )
    return carry, static


def _iterate(c: _Carry, s: _Setup, static, *, same_state: bool = True) -> _Carry:
    """One iteration: evaluate, record, keep the best, test the stopping rules,
    step. `static` completes the optimiser state; a step that changes the
    state's structure (L-BFGS's first) needs `same_state=False`."""
    control = s.posed.control
    state = eqx.combine(c.state, static)
    # Under `vmap` a problem that has stopped still runs the loop's body (its
    # results are discarded): evaluate it at its best coefficients, which
    # solve, not at the ones that failed (which may cost `max_steps` steps).
    theta = _where(c.done, c.best_theta, c.theta)
    new_theta, new_state, V, grad = s.optimizer.step(
        _value_and_grad(s), theta, state, control
    )
    gnorm = _grad_norm(grad)
    pgnorm = _pg_norm(control, theta, grad)
    finite = jnp.isfinite(V) & jnp.isfinite(gnorm)
    converged = finite & (pgnorm <= s.gtol)
    stalled = finite & ~converged & s.optimizer.stalled(new_state)
    # On convergence the converged coefficients become the best, even where an
    # earlier iterate's V was higher (by the adaptive solver's noise, or by a
    # non-monotone optimiser such as Adam): a result `converged` returns a
    # theta that meets `gtol`.
    better = finite & ((V > c.best_value) | converged)
    i = c.iteration
    move = finite & ~converged

    def record(history, x):
        # (No slot when `steps` = 0: only the final evaluation runs.)
        if history.shape[0] == 0:
            return history
        return history.at[i].set(jnp.where(finite, x, jnp.nan))

    new_dynamic = eqx.filter(new_state, eqx.is_array)
    result = RESULTS.where(
        finite,
        RESULTS.where(
            converged,
            RESULTS.converged,
            RESULTS.where(stalled, RESULTS.stalled, c.result),
        ),
        RESULTS.nonfinite,
    )
    return _Carry(
        iteration=jnp.where(finite, i + 1, i),
        theta=_where(move, new_theta, c.theta),
        state=_where(move, new_dynamic, c.state) if same_state else new_dynamic,
        best_value=jnp.where(better, V, c.best_value),
        best_theta=_where(better, c.theta, c.best_theta),
        best_iteration=jnp.where(better, i, c.best_iteration),
        best_pg_norm=jnp.where(better, pgnorm, c.best_pg_norm),
        values=record(c.values, V),
        grad_norms=record(c.grad_norms, gnorm),
        pg_norms=record(c.pg_norms, pgnorm),
        result=result,
        done=~finite | converged | stalled,
    )


def _advance(c: _Carry, s: _Setup, static, stop) -> _Carry:
    """Iterations until `stop` counted iterations, or until the problem stops."""

    def cond(c):
        return (c.iteration < stop) & ~c.done

    return jax.lax.while_loop(cond, lambda c: _iterate(c, s, static), c)


def _first(c: _Carry, s: _Setup, static) -> _Carry:
    """The first iteration of an optimiser whose first step changes its state's
    structure (L-BFGS builds its solver state there)."""
    return _iterate(c, s, static, same_state=False)


def _final_carry(c: _Carry, steps: int) -> _Carry:
    """The carry for one more iteration, which evaluates the final coefficients
    (an unfinished run has not) with the compiled loop itself: it is recorded
    in the last slot of a copy of the carry, of which only the best-so-far
    fields are kept (`_with_final`)."""
    slot = jnp.asarray(max(steps - 1, 0) if steps else -1)
    return eqx.tree_at(lambda c: c.iteration, c, jnp.where(c.done, c.iteration, slot))


def _with_final(c: _Carry, after: _Carry) -> _Carry:
    """`c` with the final coefficients as best where their evaluation in
    `after` made them the best (by the rules of `_iterate`)."""
    moved = jax.tree.leaves(
        jax.tree.map(lambda a, b: jnp.any(a != b), after.best_theta, c.best_theta)
    )
    better = ~c.done & ((after.best_value != c.best_value) | jnp.any(jnp.stack(moved)))
    return eqx.tree_at(
        lambda c: (c.best_value, c.best_theta, c.best_iteration, c.best_pg_norm),
        c,
        (
            jnp.where(better, after.best_value, c.best_value),
            _where(better, after.best_theta, c.best_theta),
            jnp.where(better, c.iteration, c.best_iteration),
            jnp.where(better, after.best_pg_norm, c.best_pg_norm),
        ),
    )


def _diagnose(c: _Carry, s: _Setup) -> RESULTS:
    """Name a failure: the solve of the dynamics at the coefficients that
    failed says whether it reached `max_steps` or failed otherwise."""

    def diagnose():
        posed = eqx.tree_at(lambda q: q.theta, s.posed, c.theta)
        sol = forward_solve(posed, s.numerics, diffrax.SaveAt(t1=True))
        R = diffrax.RESULTS
        return RESULTS.where(
            sol.result == R.successful,
            RESULTS.nonfinite,
            RESULTS.where(
                sol.result == R.max_steps_reached,
                RESULTS.max_steps_reached,
                RESULTS.solver_failed,
            ),
        )

    return jax.lax.cond(c.result == RESULTS.nonfinite, diagnose, lambda: c.result)


_advance_jit = eqx.filter_jit(_advance)
_first_jit = eqx.filter_jit(_first)
_diagnose_jit = eqx.filter_jit(_diagnose)


def _loop_numerics(numerics: SolverOptions) -> SolverOptions:
    return dataclasses.replace(numerics, throw=False)


def _gtol(gtol: float | None):
    if gtol is None:
        return -math.inf
    if isinstance(gtol, bool) or not isinstance(gtol, (int, float)) or not gtol >= 0:
        raise ValueError(
            f"`gtol` must be None (never stop early) or a number >= 0; got {gtol!r}."
        )
    return float(gtol)


def _chunk_length(chunk: int | None) -> int:
    if chunk is None:
        return DEFAULT_CHUNK
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"`chunk` must be an integer >= 1; got {chunk!r}.")
    return chunk


def _state_is_stable(optimizer, theta, state, control) -> bool:
    """Whether a step keeps the optimiser state's structure (a loop needs that).

    `LBFGS` creates its solver state in its first step; such optimisers get
    their first iteration on its own. Checked by tracing one step with a
    stand-in gradient, which costs no ODE solve.
    """

    def stand_in(th):
        return jnp.zeros(()), th

    after = eqx.filter_eval_shape(
        lambda th, st: optimizer.step(stand_in, th, st, control)[1], theta, state
    )
    before = eqx.filter_eval_shape(lambda st: st, state)

    def arrays(tree):
        return [
            (a.shape, a.dtype) if isinstance(a, jax.ShapeDtypeStruct) else None
            for a in jax.tree.leaves(tree)
        ]

    return jax.tree.structure(after) == jax.tree.structure(before) and arrays(
        after
    ) == arrays(before)


def _static_after_step(s: _Setup, carry: _Carry, static) -> PyTree:
    """The non-array leaves of the optimiser state after a step (traced only)."""

    def step(c):
        state = eqx.combine(c.state, static)
        vg = _value_and_grad(s)
        return s.optimizer.step(vg, c.theta, state, s.posed.control)[1]

    return eqx.partition(eqx.filter_eval_shape(step, carry), _is_array_like)[1]


class _Runner(eqx.Module):
    """The compiled pieces of one loop: single (`lc.optimize`) or vmapped and
    sharded (`lc.sweep.optimize_batch`). `_drive` runs either."""

    advance: Callable  # (carry, stop) -> carry
    first: Callable | None  # carry -> carry, or None
    diagnose: Callable  # carry -> result
    to_host: Callable  # carry -> numpy carry (gathered across hosts)
    to_device: Callable  # carry -> carry placed for `advance`
    batched: bool = eqx.field(static=True)
    # A numpy carry from `to_host` (a checkpoint) placed for `advance`: the
    # sweep places its batch in another order than the host's (round robin).
    from_host: Callable | None = None


def _drive(
    runner: _Runner,
    carry: _Carry,
    *,
    steps: int,
    chunk: int,
    checkpoint: Checkpointer | None,
    signature: str,
    progress: bool,
    callback: Callable | None,
):
    """Run the loop in chunks; progress, callback and checkpoints between them.

    **Returns:** `(carry, stopped_by_callback, wall_time)`; the carry's best
    fields include the final coefficients (`_final_carry`) and its result
    names a failure (`_diagnose`).
    """
    if checkpoint is not None and not isinstance(checkpoint, Checkpointer):
        raise TypeError(
            "`checkpoint` must be a lecontrol.checkpoint.Checkpointer or None; got "
            f"{type(checkpoint).__name__}."
        )
    done_first = runner.first is None
    i = 0
    if checkpoint is not None:

        def template():
            c = carry if done_first else eqx.filter_eval_shape(runner.first, carry)
            return eqx.filter_eval_shape(runner.advance, c, jnp.asarray(steps))

        restored = checkpoint.restore(template, signature=signature, steps=steps)
        if restored is not None:
            i, carry = restored
            carry = (runner.from_host or runner.to_device)(carry)
            done_first = done_first or i > 0
    if callback is not None:
        chunk = 1
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=steps, initial=i, desc="optimising V", unit="it", dynamic_ncols=True
        )
    stopped = False
    start = time.perf_counter()
    try:
        while i < steps:
            if not done_first:
                stop = 1
                previous, carry = carry, runner.first(carry)
                done_first = True
            else:
                stop = min((i // chunk + 1) * chunk, steps)
                if checkpoint is not None and checkpoint.every > 0:
                    every = checkpoint.every
                    stop = min(stop, (i // every + 1) * every)
                previous, carry = carry, runner.advance(carry, jnp.asarray(stop))
            host = runner.to_host(carry)
            done = bool(np.all(host.done))
            at = stop if runner.batched else int(host.iteration)
            if bar is not None:
                bar.update(max(at - i, 0))
                finite = host.values[..., at - 1] if at > 0 else np.array([np.nan])
                if np.any(np.isfinite(finite)):
                    bar.set_postfix(V=f"{float(np.nanmax(finite)):.6g}")
            if callback is not None and int(host.iteration) > int(previous.iteration):
                j = int(previous.iteration)
                V, g = float(host.values[j]), float(host.grad_norms[j])
                if callback(j, previous.theta, V, g) is False:
                    stopped = True
                    break
            if done:
                break
            i = stop
            if checkpoint is not None and checkpoint.due(i, steps):
                if jax.process_index() == 0:
                    checkpoint.save(
                        host,
                        iteration=i,
                        signature=signature,
                        steps=steps,
                    )
        # The final coefficients: one more iteration of the compiled loop on
        # a copy of the carry (no compilation of its own), kept if better.
        final = runner.to_device(_final_carry(carry, steps))
        if done_first:
            after = runner.advance(final, jnp.asarray(steps))
        else:  # no iteration ran (`steps` = 0) and the first is special
            after = runner.first(final)
        with_final = jax.vmap(_with_final) if runner.batched else _with_final
        carry = runner.to_device(with_final(carry, after))
        codes = np.asarray(runner.to_host(carry.result)._value)
        if np.any(codes == RESULTS.nonfinite._value):  # say why (compiled only then)
            carry = eqx.tree_at(lambda c: c.result, carry, runner.diagnose(carry))
        jax.block_until_ready(carry)
    finally:
        if bar is not None:
            bar.close()
    return carry, stopped, time.perf_counter() - start


def _message(name: str, *, iterations: int, steps: int, best_iteration: int, gtol):
    if name == "completed":
        return f"completed {steps} iterations"
    if name == "converged":
        return (
            f"converged after {iterations} iterations: the projected-gradient norm "
            f"fell below gtol={gtol:g}"
        )
    if name == "stopped":
        return f"stopped by the callback after iteration {iterations - 1}"
    return (
        f"stopped at iteration {iterations}: {RESULTS[getattr(RESULTS, name)]} "
        f"Kept the best theta (iteration {best_iteration})."
    )


# ------------------------------------------------------------------ the verb


def optimize(
    problem: Problem,
    theta0: PyTree[Array],
    *,
    optimizer: AbstractOptimizer = ProjectedGradientAscent(lr=1.0),
    steps: int = 100,
    gtol: float | None = None,
    adjoint: AbstractGradientStrategy = ContinuousAdjoint(),
    options: SolverOptions = SolverOptions(),
    callback: Callable[[int, PyTree[Array], float, float], object] | None = None,
    progress: bool = False,
    state: PyTree = None,
    checkpoint: Checkpointer | None = None,
    chunk: int | None = None,
) -> OptimizeResult:
    r"""Maximise $V(\theta)$ over the control coefficients.

    Each iteration evaluates $V$ and $\nabla_\theta V$ (with the gradient
    strategy `adjoint`) and lets `optimizer` move $\theta$ within the control's
    bounds $[l, u]$. The loop is compiled: chunks of `chunk` iterations run in
    one `lax.while_loop`; the results do not depend on `chunk`. It stops
    early, keeping the best $\theta$, when the projected gradient
    $\lVert\Pi_{[l,u]}(\theta + \nabla_\theta V) - \theta\rVert_2$ falls to
    `gtol` (`converged`), or when $V$ or its gradient is not finite or the
    solver fails (`nonfinite`, `max_steps_reached`, `solver_failed`); `result`
    and `message` say why.

    **Arguments:**

    - `problem`: an `lc.Problem`.
    - `theta0`: starting coefficients (e.g. `problem.control.init(0.0)`, the
      baseline).
    - `optimizer`: `ProjectedGradientAscent(lr)`, `Adam(lr)`, `LBFGSB()` or
      `LBFGS()`.
    - `steps`: iterations at most.
    - `gtol`: stop once the projected-gradient norm is at most this (default
      `None`: run every iteration).
    - `adjoint`: gradient strategy.
    - `options`: how the ODE is solved (`lc.SolverOptions`).
    - `callback`: called as `callback(i, theta, V, grad_norm)` after iteration `i`
      (with the coefficients the iteration evaluated); return `False` to stop.
      With a callback the loop runs one iteration per compiled chunk.
    - `progress`: show a progress bar.
    - `state`: optimiser state to resume from (`result.state`; then `theta0`
      must be `result.final_theta`).
    - `checkpoint`: a `lecontrol.checkpoint.Checkpointer`: save the progress
      every `checkpoint.every` iterations and after the last one, and (with
      `resume=True`) start from its file when there is one. A resumed run ends
      with bitwise the same result as an uninterrupted one (`wall_time` aside).
    - `chunk`: iterations per compiled chunk (default 25; chunks also end at
      every checkpoint).

    **Returns:** an `OptimizeResult`.
    """
    steps = int(steps)
    if steps < 0:
        raise ValueError(f"`steps` must be >= 0; got {steps}.")
    gtol_value = _gtol(gtol)
    chunk = _chunk_length(chunk)
    numerics = _options(options)
    posed = _posed(problem, theta0)
    s = _Setup(
        posed,
        optimizer.bind(problem),
        adjoint.bind(posed),
        _loop_numerics(numerics),
        jnp.asarray(gtol_value, dtype=jnp.result_type(float)),
    )
    carry, static = _start(s, theta0, state, steps)
    full_state = eqx.combine(carry.state, static)
    stable = _state_is_stable(s.optimizer, carry.theta, full_state, problem.control)
    static_after = static if stable else _static_after_step(s, carry, static)
    # Module-level compiled functions: a second `optimize` of the same kind of
    # problem reuses their compilation.
    runner = _Runner(
        advance=lambda c, stop: _advance_jit(c, s, static_after, stop),
        first=None if stable else lambda c: _first_jit(c, s, static),
        diagnose=lambda c: _diagnose_jit(c, s),
        to_host=lambda c: jax.tree.map(np.asarray, c),
        to_device=lambda c: c,
        batched=False,
    )
    carry, stopped, wall = _drive(
        runner,
        carry,
        steps=steps,
        chunk=chunk,
        checkpoint=checkpoint,
        signature=repr(optimizer),
        progress=progress,
        callback=callback,
    )
    result = RESULTS.stopped if stopped else carry.result
    iterations = int(carry.iteration)
    name = result_name(result)
    best_iteration = int(carry.best_iteration)
    return OptimizeResult(
        theta=carry.best_theta,
        values=np.asarray(carry.values)[:iterations],
        grad_norms=np.asarray(carry.grad_norms)[:iterations],
        projected_grad_norms=np.asarray(carry.pg_norms)[:iterations],
        best_value=float(carry.best_value),
        best_iteration=best_iteration,
        projected_grad_norm=float(carry.best_pg_norm),
        iterations=iterations,
        wall_time=wall,
        result=result,
        message=_message(
            name,
            iterations=iterations,
            steps=steps,
            best_iteration=best_iteration,
            gtol=gtol_value,
        ),
        final_theta=carry.theta,
        state=eqx.combine(carry.state, static_after),
    )


def runtime_error_message(err: Exception) -> str:
    """The message of an error raised inside JIT (`eqx.error_if`), without
    equinox's debugging boilerplate."""
    # `equinox.EquinoxRuntimeError: ...` when raised through `eqx.filter_jit`;
    # `_EquinoxRuntimeError: ...` inside a `jax.errors.JaxRuntimeError` when
    # raised in a transformed computation (e.g. the backward pass of grad).
    marker = "EquinoxRuntimeError: "
    lines = [
        ln.split(marker, 1)[1]
        for ln in str(err).splitlines()
        if ln.lstrip().startswith(("equinox.", "_Equinox")) and marker in ln
    ]
    if lines:
        return lines[-1]
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
