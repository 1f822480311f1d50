"""Where does ContinuousAdjoint's time go? Times each stage separately.

Stages of one value-and-gradient, each the library's own function, jitted
and timed after compilation:

1. forward solve of (w, V) saving nothing but the end (what `lc.value`
   alone costs), then the same solve saving w at the ends and Gauss nodes
   of every interval between breakpoints (`stored_forward`, what
   ContinuousAdjoint's forward pass does): the difference is the cost of
   saving;
2. backward costate solve, reading w from the `NodeInterpolant` of those
   values (`costate_at_nodes`);
3. quadrature: the vector–Jacobian products at the Gauss–Legendre nodes and
   the projection onto the basis, θ only (`projection`);

then the full jitted value-and-gradient. Then what one step is made of,
each timed inside one compiled loop of `--evaluations` calls (so without
Python's dispatch, as inside a solve): the forward right-hand side $(h, v)$,
the costate right-hand side (`costate_field`: $w$ from the interpolant, the
control, one vector–Jacobian product), and the interpolant and the control
alone. A Tsit5 step makes six of these evaluations (the seventh is reused),
so six times the right-hand side is that step's floor, whatever drives the
solver. Last, a minimal adaptive loop of our own around diffrax's own
`Tsit5.step` (an I-controller on the RMS error, steps clipped to the
breakpoints, nothing saved) solves the forward problem: what diffrax's
`diffeqsolve` adds to the steps themselves.

On a shared machine the stages are timed in `--rounds` interleaved rounds of
`--repeat` calls each; the table reports the best round's median per stage
(the least disturbed), and the spread of the round medians.

    python benchmarks/profile_adjoint.py --problem gain-gaussians --rtol 1e-4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import diffrax
import equinox as eqx
import jax

jax.config.update("jax_enable_x64", True)  # before any array is made

sys.path.insert(0, os.path.dirname(__file__))
import jax.numpy as jnp  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402
from problems import PROBLEMS  # noqa: E402

import lecontrol as lc  # noqa: E402
from lecontrol._dynamics import Posed, forward_solve  # noqa: E402
from lecontrol.adjoint import (  # noqa: E402
    costate_at_nodes,
    costate_field,
    projection,
    stored_forward,
)


def timed_rounds(stages: dict, rounds: int, repeat: int) -> dict:
    """Round medians (ms) per stage; the stages interleave round by round."""
    for fn, args in stages.values():
        jax.block_until_ready(fn(*args))
    out = {name: [] for name in stages}
    for _ in range(rounds):
        for name, (fn, args) in stages.items():
            ts = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                jax.block_until_ready(fn(*args))
                ts.append(time.perf_counter() - t0)
            out[name].append(1e3 * statistics.median(ts))
    return out


def in_loop(fn, x0, T: float, n: int):
    """`fn(t, x)` evaluated `n` times in one `fori_loop` at times spread over
    [0, T], each call's input depending on the last output (no hoisting)."""

    def run(x0):
        def body(i, x):
            t = T * (i + 0.5) / n
            dx = fn(t, x)
            return jax.tree.map(lambda a, b: a + 1e-9 * b, x, dx)

        return jax.lax.fori_loop(0, n, body, x0)

    return jax.jit(run), (x0,)


