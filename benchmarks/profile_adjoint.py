"""Where does ContinuousAdjoint's time go? Times each stage separately.

Stages of one value-and-gradient (all jitted, timed after compilation, median):

1. forward solve of (w, V), saving w at the ends and Gauss nodes of every
   interval between breakpoints (what ContinuousAdjoint stores);
2. backward costate solve (reads w from the `NodeInterpolant` of those values);
3. quadrature: the vector–Jacobian products at the Gauss–Legendre nodes and
   the projection onto the basis (θ only);
plus one vector-field evaluation and one vector–Jacobian product alone, so the
per-step cost can be compared with the cost of the mathematics inside it.

    python benchmarks/profile_adjoint.py --problem gain-gaussians --rtol 1e-6
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
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)  # before any array is made

sys.path.insert(0, os.path.dirname(__file__))
from problems import PROBLEMS  # noqa: E402

import lecontrol as lc  # noqa: E402
from lecontrol._dynamics import Posed, forward_solve  # noqa: E402
from lecontrol.adjoint import (  # noqa: E402
    NodeInterpolant,
    _integrand,
    costate_solve,
    gauss_legendre,
    sample_times,
)


def timed(fn, *args, repeat=20):
    jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problem", default="gain-gaussians", choices=list(PROBLEMS))
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    p = PROBLEMS[args.problem]()
    theta = p.theta()
    num = lc.SolverOptions(rtol=args.rtol, atol=args.rtol * 1e-2)
    prob = Posed(theta, p.system, p.control, p.cost, p.objective)
    nodes = lc.ContinuousAdjoint().nodes

    breakpoints = prob.quadrature_breakpoints()
    save = diffrax.SaveAt(
        subs=[
            diffrax.SubSaveAt(t1=True),
            diffrax.SubSaveAt(
                ts=sample_times(breakpoints, nodes), fn=lambda t, y, a: y[0]
            ),
        ]
    )

    @eqx.filter_jit
    def fwd(q):
        sol = forward_solve(q, num, save)
        return NodeInterpolant.from_saved(breakpoints, sol.ys[1], nodes), sol.stats

    sol, fwd_stats = fwd(prob)
    ts, ws = gauss_legendre(breakpoints, nodes)
    bwd = eqx.filter_jit(lambda q, s: costate_solve(q, num, s, ts))
    bsol = bwd(prob, sol)

    @eqx.filter_jit
    def quadrature(q, s, lam_nodes):
        W = s.at_nodes()
        L = jax.tree.map(lambda x: x[::-1], lam_nodes)

        def total(theta):
            q_ = eqx.tree_at(lambda p: p.theta, q, theta)
            return jnp.sum(
                ws * jax.vmap(lambda t, w, lam: _integrand(q_, t, w, lam))(ts, W, L)
            )

        return jax.grad(total)(q.theta)

    full = jax.jit(
        jax.grad(
            lambda th: lc.value(
                p.problem,
                th,
                options=lc.SolverOptions(rtol=args.rtol, atol=args.rtol * 1e-2),
            )
        )
    )
    w0 = p.system.init_state()
    g0 = p.control(theta, 1.0)
    vf = jax.jit(lambda w: p.system.vector_field(1.0, w, g0))
    vjp = jax.jit(
        lambda w, lam: jax.vjp(lambda w_: p.system.vector_field(1.0, w_, g0), w)[1](lam)
    )

    n_fwd = int(fwd_stats["num_steps"])
    n_bwd = int(bsol.stats["num_steps"])
    t_fwd = timed(fwd, prob, repeat=args.repeat)
    t_bwd = timed(bwd, prob, sol, repeat=args.repeat)
    t_quad = timed(quadrature, prob, sol, bsol.ys[0], repeat=args.repeat)
    t_full = timed(full, theta, repeat=args.repeat)
    t_vf = timed(vf, w0, repeat=args.repeat)
    t_vjp = timed(vjp, w0, w0, repeat=args.repeat)
    print(
        f"{p.name}, rtol={args.rtol:g}: {n_fwd} forward steps, {n_bwd} backward steps, {ts.shape[0]} quadrature nodes"
    )
    print(
        f"forward solve (saving)  {t_fwd:8.2f} ms  ({1e3 * t_fwd / n_fwd:6.1f} µs/step)"
    )
    print(
        f"costate solve           {t_bwd:8.2f} ms  ({1e3 * t_bwd / n_bwd:6.1f} µs/step)"
    )
    print(f"quadrature + projection {t_quad:8.2f} ms")
    print(
        f"sum of stages           {t_fwd + t_bwd + t_quad:8.2f} ms   full value-and-grad {t_full:8.2f} ms"
    )
    print(
        f"one vector field alone  {1e3 * t_vf:8.1f} µs (a jitted call: mostly dispatch); one VJP {1e3 * t_vjp:8.1f} µs"
    )


if __name__ == "__main__":
    main()
