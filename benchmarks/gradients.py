"""Value-and-gradient benchmark: ContinuousAdjoint vs CheckpointAdjoint vs EulerUnrolled.

Prints, side by side in one run and per problem: compile time, time per
value-and-gradient after compilation (median), forward solver steps, the
compiled program's memory (XLA buffer assignment: arguments + outputs +
temporaries), and the relative gradient error against a converged reference
(CheckpointAdjoint at rtol=1e-11, atol=1e-13). ContinuousAdjoint runs twice:
with its default 8 Gauss nodes per knot interval, and with `--fast-nodes`
(default 3), which costs less quadrature. Then the ratio of EulerUnrolled's
time (the paper's method: Euler at dt = the SGD learning rate) to each of ours,
with whether our gradient error is at least as small, and ContinuousAdjoint's
memory at N and 10N SGD steps.

    python benchmarks/gradients.py                      # all problems
    python benchmarks/gradients.py --problems gain-gaussians --repeat 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)  # before any array is made

sys.path.insert(0, os.path.dirname(__file__))
from problems import PROBLEMS, Problem  # noqa: E402

import lecontrol as lc  # noqa: E402

REFERENCE = dict(rtol=1e-11, atol=1e-13, max_steps=200_000)


def _flat(tree):
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def value_and_grad_fn(p: Problem, adjoint, **kw):
    def f(theta):
        return lc.value(
            p.problem,
            theta,
            adjoint=adjoint,
            options=lc.SolverOptions(**kw),
        )

    return jax.jit(jax.value_and_grad(f))


def memory_bytes(fn, theta) -> int:
    m = fn.lower(theta).compile().memory_analysis()
    if m is None:
        return -1
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)


def measure(p: Problem, adjoint, theta, repeat: int, **kw):
    fn = value_and_grad_fn(p, adjoint, **kw)
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(theta))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(theta))
        times.append(time.perf_counter() - t0)
    return dict(
        compile_s=compile_s,
        ms=1e3 * statistics.median(times),
        grad=_flat(out[1]),
        V=float(out[0]),
        mem=memory_bytes(fn, theta),
    )


def solver_steps(p: Problem, theta, **kw) -> int:
    traj = lc.solve(
        p.problem,
        theta,
        ts=jnp.asarray([p.objective.T]),
        options=lc.SolverOptions(**kw),
    )
    return int(traj.num_steps)


def strategies(p: Problem, rtol: float, fast_nodes: int):
    kw = dict(rtol=rtol, atol=rtol * 1e-2)
    return [
        ("ContinuousAdjoint", lc.ContinuousAdjoint(), kw),
        (
            f"ContinuousAdjoint(nodes={fast_nodes})",
            lc.ContinuousAdjoint(nodes=fast_nodes),
            kw,
        ),
        ("CheckpointAdjoint", lc.CheckpointAdjoint(), kw),
        (f"EulerUnrolled(dt={p.alpha:g})", lc.EulerUnrolled(dt=p.alpha), {}),
    ]


def run(name: str, repeat: int, rtol: float, fast_nodes: int) -> None:
    p = PROBLEMS[name]()
    theta = p.theta()
    ref = measure(p, lc.CheckpointAdjoint(), theta, 1, **REFERENCE)["grad"]
    print(
        f"\n== {name}: N = {p.steps} SGD steps (T = {float(p.objective.T):g}), "
        f"{_flat(theta).size} control coefficients, rtol = {rtol:g}"
    )
    header = f"{'strategy':28s} {'compile s':>9s} {'ms/call':>9s} {'steps':>7s} {'memory MiB':>10s} {'grad rel err':>12s}"
    print(header)
    print("-" * len(header))
    rows = {}
    for label, adjoint, kw in strategies(p, rtol, fast_nodes):
        r = measure(p, adjoint, theta, repeat, **kw)
        err = float(jnp.linalg.norm(r["grad"] - ref) / jnp.linalg.norm(ref))
        steps = solver_steps(p, theta, **kw) if kw else p.steps
        rows[label] = (r, err)
        print(
            f"{label:28s} {r['compile_s']:9.2f} {r['ms']:9.2f} {steps:7d} {r['mem'] / 2**20:10.2f} {err:12.2e}"
        )
    euler = next(v for k, v in rows.items() if k.startswith("Euler"))
    for label, (r, err) in rows.items():
        if label.startswith("Euler"):
            continue
        verdict = "better" if err <= euler[1] else "WORSE"
        print(
            f"EulerUnrolled / {label}: {euler[0]['ms'] / r['ms']:.1f}x faster, "
            f"gradient error {err:.1e} vs Euler's {euler[1]:.1e} ({verdict})"
        )


def memory_scaling(name: str, rtol: float) -> None:
    print(f"\n== memory of ContinuousAdjoint vs horizon ({name})")
    for scale in (1, 10):
        p = PROBLEMS[name](scale_N=scale)
        fn = value_and_grad_fn(p, lc.ContinuousAdjoint(), rtol=rtol, atol=rtol * 1e-2)
        fe = value_and_grad_fn(p, lc.EulerUnrolled(dt=p.alpha))
        theta = p.theta()
        print(
            f"N = {p.steps:7d}: ContinuousAdjoint {memory_bytes(fn, theta) / 2**20:8.2f} MiB, "
            f"EulerUnrolled {memory_bytes(fe, theta) / 2**20:8.2f} MiB"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--problems", nargs="*", default=list(PROBLEMS), choices=list(PROBLEMS)
    )
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument(
        "--fast-nodes",
        type=int,
        default=3,
        help="Gauss nodes per interval of the second ContinuousAdjoint row "
        "(the default adjoint uses 8)",
    )
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args(argv)
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, float64={jax.config.jax_enable_x64}"
    )
    for name in args.problems:
        run(name, args.repeat, args.rtol, args.fast_nodes)
    if not args.no_memory:
        memory_scaling("gain-gaussians", args.rtol)


if __name__ == "__main__":
    main()
