"""Parts the experiments share: comparison runs, findings, figures, sweeps,
the digit data.

Experiment modules import from here and from `..base`, never from one
another, so each experiment reads as one configuration of these parts.
"""
