"""`engagement-vector`: see `lecontrol.experiments.engagement`."""

from .engagement import VECTOR as EXPERIMENT

__all__ = ["EXPERIMENT"]
