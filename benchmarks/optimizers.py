"""Projected gradient ascent (the paper's Algorithm 1) vs `LBFGSB` on the
single neuron at the paper's size (Sec. 2.1, Table 1: 61 knots, N = 600 SGD
steps of α = 1e-3, g in [0, 0.5], β = 0.3, γ = 0.99, λ = 0.1, μ = 2, σ = 1;
the configuration of `lecontrol run single-neuron`).

Prints, per optimiser: iterations, evaluations of V and its gradient, V at the
returned coefficients, the projected-gradient norm there, and the wall time
of a first run (compilation included) and of a second one (compiled).

    python benchmarks/optimizers.py
    python benchmarks/optimizers.py --gtol 1e-10 --iterations 700
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)  # before any array is made

import lecontrol as lc  # noqa: E402
from lecontrol.experiments import single_neuron  # noqa: E402
from lecontrol.experiments.shared import comparison as cmp  # noqa: E402


class _Counted(lc.optimizers.AbstractOptimizer):
    """An optimiser whose evaluations of V and its gradient are counted."""

    inner: lc.optimizers.AbstractOptimizer

    def init(self, theta, control):
        return self.inner.init(theta, control)

    def step(self, value_and_grad, theta, state, control):
        def counted(th):
            jax.debug.callback(_count)
            return value_and_grad(th)

        return self.inner.step(counted, theta, state, control)


_evaluations = [0]


def _count():
    _evaluations[0] += 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=700, help="of the ascent")
    parser.add_argument("--gtol", type=float, default=1e-9, help="for LBFGSB")
    parser.add_argument("--max-iterations", type=int, default=500, help="of LBFGSB")
    args = parser.parse_args(argv)
    cfg = single_neuron.DEFAULT
    s = single_neuron.build(cfg)
    options = cmp.options(cfg)
    runs = {
        f"ProjectedGradientAscent(lr={cmp.control_lr(cfg):g})": dict(
            optimizer=cmp.projected_ascent(cfg), steps=args.iterations, gtol=None
        ),
        "LBFGSB()": dict(
            optimizer=lc.optimizers.LBFGSB(),
            steps=args.max_iterations,
            gtol=args.gtol,
        ),
    }
    print(
        f"{'optimiser':<36} {'status':<10} {'iters':>5} {'evals':>5} "
        f"{'V':>21} {'proj. grad':>10} {'first s':>8} {'again s':>8}"
    )
    for name, kw in runs.items():
        kw = kw | {"optimizer": _Counted(kw["optimizer"])}
        times = []
        for _ in range(2):
            _evaluations[0] = 0
            start = time.perf_counter()
            res = lc.optimize(s.problem, s.theta0, options=options, **kw)
            times.append(time.perf_counter() - start)
        print(
            f"{name:<36} {res.status:<10} {res.iterations:>5} {_evaluations[0]:>5} "
            f"{res.best_value:>21.17g} {res.projected_grad_norm:>10.2e} "
            f"{times[0]:>8.2f} {times[1]:>8.2f}"
        )


if __name__ == "__main__":
    main()
