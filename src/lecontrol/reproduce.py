r"""`lecontrol reproduce`: run the paper's experiments and write the report.

    lecontrol reproduce                         # every experiment, full size
    lecontrol reproduce --quick                 # the quick variants
    lecontrol reproduce --only single-neuron maml
    lecontrol reproduce --reuse                 # rebuild the report only

`run_all` runs every experiment of the paper (`lecontrol.experiments.paper()`) and the
`VARIANTS`, `parallel` at a time (the command line's `--jobs`; by default one
per CPU core, `default_parallel`), each into its own run folder
`RUNS/NAME` (full size) or `RUNS/NAME-quick`. A failing experiment is
recorded and the others still run. `write_report` then builds the report from
those folders.

Each experiment runs in its own process, as `lecontrol run NAME --out FOLDER`
(the command line's code path: configuration checks, the folder's lock,
`lecontrol.runner.execute`, exit status). One process per experiment rather
than one for all, because

- a failure that takes the process down (an XLA abort, running out of memory)
  ends that experiment only, and is recorded with its exit status and message;
- the memory of one experiment (compiled programs, arrays, data sets) is given
  back before the next starts, which matters for a full run of hours;
- a time budget (`timeout`) stops an experiment with SIGTERM, which the
  command line handles (checkpoints kept, exit status 143);
- little would be shared in one process: the experiments compile different
  problems (other systems, shapes or batch sizes), so JAX's compiled
  functions are seldom reused across them. The price is importing JAX and
  lecontrol once per experiment (6 s on a shared 2-core machine), part of
  what the report shows as *start-up*.

Next to each run's own files, `reproduce.json` records the command, exit
status, outcome, error message and wall time; the process's output is in
`run.log`.

The report is built only from the run folders: `summary.json` (the numbers,
the optimiser and its tolerance, and the `verdicts` that
`lecontrol.runner.execute` wrote for each `lecontrol.findings.Finding`),
`config.json` and `reproduce.json` (the wall time). It judges nothing itself:
a verdict's status `holds` / `fails` / `uninformative` is reported as
*reproduced* / *NOT reproduced* / *uninformative*, and a verdict from a quick
run is labelled a smoke test. `PAPER_FINDINGS` maps each qualitative finding of
the paper to the verdicts that check it; one without a verdict in any run is
listed as not checked yet.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
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
from typing import Any

from . import experiments
from .config import ConfigError

__all__ = [
    "FIGURES",
    "PAPER_FINDINGS",
    "VARIANTS",
    "BUDGETS",
    "EXPECTED_S",
    "DEVICES",
    "devices_for",
    "Job",
    "Run",
    "jobs",
    "load_run",
    "run_all",
    "default_parallel",
    "run_folder",
    "run_job",
    "tolerance",
    "write_report",
]

# Cheapest first (measured on a 2-core machine), so that a run stopped early
# has done as many experiments as possible. Experiments not listed run last.
_ORDER = (
    "single-neuron",
    "digit-separability",
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
    "category-gains",
    "category-gains-semantic",
    "category-digits",
    "maml",
    "knot-convergence",
    "knot-convergence-gains",
    "knot-convergence-engagement",
)

VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "category-gains-semantic": (
        "category-gains",
        ("task.data=semantic", "system.hidden=30", "system.init_scale=0.0001"),
    ),
    "learning-rate-sweep-costly": ("learning-rate-sweep", ("cost.offset=-1",)),
    "knot-convergence-gains": (
        "knot-convergence",
        ("task.experiment=effort-gaussians", "task.quick=true"),
    ),
    "knot-convergence-engagement": (
        "knot-convergence",
        ("task.experiment=engagement-attentive", "task.quick=true"),
    ),
}
"""Runs of an experiment with other settings: name -> (experiment, `--set`
assignments). `cost.offset = -1` makes every bit of learning cost effort (cost
$\beta(\rho + 1)^2$), the setting of the paper's finding that with costly
control only the first levels of the hierarchy are worth learning (Fig. 3d).
`category-gains-semantic` runs the neuron-basis gains on the semantic
hierarchy (Fig. 18b,d) with effort-semantic's network (30 hidden units, initial
weights of std $10^{-4}$).
`knot-convergence` refines the single neuron's knots up to one per SGD step;
its `-gains` and `-engagement` runs refine the quick variants of
effort-gaussians and engagement-attentive (the full-size ladders take longer
than the whole reproduction's budget on two cores)."""

BUDGETS: dict[str, tuple[str, ...]] = {}
"""Iteration budgets of the full-size reproduction below the experiments'
defaults (`--set` assignments added to the full-size runs only), for runs
whose defaults would take far longer than the whole reproduction's budget on
two cores; the report names them and flags their runs when they end above
their tolerance. None at present: `maml`, the last one, runs the paper's
2000 Adam iterations (it has no tolerance: docs/systems/maml.md, "No finite
maximiser")."""

FIGURES: dict[str, tuple[str, ...]] = {
    "single-neuron": ("control.png", "net_reward_difference.png"),
    "single-neuron-sweep": ("total_control.png",),
    "effort-gaussians": ("control.png", "weight_norms.png"),
    "effort-semantic": ("level_loss.png", "control.png"),
    "effort-digits": ("loss.png", "weight_norms.png"),
    "task-switch": ("loss.png", "control.png"),
    "engagement-attentive": ("engagement.png",),
    "engagement-active": ("engagement.png",),
    "engagement-vector": ("engagement.png",),
    "category-digits": ("engagement.png", "class_proportions.png"),
    "digit-separability": ("separability.png",),
    "category-semantic": ("engagement_levels.png",),
    "learning-rate": ("level_loss.png",),
    "learning-rate-sweep": ("total_control.png",),
    "learning-rate-sweep-costly": ("loss_beta.png",),
    "maml": ("cumulative_loss.png", "per_task.png"),
    "category-gains": ("category_gains.png", "overview.png"),
    "category-gains-semantic": ("category_gains.png",),
    "nonlinear": ("ode_vs_sgd.png", "real_loss.png"),
}
"""The figures copied into the report, per run (at most two). A run not listed
gets the first two figures its summary names."""

PAPER_FINDINGS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    # (area, the finding with the paper's figure, ((experiment, verdict), ...))
    ("Single neuron", "the optimal gain is largest early, then decays (Fig. 2c)",
     (("single-neuron", "control_early"),)),
    ("Single neuron", "the controlled learner gives up net reward early to gain "
     "it later (Fig. 2a)", (("single-neuron", "net_reward_early_loss_late_gain"),)),
    ("Single neuron", "control raises the value over no control (Fig. 2)",
     (("single-neuron", "value_gain"),)),
    ("Single neuron", "more control for a larger discount factor γ (Fig. 2e)",
     (("single-neuron-sweep", "more_control_for_larger_gamma"),)),
    ("Single neuron", "less control for noisier data, larger σ (Fig. 2g)",
     (("single-neuron-sweep", "less_control_for_larger_sigma"),)),
    ("Single neuron", "less control when control costs more, larger β (Fig. 9a)",
     (("single-neuron-sweep", "less_control_for_larger_beta"),)),
    ("Gain modulation", "control is concentrated early in learning (Figs. 5d, 10d)",
     (("effort-gaussians", "control_early"), ("effort-semantic", "control_early"),
      ("effort-digits", "control_early"))),
    ("Gain modulation", "control peaks where the loss drops fastest (Figs. 5d, 10d)",
     tuple((e, "control_tracks_loss_drops") for e in (
         "effort-gaussians", "effort-semantic", "effort-digits", "nonlinear",
         "task-switch"))),
    ("Gain modulation", "the loss falls faster than without control (Fig. 5c)",
     (("effort-gaussians", "learns_faster"), ("effort-semantic", "learns_faster"),
      ("effort-digits", "learns_faster"))),
    ("Gain modulation", "the weights end sparser, a lower L1 norm (Figs. 5b, 10c)",
     (("effort-gaussians", "sparser_weights"), ("effort-semantic", "sparser_weights"),
      ("effort-digits", "sparser_weights"))),
    ("Gain modulation", "on Semantic data, control skips the plateaus of step-like "
     "learning (Fig. 11b)", (("effort-semantic", "every_level_sooner"),)),
    ("Task engagement", "easier tasks are engaged first: 0v1, then 7v1, then 8v9 "
     "(Fig. 4b,d,f)", (("engagement-attentive", "easier_first"),
                       ("engagement-active", "easier_first"),
                       ("engagement-vector", "easier_first"))),
    ("Task engagement", "no task is ever fully disengaged (Fig. 4b,d,f)",
     (("engagement-attentive", "never_disengaged"),
      ("engagement-active", "never_disengaged"),
      ("engagement-vector", "never_disengaged"))),
    ("Digit difficulty", "0v1 is easier than 7v1, which is easier than 8v9 "
     "(App. K.4)", (("digit-separability", "engagement_pairs_ordered"),)),
    ("Digit difficulty", "the digits' order of linear separability (Fig. 17b)",
     (("digit-separability", "paper_order"),)),
    ("Category engagement", "easier digits are engaged first (Figs. 4i, 17b)",
     (("category-digits", "easier_first"), ("category-digits", "papers_order"))),
    ("Category engagement", "in Semantic, higher levels of the hierarchy get more "
     "engagement (Fig. 4k)", (("category-semantic", "higher_levels_more_engagement"),)),
    ("Category engagement", "in Semantic, higher levels are engaged earlier "
     "(Fig. 4k)", (("category-semantic", "higher_levels_earlier"),)),
    ("Category engagement", "through output-neuron gains (neuron basis, G1 = 0) the "
     "categories are engaged in a similar order: easier digits first, higher "
     "levels of the hierarchy first (Fig. 18c,d)",
     (("category-gains", "easier_first"), ("category-gains", "papers_order"),
      ("category-gains-semantic", "higher_levels_earlier"))),
    ("Category engagement", "class proportions read from the engagement, used as "
     "batch composition for SGD, beat uniform batches (Fig. 4l,m)",
     (("category-digits", "curriculum_beats_uniform"),)),
    ("Learning rate", "more control for a larger γ (Figs. 3c, 8a-d)",
     (("learning-rate-sweep", "more_control_for_larger_gamma"),)),
    ("Learning rate", "more control for a cheaper control, smaller β "
     "(Figs. 3d, 8e-h)", (("learning-rate-sweep", "less_control_for_larger_beta"),)),
    ("Learning rate", "with costly control only the first levels of the hierarchy "
     "are worth learning (Fig. 3d)",
     (("learning-rate-sweep-costly", "first_levels_only"),)),
    ("MAML", "one-step MAML under-performs multi-step MAML (Figs. 3a, 7a)",
     (("maml", "one_step_worse"),)),
    ("MAML", "beyond ~180 steps the one-step-ahead loss rises while the cumulative "
     "loss keeps falling (Figs. 3a, 6)", (("maml", "one_step_ahead_rises"),)),
    ("Non-linear network", "the linearised (Taylor) dynamics follow the real tanh "
     "network trained by SGD early in training, where the control acts "
     "(Fig. 19c,d,g,h)", (("nonlinear", "taylor_tracks_sgd_early"),)),
    ("Non-linear network", "the control found on the linearised dynamics helps "
     "the real tanh network trained by SGD (Fig. 19a,b)",
     (("nonlinear", "control_helps_real_network"),)),
    ("Task switch", "the controlled loss is below the baseline's almost everywhere "
     "(Fig. 5e)", (("task-switch", "loss_below_baseline"),)),
    ("Task switch", "control starts acting before each switch (Fig. 5f)",
     (("task-switch", "control_anticipates_switches"),)),
    ("Task switch", "switches become less costly over time: the loss peak and the "
     "control cost at each switch fall (Figs. 5e,f, 15)",
     (("task-switch", "switch_loss_falls"), ("task-switch", "switch_cost_falls"))),
    ("Task switch", "the controlled weights grow larger and split into a few large "
     "ones and the rest near zero (Figs. 5g, 15c, 16)",
     (("task-switch", "weights_larger"), ("task-switch", "weights_two_clusters"))),
)  # fmt: skip
"""The paper's qualitative findings (Carrasco-Davis, Masís & Saxe, with the
figure that shows each), each with the `(run, verdict)` pairs of
`summary.json` that check it (a run: an experiment or a `VARIANTS` name);
`()`: no check in the library yet."""

