"""Result files: atomic writes of JSON, NPZ and PNG, and run metadata.

Every writer puts the bytes in a temporary file in the destination folder and
then renames it over the target with `os.replace`, which is atomic on POSIX and
Windows: a reader (or a crash) sees either the old file or the complete new
one, never half a file. Nothing is pickled: JSON for metadata, `.npz` of plain
numeric arrays (loaded with `allow_pickle=False`) for results.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "OutputDirError",
    "LOCK_NAME",
    "atomic_file",
    "lock_out_dir",
    "package_versions",
    "prepare_out_dir",
    "read_json",
    "read_npz",
    "remove_stale_temporaries",
    "save_figure",
    "write_json",
    "write_npz",
]

VERSIONED_PACKAGES = (
    "lecontrol",
    "jax",
    "jaxlib",
    "diffrax",
    "equinox",
    "optax",
    "optimistix",
    "numpy",
    "matplotlib",
)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file


class OutputDirError(ValueError):
    """The output folder cannot be used (it holds a run already, or is not writable)."""


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to `path`; on success rename it onto `path`.

    If the body raises, the temporary file is removed and `path` is untouched.

    **Arguments:**

    - `path`: the destination file. Its folder must exist.
    - `mode`: `"wb"` (bytes) or `"w"` (UTF-8 text).

    **Returns:** a context manager yielding the open temporary file.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"`mode` must be 'wb' or 'w'; got {mode!r}.")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp creates files readable by the owner only
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files `atomic_file` left in `folder` when a process
    was killed mid-write (`.NAME.XXXX.tmp`); the targets themselves are whole.

    **Returns:** the paths removed.
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        if tmp.is_file():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


# ------------------------------------------------------------------------- JSON


def _jsonable(obj: Any, where: str) -> Any:
    """Plain JSON types; raise on non-finite floats and unknown objects."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray) or type(obj).__module__.startswith("jax"):
        arr = np.asarray(obj)
        return _jsonable(arr.item() if arr.ndim == 0 else arr.tolist(), where)
    if isinstance(obj, np.generic):
        return _jsonable(obj.item(), where)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(
                f"Refusing to write a non-finite number ({obj}) to JSON at `{where}`."
            )
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(
        f"Cannot write {type(obj).__name__} to JSON at `{where}`; convert it to "
        "numbers, strings, lists or dicts first."
    )


def write_json(path: str | os.PathLike, obj: Mapping[str, Any]) -> Path:
    """Write `obj` as indented JSON, atomically.

    Numpy and JAX scalars and arrays are converted to numbers and lists;
    non-finite floats are an error (strict JSON has no `NaN`).

    **Returns:** the path written.
    """
    path = Path(path)
    text = json.dumps(_jsonable(obj, "$"), indent=2, allow_nan=False) + "\n"
    with atomic_file(path, "w") as f:
        f.write(text)
    return path


def read_json(path: str | os.PathLike) -> Any:
    """Load a JSON file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# -------------------------------------------------------------------------- NPZ


def write_npz(path: str | os.PathLike, arrays: Mapping[str, Any]) -> Path:
    """Write numeric arrays to a compressed `.npz`, atomically.

    **Arguments:**

    - `path`: destination, conventionally ending in `.npz`.
    - `arrays`: name → array-like. Names must be non-empty and contain no `/`;
      values must convert to numeric or boolean numpy arrays (object arrays,
      which would need pickle, are refused).

    **Returns:** the path written.
    """
    path = Path(path)
    plain: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(
                f"Array names must be non-empty strings without '/'; got {name!r}."
            )
        arr = np.asarray(value)
        if arr.dtype.kind not in "biufc":
            raise TypeError(
                f"Array `{name}` has dtype {arr.dtype}; only numeric and boolean "
                "arrays are stored (no object arrays, no pickle)."
            )
        plain[name] = arr
    with atomic_file(path, "wb") as f:
        np.savez_compressed(f, **plain)  # pyright: ignore[reportArgumentType]
    return path


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load every array of an `.npz` file (with `allow_pickle=False`)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


# -------------------------------------------------------------------------- PNG


def save_figure(
    fig, path: str | os.PathLike, *, dpi: int = 120, letters: bool = True
) -> Path:
    """Save a matplotlib figure as PNG, atomically, and close it.

    **Arguments:**

    - `fig`: the figure.
    - `path`: the PNG file written.
    - `dpi`: its resolution.
    - `letters`: letter the panels of a multi-panel figure a, b, c, …
      (`lecontrol.plotting.letter_panels`); one-panel figures get none.

    **Returns:** the path written.
    """
    import matplotlib.pyplot as plt

    from . import plotting

    path = Path(path)
    try:
        if letters:
            plotting.letter_panels(fig)
        with atomic_file(path, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


# ------------------------------------------------------------------- metadata


def package_versions() -> dict[str, str | None]:
    """Versions of Python and the packages a result depends on (`None`: absent),
    and `lecontrol_commit`, the git commit of the lecontrol source when it runs
    from a git checkout (`+dirty` with uncommitted changes; omitted otherwise)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    commit = source_commit()
    if commit is not None:
        out["lecontrol_commit"] = commit
    return out


def source_commit() -> str | None:
    """The short git commit of the checkout this package is imported from
    (`+dirty` if its tracked files have changes), or None (no git, or not a
    checkout)."""
    here = Path(__file__).resolve().parent

    def git(*args) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(here), *args],
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", str(here))
    return commit + ("+dirty" if dirty else "")


def prepare_out_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Create the output folder of a run, refusing to mix two runs.

    **Arguments:**

    - `path`: the folder. Parents are created.
    - `overwrite`: allow a folder that already has files in it (files of the
      same names are replaced; others are left alone).

    **Returns:** the folder as a `Path`.

    **Raises:** `OutputDirError` if the folder is a file, is non-empty and
    `overwrite` is false, or is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"Output path {path} exists and is not a folder.")
    if (
        path.is_dir()
        and any(p.name != LOCK_NAME for p in path.iterdir())
        and not overwrite
    ):
        raise OutputDirError(
            f"Output folder {path} is not empty (it may hold an earlier run). "
            "Choose another --out, or pass --overwrite to replace its files."
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputDirError(
            f"Output folder {path} is not writable ({e.strerror}). Choose another --out."
        ) from None
    return path


# ------------------------------------------------------------------------ lock

LOCK_NAME = ".lecontrol.lock"


@contextlib.contextmanager
def lock_out_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on the output folder `path` while a run writes it.

    The lock is an OS-level `flock` on `path/.lecontrol.lock`: the operating
    system releases it when the process ends, however it ends, so a crashed run
    never leaves a stale lock (a left-over lock file is simply locked again).
    The file is removed when the block exits normally or by an exception.

    **Raises:** `OutputDirError` naming the folder if another process holds
    the lock (another `lecontrol run` is writing there).
    """
    path = Path(path)
    lock = path / LOCK_NAME
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield lock
        return
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, _FILE_MODE)
        except OSError as e:
            raise OutputDirError(
                f"Cannot create the lock file {lock} ({e.strerror}). Choose another "
                "--out."
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                pid = int(os.pread(fd, 32, 0).decode().strip() or "x")
                holder = f" (process {pid})"
            os.close(fd)
            raise OutputDirError(
                f"Output folder {path} is in use by another lecontrol run{holder}. "
                "Wait for it to finish, or choose another --out."
            ) from None
        # The holder before us may have removed the file after we opened it:
        # then we hold a lock on a deleted file; open the new one again.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield lock
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)  # while still holding the lock
        os.close(fd)
