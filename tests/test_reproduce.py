"""`lecontrol reproduce`: running the experiments, recording failures, and the
report built from the run folders' `summary.json`."""

from __future__ import annotations

import json
import re
import time

import pytest

from lecontrol import cli, experiments, reproduce
from lecontrol.config import ConfigError
from lecontrol.reproduce import Job

PNG = b"\x89PNG\r\n\x1a\n"


def verdict(status: str, effect: float, margin: float, negatives: dict) -> dict:
    """A verdict as `lecontrol.findings.Verdict.to_dict` writes it."""
    return {
        "claim": f"a claim that {status}",
        "status": status,
        "effect": effect,
        "margin": margin,
        "criterion": f"effect > {margin}",
        "evidence": f"measured {effect}",
        "negative_controls": {
            k: {"effect": e, "holds": e is not None and e > margin}
            for k, e in negatives.items()
        },
    }


def fake_run(folder, summary: dict, *, wall: float = 12.0, figures=()) -> None:
    """A run folder as `lecontrol reproduce` leaves it (no results.npz: the
    report must not need it)."""
    folder.mkdir(parents=True)
    for name in figures:
        (folder / name).write_bytes(PNG)
    base = {
        "V_baseline": -1.0,
        "V_control": -0.5,
        "iterations": 7,
        "status": "converged",
        "optimiser": "LBFGSB()",
        "wall_time_s": 5.0,
        "total_wall_time_s": 8.0,
        "figures_wall_time_s": 1.0,
        "figures": list(figures),
    }
    (folder / "summary.json").write_text(json.dumps(base | summary))
    config = {"experiment": folder.name, "versions": {"lecontrol": "0.1.0"}}
    (folder / "config.json").write_text(json.dumps(config))
    record = {"name": folder.name, "outcome": "completed", "wall_time_s": wall}
    (folder / "reproduce.json").write_text(json.dumps(record))


@pytest.fixture
def runs(tmp_path):
    """A full-size single-neuron run (verdicts that hold, fail and are
    uninformative; converged) and a quick maml run above its tolerance."""
    runs = tmp_path / "runs"
    fake_run(
        runs / "single-neuron",
        {
            "projected_grad_norm": 2e-10,
            "gtol": 1e-9,
            "verdicts": {
                "control_early": verdict("holds", 0.47, 0.25, {"reversed": -0.47}),
                "value_gain": verdict("fails", 0.001, 0.01, {"baseline": 0.0}),
                "net_reward_early_loss_late_gain": verdict(
                    "uninformative", 0.7, 0.1, {"baseline": 0.9}
                ),
            },
        },
        figures=("control.png", "loss.png", "net_reward_difference.png"),
    )
    fake_run(
        runs / "maml-quick",
        {
            "dataset": "scikit-learn 8×8 digits (offline stand-in, not MNIST)",
            "projected_grad_norm": 3e-3,
            "gtol": 1e-6,
            "verdicts": {"one_step_worse": verdict("holds", 0.2, 0.0, {"x": -1.0})},
        },
        wall=30.0,
    )
    return runs


def section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_report_copies_the_verdicts_of_the_summaries(tmp_path, runs):
    selected = [Job("single-neuron", "single-neuron"), Job("maml", "maml")]
    report = reproduce.write_report(selected, runs, tmp_path / "docs" / "r.md")
    text = report.read_text()
    findings = section(text, "Findings")
    lines = findings.splitlines()

    def item(name):
        return next(ln for ln in lines if ln.startswith(f"- `{name}`"))

    assert "**reproduced**" in item("control_early")
    assert "**NOT reproduced**" in item("value_gain")
    assert "**uninformative**" in item("net_reward_early_loss_late_gain")
    assert "effect 0.47 vs margin 0.25" in findings
    assert "reversed: effect -0.47 (fails, as it must)" in findings
    assert "baseline: effect 0.9 (**holds**)" in findings
    # Only the quick run's verdicts are labelled smoke tests.
    assert "smoke test" in item("one_step_worse")
    assert "smoke test" not in item("control_early")
    assert "From full-size runs: 1 NOT reproduced, 1 reproduced, 1 uninformative" in (
        findings
    )
    # Runs: which run, its data set (the stand-in named), wall times and total.
    assert re.search(r"\| `single-neuron` \| full size \| converged", text)
    assert "| `maml` | **quick** |" in text and "offline stand-in" in text
    assert "| `single-neuron` | full size | 12 | 4 | 5 | 1 | 2 |" in text
    assert "**42**" in text  # 12 s + 30 s
    # The paper's findings: checked ones with their verdict, the rest not yet.
    table = section(text, "Paper findings not yet checked")
    gain = next(ln for ln in table.splitlines() if "Fig. 2c" in ln)
    assert "`single-neuron` `control_early`: reproduced |" in gain
    maml = next(ln for ln in table.splitlines() if "Figs. 3a, 7a" in ln)
    assert "reproduced (smoke test)" in maml
    engaged = next(ln for ln in table.splitlines() if "0v1, then 7v1" in ln)
    assert engaged.endswith("| not checked yet |")
    unchecked = table.count("| not checked yet |")
    assert f"{unchecked} of {len(reproduce.PAPER_FINDINGS)} findings" in table
    # Figures: the table's selection, copied next to the report, linked relative.
    copied = sorted(p.name for p in (report.parent / "figures/reproduction").iterdir())
    assert copied == [
        "single-neuron-control.png",
        "single-neuron-net_reward_difference.png",
    ]
    assert "](figures/reproduction/single-neuron-control.png)" in text


