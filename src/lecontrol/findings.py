r"""Findings: a claim about a run, checked as an effect size against a margin.

A `Finding` measures one number from a run's saved arrays (`results.npz`), its
*effect*, signed so that the claim holds when the effect exceeds the finding's
`margin`, and says in words what it measured. A check that cannot fail is no
check: every finding names *negative controls*, versions of the same arrays in
which the claim is false (the baseline in place of the optimised control, or
the control reversed in time), and `Finding.check` evaluates the finding on
each of them too. A verdict whose negative control also passes is reported as
`uninformative`, not as evidence. A finding about one variant of an
experiment (e.g. with costly control) names the variant in `applies`; on other
runs its verdict is `not applicable`.

`lecontrol.runner.execute` checks an experiment's findings after its run and
writes the verdicts into `summary.json` under `verdicts`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = [
    "NEGATIVE_CONTROLS",
    "Finding",
    "Verdict",
    "baseline_as_control",
    "check_all",
    "reversed_control",
]

Results = Mapping[str, np.ndarray]


def baseline_as_control(results: Results) -> dict[str, np.ndarray]:
    """The run with its baseline in place of the optimised control: every
    `control_*` array replaced by the matching `baseline_*` one, and `theta` by
    `theta_init` where saved. A claim about what the control achieves is false
    here."""
    out = dict(results)
    for key in results:
        if key.startswith("control_") and "baseline_" + key[8:] in results:
            out[key] = results["baseline_" + key[8:]]
    if "theta_init" in results and "theta" in results:
        out["theta"] = results["theta_init"]
    return out


def reversed_control(results: Results) -> dict[str, np.ndarray]:
    """The run with the optimised control reversed in time ($g(T - t)$ in
    `control_g`; the other arrays unchanged). A claim about *when* the control
    acts is false here (unless the control is symmetric in time)."""
    out = dict(results)
    for key in results:
        if key.startswith("control_g"):
            out[key] = np.asarray(results[key])[::-1]
    return out


NEGATIVE_CONTROLS: dict[str, Callable[[Results], dict[str, np.ndarray]]] = {
    "baseline": baseline_as_control,
    "reversed": reversed_control,
}
"""The negative controls a `Finding` may name, by name."""


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A finding checked on one run.

    - `holds`: the effect exceeds the margin (False for a non-finite effect).
    - `negatives`: the effect under each negative control.
    - `informative`: every negative control fails the same criterion.
    - `status`: `"holds"`, `"fails"`, `"uninformative"` (the claim holds,
      but so does a negative control: the check cannot tell them apart), or
      `"not applicable"` (the run is not the variant the claim is about).
    """

    name: str
    claim: str
    effect: float
    margin: float
    criterion: str
    evidence: str
    holds: bool
    negatives: dict[str, float]
    applicable: bool = True

    @property
    def informative(self) -> bool:
        return all(not _exceeds(e, self.margin) for e in self.negatives.values())

    @property
    def status(self) -> str:
        if not self.applicable:
            return "not applicable"
        if not self.holds:
            return "fails"
        return "holds" if self.informative else "uninformative"

    def to_dict(self) -> dict[str, Any]:
        """The verdict as `summary.json` stores it."""
        return {
            "claim": self.claim,
            "status": self.status,
            "effect": _json_number(self.effect),
            "margin": self.margin,
            "criterion": self.criterion,
            "evidence": self.evidence,
            "negative_controls": {
                k: {"effect": _json_number(e), "holds": _exceeds(e, self.margin)}
                for k, e in self.negatives.items()
            },
        }


def _exceeds(effect: float, margin: float) -> bool:
    return bool(math.isfinite(effect) and effect > margin)


def _json_number(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dataclasses.dataclass(frozen=True)
class Finding:
    r"""A claim of the paper, checked on a run's saved arrays.

    **Arguments:**

    - `name`: the key of its verdict in `summary.json`.
    - `claim`: the claim, in words (the paper's, with its figure or section).
    - `measure`: `results -> (effect, evidence)`: the effect size, signed so
      that the claim holds when it exceeds `margin`, and what was measured, in
      words (with the numbers). A claim that cannot be measured on these
      arrays gives a non-finite effect, which fails.
    - `margin`: the effect the claim needs (in the effect's units).
    - `criterion`: the criterion in words, e.g. "peak-to-end drop of g > 10% of
      the bound".
    - `negative_controls`: the versions of the arrays on which the claim must
      fail (at least one): names in `NEGATIVE_CONTROLS`, or `(name, transform)`
      pairs for a control of the finding's own (`results -> results`).
    - `applies`: `results -> bool`, whether the run is the variant the claim is
      about (None: every run); where it is not, the verdict is `not
      applicable` and nothing is measured.
    """

    name: str
    claim: str
    measure: Callable[[Results], tuple[float, str]]
    margin: float
    criterion: str
    negative_controls: tuple[str | tuple[str, Callable], ...] = ("baseline",)
    applies: Callable[[Results], bool] | None = None

    def __post_init__(self):
        names = [c for c in self.negative_controls if isinstance(c, str)]
        unknown = set(names) - set(NEGATIVE_CONTROLS)
        if not self.negative_controls or unknown:
            raise ValueError(
                f"finding {self.name!r}: `negative_controls` must name at least one "
                f"of {sorted(NEGATIVE_CONTROLS)}; got {self.negative_controls}."
            )
        if not math.isfinite(self.margin):
            raise ValueError(f"finding {self.name!r}: `margin` must be finite.")

    def effect(self, results: Results) -> tuple[float, str]:
        """The effect size and evidence (a non-finite effect for nan results)."""
        effect, evidence = self.measure(results)
        return float(effect), evidence

    def check(self, results: Results) -> Verdict:
        """The verdict on `results` and on each of its negative controls."""
        if self.applies is not None and not self.applies(results):
            return Verdict(
                self.name,
                self.claim,
                math.nan,
                self.margin,
                self.criterion,
                "not measured: the run is not the variant the claim is about",
                False,
                {},
                applicable=False,
            )
        effect, evidence = self.effect(results)
        negatives = {}
        for control in self.negative_controls:
            name, transform = (
                (control, NEGATIVE_CONTROLS[control])
                if isinstance(control, str)
                else control
            )
            negatives[name] = self.effect(transform(dict(results)))[0]
        return Verdict(
            self.name,
            self.claim,
            effect,
            self.margin,
            self.criterion,
            evidence,
            _exceeds(effect, self.margin),
            negatives,
        )


def check_all(findings, results: Results) -> dict[str, dict[str, Any]]:
    """Every finding's verdict on `results`, as `summary.json` stores them."""
    return {f.name: f.check(results).to_dict() for f in findings}
