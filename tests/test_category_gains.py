"""`category-gains` (Fig. 18): output-neuron gains in a neuron basis on digits
and on Semantic, its figures, and its checks failing on their negative
controls."""

import json

import numpy as np
import pytest

from lecontrol import cli
from lecontrol.experiments import ConfigError, get

SEMANTIC = ["task.data=semantic", "system.hidden=8", "system.init_scale=0.01"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The quick run on digits (the stand-in) and on Semantic, on demand."""
    done = {}

    def run(which):
        if which not in done:
            out = tmp_path_factory.mktemp(which) / "run"
            args = ["run", "category-gains", "--quick", "--out", str(out)]
            args += ["--no-progress"]
            args += ["--set", *SEMANTIC] if which == "semantic" else []
            assert cli.main(args) == 0
            summary = json.loads((out / "summary.json").read_text())
            done[which] = (out, summary, np.load(out / "results.npz"))
        return done[which]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("which", ["digits", "semantic"])
def test_quick_runs_write_the_gains_per_category_and_their_checks(runs, which):
    out, summary, results = runs(which)
    assert (out / "category_gains.png").is_file()
    assert "category_gains.png" in summary["figures"]
    n = 10 if which == "digits" else 15
    nu, g2 = results["control_g"], results["control_g1"]
    assert nu.shape == (results["ts"].shape[0], n)
    # The neuron basis: G1 = 0, and every entry of row c of G2 is nu_c.
    assert np.all(results["control_g0"] == 0)
    np.testing.assert_array_equal(g2, np.broadcast_to(nu[:, :, None], g2.shape))
    assert summary["V_control"] >= summary["V_baseline"]
    if which == "digits":
        assert "stand-in, not MNIST" in summary["dataset"]
        measured = {"easier_first", "papers_order"}
    else:
        assert summary["dataset"].startswith("semantic hierarchy")
        measured = {"higher_levels_earlier"}
    verdicts = summary["verdicts"]
    for key, v in verdicts.items():
        if key in measured or key in ("control_early", "learns_faster"):
            assert v["status"] != "not applicable", key
            # every check fails on each of its negative controls
            assert v["negative_controls"], key
            assert not any(c["holds"] for c in v["negative_controls"].values()), key
        else:
            assert v["status"] == "not applicable", key


def test_configuration_is_checked():
    experiment = get("category-gains")
    cfg = experiment.default_config(quick=True)
    bad = {"task.data": "cifar", "control.basis": "weight", "task.classes": [0, 1]}
    for key, value in bad.items():
        with pytest.raises(ConfigError, match=f"`{key}`"):
            experiment.validate(cfg.replace({key: value}, source="test"))
