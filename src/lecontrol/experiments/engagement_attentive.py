"""`engagement-attentive`: see `lecontrol.experiments.engagement`."""

from .engagement import ATTENTIVE as EXPERIMENT

__all__ = ["EXPERIMENT"]
