"""`digit-separability` (Fig. 17): the loss floor of every digit pair, the
digits' order, and its two checks failing on their negative controls."""

import json

import numpy as np
import pytest

from lecontrol import cli
from lecontrol.experiments import digit_separability as sep, get
from lecontrol.findings import check_all


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sep")
    assert cli.main(["run", "digit-separability", "--quick", "--out", str(out)]) == 0
    return out


def test_the_quick_run_writes_floors_order_figure_and_verdicts(quick_run):
    summary = json.loads((quick_run / "summary.json").read_text())
    results = np.load(quick_run / "results.npz")
    pair = results["pair_floor"]
    assert pair.shape == (10, 10) and np.allclose(pair, pair.T)
    assert np.all(np.diag(pair) == 0) and np.all(pair[~np.eye(10, dtype=bool)] > 0)
    assert sorted(summary["order"]) == list(range(10))
    assert "stand-in, not MNIST" in summary["dataset"]
    assert set(summary["verdicts"]) == {"engagement_pairs_ordered", "paper_order"}
    assert (quick_run / "separability.png").is_file()


def test_each_floor_is_that_pair_tasks_floor(quick_run):
    # The matrix entry is the floor of the very task the digit experiments build.
    cfg = get("digit-separability").default_config(quick=True)
    from lecontrol.experiments.shared import digits

    task = digits.load(cfg, (7, 1), test_fraction=cfg.task.test_fraction)
    pair = np.load(quick_run / "results.npz")["pair_floor"]
    assert pair[7, 1] == pytest.approx(float(task.linear_loss_floor()), rel=1e-12)


def _results(engaged, digit):
    digit = np.asarray(digit, dtype=float)
    return {
        "engagement_pair_floor": np.asarray(engaged, dtype=float),
        "digit_floor": digit,
        "order": np.argsort(digit),
        "paper_rank": np.argsort(sep.PAPER_ORDER),
    }


def test_the_checks_hold_in_the_papers_order_and_fail_on_their_negatives():
    # Floors that follow the paper exactly: both checks hold, and their negative
    # controls (the same numbers reversed) fail, so the verdicts are informative.
    in_order = np.argsort(sep.PAPER_ORDER) + 1.0
    verdicts = check_all(sep.FINDINGS, _results([0.02, 0.036, 0.055], in_order))
    assert {v["status"] for v in verdicts.values()} == {"holds"}
    for v in verdicts.values():
        assert not any(n["holds"] for n in v["negative_controls"].values())


def test_the_checks_fail_when_the_claims_are_false():
    # 7v1 no harder than 0v1 (within 10%), and the digits in reverse order.
    reverse = -(np.argsort(sep.PAPER_ORDER) + 1.0)
    verdicts = check_all(sep.FINDINGS, _results([0.02, 0.021, 0.055], reverse))
    assert {v["status"] for v in verdicts.values()} == {"fails"}
