"""Gain modulation on correlated Gaussians (the paper's Sec. 6, Eq. 7), built from the parts.

A two-layer linear network learns the correlated-Gaussians task while a
per-weight gain control G(t) in [-0.5, 0.5] is optimised to maximise the
discounted net reward V (performance minus the cost exp(beta*|G|^2) - 1).
Prints V for the baseline (G = 0) and for the optimised control, then replays
both in real minibatch SGD (`lc.simulate`) and prints their loss curves.

    python examples/gain_gaussians.py            # the paper's sizes (slow)
    python examples/gain_gaussians.py --quick    # seconds, for CI
"""

import argparse

import jax
import jax.numpy as jnp

import lecontrol as lc

jax.config.update("jax_enable_x64", True)  # solves and gradients in float64

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument(
    "--quick", action="store_true", help="tiny horizon and few iterations"
)
quick = parser.parse_args().quick
# Paper: alpha = 5e-3, 16000 SGD steps (T = 80), 1000 iterations of control lr 10.
alpha, steps, knots, iters = (5e-3, 400, 5, 3) if quick else (5e-3, 16000, 81, 1000)
T = alpha * steps

# --- the experiment: task -> system -> control -> cost -> objective -> optimise
task = lc.tasks.CorrelatedGaussians(mu=(3.0, 1.0), sigma=(1.0, 1.0), p=0.8)
system = lc.systems.TwoLayerGain(task, hidden=6, lam=0.01, seed=0, scale=0.01)
control = lc.controls.PiecewiseLinear(
    jnp.linspace(0.0, T, knots), shape=system.control_shape, lower=-0.5, upper=0.5
)
cost = lc.costs.ExpQuadratic(beta=0.3)
obj = lc.Objective(T=T, gamma=0.99, eta=1.0)
problem = lc.Problem(system, control, cost, obj)
theta0 = control.init(0.0)  # the baseline: G = 0
# The paper's control lr (per SGD step of size alpha) as a step per knot.
pga = lc.optimizers.ProjectedGradientAscent(lr=10 * alpha / (T / (knots - 1)))
result = lc.optimize(problem, theta0, optimizer=pga, steps=iters)
V0 = result.values[0]  # V at the first iterate, theta0
print(f"V baseline {V0:.6f}   V control {result.best_value:.6f}")

# --- replay baseline and optimised control in real minibatch SGD (8 seeds each)
kw = dict(alpha=alpha, steps=steps, batch_size=32, seeds=range(8))
kw["record_every"] = steps // 10
base = lc.simulate(problem, theta0, **kw)
ctrl = lc.simulate(problem, result.theta, **kw)
print("     t   SGD loss, baseline   SGD loss, control   (mean of 8 seeds)")
for t, loss_base, loss_ctrl in zip(base.ts, base.mean_loss, ctrl.mean_loss):
    print(f"{float(t):6.2f}   {float(loss_base):17.5f}   {float(loss_ctrl):17.5f}")
