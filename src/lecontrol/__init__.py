"""lecontrol: optimal control signals for learning systems.

Find the control $g(t)$ that maximises
$V = \\int_0^T \\gamma^t[\\eta P(t) - C(g(t))]\\,dt$ for a learning system whose
weights follow gradient flow $\\dot w = h(w, g(t))$.
"""

# Importing lecontrol changes no JAX setting. Solver and gradient work needs
# float64: switch it on yourself, before creating arrays, with
# `jax.config.update("jax_enable_x64", True)` (the command line does this).

from . import (
    controllers as controllers,
    controls as controls,
    costs as costs,
    optimizers as optimizers,
    precision as precision,
    sweep as sweep,
    systems as systems,
    tasks as tasks,
)
from ._dynamics import SolverOptions as SolverOptions
from ._transforms import TransformNotSupportedError as TransformNotSupportedError
from .adjoint import (
    AbstractGradientStrategy as AbstractGradientStrategy,
    BacksolveAdjoint as BacksolveAdjoint,
    CheckpointAdjoint as CheckpointAdjoint,
    ContinuousAdjoint as ContinuousAdjoint,
    EulerUnrolled as EulerUnrolled,
    ZerothOrder as ZerothOrder,
)
from .forward import ForwardSensitivity as ForwardSensitivity
from .objective import (
    Objective as Objective,
    Problem as Problem,
    Trajectory as Trajectory,
    costate as costate,
    functional_gradient as functional_gradient,
    hamiltonian as hamiltonian,
    solve as solve,
    value as value,
)
from .optimize import (
    RESULTS as RESULTS,
    OptimizeResult as OptimizeResult,
    optimize as optimize,
    result_name as result_name,
)
from .simulate import (
    SimulationResult as SimulationResult,
    simulate as simulate,
)

__version__ = "0.1.0"
