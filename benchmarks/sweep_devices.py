"""MAML's horizons on one CPU device or on two, placed in blocks or round robin.

`lecontrol run maml --devices 2` splits the CPU into two devices and
`lc.sweep.optimize_batch` shards the 18 horizons across them, one after
another on each device (`optimiser.batch_size` = 1). The devices' adaptive
solves advance together (each solve's stopping test spans the batch), so the
placement matters: `lc.sweep` places the batch round robin (device d of D
holds problems d, d + D, ...), so that neighbouring horizons, alike in cost,
run side by side. "In blocks" (horizons 1-160 on one device, 180-340 on the
other) is what a contiguous split would do; the benchmark gets it by passing
the horizons in the order that round robin turns into blocks.

Each configuration runs in a fresh interpreter (the device count is fixed when
JAX starts) and times `--iterations` Adam iterations of the whole batch, after
one compiling run of the same length. Prints the wall times, the speed-up over
one device, and the largest difference of the horizons' best V from the
one-device run (the same problems, so round-off only).

    python benchmarks/sweep_devices.py
    python benchmarks/sweep_devices.py --iterations 20 --quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_num_cpu_devices", int(sys.argv[1]))
    import numpy as np
    import lecontrol as lc
    from lecontrol.experiments import maml
    from lecontrol.experiments.shared import comparison as cmp

    devices, placement, iterations = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    cfg = maml.EXPERIMENT.default_config(quick=sys.argv[4] == "1")
    h = np.asarray(cfg.objective.horizons)
    order = np.arange(len(h))
    if placement == "blocks":  # round robin over this order gives blocks
        m = -(-len(h) // devices)
        order = np.array([d * m + k for k in range(m) for d in range(devices)
                          if d * m + k < len(h)])
    build = maml.problem(cfg, maml.system(cfg))
    kw = dict(
        optimizer=cmp.configured_optimizer(cfg, cmp.ADAM_METHODS),
        steps=iterations,
        adjoint=lc.CheckpointAdjoint(),
        options=cmp.options(cfg),
        batch_size=1,
    )
    params = h[order] * cfg.objective.alpha
    lc.sweep.optimize_batch(build, params, **kw)  # compiles
    start = time.perf_counter()
    res = lc.sweep.optimize_batch(build, params, **kw)
    wall = time.perf_counter() - start
    best = np.empty(len(h))
    best[order] = res.best_value
    print(json.dumps({"wall": wall, "devices": res.num_devices,
                      "best": best.tolist()}))
    """
)

CONFIGS = (("1", "round robin"), ("2", "blocks"), ("2", "round robin"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument(
        "--quick", action="store_true", help="maml's quick variant (3 horizons)"
    )
    args = parser.parse_args()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    rows = []
    for devices, placement in CONFIGS:
        cmd = [sys.executable, "-c", SCRIPT, devices, placement.split()[0]]
        cmd += [str(args.iterations), "1" if args.quick else "0"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.exit(proc.stdout + proc.stderr)
        rows.append((devices, placement, json.loads(proc.stdout.splitlines()[-1])))
    what = "quick " if args.quick else ""
    print(f"{what}maml, {args.iterations} Adam iterations of every horizon")
    print(
        f"{'devices':>8} {'placement':>12} {'wall s':>9} {'speed-up':>9} {'max |dV|':>10}"
    )
    one = rows[0][2]
    for devices, placement, r in rows:
        assert r["devices"] == int(devices), r
        dV = max(abs(a - b) for a, b in zip(r["best"], one["best"]))
        speed = one["wall"] / r["wall"]
        print(f"{devices:>8} {placement:>12} {r['wall']:9.2f} {speed:8.2f}x {dV:10.1e}")


if __name__ == "__main__":
    main()