_LABELS = {"holds": "reproduced", "fails": "NOT reproduced"}


def _label(status: str) -> str:
    """A verdict's status in the report's words."""
    return _LABELS.get(status, status)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# ------------------------------------------------------------------- running


@dataclasses.dataclass(frozen=True)
class Job:
    """One run of `reproduce`: `name` (its folder), the registered
    `experiment` it runs and the `--set` assignments it adds (a variant)."""

    name: str
    experiment: str
    settings: tuple[str, ...] = ()


def jobs(only: Sequence[str] | None = None, *, quick: bool = False) -> list[Job]:
    """Every experiment of the paper (`experiments.paper()`) and every variant, cheapest first; or the
    ones named in `only` (raise `ConfigError` for an unknown name). Full-size
    runs (not `quick`) get the iteration `BUDGETS`."""
    registered = experiments.paper()
    budget = {} if quick else BUDGETS
    everything = [Job(n, n, budget.get(n, ())) for n in registered]
    everything += [Job(n, e, s) for n, (e, s) in VARIANTS.items() if e in registered]
    rank = {n: i for i, n in enumerate(_ORDER)}
    everything.sort(key=lambda j: rank.get(j.name, len(rank)))
    if only is None:
        return everything
    by_name = {j.name: j for j in everything}
    for name in only:
        if name not in by_name:
            close = difflib.get_close_matches(name, list(by_name), n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ConfigError(
                f"unknown experiment {name!r}.{hint} `lecontrol reproduce` runs "
                f"{', '.join(by_name)}."
            )
    return [by_name[n] for n in dict.fromkeys(only)]


def run_folder(runs_dir: Path, name: str, quick: bool) -> Path:
    """`runs_dir/NAME` (full size) or `runs_dir/NAME-quick`."""
    return Path(runs_dir) / (f"{name}-quick" if quick else name)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _error_message(log: Path, returncode: int | None) -> str:
    """The command line's error lines from `log` (`lecontrol: ...`), else the
    log's last lines (a traceback), else the exit status."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    own = [ln for ln in lines if ln.startswith("lecontrol: ")]
    tail = own or [ln for ln in lines if ln.strip()][-5:]
    return "\n".join(tail) or f"exit status {returncode}, no output"


def run_job(
    job: Job,
    runs_dir: Path,
    *,
    quick: bool,
    timeout: float | None = None,
    echo: Callable[[str], object] = print,
    parallel: int = 1,
) -> dict[str, Any]:
    """Run `job` as `lecontrol run` in a new process, into its run folder.

    The folder's earlier `summary.json` and `reproduce.json` are removed first,
    so that a folder with both holds this run's results. The process's output
    goes to `run.log` in the folder.

    **Arguments:**

    - `quick`: the quick variant (`--quick`), into `NAME-quick`.
    - `timeout`: seconds after which the run is stopped (SIGTERM, then SIGKILL
      a minute later); None: no limit.
    - `echo`: receives a line when the run starts and when it ends.
    - `parallel`: how many runs share the machine with this one, itself
      included (recorded; with more than one, the run does not preallocate
      GPU memory, which the others need too).

    **Returns:** the record written to `reproduce.json`: the `command`, its
    `exit_status`, the `outcome` (`completed`, `stopped early`: a summary with
    an unsuccessful status, `stopped at the time budget` or `failed`), the
    `error` message (None if it completed), `started_utc` and `wall_time_s`.
    """
    folder = run_folder(runs_dir, job.name, quick)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("summary.json", "reproduce.json"):
        (folder / stale).unlink(missing_ok=True)
    args = [job.experiment, "--out", str(folder), "--overwrite", "--no-progress"]
    args += ["--set", *job.settings] if job.settings else []
    args += ["--quick"] if quick else []
    devices = devices_for(job, quick)
    args += ["--devices", str(devices)] if devices > 1 else []
    record: dict[str, Any] = {
        "name": job.name,
        "experiment": job.experiment,
        "settings": list(job.settings),
        "quick": quick,
        "command": "lecontrol run " + " ".join(args),
        "started_utc": _now().isoformat(timespec="seconds"),
        "parallel": parallel,
    }
    # The child imports this very lecontrol, wherever it was imported from.
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    if parallel > 1:
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    cmd = [sys.executable, "-m", "lecontrol.cli", "run", *args]
    echo(f"[{_now():%H:%M:%S}] {record['command']}")
    stopped = False
    start = time.perf_counter()
    with (folder / "run.log").open("w", encoding="utf-8") as log:
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        except OSError as e:
            proc = None
            log.write(f"lecontrol: cannot start {cmd}: {e}\n")
        try:
            while proc is not None and proc.poll() is None:
                if timeout is not None and time.perf_counter() - start > timeout:
                    stopped = True
                    _stop(proc)
                    break
                time.sleep(0.5)
        except KeyboardInterrupt:
            if proc is not None:
                _stop(proc)
            raise
    returncode = None if proc is None else proc.returncode
    record["wall_time_s"] = time.perf_counter() - start
    record["finished_utc"] = _now().isoformat(timespec="seconds")
    record["exit_status"] = returncode
    has_summary = (folder / "summary.json").is_file()
    if stopped:
        record["outcome"] = "stopped at the time budget"
    elif returncode == 0 and has_summary:
        record["outcome"] = "completed"
    elif returncode == 1 and has_summary:
        record["outcome"] = "stopped early"
    else:
        record["outcome"] = "failed"
    record["error"] = None
    if stopped:
        record["error"] = f"stopped after the time budget of {timeout:g} s"
    elif record["outcome"] != "completed":
        record["error"] = _error_message(folder / "run.log", returncode)
    _write_json(folder / "reproduce.json", record)
    echo(
        f"[{_now():%H:%M:%S}] {job.name}{' (quick)' if quick else ''}: "
        f"{record['outcome']} (exit status {returncode}) in "
        f"{record['wall_time_s']:.1f} s"
        + (f"\n    {record['error'].splitlines()[-1]}" if record["error"] else "")
    )
    return record


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (the command line unwinds, keeping its checkpoints), then
    SIGKILL if it has not ended a minute later."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def default_parallel() -> int:
    """Runs at a time by default: one per CPU core, at most `MAX_PARALLEL`.
    Each run's ODE solves keep about one core busy (XLA runs these small,
    sequential programs on one thread), so a 2-core machine does two at once
    in about half the time."""
    return max(1, min(os.cpu_count() or 1, MAX_PARALLEL))


MAX_PARALLEL = 4
"""The most runs `default_parallel` starts at a time (memory: each run holds
its own data, compiled programs and trajectories)."""

ALL_RECORD = "reproduce-all.json"
"""The records of the `run_all` calls into a runs folder, oldest first
(`{"invocations": [...]}`): each one's runs, how many ran at a time, and its
wall time end to end."""


EXPECTED_S: dict[str, float] = {
    "maml": 1728.0,
    "category-digits": 320.0,
    "category-semantic": 155.0,
    "engagement-vector": 138.0,
    "engagement-active": 102.0,
    "engagement-attentive": 92.0,
    "knot-convergence-gains": 75.0,
    "knot-convergence": 64.0,
    "task-switch": 58.0,
    "learning-rate-sweep": 53.0,
}
"""Seconds of the longest full-size runs, two at a time on the 2-core machine
(the reproduction of 2026-12-04, 10:29 UTC; `maml` on 2 devices, `DEVICES`).
Only for the order of the runs: with `--jobs` above 1 the longest start first, by the wall times recorded in
the runs folder and, for a run with none there, by these."""


DEVICES: dict[str, int] = {"maml": 2}
"""CPU devices (`lecontrol run --devices`) of the full-size runs that shard a
batch across them, at most `os.cpu_count()`. MAML optimises 18 horizons, one
after another on each device: 150 Adam iterations of them took 61 s on one
device, 39 s on two alone (`benchmarks/sweep_devices.py`) and 57 s on two
beside another run (2026-12-04, the 2-core machine), so with two devices the
longest run no longer sets the reproduction's wall time alone."""


