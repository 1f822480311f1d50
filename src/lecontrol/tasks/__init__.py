"""Task statistics and samplers."""

from .base import AbstractTask as AbstractTask
from .correlated import CorrelatedGaussians as CorrelatedGaussians
from .digits import (
    Digits as Digits,
    EmpiricalStatistics as EmpiricalStatistics,
    resize_area as resize_area,
)
from .gaussians import TwoGaussians as TwoGaussians
from .mnist import (
    find_mnist as find_mnist,
    load_mnist as load_mnist,
    read_idx as read_idx,
)
from .multi import (
    ConcatenatedTasks as ConcatenatedTasks,
    SwitchingTasks as SwitchingTasks,
    target_mean as target_mean,
)
from .semantic import (
    SemanticHierarchy as SemanticHierarchy,
    hierarchy_matrix as hierarchy_matrix,
)
