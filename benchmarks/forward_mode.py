"""Forward mode against reverse mode: ForwardSensitivity vs ContinuousAdjoint.

Prints, side by side in one run and per problem, the time (median after
compilation, and the compile time) of one full derivative of V

- by forward mode: `jax.jacfwd` with `lc.ForwardSensitivity()` (one JVP per
  parameter, vmapped),
- by reverse mode: `jax.grad` with `lc.ContinuousAdjoint()` (one forward and
  one costate solve, whatever the number of parameters),

for FEW parameters (4 scalars: the system's L2 weight `lam` and time constant
`tau`, the objective's `eta` and `gamma`) and for MANY (every control
coefficient theta), with their ratio and the relative difference of the two
derivatives; then the time of one JVP (a random direction in theta) and of
one value alone.

    python benchmarks/forward_mode.py                         # single-neuron, gain-gaussians
    python benchmarks/forward_mode.py --problems single-neuron --repeat 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

jax.config.update("jax_enable_x64", True)  # before any array is made

sys.path.insert(0, os.path.dirname(__file__))
from problems import PROBLEMS, Problem  # noqa: E402

import lecontrol as lc  # noqa: E402


def _flat(tree):
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def timed(fn, *args, repeat: int):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return out, compile_s, 1e3 * statistics.median(times)


def few_parameters(p: Problem, theta, options):
    """V as a function of 4 scalars: the system's `lam` and `tau`, the
    objective's `eta` and `gamma`."""

    x0 = jnp.array(
        [
            float(x)
            for x in (p.system.lam, p.system.tau, p.objective.eta, p.objective.gamma)
        ]
    )

    def V(x, adjoint):
        problem = eqx.tree_at(
            lambda q: (
                q.system.lam,
                q.system.tau,
                q.objective.eta,
                q.objective.gamma,
            ),
            p.problem,
            tuple(x),
        )
        return lc.value(problem, theta, adjoint=adjoint, options=options)

    return V, x0


def many_parameters(p: Problem, theta, options):
    """V as a function of every control coefficient (flattened)."""
    x0 = _flat(theta)
    unravel = ravel_pytree(theta)[1]

    def V(x, adjoint):
        return lc.value(p.problem, unravel(x), adjoint=adjoint, options=options)

    return V, x0


def compare(label, V, x0, repeat):
    forward_fn = jax.jit(jax.jacfwd(lambda x: V(x, lc.ForwardSensitivity())))
    reverse_fn = jax.jit(jax.grad(lambda x: V(x, lc.ContinuousAdjoint())))
    fwd, fwd_c, fwd_ms = timed(forward_fn, x0, repeat=repeat)
    rev, rev_c, rev_ms = timed(reverse_fn, x0, repeat=repeat)
    diff = float(jnp.linalg.norm(fwd - rev) / jnp.linalg.norm(rev))
    faster = (
        f"forward {rev_ms / fwd_ms:.1f}x faster"
        if fwd_ms < rev_ms
        else f"reverse {fwd_ms / rev_ms:.1f}x faster"
    )
    print(
        f"{label:24s} {x0.size:7d} {fwd_c:8.2f} {fwd_ms:10.2f} {rev_c:8.2f} "
        f"{rev_ms:10.2f} {diff:10.1e}   {faster}"
    )


def run(name: str, repeat: int, rtol: float) -> None:
    p = PROBLEMS[name]()
    theta = p.theta()
    options = lc.SolverOptions(rtol=rtol, atol=rtol * 1e-2)
    print(
        f"\n== {name}: T = {float(p.objective.T):g}, {_flat(theta).size} control "
        f"coefficients, rtol = {rtol:g}"
    )
    header = (
        f"{'derivative in':24s} {'params':>7s} {'fwd comp':>8s} {'fwd ms':>10s} "
        f"{'rev comp':>8s} {'rev ms':>10s} {'rel diff':>10s}"
    )
    print(header)
    print("-" * len(header))
    V, x0 = few_parameters(p, theta, options)
    compare("lam, tau, eta, gamma", V, x0, repeat)
    V, x0 = many_parameters(p, theta, options)
    compare("theta (all knots)", V, x0, repeat)

    d = jax.random.normal(jax.random.key(0), x0.shape)
    jvp_fn = jax.jit(
        lambda x: jax.jvp(lambda y: V(y, lc.ForwardSensitivity()), (x,), (d,))
    )
    value_fn = jax.jit(lambda x: V(x, lc.ForwardSensitivity()))
    (_, tangent), _, jvp_ms = timed(jvp_fn, x0, repeat=repeat)
    _, _, value_ms = timed(value_fn, x0, repeat=repeat)
    grad = jax.jit(jax.grad(lambda x: V(x, lc.ContinuousAdjoint())))(x0)
    diff = abs(float(tangent - jnp.vdot(grad, d))) / abs(float(jnp.vdot(grad, d)))
    print(
        f"one JVP in theta: {jvp_ms:.2f} ms ({jvp_ms / value_ms:.1f}x one value, "
        f"{value_ms:.2f} ms); against the reverse-mode gradient dotted with the "
        f"direction: rel diff {diff:.1e}"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--problems",
        nargs="*",
        default=["single-neuron", "gain-gaussians"],
        choices=list(PROBLEMS),
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rtol", type=float, default=1e-6)
    args = parser.parse_args(argv)
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, "
        f"float64={jax.config.jax_enable_x64}"
    )
    for name in args.problems:
        run(name, args.repeat, args.rtol)


if __name__ == "__main__":
    main()
