"""The `lecontrol` command: list, show, run and plot the paper's experiments.

    lecontrol list
    lecontrol show NAME [--quick]
    lecontrol run NAME [--quick] [--out DIR] [--set KEY=VALUE ...]
                  [--config FILE.toml] [--seed N] [--overwrite] [--no-progress]
    lecontrol plot DIR

Exit status: 0 on success; 1 if the run stopped early (non-finite value or
gradient; see `summary.json`) or figures cannot be drawn; 2 for a usage or
configuration error (the message names the key or argument to fix).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A user error: printed without a traceback, exit status 2."""


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
        help="override config keys, e.g. --set gamma=0.9 iterations=100",
    )
    run.add_argument(
        "--config",
        metavar="FILE.toml",
        type=Path,
        help="TOML file of `key = value` overrides (applied before --set)",
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

    plot = sub.add_parser("plot", help="redraw the figures of a finished run")
    plot.add_argument("dir", metavar="DIR", type=Path, help="folder written by `run`")
    return p


# ------------------------------------------------------------------- commands


def _list() -> int:
    from . import experiments

    rows = [(n, experiments.get(n).description) for n in experiments.names()]
    width = max(len(n) for n, _ in rows)
    for name, description in rows:
        print(f"{name:<{width}}  {description}")
    return EXIT_OK


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if v is None:
        return '"none"'
    return repr(v)


def _show(args) -> int:
    from . import experiments
    from .experiments.base import config_to_dict

    experiment = experiments.get(args.name)
    config = experiment.default_config(quick=args.quick)
    print(
        f"# {experiment.name}{' (quick)' if args.quick else ''}: {experiment.description}"
    )
    for key, value in config_to_dict(config).items():
        print(f"{key} = {_toml_value(value)}")
    return EXIT_OK


def _build_config(experiment, args):
    from .experiments.base import apply_overrides, load_toml, parse_assignments

    config = experiment.default_config(quick=args.quick)
    if args.config is not None:
        config = apply_overrides(
            config, load_toml(args.config), source=f"config file {args.config}"
        )
    if args.assignments:
        config = apply_overrides(
            config, parse_assignments(args.assignments), source="--set"
        )
    if args.seed is not None:
        config = apply_overrides(config, {"seed": args.seed}, source="--seed")
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
    marker = "EquinoxRuntimeError: "
    lines = [ln for ln in str(err).splitlines() if ln.startswith("equinox." + marker)]
    if lines:
        return lines[-1].split(marker, 1)[1]
    return str(err).strip().splitlines()[0]


def _run(args, argv: Sequence[str]) -> int:
    import equinox as eqx

    from . import experiments, io

    experiment = experiments.get(args.name)
    config = _build_config(experiment, args)
    out = io.prepare_out_dir(
        args.out if args.out is not None else _default_out(experiment.name),
        overwrite=args.overwrite,
    )
    print(f"{experiment.name}: writing results to {out}", file=sys.stderr)
    metadata = {
        "quick": bool(args.quick),
        "config_file": str(args.config) if args.config is not None else None,
        "set": list(args.assignments),
        "command": ["lecontrol", *argv],
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    try:
        summary = experiments.execute(
            experiment, config, out, progress=not args.no_progress, metadata=metadata
        )
    except eqx.EquinoxRuntimeError as e:  # solver failure, with its advice
        print(f"lecontrol: run failed: {_runtime_message(e)}", file=sys.stderr)
        print(f"(no summary.json was written to {out})", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"V_baseline = {summary['V_baseline']:.8g}   V_control = "
        f"{summary['V_control']:.8g}   ({summary['iterations']} iterations, "
        f"{summary['total_wall_time_s']:.1f} s, status {summary['status']})"
    )
    print(f"results in {out}")
    if summary["status"] != "completed":
        print(f"lecontrol: run stopped early: {summary['message']}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _plot(args) -> int:
    from . import experiments, io
    from .experiments.base import config_from_dict

    folder: Path = args.dir
    for name in ("config.json", "results.npz"):
        if not (folder / name).is_file():
            raise UsageError(
                f"{folder} has no {name}; pass a folder written by `lecontrol run`."
            )
    meta = io.read_json(folder / "config.json")
    if not isinstance(meta, dict) or "experiment" not in meta or "config" not in meta:
        raise UsageError(f"{folder / 'config.json'} is not a run configuration.")
    experiment = experiments.get(meta["experiment"])
    config = config_from_dict(
        experiment.config, meta["config"], source=str(folder / "config.json")
    )
    results = io.read_npz(folder / "results.npz")
    try:
        paths = experiment.plot(results, config, folder)
    except (ValueError, KeyError) as e:
        print(f"lecontrol: cannot draw the figures of {folder}: {e}", file=sys.stderr)
        return EXIT_FAILED
    for path in paths:
        print(path)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lecontrol` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    from .experiments.base import ConfigError
    from .io import OutputDirError

    try:
        if args.command == "list":
            return _list()
        if args.command == "show":
            return _show(args)
        if args.command == "run":
            return _run(args, argv)
        return _plot(args)
    except (UsageError, ConfigError, OutputDirError) as e:
        print(f"lecontrol: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("lecontrol: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