def devices_for(job: Job, quick: bool) -> int:
    """The CPU devices `job` runs on: `DEVICES` for a full-size run (at most
    the machine's cores), else 1."""
    wanted = 1 if quick else DEVICES.get(job.name, 1)
    return max(1, min(wanted, os.cpu_count() or 1))


def _last_wall_time(runs_dir: Path, job: Job, quick: bool) -> float:
    """The wall time of `job`'s last run in `runs_dir`; with none recorded,
    `EXPECTED_S` for a full-size run, else 0."""
    try:
        record = _read_json(run_folder(runs_dir, job.name, quick) / "reproduce.json")
        return float(record["wall_time_s"])
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return 0.0 if quick else EXPECTED_S.get(job.name, 0.0)


def run_all(
    selected: Sequence[Job],
    runs_dir: Path,
    *,
    quick: bool,
    timeout: float | None = None,
    echo: Callable[[str], object] = print,
    parallel: int = 1,
) -> list[dict[str, Any]]:
    """`run_job` for each job (a failure does not stop the others), `parallel`
    at a time: in the order of `selected` one at a time, longest first (by the
    wall times recorded in `runs_dir`, else `EXPECTED_S`) with `parallel` > 1;
    prints each run's wall time and the total at the end, and writes
    `ALL_RECORD` into `runs_dir`.

    Runs that share the machine take longer each than alone: with
    `parallel` > 1 a run's wall time includes its share of the contention, and
    only the total end to end measures the reproduction.

    **Returns:** the records of the runs, in the order of `selected`.
    """
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise ValueError(f"`parallel` must be an integer >= 1; got {parallel!r}.")
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    started = _now()
    if parallel > 1:  # one line at a time from the runs' threads
        import threading

        lock, say = threading.Lock(), echo

        def echo(line: str) -> None:
            with lock:
                say(line)

    start = time.perf_counter()

    def one(job):
        return run_job(
            job, runs_dir, quick=quick, timeout=timeout, echo=echo, parallel=parallel
        )

    if parallel == 1:
        records = [one(job) for job in selected]
    else:
        from concurrent.futures import ThreadPoolExecutor

        # Longest first (by each run's last wall time in this folder, or
        # EXPECTED_S), so that no long run starts last and runs alone.
        order = sorted(
            range(len(selected)),
            key=lambda i: -_last_wall_time(runs_dir, selected[i], quick),
        )
        # Threads only wait on the runs' processes; each run is its own process.
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            done = dict(zip(order, pool.map(one, [selected[i] for i in order])))
        records = [done[i] for i in range(len(selected))]
    total = time.perf_counter() - start
    try:
        history = _read_json(runs_dir / ALL_RECORD).get("invocations", [])
    except (OSError, ValueError, AttributeError):
        history = []
    history.append(
        {
            "runs": [r["name"] for r in records],
            "quick": quick,
            "parallel": parallel,
            "cpu_count": os.cpu_count(),
            "started_utc": started.isoformat(timespec="seconds"),
            "finished_utc": _now().isoformat(timespec="seconds"),
            "wall_time_s": total,
            "sum_of_run_wall_times_s": sum(r["wall_time_s"] for r in records),
        }
    )
    _write_json(runs_dir / ALL_RECORD, {"invocations": history})
    width = max((len(r["name"]) for r in records), default=0)
    echo("")
    for r in records:
        echo(f"{r['name']:<{width}}  {r['wall_time_s']:8.1f} s  {r['outcome']}")
    failed = sum(r["outcome"] != "completed" for r in records)
    echo(
        f"{'total':<{width}}  {total:8.1f} s  ({len(records)} "
        f"run{'s' * (len(records) != 1)}, "
        f"{parallel} at a time, {failed} not completed)"
    )
    return records


