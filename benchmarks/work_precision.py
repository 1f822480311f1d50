"""Work–precision diagrams: gradient error vs time per value-and-gradient.

For each problem, the adaptive strategies (ContinuousAdjoint, CheckpointAdjoint)
run across tolerances and EulerUnrolled across step sizes (multiples and
fractions of the SGD learning rate α; the paper's method is dt = α). The error
is the relative 2-norm error of dV/dθ against a converged reference
(CheckpointAdjoint at rtol=1e-11). ZerothOrder (the antithetic
evolution-strategies estimate from values of V alone) runs across its number
of direction pairs N at a fixed σ (`--zo-sigma`, default 1e-3: 0.5% of the
benchmark controls' range, so the O(σ²) smoothing bias is far below the
sampling error ≈ sqrt((d + 1)/N) for d coefficients, while the differences
V(θ+σε) − V(θ−σε) stay far above the solver error at `--zo-rtol`), with one
key; sample counts whose 2N perturbed coefficient vectors and states would
need more than `--zo-max-gib` are skipped. Writes one PNG per problem and
prints the table behind it.

    python benchmarks/work_precision.py                           # all problems
    python benchmarks/work_precision.py --problems gain-gaussians --out docs/figures
    python benchmarks/work_precision.py --problems single-neuron --zo-samples 8 128
    python benchmarks/work_precision.py --zo-samples                 # no ZerothOrder
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from gradients import REFERENCE, measure  # noqa: E402  (switches on float64)
from problems import PROBLEMS  # noqa: E402

import lecontrol as lc  # noqa: E402

RTOLS = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9)
EULER_FACTORS = (4, 2, 1, 0.5, 0.25)
ZO_SAMPLES = (8, 32, 128, 512, 2048)
ZO_SIGMA = 1e-3
ZO_RTOL = 1e-8
ZO_MAX_GIB = 2.0


def zeroth_order_gib(p, theta, samples: int) -> float:
    """Rough size of ZerothOrder's batch: 2N perturbed coefficient vectors
    (with the directions) and 2N solver states (a dozen copies each for the
    Runge–Kutta stages and the loop's carry)."""
    d = sum(x.size for x in jax.tree.leaves(theta))
    state = sum(x.size for x in jax.tree.leaves(p.system.init_state()))
    return 8 * 2 * samples * (1.5 * d + 12 * state) / 2**30


def curves(
    name: str,
    repeat: int,
    rtols=RTOLS,
    euler_factors=EULER_FACTORS,
    zo_samples=ZO_SAMPLES,
    zo_sigma: float = ZO_SIGMA,
    zo_rtol: float = ZO_RTOL,
    zo_max_gib: float = ZO_MAX_GIB,
):
    p = PROBLEMS[name]()
    theta = p.theta()
    ref = measure(p, lc.CheckpointAdjoint(), theta, 1, **REFERENCE)["grad"]

    def err(g):
        return float(jnp.linalg.norm(g - ref) / jnp.linalg.norm(ref))

    out = {}
    for label, adjoint in (
        ("ContinuousAdjoint", lc.ContinuousAdjoint()),
        ("ContinuousAdjoint(nodes=3)", lc.ContinuousAdjoint(nodes=3)),
        ("CheckpointAdjoint", lc.CheckpointAdjoint()),
    ):
        pts = []
        for rtol in rtols:
            r = measure(
                p, adjoint, theta, repeat, rtol=rtol, atol=rtol * 1e-2, max_steps=65_536
            )
            pts.append((r["ms"], err(r["grad"]), f"rtol={rtol:g}"))
        out[label] = pts
    pts = []
    for f in euler_factors:
        dt = p.alpha * f
        r = measure(p, lc.EulerUnrolled(dt=dt), theta, max(1, repeat // 2))
        pts.append((r["ms"], err(r["grad"]), f"dt={f:g}α"))
    out["EulerUnrolled"] = pts
    pts = []
    for n in zo_samples:
        gib = zeroth_order_gib(p, theta, n)
        if gib > zo_max_gib:
            print(f"ZerothOrder: skipping samples={n} on {name} (~{gib:.1f} GiB)")
            continue
        r = measure(
            p,
            lc.ZerothOrder(n, zo_sigma),
            theta,
            repeat,
            rtol=zo_rtol,
            atol=zo_rtol * 1e-2,
            max_steps=65_536,
        )
        pts.append((r["ms"], err(r["grad"]), f"samples={n}"))
    if pts:
        out["ZerothOrder"] = pts
    return p, out


def plot(p, out, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.6), constrained_layout=True)
    markers = {
        "ContinuousAdjoint": "o-",
        "ContinuousAdjoint(nodes=3)": "o--",
        "CheckpointAdjoint": "s-",
        "EulerUnrolled": "^-",
        "ZerothOrder": "v:",
    }
    for label, pts in out.items():
        ms, errs, names = zip(*pts)
        ax.loglog(ms, errs, markers[label], label=label)
        for x, y, n in pts:
            ax.annotate(
                n, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points"
            )
    paper = [pt for pt in out["EulerUnrolled"] if pt[2] == "dt=1α"]
    if paper:
        ax.loglog(
            [paper[0][0]],
            [paper[0][1]],
            "k*",
            markersize=12,
            label="paper's method (Euler, dt = α)",
        )
    ax.set_xlabel("time per value-and-gradient after compilation (ms)")
    ax.set_ylabel("relative gradient error")
    ax.set_title(f"{p.name}: N = {p.steps} SGD steps, T = {float(p.objective.T):g}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--problems", nargs="*", default=list(PROBLEMS), choices=list(PROBLEMS)
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--rtols", type=float, nargs="+", default=list(RTOLS))
    parser.add_argument(
        "--euler-factors",
        type=float,
        nargs="+",
        default=list(EULER_FACTORS),
        help="Euler steps as multiples of the SGD learning rate α",
    )
    parser.add_argument(
        "--zo-samples",
        type=int,
        nargs="*",
        default=list(ZO_SAMPLES),
        help="ZerothOrder's numbers of antithetic pairs N (none: no ZerothOrder)",
    )
    parser.add_argument(
        "--zo-sigma", type=float, default=ZO_SIGMA, help="ZerothOrder's sigma"
    )
    parser.add_argument(
        "--zo-rtol",
        type=float,
        default=ZO_RTOL,
        help="rtol of ZerothOrder's forward solves (atol = rtol * 1e-2)",
    )
    parser.add_argument(
        "--zo-max-gib",
        type=float,
        default=ZO_MAX_GIB,
        help="skip ZerothOrder's N whose batch would need more memory than this",
    )
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.problems:
        p, out = curves(
            name,
            args.repeat,
            args.rtols,
            args.euler_factors,
            args.zo_samples,
            args.zo_sigma,
            args.zo_rtol,
            args.zo_max_gib,
        )
        print(f"\n== {name}")
        for label, pts in out.items():
            for ms, e, n in pts:
                print(f"{label:26s} {n:>12s} {ms:9.2f} ms  error {e:.2e}")
        path = out_dir / f"work_precision_{name}.png"
        plot(p, out, path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
