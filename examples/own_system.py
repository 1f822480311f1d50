"""Writing your own learning system: a gain-modulated linear regression.

The worked example of `docs/own-system.md`. It

1. subclasses `lc.systems.AbstractGradientFlowSystem`: only the loss the
   learner descends (the vector field is `-jax.grad` of it), and, for
   comparison, writes the same system by hand as an
   `lc.systems.AbstractLearningSystem` (the general route, any vector field),
2. checks that the two vector fields agree and are minus the gradient of the loss,
3. computes the value V and its gradient with two strategies (they agree),
4. differentiates V with respect to a parameter of the system,
5. optimises the control and checks that V went up.

    python examples/own_system.py            # a few seconds after compilation
    python examples/own_system.py --quick    # fewer optimisation steps (CI)
"""

from __future__ import annotations

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

import lecontrol as lc

jax.config.update("jax_enable_x64", True)  # solves and gradients in float64


# --8<-- [start:system]
class GainedRegression(lc.systems.AbstractGradientFlowSystem):
    r"""Linear regression $\hat y = (1 + g)\,w^\top x$ with a scalar gain $g(t)$.

    With $\Sigma_x = \langle xx^\top\rangle$, $\sigma_{xy} = \langle xy\rangle$,
    $\sigma_y = \langle y^2\rangle$ and $\tilde g = 1 + g$, the learner descends

    $$\langle L\rangle = \tfrac12\big(\sigma_y - 2\tilde g\,w^\top\sigma_{xy}
    + \tilde g^2\,w^\top\Sigma_x w\big) + \tfrac\lambda2\lVert w\rVert^2,\qquad
    \tau\dot w = -\partial\langle L\rangle/\partial w.$$
    """

    Sx: Float[Array, "d d"]
    sxy: Float[Array, " d"]
    sy: Float[Array, ""]
    lam: Float[Array, ""]
    tau: Float[Array, ""]

    @property
    def control_shape(self):
        return ()  # one scalar gain

    def init_state(self):
        return jnp.zeros_like(self.sxy)  # w(0) = 0

    def learning_loss(self, t, w, g):
        gt = 1.0 + g
        fit = 0.5 * (self.sy - 2 * gt * w @ self.sxy + gt**2 * w @ self.Sx @ w)
        return fit + 0.5 * self.lam * w @ w


# --8<-- [end:system]


# --8<-- [start:general]
class GainedRegressionByHand(lc.systems.AbstractLearningSystem):
    r"""The same system with its vector field written out (the general route).

    $\tau\dot w = \tilde g\,\sigma_{xy} - \tilde g^2\,\Sigma_x w - \lambda w$;
    any ODE $\dot w = h(w, g)$ can be written this way, gradient flow or not.
    """

    Sx: Float[Array, "d d"]
    sxy: Float[Array, " d"]
    sy: Float[Array, ""]
    lam: Float[Array, ""]
    tau: Float[Array, ""]

    @property
    def control_shape(self):
        return ()

    def init_state(self):
        return jnp.zeros_like(self.sxy)

    def loss(self, t, w, g):
        gt = 1.0 + g
        fit = 0.5 * (self.sy - 2 * gt * w @ self.sxy + gt**2 * w @ self.Sx @ w)
        return fit + 0.5 * self.lam * w @ w

    def vector_field(self, t, w, g):
        gt = 1.0 + g
        return (gt * self.sxy - gt**2 * self.Sx @ w - self.lam * w) / self.tau


