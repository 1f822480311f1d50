"""Optimisers side by side: the paper's projected gradient ascent, `LBFGSB`
and `NewtonCG` (exact Hessian-vector products through the continuous adjoint).

Problems (each the configuration of an experiment, `lecontrol run <name>`):

- `single-neuron`: the paper's size (Sec. 2.1, Table 1: 61 knots, N = 600 SGD
  steps of α = 1e-3, g in [0, 0.5], β = 0.3, γ = 0.99, λ = 0.1, μ = 2, σ = 1);
- `effort-gaussians`: gain modulation of the two-layer network on correlated
  Gaussians, the `--quick` size (knots × 2 layers of gains);
- `engagement-vector`: per-class engagement on the 5×5 digits stand-in, the
  `--quick` size, through `ContinuousAdjoint`.

Prints, per problem and optimiser: the result, iterations, evaluations of V
and its gradient, Hessian-vector products (`NewtonCG`), V at the returned
coefficients, the projected-gradient norm there, and the wall time of a first
run (compilation included) and of a second one (compiled); then each
optimiser's iterations and compiled time as ratios to `LBFGSB`'s.

    python benchmarks/optimizers.py
    python benchmarks/optimizers.py --problems single-neuron --gtol 1e-10
"""

from __future__ import annotations

import argparse
import importlib
import time

import jax

jax.config.update("jax_enable_x64", True)  # before any array is made

import lecontrol as lc  # noqa: E402
from lecontrol.experiments.shared import comparison as cmp  # noqa: E402

PROBLEMS = {
    "single-neuron": False,  # quick?
    "effort-gaussians": True,
    "engagement-vector": True,
}


class _Counted(lc.optimizers.AbstractOptimizer):
    """An optimiser whose evaluations of V and its gradient are counted."""

    inner: lc.optimizers.AbstractOptimizer

    def init(self, theta, control):
        return self.inner.init(theta, control)

    def bind(self, problem):
        return _Counted(self.inner.bind(problem))

    def stalled(self, state):
        return self.inner.stalled(state)

    def step(self, value_and_grad, theta, state, control):
        def counted(th):
            jax.debug.callback(_count)
            return value_and_grad(th)

        return self.inner.step(counted, theta, state, control)


_evaluations = [0]


def _count():
    _evaluations[0] += 1


def _setup(name: str):
    module = importlib.import_module(f"lecontrol.experiments.{name.replace('-', '_')}")
    cfg = module.EXPERIMENT.default_config(quick=PROBLEMS[name])
    return module.EXPERIMENT.build(cfg), cfg


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS)
    )
    parser.add_argument(
        "--iterations", type=int, default=700, help="of the projected ascent"
    )
    parser.add_argument(
        "--gtol", type=float, default=None, help="(default: the experiment's)"
    )
    parser.add_argument(
        "--max-iterations", type=int, default=500, help="of LBFGSB and NewtonCG"
    )
    args = parser.parse_args(argv)
    for problem in args.problems:
        s, cfg = _setup(problem)
        options = cmp.options(cfg)
        gtol = cfg.optimiser.gtol if args.gtol is None else args.gtol
        runs = {
            "LBFGSB()": lc.optimizers.LBFGSB(),
            "NewtonCG()": lc.optimizers.NewtonCG(),
        }
        if problem == "single-neuron":
            runs[f"ProjectedGradientAscent(lr={cmp.control_lr(cfg):g})"] = (
                cmp.projected_ascent(cfg)
            )
        print(
            f"\n{problem} ({'quick' if PROBLEMS[problem] else 'full'} size, "
            f"{sum(x.size for x in jax.tree.leaves(s.theta0))} coefficients, gtol {gtol:g}, rtol {options.rtol:g})"
        )
        print(
            f"{'optimiser':<36} {'status':<10} {'iters':>5} {'evals':>5} "
            f"{'HVPs':>5} {'V':>21} {'proj. grad':>10} {'first s':>8} "
            f"{'again s':>8}"
        )
        rows = {}
        for name, optimizer in runs.items():
            pga = isinstance(optimizer, lc.optimizers.ProjectedGradientAscent)
            times = []
            for _ in range(2):
                _evaluations[0] = 0
                start = time.perf_counter()
                res = lc.optimize(
                    s.problem,
                    s.theta0,
                    optimizer=_Counted(optimizer),
                    steps=args.iterations if pga else args.max_iterations,
                    gtol=None if pga else gtol,
                    options=options,
                )
                jax.block_until_ready(res.theta)
                times.append(time.perf_counter() - start)
            hvps = getattr(res.state, "hvps", None)
            rows[name] = (res.iterations, times[1])
            print(
                f"{name:<36} {res.status:<10} {res.iterations:>5} "
                f"{_evaluations[0]:>5} {'' if hvps is None else int(hvps):>5} "
                f"{res.best_value:>21.15g} {res.projected_grad_norm:>10.2e} "
                f"{times[0]:>8.2f} {times[1]:>8.2f}"
            )
        base_iterations, base_time = rows["LBFGSB()"]
        for name, (iterations, seconds) in rows.items():
            print(
                f"  {name:<34} iterations {iterations / base_iterations:6.2f}x, "
                f"compiled time {seconds / base_time:6.2f}x LBFGSB's"
            )


if __name__ == "__main__":
    main()
