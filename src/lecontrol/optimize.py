"""The optimisation loop: maximise $V(\\theta)$ with an optimiser strategy."""

from __future__ import annotations

import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PyTree

from ._dynamics import SolverOptions
from .adjoint import AbstractGradientStrategy, ContinuousAdjoint
from .checkpoint import Checkpointer, Progress
from .objective import Problem, _options, _posed
from .optimizers import AbstractOptimizer, ProjectedGradientAscent


class OptimizeResult(eqx.Module):
    """What `optimize` found.

    - `theta`: the best coefficients seen (highest finite $V$).
    - `values`: $V$ at each iteration's starting point.
    - `grad_norms`: $\\lVert\\nabla_\\theta V\\rVert_2$ at each iteration.
    - `best_value`, `best_iteration`: $V$ of `theta` and when it was found
      (`iterations` means the final coefficients, evaluated after the loop).
    - `iterations`: iterations completed.
    - `wall_time`: seconds, compilation included.
    - `status`: `"completed"` or `"nonfinite"` (the loop stopped early because
      $V$ or its gradient was not finite, or the solver failed; `values` and
      `grad_norms` then hold only the finite iterations before it).
    - `message`: why it stopped.
    - `final_theta`, `state`: where the optimiser stands, to resume from.
    """

    theta: PyTree[Array]
    values: np.ndarray
    grad_norms: np.ndarray
    best_value: float
    best_iteration: int
    iterations: int
    wall_time: float
    status: str
    message: str
    final_theta: PyTree[Array]
    state: PyTree


def _grad_norm(grad) -> Array:
    return jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grad)))


@eqx.filter_jit
def _step(optimizer, problem, numerics, adjoint, theta, state):
    def vg_theta(th):
        # Differentiate θ alone: the system may hold data (even integer arrays)
        # that needs no gradient.
        def V(th_):
            return adjoint.value(eqx.tree_at(lambda q: q.theta, problem, th_), numerics)

        return jax.value_and_grad(V)(th)

    new_theta, new_state, V, grad = optimizer.step(
        vg_theta, theta, state, problem.control
    )
    return new_theta, new_state, V, _grad_norm(grad)


@eqx.filter_jit
def _value(problem, numerics, adjoint):
    return adjoint.value(problem, numerics)


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