def test_a_run_above_its_tolerance_is_flagged(tmp_path, runs):
    assert reproduce.tolerance({"projected_grad_norm": 2e-9, "gtol": 1e-9})[1]
    assert not reproduce.tolerance({"projected_grad_norm": 1e-9, "gtol": 1e-9})[1]
    assert not reproduce.tolerance({"projected_grad_norm": 1.0})[1]
    selected = [Job("single-neuron", "single-neuron"), Job("maml", "maml")]
    text = reproduce.write_report(selected, runs, tmp_path / "r.md").read_text()
    maml = next(ln for ln in text.splitlines() if ln.startswith("| `maml`"))
    neuron = next(ln for ln in text.splitlines() if ln.startswith("| `single-neuron`"))
    assert "above tolerance" in maml and "above tolerance" not in neuron
    assert "**Not converged to their tolerance:** maml " in text


def test_full_size_run_preferred_and_missing_run_reported(tmp_path, runs):
    fake_run(runs / "single-neuron-quick", {"verdicts": {}})
    run, attempts = reproduce.load_run(runs, "single-neuron")
    assert not run.quick and len(attempts) == 2
    selected = [Job("task-switch", "task-switch")]
    text = reproduce.write_report(selected, runs, tmp_path / "r.md").read_text()
    assert "| `task-switch` | none | not run |" in text


def test_jobs_cover_the_registry_and_the_variants():
    names = [j.name for j in reproduce.jobs()]
    assert sorted(names) == sorted([*experiments.paper(), *reproduce.VARIANTS])
    # The companion works run on their own, not in the paper's reproduction.
    assert set(experiments.COMPANIONS) <= set(experiments.names())
    assert not set(experiments.COMPANIONS) & set(names)
    assert names[0] == "single-neuron"  # cheapest first
    costly = reproduce.jobs(["learning-rate-sweep-costly"])
    assert costly == [
        Job("learning-rate-sweep-costly", "learning-rate-sweep", ("cost.offset=-1",))
    ]
    with pytest.raises(ConfigError, match="single-neuron"):
        reproduce.jobs(["single-neuro"])


def test_full_size_runs_get_the_iteration_budgets(monkeypatch):
    """Full size: the `BUDGETS` settings, valid configuration keys; quick: none.
    With no budgets, every full-size run is its experiment's default (plus
    a variant's own settings)."""
    for job in reproduce.jobs():
        assert job.settings == reproduce.VARIANTS.get(job.name, (None, ()))[1]
    budget = ("optimiser.iterations=200",)
    monkeypatch.setattr(reproduce, "BUDGETS", {"maml": budget})
    for name, settings in reproduce.BUDGETS.items():
        (full,) = reproduce.jobs([name])
        assert full.settings == settings
        (quick,) = reproduce.jobs([name], quick=True)
        assert quick.settings == ()
        experiment = experiments.get(name)
        cfg = experiment.default_config().replace(
            dict(a.split("=", 1) for a in settings), source="test", parse_strings=True
        )
        assert cfg.optimiser.iterations < experiment.default.optimiser.iterations
    assert "iteration budgets of `maml` (`optimiser.iterations=200`)" in (
        reproduce._budgets()
    )
    monkeypatch.setattr(reproduce, "BUDGETS", {})
    assert reproduce._budgets() == ""


def test_paper_findings_name_existing_verdicts():
    """Each verdict the table names is a finding its experiment checks."""
    from lecontrol.findings import Finding

    for _, _, checks in reproduce.PAPER_FINDINGS:
        for run, key in checks:  # a run: an experiment, or a variant of one
            exp = reproduce.VARIANTS.get(run, (run,))[0]
            found = experiments.get(exp).findings
            assert key in [f.name for f in found if isinstance(f, Finding)], (exp, key)