# ------------------------------------------------------------------- run data


@dataclasses.dataclass(frozen=True)
class Run:
    """A finished run folder as the report reads it: `summary.json`,
    `config.json` and `reproduce.json` (`record`; empty for a folder that
    `lecontrol reproduce` did not write)."""

    name: str
    folder: Path
    quick: bool
    summary: dict
    config: dict
    record: dict

    @property
    def kind(self) -> str:
        return "quick" if self.quick else "full size"


def load_run(runs_dir: Path, name: str) -> tuple[Run | None, list[dict]]:
    """The run the report uses for `name`: the full-size one if it finished
    (has a `summary.json`; a run stopped at the time budget does not count),
    else the quick one; and the records of every attempt found."""
    chosen, attempts = None, []
    for quick in (False, True):
        folder = run_folder(runs_dir, name, quick)
        record = _read_json(folder / "reproduce.json")
        if record:
            attempts.append(record)
        summary = _read_json(folder / "summary.json")
        budget = record.get("outcome") == "stopped at the time budget"
        if chosen is None and summary and not budget:
            config = _read_json(folder / "config.json")
            chosen = Run(name, folder, quick, summary, config, record)
    return chosen, attempts


# ------------------------------------------------------------------- report


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _cell(text: Any) -> str:
    """`text` fit for a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _optimiser(summary: dict, optimised: bool) -> str:
    if not optimised:
        return "–"
    return f"`{_cell(summary.get('optimiser', 'not recorded'))}`"


def tolerance(summary: dict) -> tuple[str, bool]:
    """The projected-gradient norm against `gtol`, in words, and whether it is
    above the tolerance (the optimum is not converged to it)."""
    pg, gtol = summary.get("projected_grad_norm"), summary.get("gtol")
    if pg is None:
        return "not reported", False
    if gtol is None:
        note = summary.get("tolerance_note", "no tolerance set")
        return f"{_fmt(pg, 2)} ({_cell(note)})", False
    if pg > gtol:
        return f"**{_fmt(pg, 2)} > gtol {_fmt(gtol, 2)}: above tolerance**", True
    return f"{_fmt(pg, 2)} ≤ gtol {_fmt(gtol, 2)}", False


def _wall_times(run: Run) -> dict[str, float | None]:
    """Seconds of the run's process, its start-up (imports, configuration,
    data), the optimisation (compilation included), the figures and the rest
    (trajectories, evaluations, findings)."""
    s = run.summary
    total, execute = run.record.get("wall_time_s"), s.get("total_wall_time_s")
    opt, figs = s.get("wall_time_s"), s.get("figures_wall_time_s")
    start_up = None if total is None or execute is None else total - execute
    rest = None
    if execute is not None and opt is not None:
        rest = execute - opt - (figs or 0.0)
    return {
        "total": total,
        "start-up": start_up,
        "optimisation": opt,
        "figures": figs,
        "rest": rest,
    }


def _when(stamp: str | None) -> str:
    """An ISO time stamp in UTC as `YYYY-MM-DD HH:MM:SS`."""
    return "?" if not stamp else stamp.replace("T", " ").removesuffix("+00:00")


def _end_to_end(runs_dir: Path, runs: Sequence[str]) -> list[str]:
    """The report's lines on the `run_all` calls that ran the reported `runs`
    (`ALL_RECORD`): each one's wall time end to end and how many runs shared
    the machine."""
    try:
        history = _read_json(runs_dir / ALL_RECORD).get("invocations", [])
    except (OSError, ValueError, AttributeError):
        return []
    last: dict[str, int] = {}  # the call that last ran each run
    for i, rec in enumerate(history):
        for name in rec.get("runs", []):
            last[name] = i
    used = sorted({last[name] for name in runs if name in last})
    if not used:
        return []
    lines = ["**End to end** (`lecontrol reproduce` calls that ran these runs):", ""]
    shared = False
    for i in used:
        rec = history[i]
        names = [n for n in rec.get("runs", []) if last.get(n) == i and n in runs]
        parallel = rec.get("parallel", 1)
        shared |= parallel > 1
        n = len(rec["runs"])
        what = f"{n} run{'s' * (n != 1)}"
        if len(names) < n:
            what += ", of which this report uses " + ", ".join(names)
        lines.append(
            f"- {_when(rec.get('started_utc'))} to {_when(rec.get('finished_utc'))} "
            f"UTC: {what}, in **{rec['wall_time_s']:.0f} s** "
            f"({rec['wall_time_s'] / 60:.1f} min), {parallel} at a time on "
            f"{rec.get('cpu_count', '?')} CPU cores."
        )
    if shared:
        lines += [
            "",
            "Runs that share the cores take longer each than alone, so the "
            "seconds per run below include their share of the contention, and "
            "their sum exceeds the time end to end.",
        ]
    return lines + [""]


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} CPU "
        f"cores visible, Python {platform.python_version()}"
    )


def _software(runs: dict[str, Run]) -> list[str]:
    """The package versions each run's `config.json` records, one line per
    set of versions (with the runs that used it)."""
    groups: dict[str, list[str]] = {}
    for name, run in runs.items():
        versions = run.config.get("versions") or {}
        text = ", ".join(f"{k} {v}" for k, v in versions.items()) or "not recorded"
        groups.setdefault(text, []).append(name)
    if len(groups) == 1:
        return [f"- **Software:** {next(iter(groups))}"]
    return [
        f"- **Software** ({', '.join(names)}): {text}" for text, names in groups.items()
    ]


def _copy_figures(run: Run, fig_dir: Path, report: Path) -> list[str]:
    drawn = run.summary.get("figures", [])
    wanted = FIGURES.get(run.name) or tuple(drawn[:2])
    links = []
    for name in wanted:
        src = run.folder / name
        if name not in drawn or not src.is_file():
            continue
        fig_dir.mkdir(parents=True, exist_ok=True)
        dst = fig_dir / f"{run.name}{'-quick' if run.quick else ''}-{name}"
        shutil.copyfile(src, dst)
        links.append(os.path.relpath(dst, report.parent).replace(os.sep, "/"))
    return links


def _verdict_lines(run: Run, name: str, v: dict) -> list[str]:
    """One verdict of `summary.json`, as a list item with its evidence."""
    label = f"**{_label(v.get('status', '?'))}**"
    if run.quick:
        label += " (smoke test: quick run, not evidence)"
    negatives = ", ".join(
        f"{k}: effect {_fmt(n.get('effect'))}"
        + (" (**holds**)" if n.get("holds") else " (fails, as it must)")
        for k, n in v.get("negative_controls", {}).items()
    )
    return [
        f"- `{name}` — {label}: {v.get('claim', '')}",
        f"    - criterion: {v.get('criterion', '–')}; effect "
        f"{_fmt(v.get('effect'))} vs margin {_fmt(v.get('margin'))}",
        f"    - evidence: {v.get('evidence', '–')}",
        f"    - negative controls: {negatives or 'none'}",
    ]


def _budgets() -> str:
    """The report's words on `BUDGETS` (nothing when there are none)."""
    if not BUDGETS:
        return ""
    runs = ", ".join(f"`{n}` (`{' '.join(v)}`)" for n, v in BUDGETS.items())
    return (
        f"; except the iteration budgets of {runs}, whose defaults take far "
        "longer than the whole reproduction's budget on two cores: they end "
        "above their tolerance"
    )