# --8<-- [end:general]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer optimisation steps (for CI)"
    )
    args = parser.parse_args(argv)
    steps = 20 if args.quick else 100

    # --8<-- [start:problem]
    # The problem: a 2-input regression task, a piecewise-linear gain in [0, 1]
    # on 11 knots over T = 2, a quadratic cost, a discount of 0.9.
    statistics = dict(
        Sx=jnp.array([[2.0, 0.5], [0.5, 1.0]]),
        sxy=jnp.array([1.0, -0.5]),
        sy=jnp.asarray(1.0),
        lam=jnp.asarray(0.1),
        tau=jnp.asarray(1.0),
    )
    system = GainedRegression(**statistics)
    T = 2.0
    control = lc.controls.PiecewiseLinear(
        jnp.linspace(0.0, T, 11), shape=system.control_shape, lower=0.0, upper=1.0
    )
    cost = lc.costs.Quadratic(beta=0.1)
    objective = lc.Objective(T=T, gamma=0.9, eta=1.0)
    theta = control.init(0.0)  # g = 0: plain gradient flow, the baseline
    # --8<-- [end:problem]

    # --8<-- [start:check]
    # 1. The vector field is gradient flow on the expected loss, and the
    #    hand-written field of the general route is the same.
    by_hand = GainedRegressionByHand(**statistics)
    w = jnp.array([0.3, -0.2])
    for g in (0.0, 0.7):
        field = system.vector_field(0.0, w, g)
        minus_grad = -jax.grad(system.loss, argnums=1)(0.0, w, g)
        assert jnp.allclose(field, minus_grad, rtol=1e-12), (field, minus_grad)
        written = by_hand.vector_field(0.0, w, g)
        assert jnp.allclose(field, written, rtol=1e-12), (field, written)
    print("vector field == -grad(loss) == hand-written field: ok")
    # --8<-- [end:check]

    # --8<-- [start:value]
    # 2. V and dV/dtheta. The default strategy is the continuous adjoint;
    #    discretise-then-optimise through the same solve must agree with it.
    #    jax.jit compiles the forward and backward solves into one program.
    def V(th, adjoint=lc.ContinuousAdjoint()):
        return lc.value(
            lc.Problem(system, control, cost, objective), th, adjoint=adjoint
        )

    V0, dV = jax.jit(jax.value_and_grad(V))(theta)
    dV_ckpt = jax.jit(jax.grad(lambda th: V(th, lc.CheckpointAdjoint())))(theta)
    rel = float(jnp.linalg.norm(dV - dV_ckpt) / jnp.linalg.norm(dV_ckpt))
    print(f"V(baseline) = {float(V0):.6f}")
    print(f"dV/dtheta   = {jnp.round(dV, 5)}")
    print(f"ContinuousAdjoint vs CheckpointAdjoint: relative difference {rel:.1e}")
    assert rel < 1e-4, rel
    # --8<-- [end:value]

    # --8<-- [start:parameter]
    # 3. Any floating-point field of the system is differentiable too, e.g.
    #    the regulariser lambda (eqx.tree_at replaces one field).
    def V_of_lam(lam):
        s = eqx.tree_at(lambda m: m.lam, system, lam)
        return lc.value(lc.Problem(s, control, cost, objective), theta)

    print(f"dV/dlambda  = {float(jax.jit(jax.grad(V_of_lam))(system.lam)):.6f}")
    # --8<-- [end:parameter]

    # --8<-- [start:optimize]
    # 4. Optimise the control (the paper's projected gradient ascent).
    result = lc.optimize(
        lc.Problem(system, control, cost, objective),
        theta,
        optimizer=lc.optimizers.ProjectedGradientAscent(lr=2.0),
        steps=steps,
    )
    print(
        f"after {result.iterations} steps: V = {result.best_value:.6f} "
        f"(baseline {float(V0):.6f}), status {result.status}"
    )
    print(f"optimised g at the knots: {jnp.round(result.theta, 3)}")
    assert result.status == "completed", result.message
    assert result.best_value > float(V0)
    # --8<-- [end:optimize]

    # --8<-- [start:residual]
    # 5. The optimality residual dV/dg(t) of the optimised control.
    ts = jnp.linspace(0.0, T, 5)
    residual = eqx.filter_jit(lc.functional_gradient)(
        lc.Problem(system, control, cost, objective), result.theta, ts=ts
    )
    print(f"dV/dg(t) at t = {ts}: {jnp.round(residual, 4)}")
    # --8<-- [end:residual]
    return {"V_baseline": float(V0), "V_control": result.best_value}


if __name__ == "__main__":
    main()
