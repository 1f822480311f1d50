"""`engagement-active`: see `lecontrol.experiments.engagement`."""

from .engagement import ACTIVE as EXPERIMENT

__all__ = ["EXPERIMENT"]
