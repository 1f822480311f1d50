#!/usr/bin/env python
r"""Run the paper's experiments and write the reproduction report.

    python scripts/reproduce.py                      # every experiment, full size
    python scripts/reproduce.py --quick              # the quick variants (seconds each)
    python scripts/reproduce.py --only single-neuron maml
    python scripts/reproduce.py --reuse              # rebuild the report from existing runs

Each experiment runs through the command line, `lecontrol run NAME --out
RUNS_DIR/NAME` (full size) or `RUNS_DIR/NAME-quick` (`--quick`), one after the
other. Next to the run's own files the script writes `reproduce.json`: the
command, its exit status, wall time and whether it was stopped at the time
budget (`--deadline`, `--stop-at`, `--timeout`).

The report (`--report`, default `docs/reproduction.md`) is built from every
run folder found under `RUNS_DIR`, preferring a finished full-size run over a
quick one. Each qualitative finding that the paper (Carrasco-Davis, Masís &
Saxe; `SOURCES` names the section and figure of each area) reports is one row
of `FINDINGS`: a small function that reads the run's
`summary.json` / `results.npz` and returns the measured evidence and a verdict
(reproduced / not reproduced / not evaluated, with the reason). Verdicts from
quick runs are marked as such: a quick run is a smoke test, not evidence of the
paper's finding at full size. A few figures per experiment are copied next to
the report (`figures/reproduction/`).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# Cheapest first (measured quick-run and full-run costs on a 2-core machine), so a
# time budget gets as many full-size runs as possible.
EXPERIMENTS = (
    "single-neuron",
    "nonlinear",
    "effort-gaussians",
    "task-switch",
    "single-neuron-sweep",
    "effort-semantic",
    "learning-rate",
    "category-semantic",
    "engagement-attentive",
    "engagement-active",
    "engagement-vector",
    "learning-rate-sweep",
    "learning-rate-sweep-costly",
    "effort-digits",
    "category-digits",
    "maml",
    "maml-6000",
)

# Runs of an experiment with other settings: name -> (experiment, --set KEY=VALUE).
# `cost.offset = -1` makes every bit of learning cost effort (cost β(ρ + 1)²), the
# setting of the finding "with costly control only the first levels of the
# hierarchy are worth learning" (see `lecontrol.experiments.learning_rate`).
# `maml-6000` runs the MAML optimisation three times longer than the paper's
# 2000 Adam iterations, which leave the long horizons' V still rising.
VARIANTS = {
    "learning-rate-sweep-costly": ("learning-rate-sweep", ("cost.offset=-1",)),
    "maml-6000": ("maml", ("optimiser.iterations=6000",)),
}

# Figures copied into the report, per experiment (at most two).
FIGURES = {
    "single-neuron": ("control.png", "net_reward_difference.png"),
    "single-neuron-sweep": ("total_control.png",),
    "effort-gaussians": ("control.png", "weight_norms.png"),
    "effort-semantic": ("level_loss.png", "control.png"),
    "effort-digits": ("loss.png", "weight_norms.png"),
    "task-switch": ("loss.png", "control.png"),
    "nonlinear": ("sgd_replay.png",),
    "engagement-attentive": ("engagement.png",),
    "engagement-active": ("engagement.png",),
    "engagement-vector": ("engagement.png",),
    "category-digits": ("engagement.png",),
    "category-semantic": ("engagement_levels.png",),
    "learning-rate": ("level_loss.png",),
    "learning-rate-sweep": ("total_control.png",),
    "learning-rate-sweep-costly": ("loss_beta.png",),
    "maml": ("cumulative_loss.png", "one_step_loss.png"),
    "maml-6000": ("cumulative_loss.png", "one_step_loss.png"),
}

REPRODUCED, NOT_REPRODUCED, NOT_EVALUATED = (
    "reproduced",
    "not reproduced",
    "not evaluated",
)
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_EVALUATED)


# ------------------------------------------------------------------ running


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def run_folder(runs_dir: Path, name: str, quick: bool) -> Path:
    return runs_dir / (f"{name}-quick" if quick else name)


def parse_clock(text: str | None) -> datetime.datetime | None:
    """`HH:MM` (UTC, today) as an aware datetime, or `None`."""
    if text is None:
        return None
    hh, mm = (int(x) for x in text.split(":"))
    return utc_now().replace(hour=hh, minute=mm, second=0, microsecond=0)


def finished(folder: Path) -> bool:
    """Did the script's run in `folder` end with a summary (exit 0 or 1)?"""
    meta = read_json(folder / "reproduce.json")
    return (
        bool(meta)
        and meta.get("returncode") in (0, 1)
        and (folder / "summary.json").exists()
    )