def minimal_forward(problem: Posed, num, breakpoints):
    """V by our own adaptive loop around diffrax's `Tsit5.step` on the flat
    (w, V): the I-controller of diffrax's `PIDController` defaults (safety
    0.9, factors 0.2-10, RMS error norm), every step clipped to the next
    breakpoint (whose index the loop carries: no search), nothing saved.
    Returns V and the accepted and rejected steps."""
    y0 = (problem.system.init_state(), jnp.zeros(()))
    flat, unravel = ravel_pytree(y0)
    term = diffrax.ODETerm(
        lambda t, y, a: ravel_pytree(problem.augmented_field(t, unravel(y)))[0]
    )
    solver, b = num.solver, breakpoints
    order = solver.error_order(term)  # as diffrax's PIDController

    def body(c):
        i, t, y, dt, state, accepted, rejected = c
        t1 = jnp.minimum(t + dt, b[i + 1])
        y1, err, _, state1, _ = solver.step(term, t, t1, y, None, state, False)
        scale = num.atol + num.rtol * jnp.maximum(jnp.abs(y), jnp.abs(y1))
        e = jnp.sqrt(jnp.mean((err / scale) ** 2))
        keep = e <= 1.0
        factor = jnp.clip(0.9 * jnp.where(e == 0, jnp.inf, e) ** (-1 / order), 0.2, 10)
        factor = jnp.where(keep, factor, jnp.minimum(factor, 1.0))
        i = jnp.where(keep & (t1 >= b[i + 1]), i + 1, i)
        pick = lambda new, old: jnp.where(keep, new, old)  # noqa: E731
        state = jax.tree.map(pick, state1, state)
        return (
            i,
            pick(t1, t),
            pick(y1, y),
            (t1 - t) * factor,
            state,
            accepted + keep,
            rejected + ~keep,
        )

    dt0 = b[1] - b[0]
    c0 = (0, 0.0, flat, dt0, solver.init(term, 0.0, dt0, flat, None), 0, 0)
    c = jax.lax.while_loop(lambda c: c[0] < b.shape[0] - 1, body, c0)
    return unravel(c[2])[1], c[5], c[6]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problem", default="gain-gaussians", choices=list(PROBLEMS))
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=lc.ContinuousAdjoint().nodes)
    parser.add_argument("--evaluations", type=int, default=2000)
    args = parser.parse_args(argv)
    p = PROBLEMS[args.problem]()
    theta = p.theta()
    num = lc.SolverOptions(rtol=args.rtol, atol=args.rtol * 1e-2)
    prob = Posed(theta, p.system, p.control, p.cost, p.objective)
    strategy = lc.ContinuousAdjoint(nodes=args.nodes)
    only_theta = jax.tree.map(lambda _: False, prob)
    only_theta = eqx.tree_at(
        lambda q: q.theta, only_theta, jax.tree.map(lambda _: True, theta)
    )

    value_only = eqx.filter_jit(
        lambda q: forward_solve(q, num, diffrax.SaveAt(t1=True)).ys
    )
    fwd = eqx.filter_jit(lambda q: stored_forward(q, strategy, num))
    sol, w_at = fwd(prob)
    bwd = eqx.filter_jit(lambda q, w: costate_at_nodes(q, strategy, num, w))
    bsol, ts, ws, W, L = bwd(prob, w_at)
    quad = eqx.filter_jit(lambda q, W, L: projection(only_theta, q, ts, ws, W, L).theta)
    full = jax.jit(
        jax.value_and_grad(
            lambda th: lc.value(p.problem, th, adjoint=strategy, options=num)
        )
    )
    # What one step is made of, inside a compiled loop.
    T, n = float(p.objective.T), args.evaluations
    y0 = (p.system.init_state(), jnp.zeros(()))
    _, unravel = ravel_pytree(p.system.init_state())
    lam0 = p.system.init_state()
    w_flat = lambda t: unravel(w_at(t))  # noqa: E731
    minimal = jax.jit(lambda q: minimal_forward(q, num, strategy.breakpoints(q)))
    stages = {
        "forward solve, saving only V": (value_only, (prob,)),
        "forward solve, saving w": (fwd, (prob,)),
        "costate solve": (bwd, (prob, w_at)),
        "quadrature + projection": (quad, (prob, W, L)),
        "full value-and-gradient": (full, (theta,)),
        "forward field": in_loop(prob.augmented_field, y0, T, n),
        "costate field": in_loop(costate_field(prob, w_flat), lam0, T, n),
        "interpolant": in_loop(lambda t, w: w_flat(t), lam0, T, n),
        "control": in_loop(
            lambda t, g: prob.control_at(t), p.control(theta, 0.0), T, n
        ),
        "minimal loop": (minimal, (prob,)),
    }
    res = timed_rounds(stages, args.rounds, args.repeat)
    best = {k: min(v) for k, v in res.items()}
    n_fwd = int(sol.stats["num_steps"])
    n_bwd = int(bsol.stats["num_steps"])
    print(
        f"{p.name}, rtol={args.rtol:g}, nodes={args.nodes}: {n_fwd} forward steps, "
        f"{n_bwd} backward steps, {ts.shape[0]} quadrature nodes; best of "
        f"{args.rounds} interleaved rounds of {args.repeat} calls (round medians "
        "in brackets)"
    )

    def line(name, extra=""):
        spread = " ".join(f"{x:.2f}" for x in res[name])
        print(f"{name:30s} {best[name]:8.2f} ms {extra:22s} [{spread}]")

    line(
        "forward solve, saving only V",
        f"({1e3 * best['forward solve, saving only V'] / n_fwd:5.1f} µs/step)",
    )
    line(
        "forward solve, saving w",
        f"({1e3 * best['forward solve, saving w'] / n_fwd:5.1f} µs/step)",
    )
    line("costate solve", f"({1e3 * best['costate solve'] / n_bwd:5.1f} µs/step)")
    line("quadrature + projection")
    total = sum(
        best[k]
        for k in ("forward solve, saving w", "costate solve", "quadrature + projection")
    )
    line("full value-and-gradient", f"(sum of stages {total:.2f})")
    per = {
        k: 1e3 * best[k] / n  # ms per loop -> µs per evaluation
        for k in ("forward field", "costate field", "interpolant", "control")
    }
    print(f"\ninside a compiled loop ({n} evaluations; µs per evaluation):")
    for name in per:
        print(f"  {name:28s} {per[name]:6.2f} µs")
    fwd_floor = 6 * per["forward field"] * n_fwd / 1e3
    bwd_floor = 6 * per["costate field"] * n_bwd / 1e3
    print(
        f"six right-hand sides per Tsit5 step: forward {fwd_floor:.2f} ms of "
        f"{best['forward solve, saving only V']:.2f}, costate {bwd_floor:.2f} ms "
        f"of {best['costate solve']:.2f}"
    )
    V_own, acc, rej = minimal(prob)
    V_lib = value_only(prob)[1][-1]
    line(
        "minimal loop",
        f"({1e3 * best['minimal loop'] / (int(acc) + int(rej)):5.1f} µs/step)",
    )
    print(
        f"  (own loop around Tsit5.step, forward, saving only V: {int(acc)} "
        f"accepted + {int(rej)} rejected steps; V = {float(V_own):.10g} against "
        f"diffeqsolve's {float(V_lib):.10g}, relative difference "
        f"{abs(float(V_own - V_lib) / float(V_lib)):.1e})"
    )


if __name__ == "__main__":
    main()
