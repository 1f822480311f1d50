r"""Checkpoints of an optimisation, so that an interrupted run loses no work.

A `Checkpointer` is handed to `lc.optimize(..., checkpoint=...)` or
`lc.sweep.optimize_batch(..., checkpoint=...)`. Every `every` iterations (and
after the last one) the loop saves where it stands: its whole carry — the
coefficients $\theta$ the next iteration starts from, the optimiser state,
$V$ and $\lVert\nabla_\theta V\rVert$ of every iteration so far, the best
$\theta$ with its value and iteration, the result code — with a leading axis
over the problems of a batch. With `resume=True`, the loop starts from the
saved checkpoint instead of `theta0`, and reaches bitwise the same result as
a run that was never interrupted (same machine, same compiled code: the
arithmetic is replayed exactly).

The file is a `.npz` of plain numeric arrays (no pickle), written atomically
(temporary file + rename) by `lecontrol.io.write_npz`, so a crash leaves either
the previous checkpoint or the new one. Pytrees are stored as their flattened
array leaves; their structure (and any non-array leaf, e.g. a jaxpr inside the
L-BFGS state) comes from a template, the abstract carry of the loop
(`eqx.filter_eval_shape`), and every leaf's shape and dtype is checked
against it.

A run of an experiment may optimise several times; `CheckpointFolder` numbers
the checkpointers it hands out (`checkpoint-0.npz`, `checkpoint-1.npz`, …) in
the order the optimisations run, which is deterministic. `lecontrol run`
passes the run's folder to the experiment (`Experiment.run(config, out_dir,
progress, checkpoints)`), which hands `checkpoints.next()` to each
optimisation (`lecontrol.experiments.common.compare(..., checkpoint=...)`,
`lc.sweep.optimize_batch(..., checkpoint=...)`).
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PyTree

__all__ = [
    "CheckpointError",
    "CheckpointFolder",
    "Checkpointer",
]

FORMAT_VERSION = 3  # 3: the carry records projected-gradient norms


class CheckpointError(ValueError):
    """A checkpoint cannot be read, or does not belong to this optimisation."""


def _text(s: str) -> np.ndarray:
    return np.frombuffer(s.encode("utf-8"), dtype=np.uint8)


def _untext(a: np.ndarray) -> str:
    return a.astype(np.uint8).tobytes().decode("utf-8")


def _array_leaves(tree) -> list:
    return [x for x in jax.tree.leaves(tree) if eqx.is_array(x)]


def _describe(x) -> str:
    return f"{np.dtype(x.dtype).name}{list(x.shape)}"


def _rebuild(prefix: str, template, data: dict[str, np.ndarray], path: Path):
    """Replace the array leaves of `template` (arrays or ShapeDtypeStructs) by
    `data[prefix_i]`, checking shapes and dtypes; non-array leaves are kept."""
    leaves, treedef = jax.tree.flatten(template)
    is_arr = [eqx.is_array(x) or isinstance(x, jax.ShapeDtypeStruct) for x in leaves]
    saved = sorted(
        (
            k
            for k in data
            if k.startswith(prefix + "_") and k[len(prefix) + 1 :].isdigit()
        ),
        key=lambda k: int(k[len(prefix) + 1 :]),
    )
    if len(saved) != sum(is_arr):
        raise CheckpointError(
            f"checkpoint {path} holds {len(saved)} arrays of `{prefix}`, but this "
            f"optimisation has {sum(is_arr)}: it was written by a different "
            "problem or optimiser. Delete it to start over."
        )
    out, j = [], 0
    for leaf, arr_like in zip(leaves, is_arr):
        if not arr_like:
            out.append(leaf)
            continue
        value = data[f"{prefix}_{j}"]
        j += 1
        if value.shape != tuple(leaf.shape) or value.dtype != np.dtype(leaf.dtype):
            raise CheckpointError(
                f"checkpoint {path}: array {j - 1} of `{prefix}` is "
                f"{_describe(value)}, but this optimisation needs {_describe(leaf)}. "
                "It was written by a different problem or optimiser; delete it to "
                "start over."
            )
        if getattr(leaf, "weak_type", False) and value.ndim == 0:
            # Keep JAX's weak typing (from Python scalars): it can decide dtype
            # promotion inside the optimiser step.
            out.append(jnp.asarray(value.item()))
        else:
            out.append(jnp.asarray(value))
    return jax.tree.unflatten(treedef, out)


class Checkpointer:
    """Saves and restores the progress of one optimisation in one `.npz` file.

    **Arguments:**

    - `path`: the checkpoint file (its folder must exist).
    - `every`: save after every `every`-th iteration, and after the last one
      (0: never save; restoring still works with `resume=True`).
    - `resume`: start from the file if it exists. Without it, an existing file
      is ignored and overwritten.
    - `log`: called with a one-line message when a checkpoint is restored.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        every: int,
        *,
        resume: bool = False,
        log: Callable[[str], object] | None = None,
    ):
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)):
            raise TypeError(f"`every` must be an int; got {every!r}.")
        if every < 0:
            raise ValueError(
                f"`every` (checkpoint interval) must be >= 0; got {every}."
            )
        self.path = Path(path)
        self.every = int(every)
        self.resume = bool(resume)
        self.log = log

    def __repr__(self) -> str:
        return (
            f"Checkpointer({str(self.path)!r}, every={self.every}, "
            f"resume={self.resume})"
        )

    def due(self, iteration: int, steps: int) -> bool:
        """Whether to save after `iteration` completed iterations of `steps`."""
        if self.every <= 0 or iteration <= 0:
            return False
        return iteration % self.every == 0 or iteration == steps

    def save(
        self, carry: PyTree, *, iteration: int, signature: str, steps: int
    ) -> Path:
        """Write the loop's `carry` after `iteration` iterations, atomically.

        `signature` identifies the optimiser (and batch); `steps` is the number
        of iterations asked for.
        """
        from . import io

        arrays: dict[str, Any] = {
            "format_version": np.asarray(FORMAT_VERSION),
            "signature": _text(signature),
            "steps": np.asarray(int(steps)),
            "iteration": np.asarray(int(iteration)),
        }
        for i, leaf in enumerate(_array_leaves(carry)):
            arrays[f"carry_{i}"] = np.asarray(leaf)
        return io.write_npz(self.path, arrays)

    def restore(
        self, template: Callable[[], PyTree], *, signature: str, steps: int
    ) -> tuple[int, PyTree] | None:
        """The saved `(iteration, carry)`, or `None` (nothing saved yet, or
        `resume=False`).

        **Arguments:**

        - `template`: builds a carry of the structure saved, with arrays or
          `jax.ShapeDtypeStruct`s as leaves (called only when there is a
          checkpoint to restore).
        - `signature`: must equal the one saved (same optimiser).
        - `steps`: iterations asked for; the checkpoint may not have more.

        **Raises:** `CheckpointError` if the file is unreadable or belongs to
        another optimisation.
        """
        if not self.resume or not self.path.is_file():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as f:
                data = {k: f[k] for k in f.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise CheckpointError(
                f"checkpoint {self.path} cannot be read ({e}); delete it to start over."
            ) from None
        need = ("format_version", "signature", "steps", "iteration")
        missing = [k for k in need if k not in data]
        if missing:
            raise CheckpointError(
                f"checkpoint {self.path} lacks {missing}; it was not written by "
                "lecontrol. Delete it to start over."
            )
        if int(data["format_version"]) != FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint {self.path} has format {int(data['format_version'])}; "
                f"this lecontrol writes format {FORMAT_VERSION}. Delete it to start "
                "over."
            )
        saved_signature = _untext(data["signature"])
        if saved_signature != signature:
            raise CheckpointError(
                f"checkpoint {self.path} was written by {saved_signature}; this "
                f"optimisation uses {signature}. Resume with the same optimiser, "
                "or delete the checkpoint to start over."
            )
        iteration = int(data["iteration"])
        if iteration > int(steps):
            raise CheckpointError(
                f"checkpoint {self.path} has {iteration} iterations, more than the "
                f"{steps} asked for (`steps`/`iterations`). Resume with the same "
                "number of iterations."
            )
        carry = _rebuild("carry", template(), data, self.path)
        if self.log is not None:
            self.log(f"resuming from {self.path.name} at iteration {iteration}")
        return iteration, carry


class CheckpointFolder:
    """Hands out one `Checkpointer` per optimisation of a run, numbered in order.

    **Arguments:**

    - `folder`: the run's output folder (files `checkpoint-N.npz`).
    - `every`, `resume`, `log`: passed to every `Checkpointer`.
    """

    PATTERN = "checkpoint-*.npz"

    def __init__(
        self,
        folder: str | os.PathLike,
        every: int,
        *,
        resume: bool = False,
        log: Callable[[str], object] | None = None,
    ):
        self.folder = Path(folder)
        self.every = int(every)
        self.resume = bool(resume)
        self.log = log
        self.handed_out = 0

    def next(self) -> Checkpointer:
        """The checkpointer of the next optimisation."""
        path = self.folder / f"checkpoint-{self.handed_out}.npz"
        self.handed_out += 1
        return Checkpointer(path, self.every, resume=self.resume, log=self.log)

    def existing(self) -> list[Path]:
        """Checkpoint files in the folder."""
        return sorted(self.folder.glob(self.PATTERN))

    def clear(self) -> None:
        """Remove the checkpoint files (the run they belong to has finished)."""
        for path in self.existing():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