def test_a_failing_experiment_is_recorded_and_the_others_run(tmp_path):
    runs = tmp_path / "runs"
    selected = [
        Job("broken", "single-neuron", ("optimiser.iterations=-1",)),
        Job("unknown", "no-such-experiment"),
    ]
    lines = []
    records = reproduce.run_all(
        selected, runs, quick=True, echo=lines.append, parallel=2
    )
    assert [r["name"] for r in records] == ["broken", "unknown"]  # in order
    # Two at a time: each started before the other ended (each takes seconds).
    assert max(r["started_utc"] for r in records) <= min(
        r["finished_utc"] for r in records
    )
    assert all(r["parallel"] == 2 for r in records)
    (every,) = json.loads((runs / reproduce.ALL_RECORD).read_text())["invocations"]
    assert every["runs"] == ["broken", "unknown"] and every["parallel"] == 2
    assert 0 < every["wall_time_s"] < every["sum_of_run_wall_times_s"]
    assert all(r["outcome"] == "failed" and r["exit_status"] == 2 for r in records)
    assert "optimiser.iterations" in records[0]["error"]
    assert "no-such-experiment" in records[1]["error"]
    saved = json.loads((runs / "broken-quick" / "reproduce.json").read_text())
    assert saved["outcome"] == "failed" and saved["wall_time_s"] > 0
    assert (
        lines[-1].startswith("total") and "2 at a time, 2 not completed" in (lines[-1])
    )
    text = reproduce.write_report(selected, runs, tmp_path / "r.md").read_text()
    assert "UTC: 2 runs, in" in text and "2 at a time" in text
    # A later call that reruns one of them is recorded too, and named.
    reproduce.run_all(selected[:1], runs, quick=True, echo=print)
    history = json.loads((runs / reproduce.ALL_RECORD).read_text())["invocations"]
    assert [h["runs"] for h in history] == [["broken", "unknown"], ["broken"]]
    text = reproduce.write_report(selected, runs, tmp_path / "r.md").read_text()
    assert "2 runs, of which this report uses unknown" in text
    assert "UTC: 1 run, in" in text
    assert "| `broken` (`single-neuron --set optimiser.iterations=-1`) | none |" in (
        text
    )
    failure = next(ln for ln in text.splitlines() if ln.startswith("- `broken`"))
    assert "failed, exit status 2" in failure and "optimiser.iterations" in failure


def test_time_budget_stops_a_run(tmp_path):
    job = Job("single-neuron", "single-neuron")
    record = reproduce.run_job(job, tmp_path, quick=True, timeout=0.5, echo=print)
    assert record["outcome"] == "stopped at the time budget"
    assert record["wall_time_s"] < 60
    assert reproduce.load_run(tmp_path, "single-neuron") == (None, [record])


def test_maml_runs_on_two_devices_at_full_size(tmp_path, monkeypatch):
    """`DEVICES`: a full-size maml run gets `--devices 2` on a machine with two
    cores or more, never more devices than cores, and a quick run one."""
    monkeypatch.setattr(reproduce.os, "cpu_count", lambda: 2)
    maml = Job("maml", "no-such-experiment")  # fails at once, after the command
    record = reproduce.run_job(maml, tmp_path, quick=False, echo=print)
    assert record["command"].endswith("--no-progress --devices 2")
    assert record["outcome"] == "failed"
    record = reproduce.run_job(maml, tmp_path, quick=True, echo=print)
    assert "--devices" not in record["command"]
    assert reproduce.devices_for(Job("single-neuron", "single-neuron"), False) == 1
    monkeypatch.setattr(reproduce.os, "cpu_count", lambda: 1)
    assert reproduce.devices_for(maml, False) == 1


def test_usage_errors(capsys, tmp_path):
    status = cli.main(["reproduce", "--reuse", "--no-report"])
    assert status == 2 and "--reuse" in capsys.readouterr().err
    reuse = ["reproduce", "--reuse", "--runs", str(tmp_path)]
    status = cli.main([*reuse, "--only", "single-neuro"])
    assert status == 2 and "Did you mean" in capsys.readouterr().err
    status = cli.main([*reuse[:2], "--runs", str(tmp_path / "none")])
    assert status == 2 and "not a folder of runs" in capsys.readouterr().err
    status = cli.main(["reproduce", "--jobs", "0", "--runs", str(tmp_path)])
    assert status == 2 and "--jobs must be >= 1" in capsys.readouterr().err
    status = cli.main([*reuse, "--jobs", "2"])
    assert status == 2 and "--jobs does not apply" in capsys.readouterr().err
    with pytest.raises(ValueError, match="`parallel`"):
        reproduce.run_all([], tmp_path, quick=True, parallel=0)
    assert 1 <= reproduce.default_parallel() <= reproduce.MAX_PARALLEL


