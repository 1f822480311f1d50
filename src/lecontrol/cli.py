"""The `lecontrol` command: list, show, run and plot the paper's experiments,
and reproduce them all.

    lecontrol list
    lecontrol show NAME [--quick]
    lecontrol run NAME [--quick] [--out DIR] [--set SECTION.KEY=VALUE ...]
                  [--config FILE.toml] [--seed N] [--overwrite] [--no-progress]
    lecontrol run NAME --resume DIR
    lecontrol plot DIR
    lecontrol reproduce [--quick] [--only NAME ...] [--runs DIR] [--report FILE.md]
                        [--reuse] [--timeout SECONDS] [--no-report]

Long runs save checkpoints with `--set checkpoint_every=K`; `--resume DIR`
continues an interrupted run from them (with the configuration saved in
`DIR/config.json`) and ends with the same results as an uninterrupted run.

Exit status: 0 on success (status `completed` or `converged`); 1 if the run
failed (solver failure), stopped early (non-finite value or gradient, solver
failure: the status in `summary.json` is the `lc.RESULTS` name) or figures
cannot be drawn;
2 for a usage or configuration error (the message names the key or argument to
fix, or the missing or damaged file of the folder given); 130 or 143 if interrupted (Ctrl-C or SIGTERM).
`reproduce` exits with 0 if every run completed, 1 if any did not (each is
recorded in the report; the others still run), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# `summary.json` statuses (names of `lc.RESULTS`) of a run that did not fail.
SUCCESSFUL = ("completed", "converged", "stalled")


class UsageError(Exception):
    """A user error: printed without a traceback, exit status 2."""


class Terminated(BaseException):
    """SIGTERM arrived: unwind (removing temporary files), exit status 143."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lecontrol",
        description="Optimal control of learning systems: run the paper's experiments.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", help="list the experiments with one-line descriptions")

    show = sub.add_parser("show", help="print an experiment's configuration as TOML")
    show.add_argument(
        "name", metavar="NAME", help="experiment name (see `lecontrol list`)"
    )
    show.add_argument("--quick", action="store_true", help="the quick variant")

    run = sub.add_parser("run", help="run an experiment and write its results")
    run.add_argument(
        "name", metavar="NAME", help="experiment name (see `lecontrol list`)"
    )
    run.add_argument(
        "--quick", action="store_true", help="small variant that finishes in seconds"
    )
    run.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="output folder (default: runs/NAME-YYYYmmdd-HHMMSS)",
    )
    run.add_argument(
        "--set",
        dest="assignments",
        metavar="KEY=VALUE",
        nargs="+",
        action="extend",
        default=[],
        help="override config keys by their dotted names, e.g. --set objective.gamma=0.9 optimiser.iterations=100",
    )
    run.add_argument(
        "--config",
        metavar="FILE.toml",
        type=Path,
        help="TOML file of overrides, as `lecontrol show NAME` prints them ([section] tables; applied before --set)",
    )
    run.add_argument(
        "--seed", type=int, metavar="N", help="random seed (config key seed)"
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="allow an output folder that already has files in it",
    )
    run.add_argument(
        "--no-progress", action="store_true", help="do not show the progress bar"
    )
    run.add_argument(
        "--devices",
        type=int,
        metavar="N",
        help="split the CPU into N devices (JAX's jax_num_cpu_devices) across "
        "which sweeps shard their batch, e.g. maml's horizons (default: 1)",
    )
    run.add_argument(
        "--resume",
        metavar="DIR",
        type=Path,
        help="continue the interrupted run in DIR from its checkpoints (saved "
        "with --set checkpoint_every=K), with the configuration in DIR/config.json",
    )

    plot = sub.add_parser("plot", help="redraw the figures of a finished run")
    plot.add_argument("dir", metavar="DIR", type=Path, help="folder written by `run`")

    rep = sub.add_parser(
        "reproduce",
        help="run every experiment and write the reproduction report",
        description="Run every experiment (and variant), one process each, then "
        "write the report from the run folders' summaries.",
    )
    rep.add_argument("--quick", action="store_true", help="run the quick variants")
    rep.add_argument(
        "--only", nargs="+", metavar="NAME", help="only these experiments or variants"
    )
    rep.add_argument(
        "--runs",
        metavar="DIR",
        type=Path,
        default=Path("runs") / "reproduction",
        help="folder of the run folders (default: runs/reproduction)",
    )
    rep.add_argument(
        "--report",
        metavar="FILE.md",
        type=Path,
        default=Path("docs") / "reproduction.md",
        help="the report (default: docs/reproduction.md); figures are copied "
        "into figures/reproduction/ next to it",
    )
    rep.add_argument(
        "--reuse",
        action="store_true",
        help="run nothing; rebuild the report from the existing run folders",
    )
    rep.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="stop a run that takes longer than this (recorded as stopped at the "
        "time budget)",
    )
    rep.add_argument("--no-report", action="store_true", help="run only; no report")
    rep.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="runs at a time, each its own process (default: one per CPU core, "
        "at most 4)",
    )
    return p


