"""`category-semantic`: see `lecontrol.experiments.category`."""

from .category import SEMANTIC as EXPERIMENT

__all__ = ["EXPERIMENT"]
