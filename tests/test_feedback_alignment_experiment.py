"""`lecontrol run feedback-alignment --quick`: optimal gains for backprop and
for feedback alignment on Gaussians and the semantic hierarchy; every finding
holds and fails on its negative controls."""

import json

import pytest

from lecontrol import cli
from lecontrol.experiments import feedback_alignment, get


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("feedback-alignment")
    argv = ["run", "feedback-alignment", "--quick", "--out", str(out)]
    assert cli.main([*argv, "--no-progress", "--overwrite"]) == 0
    return out, json.loads((out / "summary.json").read_text())


def test_figures_and_convergence(run):
    out, summary = run
    for name in get("feedback-alignment").figures:
        assert (out / name.rstrip("?")).stat().st_size > 10_000, name
    assert summary["status"] == "converged"
    assert summary["projected_grad_norm"] <= summary["gtol"]


def test_the_findings_hold_for_both_learners_and_fail_on_negative_controls(run):
    _, summary = run
    assert sorted(summary["verdicts"]) == sorted(
        f.name for f in feedback_alignment.FINDINGS
    )
    for name, verdict in summary["verdicts"].items():
        assert verdict["status"] == "holds", (name, verdict["evidence"])
        for control, checked in verdict["negative_controls"].items():
            assert not checked["holds"], (name, control)
    # The two learners differ: feedback alignment is not backprop.
    assert summary["semantic_fa_V_baseline"] != pytest.approx(
        summary["semantic_bp_V_baseline"], rel=1e-3
    )
