"""lecontrol: optimal control signals for learning systems.

Find the control $g(t)$ that maximises
$V = \\int_0^T \\gamma^t[\\eta P(t) - C(g(t))]\\,dt$ for a learning system whose
weights follow gradient flow $\\dot w = h(w, g(t))$.
"""

import jax as _jax

# Solver and gradient work runs in float64 (float32 remains available by
# passing float32 arrays explicitly where it is safe).
_jax.config.update("jax_enable_x64", True)

from . import (
    controls as controls,  # noqa: E402
    costs as costs,  # noqa: E402
    optimizers as optimizers,  # noqa: E402
    sweep as sweep,  # noqa: E402
    systems as systems,  # noqa: E402
    tasks as tasks,  # noqa: E402
)
from ._transforms import TransformNotSupportedError as TransformNotSupportedError  # noqa: E402
from .adjoint import (  # noqa: E402
    AbstractGradientStrategy as AbstractGradientStrategy,
    BacksolveAdjoint as BacksolveAdjoint,
    CheckpointAdjoint as CheckpointAdjoint,
    ContinuousAdjoint as ContinuousAdjoint,
    EulerUnrolled as EulerUnrolled,
)
from .objective import (  # noqa: E402
    Objective as Objective,
    Trajectory as Trajectory,
    costate as costate,
    functional_gradient as functional_gradient,
    solve as solve,
    value as value,
)
from .optimize import OptimizeResult as OptimizeResult, optimize as optimize
from .simulate import (  # noqa: E402
    SimulationResult as SimulationResult,
    simulate as simulate,
)

__version__ = "0.1.0"