@pytest.mark.slow
def test_quick_single_neuron_end_to_end(capsys, tmp_path):
    runs, report = tmp_path / "runs", tmp_path / "r.md"
    args = ["--quick", "--only", "single-neuron", "--runs", str(runs)]
    status = cli.main(["reproduce", *args, "--report", str(report)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert re.search(r"^total +\d+\.\d s", out, re.M)
    assert "(1 run, 1 at a time" in out or "(1 run, 2 at a time" in out
    folder = runs / "single-neuron-quick"
    record = json.loads((folder / "reproduce.json").read_text())
    assert record["outcome"] == "completed" and record["wall_time_s"] > 0
    summary = json.loads((folder / "summary.json").read_text())
    text = report.read_text()
    assert summary["verdicts"]
    for name, v in summary["verdicts"].items():
        line = next(ln for ln in text.splitlines() if ln.startswith(f"- `{name}`"))
        label = {"holds": "reproduced", "fails": "NOT reproduced"}.get(v["status"])
        assert f"**{label or v['status']}** (smoke test" in line
    assert "| `single-neuron` | **quick** |" in text
    assert "single-neuron-sweep" not in section(text, "Runs")
    assert (tmp_path / "figures/reproduction/single-neuron-quick-control.png").is_file()
    # --reuse rebuilds the same report without running anything.
    log = (folder / "run.log").stat().st_mtime_ns
    reuse = ["reproduce", "--reuse", "--only", "single-neuron", "--runs", str(runs)]
    assert cli.main([*reuse, "--report", str(tmp_path / "again.md")]) == 0
    assert (folder / "run.log").stat().st_mtime_ns == log
    again = (tmp_path / "again.md").read_text()
    assert section(again, "Findings") == section(text, "Findings")


def _record_starts(monkeypatch, seconds: float) -> list[str]:
    """Replace `run_job` by one that records the order the runs start in and
    takes `seconds` each; return that record."""
    started = []

    def fake(job, runs_dir, *, quick, timeout, echo, parallel):
        started.append(job.name)
        time.sleep(seconds)
        return {"name": job.name, "wall_time_s": seconds, "outcome": "completed"}

    monkeypatch.setattr(reproduce, "run_job", fake)
    return started


def test_parallel_runs_start_longest_first_and_report_in_order(tmp_path, monkeypatch):
    jobs = [Job(name, "single-neuron") for name in ("a", "b", "c", "d")]
    for name, seconds in (("b", 50.0), ("d", 90.0)):  # earlier runs' wall times
        folder = reproduce.run_folder(tmp_path, name, True)
        folder.mkdir(parents=True)
        (folder / "reproduce.json").write_text(json.dumps({"wall_time_s": seconds}))
    started = _record_starts(monkeypatch, 0.2)
    records = reproduce.run_all(jobs, tmp_path, quick=True, echo=print, parallel=2)
    assert set(started[:2]) == {"d", "b"} and set(started[2:]) == {"a", "c"}
    assert [r["name"] for r in records] == ["a", "b", "c", "d"]


def test_full_size_runs_with_no_record_start_by_their_expected_time(
    tmp_path, monkeypatch
):
    """With no wall time recorded in the runs folder, a full-size run is
    ordered by `EXPECTED_S` (MAML, the longest, first); quick runs are not."""
    names = ("single-neuron", "category-digits", "maml", "engagement-vector")
    jobs = [Job(name, name) for name in names]
    started = _record_starts(monkeypatch, 0.1)
    reproduce.run_all(jobs, tmp_path, quick=False, echo=print, parallel=2)
    assert set(started[:2]) == {"maml", "category-digits"}
    assert set(started[2:]) == {"engagement-vector", "single-neuron"}
    assert max(reproduce.EXPECTED_S, key=reproduce.EXPECTED_S.get) == "maml"
    started.clear()
    reproduce.run_all(jobs, tmp_path / "quick", quick=True, echo=print, parallel=2)
    assert sorted(started) == sorted(names)
    # A record in the folder wins over the estimate.
    folder = reproduce.run_folder(tmp_path, "single-neuron", False)
    folder.mkdir(parents=True)
    (folder / "reproduce.json").write_text(json.dumps({"wall_time_s": 5000.0}))
    started.clear()
    reproduce.run_all(jobs, tmp_path, quick=False, echo=print, parallel=2)
    assert "single-neuron" in started[:2] and "maml" in started[:2]