def run_experiment(
    name: str, folder: Path, *, quick: bool, stop_at: datetime.datetime | None
) -> dict:
    """`lecontrol run NAME [--quick] --out folder`, timed; writes `reproduce.json`."""
    experiment, settings = VARIANTS.get(name, (name, ()))
    args = [experiment, "--out", str(folder), "--no-progress"]
    args += (["--set", *settings] if settings else []) + (["--quick"] if quick else [])
    cmd = [sys.executable, "-m", "lecontrol.cli", "run", *args, "--overwrite"]
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "experiment": experiment,
        "settings": list(settings),
        "quick": quick,
        "command": "lecontrol run " + " ".join(args),
        "started_utc": utc_now().isoformat(timespec="seconds"),
        "returncode": None,
        "stopped_at_budget": False,
    }
    write_json(folder / "reproduce.json", meta)
    log = (folder.parent / f"{folder.name}.log").open("w")
    print(f"[{utc_now():%H:%M:%S}] {meta['command']}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    while proc.poll() is None:
        if stop_at is not None and utc_now() >= stop_at:
            meta["stopped_at_budget"] = True
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            break
        time.sleep(2.0)
    meta["returncode"] = proc.returncode
    meta["wall_time_s"] = round(time.perf_counter() - t0, 1)
    meta["finished_utc"] = utc_now().isoformat(timespec="seconds")
    log.close()
    write_json(folder / "reproduce.json", meta)
    print(
        f"[{utc_now():%H:%M:%S}] {name}: exit {proc.returncode}, "
        f"{meta['wall_time_s']:.0f} s"
        + (" (stopped at the time budget)" if meta["stopped_at_budget"] else ""),
        flush=True,
    )
    return meta


def run_all(names: Sequence[str], args) -> None:
    deadline = parse_clock(args.deadline)
    stop_at = parse_clock(args.stop_at)
    for name in names:
        quick = args.quick
        if not quick and deadline is not None and utc_now() >= deadline:
            print(f"{name}: past --deadline {args.deadline} UTC, quick variant instead")
            quick = True
            if finished(run_folder(args.runs_dir, name, True)):
                continue
        limit = stop_at
        if args.timeout is not None:
            own = utc_now() + datetime.timedelta(seconds=args.timeout)
            limit = own if limit is None else min(limit, own)
        meta = run_experiment(
            name,
            run_folder(args.runs_dir, name, quick),
            quick=quick,
            stop_at=None if quick else limit,
        )
        if meta["stopped_at_budget"] and not finished(
            run_folder(args.runs_dir, name, True)
        ):
            run_experiment(
                name, run_folder(args.runs_dir, name, True), quick=True, stop_at=None
            )


# ------------------------------------------------------------------ run data


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def write_json(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


@dataclasses.dataclass
class Run:
    """One experiment's run folder as the report sees it."""

    name: str
    folder: Path
    quick: bool
    meta: dict
    summary: dict
    _results: dict | None = None

    @property
    def results(self) -> dict:
        if self._results is None:
            with np.load(self.folder / "results.npz") as f:
                self._results = {k: f[k] for k in f.files}
        return self._results


def load_run(runs_dir: Path, name: str) -> tuple[Run | None, list[dict]]:
    """The full-size run if it finished, else the quick one; and every attempt."""
    attempts = []
    chosen = None
    for quick in (False, True):
        folder = run_folder(runs_dir, name, quick)
        meta = read_json(folder / "reproduce.json")
        if not meta:
            continue
        attempts.append(meta)
        if chosen is None and finished(folder):
            chosen = Run(name, folder, quick, meta, read_json(folder / "summary.json"))
    return chosen, attempts


# ------------------------------------------------------------------ findings


@dataclasses.dataclass(frozen=True)
class Check:
    """A verdict with its measured evidence (markdown)."""

    verdict: str
    evidence: str


def fmt(x, digits: int = 4) -> str:
    if x is None:
        return "none"
    if isinstance(x, bool | np.bool_):
        return str(bool(x)).lower()
    if isinstance(x, int | np.integer):
        return str(int(x))
    x = float(x)
    if not np.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}"


def verdict(ok: bool | None, evidence: str, reason: str = "") -> Check:
    if ok is None:
        return Check(NOT_EVALUATED, f"{evidence} {reason}".strip())
    return Check(REPRODUCED if ok else NOT_REPRODUCED, evidence)


# single neuron ---------------------------------------------------------------


def sn_control_early_decays(run: Run) -> Check:
    r = run.results
    ts, g = r["ts"], np.asarray(r["control_g"]).reshape(len(r["ts"]), -1)[:, 0]
    i = int(np.argmax(g))
    after = g[i:]
    falling = float(np.mean(np.diff(after) <= 1e-9)) if after.size > 1 else 0.0
    T = ts[-1]
    early = ts[i] <= 0.2 * T
    ok = bool(early and g[-1] < 0.5 * g[i] and falling >= 0.9)
    return verdict(
        ok,
        f"g peaks at t = {fmt(ts[i])} of T = {fmt(T)} (g = {fmt(g[i])}); "
        f"g(T/2) = {fmt(np.interp(T / 2, ts, g))}, g(T) = {fmt(g[-1])}; "
        f"{100 * falling:.0f}% of the steps after the peak do not increase g. "
        "Criterion: peak in the first 20% of the run, g(T) below half the peak, "
        "≥ 90% non-increasing after it.",
    )


def sn_net_reward_early_loss_late_gain(run: Run) -> Check:
    r = run.results
    ts, d = r["ts"], r["control_v"] - r["baseline_v"]
    nonzero = np.flatnonzero(np.abs(d) > 1e-12)
    pos = np.flatnonzero(d > 0)
    if nonzero.size == 0 or pos.size == 0 or d[nonzero[0]] >= 0:
        return verdict(
            False,
            f"v_control − v_baseline starts at {fmt(d[0])} and ranges "
            f"{fmt(d.min())} … {fmt(d.max())}: no early loss followed by a gain.",
        )
    k = int(pos[pos > nonzero[0]][0])  # first sample where the control is ahead
    early = float(np.trapezoid(d[: k + 1], ts[: k + 1]))
    late = float(np.trapezoid(d[k:], ts[k:]))
    return verdict(
        bool(early < 0 < late),
        f"net-reward difference v_control − v_baseline = γ^t[η(P_c − P_b) − C(g)] is "
        f"negative from t = 0 ({fmt(d[0])}; minimum {fmt(d[: k + 1].min())}) until "
        f"t = {fmt(ts[k])} ({100 * ts[k] / ts[-1]:.1f}% of T), integral {fmt(early)}; "
        f"after that its integral is {fmt(late)} (maximum {fmt(d.max())} at "
        f"t = {fmt(ts[np.argmax(d)])}; {fmt(d[-1])} at T = {fmt(ts[-1])}). Criterion: "
        "negative first, then a positive integral.",
    )


def v_control_above_baseline(run: Run) -> Check:
    s = run.summary
    vb, vc = s.get("V_baseline"), s.get("V_control")
    if vb is None or vc is None:
        return verdict(None, "", "summary.json has no V_baseline / V_control.")
    return verdict(
        vc > vb,
        f"V_baseline = {fmt(vb, 6)}, V_control = {fmt(vc, 6)} "
        f"(gain {fmt(vc - vb, 3)}; status `{s.get('status')}`).",
    )


def sweep_trend(sweep: str, sign: int, label: str) -> Callable[[Run], Check]:
    def check(run: Run) -> Check:
        s, r = run.summary, run.results
        rho = s.get("trends", {}).get(sweep)
        values, total = r.get(f"{sweep}_values"), r.get(f"{sweep}_total_control")
        if rho is None or values is None or total is None:
            return verdict(None, "", f"the run has no `{sweep}` sweep.")
        pairs = ", ".join(f"{fmt(v, 3)} → {fmt(c, 3)}" for v, c in zip(values, total))
        if len(values) > 8:
            idx = np.unique(np.linspace(0, len(values) - 1, 6).round().astype(int))
            pairs = ", ".join(f"{fmt(values[i], 3)} → {fmt(total[i], 3)}" for i in idx)
        return verdict(
            bool(np.sign(rho) == sign),
            f"Spearman ρ({label}, ∫ control dt) = {fmt(rho, 3)} over "
            f"{len(values)} values; {label} → total control: {pairs}.",
        )

    return check


# gain modulation -------------------------------------------------------------


def gain_early_concentration(run: Run) -> Check:
    s = run.summary
    f, T = s.get("control_fraction_first_quarter"), s.get("T")
    if f is None:
        return verdict(None, "", "no `control_fraction_first_quarter` in summary.json.")
    return verdict(
        f > 0.5,
        f"{100 * f:.0f}% of ∫(‖G1‖² + ‖G2‖²) dt falls in the first quarter of the "
        f"run (a constant control gives 25%); effort peaks at t = "
        f"{fmt(s.get('t_peak_control'))} of T = {fmt(T)}. Criterion: > 50%.",
    )


def gain_near_steepest_drop(run: Run) -> Check:
    s, r = run.summary, run.results
    tp, td, T = s.get("t_peak_control"), s.get("t_steepest_drop_baseline"), s.get("T")
    effort = r.get("control_effort")
    if tp is None or td is None or T is None or effort is None:
        return verdict(None, "", "no peak / steepest-drop times or control effort.")
    ts = r["ts"]

    def near_drops(loss) -> float:
        rate = -np.gradient(loss, ts)
        top = rate >= np.quantile(rate, 0.9)
        return float(effort[top].mean() / max(float(effort.mean()), 1e-300))

    ratio, own = near_drops(r["baseline_loss"]), near_drops(r["control_loss"])
    gap = abs(tp - td)
    return verdict(
        ratio >= 2.0,
        f"mean control effort ‖G1‖² + ‖G2‖² over the times where the baseline loss "
        f"falls fastest (top 10% of −d⟨L⟩/dt) is {fmt(ratio, 3)}× its mean over the "
        f"run ({fmt(own, 3)}× at the controlled run's own fastest drops); effort "
        f"peaks at t = {fmt(tp)}, the baseline loss falls fastest at "
        f"t = {fmt(td)} (controlled run: {fmt(s.get('t_steepest_drop_control'))}), "
        f"{100 * gap / T:.1f}% of T apart. Criterion: ratio (baseline drops) ≥ 2.",
    )


def gain_loss_falls_faster(run: Run) -> Check:
    s = run.summary
    tb, tc = s.get("t_threshold_baseline"), s.get("t_threshold_control")
    cb, cc = s.get("cumulative_loss_baseline"), s.get("cumulative_loss_control")
    if tb is None or tc is None:
        return verdict(
            None,
            f"threshold times: baseline {fmt(tb)}, control {fmt(tc)}.",
            "One run never reaches the loss threshold.",
        )
    return verdict(
        tc < tb and cc < cb,
        f"loss reaches {fmt(s.get('loss_threshold'))} at t = {fmt(tc)} with control vs "
        f"{fmt(tb)} without; ∫⟨L⟩dt {fmt(cc)} vs {fmt(cb)}; final loss "
        f"{fmt(s.get('final_loss_control'))} vs {fmt(s.get('final_loss_baseline'))}.",
    )


def gain_sparser_weights(run: Run) -> Check:
    s = run.summary
    b, c = s.get("final_l1_baseline"), s.get("final_l1_control")
    if b is None or c is None:
        return verdict(None, "", "no final L1 norms in summary.json.")
    return verdict(
        c < b,
        f"final L1 = {fmt(c)} with control vs {fmt(b)} without; L1/L2 "
        f"{fmt(s.get('final_l1_over_l2_control'))} vs "
        f"{fmt(s.get('final_l1_over_l2_baseline'))}; L2 {fmt(s.get('final_l2_control'))} "
        f"vs {fmt(s.get('final_l2_baseline'))}.",
    )


def semantic_skips_plateaus(run: Run) -> Check:
    s = run.summary
    b, c = s.get("level_times_baseline"), s.get("level_times_control")
    earlier = s.get("levels_learned_earlier")
    if not b or not c or earlier is None:
        return verdict(None, "", "no per-level learning times in summary.json.")
    rows = "; ".join(
        f"level {k}: {fmt(cb, 3)} → {fmt(cc, 3)}"
        for k, (cb, cc) in enumerate(zip(b, c))
    )
    if any(e is None for e in earlier):
        return verdict(
            None,
            f"time for each level's loss to halve, baseline → control: {rows}.",
            "Some level's loss never halves.",
        )
    return verdict(
        all(earlier),
        f"time for each level's loss to halve, baseline → control: {rows}. "
        "Criterion: every level learned earlier (its plateau shortened).",
    )


# task switch -----------------------------------------------------------------


def switch_loss_below(run: Run) -> Check:
    f = run.summary.get("fraction_loss_below_baseline")
    if f is None:
        return verdict(None, "", "no `fraction_loss_below_baseline` in summary.json.")
    return verdict(
        f >= 0.9,
        f"controlled loss below baseline at {100 * f:.1f}% of the saved times "
        "(t > 0). Criterion: ≥ 90%.",
    )


def switch_anticipation(run: Run) -> Check:
    v = (run.summary.get("verdicts") or {}).get("control_anticipates_switches")
    if v is None:
        return verdict(None, "", "no `control_anticipates_switches` verdict.")
    return verdict(
        v["status"] == "holds",
        f"{v['evidence']}. Criterion: {v['criterion']}; status `{v['status']}`.",
    )


# engagement --------------------------------------------------------------------

PAPER_TASK_ORDER = ["0v1", "7v1", "8v9"]


def _labels_like(labels: Sequence[str], wanted: Sequence[str]) -> list[str] | None:
    """Map the paper's task names onto the run's labels (e.g. `0 vs 1`)."""
    out = []
    for w in wanted:
        a, b = w.split("v")
        hits = [lab for lab in labels if [ch for ch in lab if ch.isdigit()] == [a, b]]
        if len(hits) != 1:
            return None
        out.append(hits[0])
    return out


def engagement_easier_first(run: Run) -> Check:
    s = run.summary
    release = s.get("order_by_engagement_release")
    centre = s.get("order_by_engagement_centre")
    difficulty = s.get("order_by_difficulty")
    if not release or not difficulty:
        return verdict(None, "", "no engagement orders in summary.json.")
    paper = _labels_like(difficulty, PAPER_TASK_ORDER)
    times = s.get("engagement_release_time", {})
    half = s.get("baseline_half_loss_time", {})
    ev = (
        f"order in which engagement is let go: {' → '.join(release)} (release times "
        + ", ".join(f"{k}: {fmt(v, 3)}" for k, v in times.items())
        + f"); by engagement-weighted mean time: {' → '.join(centre or [])}; "
        f"by difficulty (baseline time to halve each task's loss: "
        + ", ".join(f"{k}: {fmt(v, 3)}" for k, v in half.items())
        + f"): {' → '.join(difficulty)}."
    )
    target = paper if paper is not None else difficulty
    return verdict(
        release == target,
        ev + " Criterion: release order equals the paper's order 0v1 → 7v1 → 8v9.",
    )


def engagement_never_disengaged(run: Run) -> Check:
    s = run.summary
    mins, floor = s.get("engagement_min"), s.get("disengaged_below")
    if not mins or floor is None:
        return verdict(None, "", "no engagement minima in summary.json.")
    low = min(mins.values())
    return verdict(
        low > floor,
        "minimum engagement over the run: "
        + ", ".join(f"{k}: {fmt(v, 5)}" for k, v in mins.items())
        + f". Criterion: every minimum > {fmt(floor)}.",
    )


def category_easier_first(run: Run) -> Check:
    s = run.summary
    release = s.get("engagement_release_time")
    half = s.get("baseline_half_loss_time")
    if not release or not half:
        return verdict(None, "", "no per-class release / difficulty times.")
    labels = list(half)
    a = np.array([release[k] for k in labels], float)
    b = np.array([half[k] for k in labels], float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return verdict(None, "", "fewer than 3 classes with both times.")
    rho = spearman(a[ok], b[ok])
    centre = s.get("rank_correlation_centre_vs_difficulty")
    return verdict(
        rho > 0.5,
        f"Spearman ρ(release time, baseline time to halve the class's loss) = "
        f"{fmt(rho, 3)} over {int(ok.sum())} classes (engagement-weighted mean time vs "
        f"difficulty: {fmt(centre, 3)}); release order {' → '.join(s.get('order_by_engagement_release', []))}; "
        f"difficulty order {' → '.join(s.get('order_by_difficulty', []))}. "
        "Criterion: ρ > 0.5.",
    )


def spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(float)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def category_levels(key: str, what: str) -> Callable[[Run], Check]:
    def check(run: Run) -> Check:
        s = run.summary
        found = s.get("level_findings", {}).get(key)
        if found is None:
            return verdict(None, "", "no `level_findings` in summary.json.")
        mean = s.get("level_engagement_mean", {})
        centre = s.get("level_engagement_centre_time", {})
        return verdict(
            bool(found),
            "per level (0 = top of the hierarchy), time-averaged φ: "
            + ", ".join(f"{k}: {fmt(v, 6)}" for k, v in mean.items())
            + "; engagement-weighted mean time: "
            + ", ".join(f"{k}: {fmt(v, 3)}" for k, v in centre.items())
            + f". Criterion: {what} strictly monotone in the level.",
        )

    return check


# learning rate -------------------------------------------------------------------


def lr_first_levels_only(run: Run) -> Check:
    r = run.results
    values, levels = r.get("beta_values"), r.get("beta_level_loss")
    if values is None or levels is None:
        return verdict(None, "", "the run has no β sweep of per-level losses.")
    final, initial = levels[:, -1, :], levels[:, 0, :]
    learned = final <= 0.5 * initial  # [beta, level]
    n_levels = learned.shape[1]
    counts = learned.sum(1)
    prefix = [
        bool(np.all(row[: int(c)]) and not np.any(row[int(c) :]))
        for row, c in zip(learned, counts)
    ]
    order = np.argsort(values)
    c_sorted = counts[order]
    costly = c_sorted[-1]
    ok = bool(
        all(prefix)
        and np.all(np.diff(c_sorted) <= 0)
        and 0 < costly < n_levels
        and c_sorted[0] > costly
    )
    rows = ", ".join(f"β = {fmt(values[i], 3)}: {int(counts[i])}" for i in order)
    return verdict(
        ok,
        f"levels of the {n_levels}-level hierarchy learned (final loss ≤ half the "
        f"initial) per β: {rows}; learned levels are always the first ones: "
        f"{fmt(all(prefix))}. Criterion: the learned levels are a prefix, fewer as β "
        "grows, and at the largest β some but not all levels.",
    )


# MAML ----------------------------------------------------------------------------


def maml_convergence(run: Run, cumulative: np.ndarray) -> str:
    """How far the longest horizon's optimisation still moved at the end.

    Its initialisation is optimised for exactly the evaluation window, so any
    other horizon's initialisation doing better there means it has not
    converged; compare that margin with the last iterations' progress.
    """
    try:
        values = np.asarray(run.results["values"])
    except (OSError, KeyError):
        return ""
    v = values[-1]
    tail = max(1, len(v) // 10)
    last = v[-1] - v[-1 - tail]
    margin = cumulative[-1] - np.min(cumulative)
    return (
        f" Convergence: V of the longest horizon (optimised for the evaluation "
        f"window itself) still rose by {fmt(last, 3)} over the last {tail} of "
        f"{len(v)} iterations; another horizon's initialisation beats it on that "
        f"window by {fmt(margin, 3)}."
    )


def maml_one_step_worse(run: Run) -> Check:
    s = run.summary
    under = s.get("one_step_underperforms_multi_step")
    cum = s.get("cumulative_loss", {})
    ev = (
        "cumulative loss per horizon: "
        + ", ".join(f"{h}: {fmt(v, 4)}" for h, v in cum.items())
        + f" (random init: {fmt(s.get('cumulative_loss_baseline'), 4)})."
    )
    if under is None:
        return verdict(None, ev, "No one-step horizon (or no multi-step one) was run.")
    return verdict(bool(under), ev)


def maml_one_step_ahead_rises(run: Run) -> Check:
    s = run.summary
    one, cum = s.get("one_step_loss", {}), s.get("cumulative_loss", {})
    if len(one) < 3:
        return verdict(None, "", "fewer than 3 horizons.")
    h = np.array(sorted(int(k) for k in one))
    o = np.array([one[str(k)] if str(k) in one else one[k] for k in h])
    c = np.array([cum[str(k)] if str(k) in cum else cum[k] for k in h])
    rises = s.get("one_step_ahead_rises_after")
    best = int(h[np.argmin(o)])
    after = h >= best
    cum_falls = bool(np.all(np.diff(c[after]) <= 0)) if after.sum() > 1 else False
    ok = bool(rises is not None and 100 <= rises <= 300 and cum_falls)
    return verdict(
        ok,
        "one-step-ahead loss per horizon: "
        + ", ".join(f"{k}: {fmt(v, 4)}" for k, v in zip(h, o))
        + f"; lowest at {best}, rises monotonically after {fmt(rises)}; cumulative loss "
        + ", ".join(f"{k}: {fmt(v, 4)}" for k, v in zip(h, c))
        + f" keeps falling past {best}: {fmt(cum_falls)}. Criterion: rise starts "
        "between 100 and 300 steps (paper: ~180) while the cumulative loss keeps "
        "falling." + maml_convergence(run, c),
    )


# non-linear network (method check, not a listed finding) ---------------------------


def nonlinear_sgd_replay(run: Run) -> Check:
    s = run.summary
    vb, vc = s.get("sgd_real_V_baseline"), s.get("sgd_real_V_control")
    if vb is None or vc is None:
        return verdict(None, "", "no SGD replay of the tanh network in summary.json.")
    return verdict(
        vc > vb,
        f"on the Taylor approximation V = {fmt(s.get('V_baseline'), 5)} → "
        f"{fmt(s.get('V_control'), 5)}; replayed on minibatch SGD of the real tanh "
        f"network ({s.get('sgd_seeds')} seeds, batch {s.get('sgd_batch')}): "
        f"V = {fmt(vb, 5)} → {fmt(vc, 5)}, final loss "
        f"{fmt(s.get('sgd_real_final_loss_baseline'))} → "
        f"{fmt(s.get('sgd_real_final_loss_control'))}; largest Taylor error of the "
        f"loss along the controlled ODE run {fmt(s.get('max_taylor_error_control'), 3)}.",
    )


# the table -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Finding:
    area: str
    claim: str  # the paper's finding, in our words
    experiment: str
    check: Callable[[Run], Check]
    listed: bool = True  # False: a check of the method, not one of the paper's findings
    also: str | None = None  # a variant run measured the same way, as extra evidence


# Where the paper shows the findings of each area (sections, figures).
SOURCES: dict[str, str] = {
    "Single neuron": "Sec. 2.1, Fig. 2; App. K.1, Fig. 9",
    "Gain modulation": "Sec. 6.1, Fig. 5a-d; App. K.2, Figs. 10-11",
    "Task engagement": "Sec. 5.1, Fig. 4a-f",
    "Category engagement": "Sec. 5.1, Fig. 4h-m",
    "Learning rate": "Sec. 4, Fig. 3c,d; App. F.2, Fig. 8",
    "MAML": "Sec. 4, Fig. 3a,b; App. F.1, Figs. 6-7",
    "Task switch": "Sec. 6.1, Fig. 5e-g; App. K.3, Figs. 15-16",
    "Non-linear network": "App. K.6, Fig. 19",
}

GAIN = ("effort-gaussians", "effort-semantic", "effort-digits")
ENGAGEMENT = ("engagement-attentive", "engagement-active", "engagement-vector")

FINDINGS: list[Finding] = [
    Finding(
        "Single neuron",
        "optimal g(t) is largest early and decays",
        "single-neuron",
        sn_control_early_decays,
    ),
    Finding(
        "Single neuron",
        "the controlled run loses net reward early and gains it later",
        "single-neuron",
        sn_net_reward_early_loss_late_gain,
    ),
    Finding(
        "Single neuron",
        "V(control) > V(baseline)",
        "single-neuron",
        v_control_above_baseline,
    ),
    Finding(
        "Single neuron",
        "more control for larger γ",
        "single-neuron-sweep",
        sweep_trend("gamma", 1, "γ"),
    ),
    Finding(
        "Single neuron",
        "less control for larger σ (noise)",
        "single-neuron-sweep",
        sweep_trend("sigma", -1, "σ"),
    ),
    Finding(
        "Single neuron",
        "less control for larger β",
        "single-neuron-sweep",
        sweep_trend("beta", -1, "β"),
    ),
    *[
        f
        for exp in GAIN
        for f in (
            Finding(
                "Gain modulation",
                "control concentrated early",
                exp,
                gain_early_concentration,
            ),
            Finding(
                "Gain modulation",
                "control near the steepest loss drops",
                exp,
                gain_near_steepest_drop,
            ),
            Finding(
                "Gain modulation",
                "loss falls faster than baseline",
                exp,
                gain_loss_falls_faster,
            ),
            Finding(
                "Gain modulation",
                "weights end sparser (lower L1)",
                exp,
                gain_sparser_weights,
            ),
        )
    ],
    Finding(
        "Gain modulation",
        "on Semantic data, control skips the plateaus of step-like learning",
        "effort-semantic",
        semantic_skips_plateaus,
    ),
    *[
        f
        for exp in ENGAGEMENT
        for f in (
            Finding(
                "Task engagement",
                "easier tasks are engaged first (0v1, then 7v1, then 8v9)",
                exp,
                engagement_easier_first,
            ),
            Finding(
                "Task engagement",
                "no task is ever fully disengaged",
                exp,
                engagement_never_disengaged,
            ),
        )
    ],
    Finding(
        "Category engagement",
        "easier digits first",
        "category-digits",
        category_easier_first,
    ),
    Finding(
        "Category engagement",
        "in Semantic, higher levels of the hierarchy get more engagement",
        "category-semantic",
        category_levels("higher_levels_more_engagement", "time-averaged φ falls"),
    ),
    Finding(
        "Category engagement",
        "in Semantic, higher levels are engaged earlier",
        "category-semantic",
        category_levels("higher_levels_engaged_earlier", "mean engagement time rises"),
    ),
    Finding(
        "Learning rate",
        "more control for larger γ",
        "learning-rate-sweep",
        sweep_trend("gamma", 1, "γ"),
        also="learning-rate-sweep-costly",
    ),
    Finding(
        "Learning rate",
        "more control for smaller β",
        "learning-rate-sweep",
        sweep_trend("beta", -1, "β"),
        also="learning-rate-sweep-costly",
    ),
    Finding(
        "Learning rate",
        "with costly control only the first levels of the hierarchy are worth learning",
        "learning-rate-sweep-costly",
        lr_first_levels_only,
    ),
    Finding(
        "MAML",
        "one-step MAML under-performs multi-step",
        "maml",
        maml_one_step_worse,
        also="maml-6000",
    ),
    Finding(
        "MAML",
        "beyond ~180 steps the one-step-ahead loss rises while cumulative "
        "loss keeps falling",
        "maml",
        maml_one_step_ahead_rises,
        also="maml-6000",
    ),
    Finding(
        "Task switch",
        "controlled loss is below baseline at almost every point",
        "task-switch",
        switch_loss_below,
    ),
    Finding(
        "Task switch",
        "control starts acting before each switch",
        "task-switch",
        switch_anticipation,
    ),
    Finding(
        "Non-linear network",
        "the control optimised on the Taylor approximation "
        "also raises V on real SGD of the tanh network",
        "nonlinear",
        nonlinear_sgd_replay,
        listed=False,
    ),
]
assert {f.area for f in FINDINGS} <= SOURCES.keys(), "an area without its source"


def evaluate(finding: Finding, run: Run | None, attempts: list[dict]) -> Check:
    if run is None:
        why = "no run of this experiment"
        if attempts:
            why = "; ".join(describe_attempt(a) for a in attempts)
        return Check(NOT_EVALUATED, f"Not evaluated: {why}.")
    try:
        return finding.check(run)
    except (KeyError, ValueError, IndexError, TypeError, OSError) as err:
        return Check(
            NOT_EVALUATED,
            f"Not evaluated: the check failed ({type(err).__name__}: {err}).",
        )


def describe_attempt(meta: dict) -> str:
    kind = "quick" if meta.get("quick") else "full-size"
    if meta.get("returncode") is None:
        return f"the {kind} run did not finish (started {meta.get('started_utc')})"
    if meta.get("stopped_at_budget"):
        return (
            f"the {kind} run was stopped at the time budget after "
            f"{fmt(meta.get('wall_time_s'), 4)} s"
        )
    if meta["returncode"] == 0:
        return f"the {kind} run also finished ({fmt(meta.get('wall_time_s'), 4)} s)"
    return f"the {kind} run exited with status {meta['returncode']}"


# ------------------------------------------------------------------ report


def copy_figures(run: Run, fig_dir: Path, report: Path) -> list[str]:
    links = []
    for name in FIGURES.get(run.name, ()):
        src = run.folder / name
        if not src.exists():
            continue
        fig_dir.mkdir(parents=True, exist_ok=True)
        dst = fig_dir / f"{run.name}{'-quick' if run.quick else ''}-{name}"
        shutil.copyfile(src, dst)
        links.append(os.path.relpath(dst, report.parent).replace(os.sep, "/"))
    return links


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} CPU cores "
        f"visible (shared with other jobs), Python {platform.python_version()}"
    )


def versions() -> str:
    out = []
    for mod in ("lecontrol", "jax", "diffrax", "equinox", "numpy"):
        try:
            m = __import__(mod)
            out.append(f"{mod} {getattr(m, '__version__', '?')}")
        except ImportError:
            pass
    try:
        import jax

        out.append(f"JAX backend {jax.default_backend()}")
    except Exception:  # noqa: BLE001 — report what we can
        pass
    return ", ".join(out)


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def summary_table(rows) -> list[str]:
    out = ["| area | finding | experiment | run | verdict |", "|---|---|---|---|---|"]
    for f, c, quick in rows:
        evaluated = c.verdict != NOT_EVALUATED
        v = f"**{c.verdict}**" + (" (quick run only)" if quick and evaluated else "")
        kind = ("quick" if quick else "full") if evaluated else "–"
        out.append(f"| {f.area} | {f.claim} | `{f.experiment}` | {kind} | {v} |")
    return out


def write_report(names: Sequence[str], args, command: str) -> Path:
    report = args.report
    report.parent.mkdir(parents=True, exist_ok=True)
    fig_dir = report.parent / "figures" / "reproduction"
    if fig_dir.exists():
        for old in fig_dir.glob("*.png"):
            old.unlink()
    runs = {name: load_run(args.runs_dir, name) for name in names}

    L = [
        "# Reproduction report",
        "",
        '!!! note "Generated file"',
        f"    Written by `scripts/reproduce.py` — do not edit by hand. Rebuild it "
        f"from the run folders with `{command}`; run every experiment again (full "
        "size) with `python scripts/reproduce.py`, or the quick variants with "
        "`python scripts/reproduce.py --quick`.",
        "",
        f"- **Generated:** {utc_now():%Y-%m-%d %H:%M} UTC",
        f"- **Machine:** {machine()}",
        f"- **Software:** {versions()}; git commit when the report was written: {git_commit()}",
        f"- **Run folders:** `{os.path.relpath(args.runs_dir, ROOT)}/NAME` (full size) "
        "and `NAME-quick` (quick variant), not committed; wall times below are each "
        "`lecontrol run` as a whole (start-up, compilation, optimisation, figures) on "
        "this shared machine",
        *([f"- **Note:** {args.note}"] if args.note else []),
        "",
        "Each qualitative finding of the paper (Carrasco-Davis, Masís & Saxe, "
        '"Meta-Learning Strategies through Value Maximization in Neural Networks") '
        "is checked against measurements from the runs below. The paper shows them "
        "in: "
        + ", ".join(
            f"{area if area.isupper() else area.lower()} ({src})"
            for area, src in SOURCES.items()
        )
        + ". A *full-size* run uses "
        "the experiment's default configuration (the paper's parameters); a "
        "*quick* run is the `--quick` smoke-test variant (fewer iterations, shorter "
        "horizon, smaller network), and **a verdict from a quick run is not evidence "
        "of the paper's finding at full size**. The criterion used for each verdict "
        "is stated with its evidence.",
        "",
        "## Runs",
        "",
        "| experiment | run used | wall time | V baseline | V control | status | other attempts |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        run, attempts = runs[name]
        others = "; ".join(
            describe_attempt(a)
            for a in attempts
            if run is None or a.get("quick") != run.quick
        )
        if not any(not a.get("quick") for a in attempts):
            others = "; ".join(filter(None, [others, "no full-size run was made"]))
        if run is None:
            L.append(f"| `{name}` | none | – | – | – | – | {others or 'not run'} |")
            continue
        s = run.summary
        label = f"`{name}`"
        if name in VARIANTS:
            exp, settings = VARIANTS[name]
            label += f" (`{exp} --set {' '.join(settings)}`)"
        L.append(
            f"| {label} | {'**quick**' if run.quick else 'full size'} | "
            f"{fmt(run.meta.get('wall_time_s'), 4)} s | {fmt(s.get('V_baseline'), 6)} | "
            f"{fmt(s.get('V_control'), 6)} | {s.get('status')} "
            f"({s.get('iterations')} it.) | {others or '–'} |"
        )

    L += [
        "",
        '??? info "Each run\'s command, start time and exit status"',
        "",
    ]
    for name in names:
        for a in runs[name][1]:
            L.append(
                f"    - `{str(a.get('command')).replace(str(ROOT) + os.sep, '')}` — started {a.get('started_utc')}, "
                f"exit status {a.get('returncode')}"
                + (", stopped at the time budget" if a.get("stopped_at_budget") else "")
            )
    rows = []
    for f in (f for f in FINDINGS if f.experiment in names):
        run, attempts = runs[f.experiment]
        rows.append((f, evaluate(f, run, attempts), run is not None and run.quick))
    listed = [row for row in rows if row[0].listed]
    extra = [row for row in rows if not row[0].listed]
    counts = {v: sum(c.verdict == v for _, c, _ in listed) for v in VERDICTS}
    n_quick = sum(q and c.verdict != NOT_EVALUATED for _, c, q in listed)

    L += [
        "",
        "## Summary",
        "",
        f"{len(listed)} findings: {counts[REPRODUCED]} reproduced, "
        f"{counts[NOT_REPRODUCED]} not reproduced, {counts[NOT_EVALUATED]} not "
        f"evaluated. Of the evaluated ones, {n_quick} come from quick runs only "
        "(marked *quick run only*).",
        "",
    ]
    L += summary_table(listed)
    if extra:
        L += [
            "",
            "Beyond the paper's findings, a check of the method:",
            "",
        ]
        L += summary_table(extra)
    L += ["", "## Findings with evidence", ""]
    area = None
    for f, c, quick in listed + extra:
        if f.area != area:
            area = f.area
            L += [f"### {area}" + ("" if f.listed else " (not a listed finding)"), ""]
        tag = f"**{c.verdict}**"
        if quick and c.verdict != NOT_EVALUATED:
            tag += (
                " — *from the quick run only: not evidence of the paper's finding at "
                "full size*"
            )
        extra_evidence = ""
        if f.also is not None and f.also in runs and runs[f.also][0] is not None:
            other = runs[f.also][0]
            o = evaluate(f, other, [])
            extra_evidence = (
                f" Also measured on `{f.also}` ({'quick' if other.quick else 'full-size'}"
                f" run; evidence only, not the verdict): {o.verdict}. {o.evidence}"
            )
        L += [
            f"- *{f.claim}* (`{f.experiment}`): {tag}. {c.evidence}{extra_evidence}",
            "",
        ]

    L += ["## Figures", ""]
    for name in names:
        run, _ = runs[name]
        if run is None:
            continue
        links = copy_figures(run, fig_dir, report)
        if not links:
            continue
        L += [f"### `{name}`" + (" (quick run)" if run.quick else ""), ""]
        for link in links:
            L += [f'![{name}: {Path(link).stem}]({link}){{ width="48%" }}']
        L += [""]
    report.write_text("\n".join(L).rstrip() + "\n")
    print(f"wrote {report}")
    return report


# ------------------------------------------------------------------ CLI


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="run the quick variants")
    p.add_argument("--only", nargs="+", metavar="NAME", help="these experiments only")
    p.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "reproduction")
    p.add_argument("--report", type=Path, default=ROOT / "docs" / "reproduction.md")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="run nothing; rebuild the report from the existing run folders",
    )
    p.add_argument(
        "--deadline",
        metavar="HH:MM",
        help="UTC time after which no full-size run starts (quick variant instead)",
    )
    p.add_argument(
        "--stop-at",
        metavar="HH:MM",
        help="UTC time at which a full-size run still going is stopped (then quick)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="stop a full-size run after this long (then its quick variant runs)",
    )
    p.add_argument("--no-report", action="store_true", help="run only; no report")
    p.add_argument(
        "--note",
        metavar="TEXT",
        help="a line for the report's header (e.g. the budget)",
    )
    args = p.parse_args(argv)
    args.runs_dir = args.runs_dir.resolve()
    args.report = args.report.resolve()
    names = list(args.only or EXPERIMENTS)
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        p.error(f"unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}")
    command = "python scripts/reproduce.py --reuse"
    if args.runs_dir != (ROOT / "runs" / "reproduction").resolve():
        command += f" --runs-dir {args.runs_dir}"
    if args.only:
        command += " --only " + " ".join(names)
    if args.note:
        command += " --note '...'"
    if not args.reuse:
        args.runs_dir.mkdir(parents=True, exist_ok=True)
        run_all(names, args)
    if not args.no_report:
        write_report(names, args, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