def optimize(
    problem: Problem,
    theta0: PyTree[Array],
    *,
    optimizer: AbstractOptimizer = ProjectedGradientAscent(lr=1.0),
    steps: int = 100,
    adjoint: AbstractGradientStrategy = ContinuousAdjoint(),
    options: SolverOptions = SolverOptions(),
    callback: Callable[[int, PyTree[Array], float, float], object] | None = None,
    progress: bool = False,
    state: PyTree = None,
    checkpoint: Checkpointer | None = None,
) -> OptimizeResult:
    r"""Maximise $V(\theta)$ over the control coefficients.

    Each iteration evaluates $V$ and $\nabla_\theta V$ (with the gradient
    strategy `adjoint`) and lets `optimizer` move $\theta$ within the control's
    bounds. The loop stops early, keeping the best $\theta$, if $V$ or its
    gradient is not finite or the solver fails; `status` and `message` say why.

    **Arguments:**

    - `problem`: an `lc.Problem`.
    - `theta0`: starting coefficients (e.g. `problem.control.init(0.0)`, the
      baseline).
    - `optimizer`: `ProjectedGradientAscent(lr)`, `Adam(lr)` or `LBFGS()`.
    - `steps`: iterations.
    - `adjoint`: gradient strategy.
    - `options`: how the ODE is solved (`lc.SolverOptions`).
    - `callback`: called as `callback(i, theta, V, grad_norm)` after iteration `i`
      (with the coefficients the iteration evaluated); return `False` to stop.
    - `progress`: show a progress bar.
    - `state`: optimiser state to resume from (`result.state`; then `theta0`
      must be `result.final_theta`).
    - `checkpoint`: a `lecontrol.checkpoint.Checkpointer`: save the progress
      every `checkpoint.every` iterations and after the last one, and (with
      `resume=True`) start from its file when there is one. A resumed run ends
      with bitwise the same result as an uninterrupted one (`wall_time` aside).

    **Returns:** an `OptimizeResult`.
    """
    if int(steps) < 0:
        raise ValueError(f"`steps` must be >= 0; got {steps}.")
    control = problem.control
    numerics = _options(options)
    problem = _posed(problem, theta0)
    adjoint = adjoint.bind(problem)
    theta = control.project(theta0)
    if state is None:
        state = optimizer.init(theta, control)

    values, norms = [], []
    best_value, best_theta, best_iteration = -np.inf, theta, 0
    first = 0
    signature = repr(optimizer)
    if checkpoint is not None:
        restored = checkpoint.restore(
            theta,
            lambda: eqx.filter_eval_shape(
                _step, optimizer, problem, numerics, adjoint, theta, state
            )[1],
            signature=signature,
            steps=int(steps),
        )
        if restored is not None:
            first, theta, state = restored.iteration, restored.theta, restored.state
            values, norms = restored.values, restored.grad_norms
            best_value, best_theta = restored.best_value, restored.best_theta
            best_iteration = restored.best_iteration
    status, message = "completed", f"completed {steps} iterations"
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=int(steps),
            initial=first,
            desc="optimising V",
            unit="it",
            dynamic_ncols=True,
        )
    start = time.perf_counter()
    i = first
    try:
        for i in range(first, int(steps)):
            try:
                new_theta, new_state, V, gnorm = _step(
                    optimizer, problem, numerics, adjoint, theta, state
                )
                V, gnorm = float(V), float(gnorm)
            except (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError) as err:
                status = "nonfinite"
                message = (
                    f"stopped at iteration {i}: {runtime_error_message(err)} Kept "
                    f"the best theta (iteration {best_iteration})."
                )
                break
            if not (np.isfinite(V) and np.isfinite(gnorm)):
                status = "nonfinite"
                what = "V" if not np.isfinite(V) else "the gradient of V"
                message = (
                    f"stopped at iteration {i}: {what} is not finite; kept the best "
                    f"theta (iteration {best_iteration}). Lower the learning rate or "
                    "tighten the solver tolerances."
                )
                break
            values.append(V)
            norms.append(gnorm)
            if V > best_value:
                best_value, best_theta, best_iteration = V, theta, i
            if bar is not None:
                bar.update(1)
                bar.set_postfix(V=f"{V:.6g}", grad=f"{gnorm:.2e}")
            if callback is not None and callback(i, theta, V, gnorm) is False:
                theta, state = new_theta, new_state
                message = f"stopped by the callback after iteration {i}"
                i += 1
                break
            theta, state = new_theta, new_state
            if checkpoint is not None and checkpoint.due(i + 1, int(steps)):
                checkpoint.save(
                    Progress(
                        i + 1,
                        theta,
                        state,
                        values,
                        norms,
                        best_value,
                        best_theta,
                        best_iteration,
                    ),
                    signature=signature,
                    steps=int(steps),
                )
        else:
            i = int(steps)
        if status == "completed":
            # The final coefficients have not been evaluated yet.
            try:
                V_final = float(
                    _value(
                        eqx.tree_at(lambda q: q.theta, problem, theta),
                        numerics,
                        adjoint,
                    )
                )
            except (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError):
                V_final = -np.inf
            if np.isfinite(V_final) and V_final > best_value:
                best_value, best_theta, best_iteration = V_final, theta, i
    finally:
        if bar is not None:
            bar.close()
    return OptimizeResult(
        theta=best_theta,
        values=np.asarray(values, dtype=float),
        grad_norms=np.asarray(norms, dtype=float),
        best_value=float(best_value),
        best_iteration=int(best_iteration),
        iterations=len(values),
        wall_time=time.perf_counter() - start,
        status=status,
        message=message,
        final_theta=theta,
        state=state,
    )
