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

then the full jitted value-and-gradient, and one vector-field evaluation and
one vector–Jacobian product alone (a jitted call each: mostly dispatch), so
the per-step cost can be compared with the cost of the mathematics inside it.

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
from problems import PROBLEMS  # noqa: E402

import lecontrol as lc  # noqa: E402
from lecontrol._dynamics import Posed, forward_solve  # noqa: E402
from lecontrol.adjoint import (  # noqa: E402
    costate_at_nodes,
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


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problem", default="gain-gaussians", choices=list(PROBLEMS))
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=lc.ContinuousAdjoint().nodes)
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
    w0 = p.system.init_state()
    g0 = p.control(theta, 1.0)
    vf = jax.jit(lambda w: p.system.vector_field(1.0, w, g0))
    vjp = jax.jit(
        lambda w, lam: jax.vjp(lambda w_: p.system.vector_field(1.0, w_, g0), w)[1](lam)
    )
    stages = {
        "forward solve, saving only V": (value_only, (prob,)),
        "forward solve, saving w": (fwd, (prob,)),
        "costate solve": (bwd, (prob, w_at)),
        "quadrature + projection": (quad, (prob, W, L)),
        "full value-and-gradient": (full, (theta,)),
        "one vector field": (vf, (w0,)),
        "one VJP": (vjp, (w0, w0)),
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
    print(
        f"one vector field alone {1e3 * best['one vector field']:.1f} µs, one VJP "
        f"{1e3 * best['one VJP']:.1f} µs (jitted calls: mostly dispatch)"
    )


if __name__ == "__main__":
    main()
