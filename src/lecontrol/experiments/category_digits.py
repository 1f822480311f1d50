"""`category-digits`: see `lecontrol.experiments.category`."""

from .category import DIGITS as EXPERIMENT

__all__ = ["EXPERIMENT"]
