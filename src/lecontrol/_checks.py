"""Argument validation shared by every public constructor.

Checks run at trace time on concrete values. When a value is a tracer (inside
``jit`` or ``vmap``) the check is skipped: the value was already checked when
it was built outside the transformation, or it is the user's own traced input.
"""

from __future__ import annotations

import numpy as np


def concrete(x) -> np.ndarray | None:
    """Return ``x`` as a numpy array, or ``None`` when it is a tracer."""
    try:
        return np.asarray(x)
    except Exception:  # jax.errors.TracerArrayConversionError and friends
        return None


def _show(arr: np.ndarray) -> str:
    return repr(arr.item()) if arr.ndim == 0 else repr(arr)


def check_finite(name: str, x) -> None:
    arr = concrete(x)
    if arr is not None and not np.all(np.isfinite(arr)):
        raise ValueError(
            f"`{name}` contains non-finite values (nan or inf): {_show(arr)}."
        )


def check_positive(name: str, x, *, allow_zero: bool = False) -> None:
    arr = concrete(x)
    if arr is None:
        return
    bad = np.any(arr < 0) if allow_zero else np.any(arr <= 0)
    if bad or not np.all(np.isfinite(arr)):
        rel = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be finite and {rel}; got {_show(arr)}.")


def check_symmetric_psd(name: str, x, *, atol: float = 1e-8) -> None:
    """A second-moment matrix must be finite, symmetric and positive semi-definite."""
    arr = concrete(x)
    if arr is None:
        return
    check_finite(name, arr)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"`{name}` must be a square matrix; got shape {arr.shape}.")
    scale = max(1.0, float(np.max(np.abs(arr))))
    if not np.allclose(arr, arr.T, atol=atol * scale, rtol=0):
        raise ValueError(
            f"`{name}` must be symmetric (it is a second moment <x x^T>); the largest "
            f"asymmetry is {np.max(np.abs(arr - arr.T)):.3g}. Symmetrise it with "
            f"(S + S.T) / 2 if the asymmetry is round-off."
        )
    eig = np.linalg.eigvalsh((arr + arr.T) / 2)
    if eig.min() < -1e-8 * scale:
        raise ValueError(
            f"`{name}` must be positive semi-definite (it is a second moment); its "
            f"smallest eigenvalue is {eig.min():.3g}."
        )


def is_traced(x) -> bool:
    """Whether `x` is a JAX tracer (inside `jit`, `vmap` or `grad`)."""
    import jax

    return isinstance(x, jax.core.Tracer)


def check_real(name: str, x) -> None:
    """`x` must be a real number or a real array (int or float, not bool).

    Strings, booleans, `None` and other objects raise `TypeError` naming
    `name`. Traced values pass when their dtype is real.
    """
    dtype = getattr(x, "dtype", None)
    if dtype is not None and not isinstance(x, (str, bytes)):
        import jax.numpy as jnp

        if jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating):
            return
        what = "a boolean" if jnp.issubdtype(dtype, jnp.bool_) else f"dtype {dtype}"
    elif isinstance(x, bool):
        what = "a boolean"
    elif isinstance(x, (int, float)):
        return
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            check_real(f"{name}[{i}]", v)
        return
    else:
        what = f"{type(x).__name__} {x!r}"
    raise TypeError(f"`{name}` must be a real number; got {what}. Pass a float.")


def as_real(name: str):
    """An `eqx.field` converter: check `check_real(name, x)`, then a float array."""

    def convert(x):
        import jax.numpy as jnp

        check_real(name, x)
        return jnp.asarray(x, dtype=float)

    return convert


def _all_finite(leaf) -> bool | None:
    """Whether a concrete floating leaf is all finite; `None` to skip it."""
    if is_traced(leaf) or not hasattr(leaf, "dtype"):
        if isinstance(leaf, float):
            return bool(np.isfinite(leaf))
        return None
    import jax.numpy as jnp

    if not jnp.issubdtype(leaf.dtype, jnp.inexact):  # ints, bools, PRNG keys
        return None
    if isinstance(leaf, np.ndarray | np.generic):
        return bool(np.all(np.isfinite(leaf)))
    try:  # on the CPU, NumPy reads the buffer in place (no compilation per shape)
        if all(d.platform == "cpu" for d in leaf.devices()):
            return bool(np.all(np.isfinite(np.asarray(leaf))))
    except Exception:
        pass
    try:  # reduce on the device: one scalar comes back, not the array
        return bool(jnp.all(jnp.isfinite(leaf)))
    except Exception:  # not convertible to a concrete value: skip
        return None


def check_finite_tree(name: str, tree, *, fix: str = "") -> None:
    """Every concrete floating array in the pytree `tree` must be finite.

    Traced leaves (under `jit`, `vmap`, `grad`) and non-floating leaves are
    skipped, so the check never breaks a transformation. The error names the
    offending leaf by its path, e.g. `system.task.mu`.
    """
    import jax

    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if _all_finite(leaf) is False:
            where = name + _path_text(path)
            raise ValueError(
                f"`{where}` contains non-finite values (nan or inf); every "
                f"parameter must be finite before a solve.{' ' + fix if fix else ''}"
            )


def _path_text(path) -> str:
    import jax

    out = ""
    for key in path:
        if isinstance(key, jax.tree_util.GetAttrKey):
            out += "." + key.name.lstrip("_")
        elif isinstance(key, jax.tree_util.SequenceKey):
            out += f"[{key.idx}]"
        elif isinstance(key, jax.tree_util.DictKey):
            out += f"[{key.key!r}]"
        else:
            out += str(key)
    return out


def check_finite_fields(owner: str, module) -> None:
    """Every floating array field of the `eqx.Module` `module` must be finite.

    The error names the field (leading underscores dropped) and `owner`, e.g.
    "`mean_x` of ConcatenatedTasks". Traced fields are skipped.
    """
    import dataclasses

    import jax

    for field in dataclasses.fields(module):
        value = getattr(module, field.name, None)
        for path, leaf in jax.tree_util.tree_flatten_with_path(value)[0]:
            if _all_finite(leaf) is False:
                where = field.name.lstrip("_") + _path_text(path)
                raise ValueError(
                    f"`{where}` of {owner} contains non-finite values (nan or inf); "
                    "build it from finite numbers."
                )


def check_number(
    name: str, x, *, allow_zero: bool = False, below: float | None = None
) -> None:
    """A real, finite number `> 0` (`>= 0` with `allow_zero`), and `< below`.

    Non-numbers raise `TypeError`, bad values `ValueError`, both naming `name`.
    Traced values are checked only for their dtype.
    """
    check_real(name, x)
    check_positive(name, x, allow_zero=allow_zero)
    arr = concrete(x)
    if below is not None and arr is not None and not np.all(arr < below):
        raise ValueError(f"`{name}` must be < {below}; got {_show(arr)}.")
