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


def check_finite(name: str, x) -> None:
    arr = concrete(x)
    if arr is not None and not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains non-finite values (nan or inf): {arr!r}.")


def check_positive(name: str, x, *, allow_zero: bool = False) -> None:
    arr = concrete(x)
    if arr is None:
        return
    bad = np.any(arr < 0) if allow_zero else np.any(arr <= 0)
    if bad or not np.all(np.isfinite(arr)):
        rel = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be finite and {rel}; got {arr!r}.")


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