def write_report(
    selected: Sequence[Job],
    runs_dir: Path,
    report: Path,
    *,
    command: str = "lecontrol reproduce --reuse",
) -> Path:
    """Write the reproduction report for the `selected` jobs from their run
    folders in `runs_dir`, and copy their figures into
    `report.parent/figures/reproduction/` (its old `.png` files removed).

    **Arguments:**

    - `command`: the command that rebuilds this report, named in its header.

    **Returns:** the path of the report.
    """
    report, runs_dir = Path(report), Path(runs_dir)
    report.parent.mkdir(parents=True, exist_ok=True)
    fig_dir = report.parent / "figures" / "reproduction"
    for old in fig_dir.glob("*.png") if fig_dir.is_dir() else ():
        old.unlink()
    loaded = {job.name: load_run(runs_dir, job.name) for job in selected}
    runs = {name: run for name, (run, _) in loaded.items() if run is not None}
    from . import __version__

    L = [
        "# Reproduction report",
        "",
        '!!! note "Generated file"',
        "    Written by `lecontrol reproduce` — do not edit by hand. Rebuild it "
        f"from the run folders with `{command}`; run every experiment again (full "
        "size) with `lecontrol reproduce`, or the quick variants with "
        "`lecontrol reproduce --quick`.",
        "",
        f"- **Generated:** {_now():%Y-%m-%d %H:%M} UTC, lecontrol {__version__}",
        f"- **Machine:** {_machine()}",
        *_software(runs),
        f"- **Run folders:** `{runs_dir}` (`NAME`: full size, `NAME-quick`: the "
        "quick variant)",
        "",
        "Each run is `lecontrol run NAME` with the experiment's default "
        "configuration (the paper's parameters; *full size*"
        + _budgets()
        + ") or its `--quick` variant (fewer iterations, shorter horizons, smaller networks, and "
        "scikit-learn's 8×8 digits as an offline stand-in for MNIST). Each "
        "finding is checked by `lecontrol.runner.execute` when its run ends, "
        "against a margin and against negative controls (docs/experiments.md); "
        "this report copies those verdicts from `summary.json`. **A verdict from "
        "a quick run is a smoke test, not evidence of the paper's finding.**",
        "",
        "## Runs",
        "",
        "| experiment | run | status | data set | optimiser | projected gradient "
        "| V baseline | V control |",
        "|---|---|---|---|---|---|---|---|",
    ]
    above, untoleranced, problems = [], [], []
    for job in selected:
        run, attempts = loaded[job.name]
        label = f"`{job.name}`"
        if job.settings:
            label += f" (`{job.experiment} --set {' '.join(job.settings)}`)"
        for a in attempts:
            if a.get("outcome") != "completed":
                kind = "quick" if a.get("quick") else "full-size"
                problems.append(
                    f"- `{job.name}` ({kind}): {a.get('outcome')}, exit status "
                    f"{a.get('exit_status')} after {_fmt(a.get('wall_time_s'))} s "
                    f"(`{a.get('command')}`): {_cell(a.get('error'))}"
                )
        if run is None:
            why = "failed" if attempts else "not run"
            L.append(f"| {label} | none | {why} | – | – | – | – | – |")
            continue
        s = run.summary
        pg, flagged = tolerance(s)
        optimised = s.get("V_control") is not None  # None: nothing to optimise
        if flagged:
            above.append(job.name)
        if s.get("gtol") is None and optimised:
            untoleranced.append(job.name)
        if not optimised:
            pg = "– (nothing optimised)"
        L.append(
            f"| {label} | {'**quick**' if run.quick else 'full size'} | "
            f"{s.get('status')} ({s.get('iterations')} it.) | "
            f"{_cell(s.get('dataset', 'not recorded'))} | "
            f"{_optimiser(s, optimised)} | {pg} | "
            f"{_fmt(s.get('V_baseline'), 6)} | {_fmt(s.get('V_control'), 6)} |"
        )
    L += [""]
    if above:
        L += [
            f"**Not converged to their tolerance:** {', '.join(above)} (projected-"
            "gradient norm above `gtol`): their optima, and the verdicts drawn "
            "from them, are not those of a converged run.",
            "",
        ]
    if untoleranced:
        L += [
            f"**Run to no tolerance:** {', '.join(untoleranced)} (no `gtol` in "
            "`summary.json`: a fixed number of iterations, with no check that the "
            "optimum was reached; where the run says why, its `tolerance_note` "
            "stands in the table above).",
            "",
        ]
    if problems:
        L += ["Runs that did not complete:", "", *problems, ""]

    L += [
        "### Wall time",
        "",
        *_end_to_end(runs_dir, [job.name for job in selected]),
        "Seconds per run on the machine above: the whole `lecontrol run` process, "
        "its start-up (imports, configuration, data), the optimisation "
        "(compilation included), the figures, and the rest (trajectories, "
        "evaluations, findings).",
        "",
        "| experiment | run | total | start-up | optimisation | figures | rest |",
        "|---|---|---|---|---|---|---|",
    ]
    total = 0.0
    for name, run in runs.items():
        t = _wall_times(run)
        total += t["total"] or 0.0
        L.append(
            f"| `{name}` | {run.kind} | " + " | ".join(_fmt(t[k], 3) for k in t) + " |"
        )
    L += [f"| **sum** | | **{_fmt(total, 4)}** | | | | |", ""]

    counts: dict[tuple[str, bool], int] = {}
    for run in runs.values():
        for v in run.summary.get("verdicts", {}).values():
            key = (_label(v.get("status", "?")), run.quick)
            counts[key] = counts.get(key, 0) + 1
    L += ["## Findings", ""]
    for quick, what in ((False, "full-size runs"), (True, "quick runs (smoke tests)")):
        n = {k[0]: c for k, c in counts.items() if k[1] == quick}
        if n:
            L.append(
                f"- From {what}: "
                + ", ".join(f"{c} {label}" for label, c in sorted(n.items()))
                + "."
            )
    L += [""]
    for name, run in runs.items():
        verdicts = run.summary.get("verdicts", {})
        if not verdicts:
            continue
        L += [f"### `{name}` ({run.kind} run)", ""]
        for key, v in verdicts.items():
            L += _verdict_lines(run, key, v)
        L += [""]

    L += [
        "## Paper findings not yet checked",
        "",
        "The qualitative findings of the paper, the verdicts that check them, and "
        "what those verdicts are in the runs above (*not checked yet*: no verdict "
        "in any run).",
        "",
        "| area | finding | verdicts |",
        "|---|---|---|",
    ]
    unchecked = 0
    for area, finding, checks in PAPER_FINDINGS:
        found = []
        for exp, key in checks:
            v = runs[exp].summary.get("verdicts", {}).get(key) if exp in runs else None
            if v is not None:
                kind = " (smoke test)" if runs[exp].quick else ""
                found.append(f"`{exp}` `{key}`: {_label(v.get('status'))}{kind}")
        unchecked += not found
        L.append(f"| {area} | {finding} | {'; '.join(found) or 'not checked yet'} |")
    L += [
        "",
        f"{unchecked} of {len(PAPER_FINDINGS)} findings are not checked yet.",
        "",
        "## Figures",
        "",
    ]
    for name, run in runs.items():
        links = _copy_figures(run, fig_dir, report)
        if links:
            L += [f"### `{name}` ({run.kind} run)", ""]
            L += [f'![{name}: {Path(p).stem}]({p}){{ width="48%" }}' for p in links]
            L += [""]
    report.write_text("\n".join(L).rstrip() + "\n", encoding="utf-8")
    return report