# ------------------------------------------------------------------- commands


def _list() -> int:
    from . import experiments

    rows = [(n, experiments.get(n).description) for n in experiments.names()]
    width = max(len(n) for n, _ in rows)
    for name, description in rows:
        print(f"{name:<{width}}  {description}")
    return EXIT_OK


def _show(args) -> int:
    from . import experiments
    from .config import to_toml

    experiment = experiments.get(args.name)
    config = experiment.default_config(quick=args.quick)
    quick = " (quick)" if args.quick else ""
    header = f"{experiment.name}{quick}: {experiment.description}"
    print(to_toml(config, header), end="")
    return EXIT_OK


def _build_config(experiment, args):
    from .config import load_toml, parse_assignments

    config = experiment.default_config(quick=args.quick)
    if args.config is not None:
        config = config.replace(
            load_toml(args.config),
            source=f"config file {args.config}",
            parse_strings=False,
        )
    if args.assignments:
        config = config.replace(parse_assignments(args.assignments), source="--set")
    if args.seed is not None:
        config = config.replace({"seed": args.seed}, source="--seed")
    experiment.validate(config)
    return config


def _default_out(name: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path("runs") / f"{name}-{stamp}"
    n = 1
    while out.exists():  # two runs started within the same second
        n += 1
        out = Path("runs") / f"{name}-{stamp}-{n}"
    return out


def _runtime_message(err: Exception) -> str:
    """The message raised inside JIT, without equinox's debugging boilerplate."""
    from .optimize import runtime_error_message

    return runtime_error_message(err)


def _resumed_config(experiment, args, argv: Sequence[str], stack: contextlib.ExitStack):
    """The configuration saved in `--resume DIR`, after checking that the folder
    holds an unfinished run of this experiment with a checkpoint to resume
    from, and that any configuration options given agree with it. The folder's
    lock is entered on `stack` before anything is written."""
    from . import io
    from .checkpoint import CheckpointFolder

    folder: Path = args.resume
    where = f"--resume {folder}"
    if args.out is not None and Path(args.out).resolve() != folder.resolve():
        raise UsageError(
            f"{where}: --out {args.out} names another folder; a resumed run writes "
            "into the folder it resumes (leave out --out)."
        )
    if not folder.is_dir():
        raise UsageError(f"{where}: no such folder.")
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise UsageError(
            f"{where}: the folder has no config.json; pass a folder written by "
            "`lecontrol run`."
        )
    if (folder / "summary.json").exists():
        raise UsageError(
            f"{where}: that run has finished (it has a summary.json); there is "
            "nothing to resume."
        )
    try:
        meta = io.read_json(cfg_path)
    except (OSError, ValueError) as e:
        raise UsageError(f"{where}: cannot read {cfg_path}: {e}") from None
    if not isinstance(meta, dict) or "experiment" not in meta or "config" not in meta:
        raise UsageError(f"{where}: {cfg_path} is not a run configuration.")
    if meta["experiment"] != experiment.name:
        raise UsageError(
            f"{where}: that folder holds a run of {meta['experiment']!r}, not "
            f"{experiment.name!r}; resume it with `lecontrol run "
            f"{meta['experiment']} --resume {folder}`."
        )
    saved = experiment.read_config(meta["config"], source=str(cfg_path))
    if (
        args.quick
        or args.config is not None
        or args.assignments
        or args.seed is not None
    ):
        asked = _build_config(experiment, args).flat()
        old = saved.flat()
        diff = [
            f"{k} (saved {old[k]!r}, asked {asked[k]!r})"
            for k in old
            if old[k] != asked[k]
        ]
        if diff:
            raise UsageError(
                f"{where}: the configuration asked for differs from the saved one "
                f"in {', '.join(diff)}. Resume without --quick/--config/--set/--seed "
                "to use the saved configuration, or start a new run."
            )
    experiment.validate(saved)
    stack.enter_context(io.lock_out_dir(folder))
    if not CheckpointFolder(folder, 0).existing():
        raise UsageError(
            f"{where}: the folder holds no checkpoint ({CheckpointFolder.PATTERN}), "
            "so there is nothing to resume from: the run stopped before its first "
            "checkpoint, or ran without `--set checkpoint_every=K`. Start it again "
            f"with `lecontrol run {experiment.name} --out {folder} --overwrite` "
            "(with checkpoint_every > 0 to be able to resume)."
        )
    io.prepare_out_dir(folder, overwrite=True)  # still writable?
    io.remove_stale_temporaries(folder)
    meta["resumed"] = [
        *meta.get("resumed", []),
        {
            "command": ["lecontrol", *argv],
            "started": datetime.datetime.now()
            .astimezone()
            .isoformat(timespec="seconds"),
        },
    ]
    io.write_json(cfg_path, meta)
    return saved, folder


@contextlib.contextmanager
def _sigterm_unwinds():
    """Turn SIGTERM into `Terminated`, so that the run unwinds like Ctrl-C."""

    def handler(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args, argv: Sequence[str]) -> int:
    from . import experiments, io

    experiment = experiments.get(args.name)
    with contextlib.ExitStack() as stack:  # holds the output folder's lock
        if args.resume is not None:
            config, out = _resumed_config(experiment, args, argv, stack)
            print(f"{experiment.name}: resuming the run in {out}", file=sys.stderr)
        else:
            config = _build_config(experiment, args)
            out = io.prepare_out_dir(
                args.out if args.out is not None else _default_out(experiment.name),
                overwrite=args.overwrite,
            )
            stack.enter_context(io.lock_out_dir(out))
            print(f"{experiment.name}: writing results to {out}", file=sys.stderr)
        return _execute(experiment, config, out, args, argv)


def _execute(experiment, config, out: Path, args, argv: Sequence[str]) -> int:
    """Run the experiment into `out` (whose lock the caller holds)."""
    import equinox as eqx
    import jax

    from . import experiments
    from .checkpoint import CheckpointFolder

    metadata = {
        "quick": bool(args.quick),
        "config_file": str(args.config) if args.config is not None else None,
        "set": list(args.assignments),
        "command": ["lecontrol", *argv],
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }

    def log(message: str) -> None:
        print(f"{experiment.name}: {message}", file=sys.stderr)

    def resume_hint() -> None:
        if CheckpointFolder(out, 0).existing():
            print(
                f"lecontrol: its checkpoints are kept; continue with `lecontrol run "
                f"{experiment.name} --resume {out}`",
                file=sys.stderr,
            )

    try:
        with _sigterm_unwinds():
            summary = experiments.execute(
                experiment,
                config,
                out,
                progress=not args.no_progress,
                metadata=metadata,
                resume=args.resume is not None,
                log=log,
            )
    except (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError) as e:
        # solver failure, with its advice
        print(f"lecontrol: run failed: {_runtime_message(e)}", file=sys.stderr)
        print(f"(no summary.json was written to {out})", file=sys.stderr)
        resume_hint()  # e.g. a failure after the optimisation, in an evaluation
        return EXIT_FAILED
    except FloatingPointError as e:  # non-finite results: nothing written
        print(f"lecontrol: run failed: {e}", file=sys.stderr)
        resume_hint()
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("lecontrol: interrupted", file=sys.stderr)
        resume_hint()
        return 130
    except Terminated:
        print("lecontrol: terminated (SIGTERM)", file=sys.stderr)
        resume_hint()
        return 143
    values = (
        f"V_baseline = {summary['V_baseline']:.8g}   V_control = "
        f"{summary['V_control']:.8g}   "
        if summary["V_baseline"] is not None  # None: nothing was optimised
        else ""
    )
    print(
        f"{values}({summary['iterations']} iterations, "
        f"{summary['total_wall_time_s']:.1f} s, status {summary['status']})"
    )
    print(f"results in {out}")
    if summary["status"] not in SUCCESSFUL:
        print(f"lecontrol: run stopped early: {summary['message']}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _read_run_file(path: Path, read):
    """`read(path)`, with a damaged or truncated file reported as a `UsageError`
    that names it."""
    import zipfile
    import zlib

    try:
        return read(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise UsageError(
            f"{path} is damaged or truncated and cannot be read "
            f"({type(e).__name__}: {e}). Run the experiment again to recreate it."
        ) from None


def _plot(args) -> int:
    from . import experiments, io

    folder: Path = args.dir
    if not folder.is_dir():
        raise UsageError(
            f"{folder} is not a folder; pass a folder written by `lecontrol run`."
        )
    for name in ("config.json", "results.npz", "summary.json"):
        if not (folder / name).is_file():
            unfinished = (
                " (the run did not finish: a finished run writes summary.json last)"
                if name == "summary.json"
                else ""
            )
            raise UsageError(
                f"{folder} has no {name}{unfinished}; pass a folder written by "
                "`lecontrol run`."
            )
    meta = _read_run_file(folder / "config.json", io.read_json)
    if not isinstance(meta, dict) or "experiment" not in meta or "config" not in meta:
        raise UsageError(f"{folder / 'config.json'} is not a run configuration.")
    if not isinstance(_read_run_file(folder / "summary.json", io.read_json), dict):
        raise UsageError(f"{folder / 'summary.json'} is not a run summary.")
    experiment = experiments.get(meta["experiment"])
    config = experiment.read_config(meta["config"], source=str(folder / "config.json"))
    results = _read_run_file(folder / "results.npz", io.read_npz)
    try:
        paths = experiment.plot(results, config, folder)
    except (ValueError, KeyError) as e:
        print(f"lecontrol: cannot draw the figures of {folder}: {e}", file=sys.stderr)
        return EXIT_FAILED
    for path in paths:
        print(path)
    return EXIT_OK


def _reproduce(args) -> int:
    """Run the experiments (unless `--reuse`), then write the report (unless
    `--no-report`); see `lecontrol.reproduce`."""
    from . import reproduce

    if args.reuse and args.no_report:
        raise UsageError("--reuse with --no-report does nothing; leave one out.")
    if args.reuse and not args.runs.is_dir():
        raise UsageError(f"--reuse: --runs {args.runs} is not a folder of runs.")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError(f"--timeout must be > 0; got {args.timeout}.")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1; got {args.jobs}.")
    if args.reuse and args.jobs is not None:
        raise UsageError("--reuse runs nothing: --jobs does not apply.")
    parallel = reproduce.default_parallel() if args.jobs is None else args.jobs
    jobs = reproduce.jobs(args.only, quick=args.quick)
    records = []
    if not args.reuse:
        records = reproduce.run_all(
            jobs, args.runs, quick=args.quick, timeout=args.timeout, parallel=parallel
        )
    if not args.no_report:
        again = ["--reuse", "--runs", str(args.runs), "--report", str(args.report)]
        if args.only:
            again += ["--only", *(j.name for j in jobs)]
        command = "lecontrol reproduce " + " ".join(again)
        report = reproduce.write_report(jobs, args.runs, args.report, command=command)
        print(f"wrote {report}")
    failed = [r["name"] for r in records if r["outcome"] != "completed"]
    return EXIT_FAILED if failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lecontrol` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    # The command line's solves and gradients run in float64; the library
    # itself leaves this choice to its caller.
    import jax

    jax.config.update("jax_enable_x64", True)
    devices = getattr(args, "devices", None)
    if devices is not None:
        if devices < 1:
            print("lecontrol: error: --devices must be >= 1", file=sys.stderr)
            return EXIT_USAGE
        try:  # before anything is computed: later, JAX refuses
            jax.config.update("jax_num_cpu_devices", devices)
        except RuntimeError:  # JAX has started (lecontrol called in process)
            if jax.local_device_count("cpu") != devices:
                print(
                    "lecontrol: error: --devices must be set before JAX starts; "
                    f"it runs on {jax.local_device_count('cpu')} CPU device(s)",
                    file=sys.stderr,
                )
                return EXIT_USAGE
    from .checkpoint import CheckpointError
    from .io import OutputDirError
    from .runner import ConfigError

    try:
        if args.command == "list":
            return _list()
        if args.command == "show":
            return _show(args)
        if args.command == "run":
            return _run(args, argv)
        if args.command == "reproduce":
            return _reproduce(args)
        return _plot(args)
    except (UsageError, ConfigError, OutputDirError, CheckpointError) as e:
        print(f"lecontrol: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("lecontrol: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
