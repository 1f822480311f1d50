"""Task statistics and samplers."""

from .base import AbstractTask as AbstractTask
from .gaussians import TwoGaussians as TwoGaussians
