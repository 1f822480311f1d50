"""Sweeps side by side: the whole batch vmapped, or in groups one after another.

`lc.sweep.optimize_batch` computes its problems together (`jax.vmap`, the
default) or in groups of `batch_size` one after another (`jax.lax.map`).
Under `vmap` every adaptive solve takes as many steps as the longest of the
batch, and every step selects over every problem's whole state; one at a
time, each problem pays only for its own steps. Which wins depends on the
hardware and on how much the problems' step counts differ.

Problems (each the configuration of an experiment, `lecontrol run <name>`):

- `maml`: the paper's 18 MAML horizons (1 to 340 inner steps, very different
  step counts), Adam, `CheckpointAdjoint`, on the 10k MNIST set if
  ../shared/data/mnist is there;
- `single-neuron-sweep`: 142 small single-neuron problems, L-BFGS-B.

Prints, per problem and `batch_size`, the time per iteration of the whole
batch after compilation (the difference of two runs of different lengths,
each compiled afresh), and the best V of the first and last problem (equal up
to round-off across modes); then the ratio to the vmapped batch.

    python benchmarks/sweep_batching.py
    python benchmarks/sweep_batching.py --problems maml --batch-sizes none 1 6
"""

from __future__ import annotations

import argparse
import time
import types

import jax

jax.config.update("jax_enable_x64", True)  # before any array is made

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import lecontrol as lc  # noqa: E402
from lecontrol.experiments.shared import comparison as cmp  # noqa: E402


def maml():
    from lecontrol.experiments import maml as m

    cfg = m.EXPERIMENT.default_config()
    build = m.problem(cfg, m.system(cfg))
    params = jnp.asarray(cfg.objective.horizons) * cfg.objective.alpha
    kw = dict(optimizer=cmp.configured_optimizer(cfg, cmp.ADAM_METHODS))
    return (
        build,
        params,
        kw | dict(adjoint=lc.CheckpointAdjoint(), options=cmp.options(cfg)),
    )


def single_neuron_sweep():
    from lecontrol.experiments import single_neuron_sweep as sns

    cfg = sns.EXPERIMENT.default_config()
    params, _ = sns.points(cfg)
    kw = dict(optimizer=sns.optimizer(cfg), options=cmp.options(cfg))
    return sns.problem(cfg), params, kw


PROBLEMS = {"maml": maml, "single-neuron-sweep": single_neuron_sweep}


def per_iteration(build, params, kw, batch_size, iterations):
    """Seconds per iteration of the batch, and the last run's result."""
    walls = []
    for steps in iterations:
        start = time.perf_counter()
        res = lc.sweep.optimize_batch(
            build, params, steps=steps, batch_size=batch_size, **kw
        )
        walls.append(time.perf_counter() - start)
    return (walls[1] - walls[0]) / (iterations[1] - iterations[0]), res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    parser.add_argument(
        "--batch-sizes",
        nargs="+",
        default=["none", "1"],
        help="`batch_size` values to compare ('none': the whole batch vmapped)",
    )
    parser.add_argument(
        "--iterations",
        nargs=2,
        type=int,
        default=[5, 25],
        help="the two run lengths whose difference is timed",
    )
    args = parser.parse_args()
    sizes = [None if b == "none" else int(b) for b in args.batch_sizes]
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, float64")
    for name in args.problems:
        build, params, kw = PROBLEMS[name]()
        n = len(jax.tree.leaves(params)[0])
        opt = kw["optimizer"]
        if isinstance(opt, types.FunctionType):  # one optimiser per problem
            opt = opt(jax.tree.map(lambda x: x[0], params))
        print(f"\n{name}: {n} problems, {type(opt).__name__}")
        print(f"{'batch_size':>10} {'s/iteration':>12} {'V first':>14} {'V last':>14}")
        times = {}
        for size in sizes:
            t, res = per_iteration(build, params, kw, size, args.iterations)
            times[size] = t
            V = np.asarray(res.best_value)
            label = "none" if size is None else str(size)
            print(f"{label:>10} {t:12.4f} {V[0]:14.8f} {V[-1]:14.8f}", flush=True)
        if None in times:
            ratios = ", ".join(
                f"batch_size={s}: {times[None] / t:.2f}x"
                for s, t in times.items()
                if s is not None
            )
            print(f"speed-up over the vmapped batch: {ratios}")


if __name__ == "__main__":
    main()
