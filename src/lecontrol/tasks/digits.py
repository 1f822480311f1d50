"""Handwritten-digit tasks: 5×5 images plus a bias input, statistics from data."""

from __future__ import annotations

import os
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._checks import check_finite, check_symmetric_psd
from .base import AbstractTask
from .mnist import SPLITS, find_mnist, load_mnist


def _f(x) -> Array:
    return jnp.asarray(x, dtype=float)


def _f_or_none(x) -> Array | None:
    return None if x is None else jnp.asarray(x, dtype=float)


def _i_or_none(x) -> Array | None:
    return None if x is None else jnp.asarray(x, dtype=int)


# ----------------------------------------------------------------- preprocessing


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    r"""The `(n_out, n_in)` matrix of 1-D area averaging.

    Output cell $i$ covers $[i s, (i+1) s)$ with $s = n_{in}/n_{out}$ in input
    pixel units; its value is the mean of the input over that interval, i.e.
    $A_{ij} = |[is, (i+1)s) \cap [j, j+1)| / s$. Rows sum to one, so constant
    images stay constant and the image mean is preserved.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"Sizes must be >= 1; got n_in={n_in}, n_out={n_out}.")
    s = n_in / n_out
    lo = np.arange(n_out)[:, None] * s
    hi = lo + s
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    return overlap / s


def resize_area(images: np.ndarray, size: int) -> np.ndarray:
    r"""Resize a stack of images `(n, rows, cols)` to `(n, size, size)`.

    Area averaging (each output pixel is the mean of the input over the square it
    covers, with fractional pixels weighted by their overlap), applied as
    $A_r\,\text{img}\,A_c^\top$ with the matrices of `area_matrix`. This is what
    e.g. OpenCV's `INTER_AREA` does for downsampling; it never aliases.
    """
    images = np.asarray(images, dtype=float)
    if images.ndim != 3:
        raise ValueError(
            f"`images` must have shape (n, rows, cols); got {images.shape}."
        )
    Ar = area_matrix(images.shape[1], size)
    Ac = area_matrix(images.shape[2], size)
    return np.einsum("ri,nij,cj->nrc", Ar, images, Ac)


# -------------------------------------------------------------------- statistics


class EmpiricalStatistics(eqx.Module):
    r"""Second moments of a finite data set $\{(x_n, y_n)\}_{n=1}^N$.

    $\Sigma_x = \frac1N\sum_n x_n x_n^\top$, $\Sigma_{xy} = \frac1N\sum_n x_n
    y_n^\top$, $\Sigma_y = \frac1N\sum_n y_n y_n^\top$, and the means
    $\langle x\rangle$, $\langle y\rangle$.

    **Arguments:**

    - `Sx`, `Sxy`, `Sy`, `mean_x`, `mean_y`: the statistics (build them from data
      with `EmpiricalStatistics.from_samples`).
    """

    Sx: Float[Array, "inputs inputs"] = eqx.field(converter=_f)
    Sxy: Float[Array, "inputs outputs"] = eqx.field(converter=_f)
    Sy: Float[Array, "outputs outputs"] = eqx.field(converter=_f)
    mean_x: Float[Array, " inputs"] = eqx.field(converter=_f)
    mean_y: Float[Array, " outputs"] = eqx.field(converter=_f)

    def __check_init__(self):
        check_symmetric_psd("Sx", self.Sx)
        check_symmetric_psd("Sy", self.Sy)
        check_finite("Sxy", self.Sxy)
        check_finite("mean_x", self.mean_x)
        check_finite("mean_y", self.mean_y)
        D, K = self.Sx.shape[0], self.Sy.shape[0]
        for name, got, want in (
            ("Sxy", self.Sxy.shape, (D, K)),
            ("mean_x", self.mean_x.shape, (D,)),
            ("mean_y", self.mean_y.shape, (K,)),
        ):
            if got != want:
                raise ValueError(
                    f"`{name}` has shape {got}; with Sx {self.Sx.shape} and Sy "
                    f"{self.Sy.shape} it must have shape {want}."
                )

    @classmethod
    def from_samples(cls, x, y) -> EmpiricalStatistics:
        """Statistics of the samples `x` `(N, inputs)` and `y` `(N, outputs)`."""
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(
                "`x` and `y` must be 2-D with the same, non-zero number of rows; got "
                f"{x.shape} and {y.shape}."
            )
        n = x.shape[0]
        Sx, Sy = x.T @ x / n, y.T @ y / n
        return cls((Sx + Sx.T) / 2, x.T @ y / n, (Sy + Sy.T) / 2, x.mean(0), y.mean(0))


# ------------------------------------------------------------------------- task


class Digits(AbstractTask):
    r"""A handwritten-digit classification task (the paper's App. J; docs/systems/two-layer.md).

    Inputs are digit images resized to $5\times5$ by area averaging
    (`resize_area`), scaled to $[0, 1]$ by the largest possible pixel value,
    standardised per pixel (minus the training-set mean, divided by the
    training-set standard deviation; pixels constant over the training set are
    only centred), flattened row-major, and followed by a bias input equal to 1:
    26 inputs. Targets:

    - two classes `(a, b)`: one output, $y = +1$ for `a` and $y = -1$ for `b`;
    - three or more classes: one output per class in the order of `classes`,
      one-hot ($y \in \{0, 1\}$), or $\pm 1$ with `signed=True`.

    The statistics (`Sx`, `Sxy`, `Sy`, `mean_x`) are those of the training set;
    `sample` draws training pairs uniformly with replacement, so its moments are
    exactly these statistics. `test` holds the test-set statistics and
    `test_task()` is the same task with the roles of the two sets swapped (to
    measure test loss with any system).

    Build it with `Digits.load(...)` (scikit-learn's bundled 8×8 digits by
    default, or MNIST idx files from a folder) or `Digits.from_images(...)`;
    the constructor itself takes precomputed statistics (and optional data).

    **Arguments:**

    - `train`, `test`: `EmpiricalStatistics` of the training and test sets.
    - `classes`: the digit classes, in output order.
    - `x_train`, `y_train`, `labels_train`: training inputs `(N, inputs)`,
      targets `(N, outputs)` and digit labels `(N,)`; optional (without them
      `sample` is unavailable).
    - `x_test`, `y_test`, `labels_test`: the same for the test set; optional.
    """

    train: EmpiricalStatistics
    test: EmpiricalStatistics
    classes: tuple[int, ...] = eqx.field(static=True, converter=tuple)
    x_train: Float[Array, "N inputs"] | None = eqx.field(
        default=None, converter=_f_or_none
    )
    y_train: Float[Array, "N outputs"] | None = eqx.field(
        default=None, converter=_f_or_none
    )
    labels_train: Int[Array, " N"] | None = eqx.field(
        default=None, converter=_i_or_none
    )
    x_test: Float[Array, "M inputs"] | None = eqx.field(
        default=None, converter=_f_or_none
    )
    y_test: Float[Array, "M outputs"] | None = eqx.field(
        default=None, converter=_f_or_none
    )
    labels_test: Int[Array, " M"] | None = eqx.field(default=None, converter=_i_or_none)

    def __check_init__(self):
        _check_classes(self.classes)
        D, K = self.train.Sx.shape[0], self.train.Sy.shape[0]
        if (self.test.Sx.shape[0], self.test.Sy.shape[0]) != (D, K):
            raise ValueError(
                f"Train and test statistics disagree: train has {D} inputs and {K} "
                f"outputs, test has {self.test.Sx.shape[0]} and {self.test.Sy.shape[0]}."
            )
        want_out = 1 if len(self.classes) == 2 else len(self.classes)
        if K != want_out:
            raise ValueError(
                f"{len(self.classes)} classes need {want_out} output(s); the "
                f"statistics have {K}."
            )
        for split in ("train", "test"):
            x, y, lab = (getattr(self, f"{a}_{split}") for a in ("x", "y", "labels"))
            if x is None and y is None and lab is None:
                continue
            if x is None or y is None or lab is None:
                raise ValueError(
                    f"Give all of x_{split}, y_{split} and labels_{split}, or none."
                )
            n = x.shape[0]
            if x.shape != (n, D) or y.shape != (n, K) or lab.shape != (n,) or n == 0:
                raise ValueError(
                    f"{split} data must have shapes (N, {D}), (N, {K}) and (N,) with "
                    f"N > 0; got {x.shape}, {y.shape}, {lab.shape}."
                )

    # ----------------------------------------------------------- the interface
    @property
    def Sx(self) -> Float[Array, "inputs inputs"]:
        return self.train.Sx

    @property
    def Sxy(self) -> Float[Array, "inputs outputs"]:
        return self.train.Sxy

    @property
    def Sy(self) -> Float[Array, "outputs outputs"]:
        return self.train.Sy

    def mean_x(self) -> Float[Array, " inputs"]:
        return self.train.mean_x

    def mean_y(self) -> Float[Array, " outputs"]:
        return self.train.mean_y

    def sample(self, key: PRNGKeyArray, n: int):
        if self.x_train is None or self.y_train is None:
            raise ValueError(
                "This Digits task was built from statistics only and holds no "
                "samples; build it with Digits.load or Digits.from_images to sample."
            )
        i = jax.random.randint(key, (n,), 0, self.x_train.shape[0])
        return self.x_train[i], self.y_train[i]

    def test_task(self) -> Digits:
        """The same task with training and test sets swapped."""
        return Digits(
            self.test,
            self.train,
            self.classes,
            self.x_test,
            self.y_test,
            self.labels_test,
            self.x_train,
            self.y_train,
            self.labels_train,
        )

    # -------------------------------------------------------------- factories
    @classmethod
    def from_images(
        cls,
        images,
        labels,
        classes: Sequence[int] = tuple(range(10)),
        *,
        max_value: float,
        size: int = 5,
        test_fraction: float = 0.2,
        seed: int = 0,
        standardise: bool = True,
        signed: bool = False,
    ) -> Digits:
        """Build the task from raw images `(n, rows, cols)` and labels `(n,)`.

        Keeps the images of `classes`, splits them into training and test sets
        with a random permutation from `numpy.random.default_rng(seed)`
        (`round(test_fraction * n)` test images), preprocesses as described in
        the class docstring and computes both sets' statistics.

        **Arguments:**

        - `images`, `labels`: the data set; pixel values in `[0, max_value]`.
        - `classes`: digit classes in output order (two for a ±1 pair task).
        - `max_value`: the largest possible pixel value (16 for scikit-learn's
          digits, 255 for MNIST).
        - `size`: side of the resized images (5 in the paper).
        - `test_fraction`: fraction of images held out, in (0, 1).
        - `seed`: seed of the split.
        - `standardise`: standardise each pixel with the training-set mean and
          standard deviation (after scaling to [0, 1]).
        - `signed`: ±1 instead of one-hot targets for three or more classes.
        """
        classes = tuple(int(c) for c in classes)
        _check_classes(classes)
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 3 or labels.shape != (images.shape[0],):
            raise ValueError(
                "`images` must be (n, rows, cols) and `labels` (n,); got "
                f"{images.shape} and {labels.shape}."
            )
        if not (max_value > 0 and np.isfinite(max_value)):
            raise ValueError(f"`max_value` must be finite and > 0; got {max_value}.")
        if int(size) < 1:
            raise ValueError(f"`size` must be >= 1; got {size}.")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(
                f"`test_fraction` must lie in (0, 1); got {test_fraction}."
            )
        keep = np.isin(labels, classes)
        images, labels = images[keep], labels[keep]
        missing = [c for c in classes if not np.any(labels == c)]
        if missing:
            raise ValueError(f"No images of class(es) {missing} in the data set.")
        n = labels.shape[0]
        n_test = int(round(test_fraction * n))
        if not 1 <= n_test <= n - 1:
            raise ValueError(
                f"test_fraction={test_fraction} of {n} images leaves an empty "
                "training or test set."
            )
        perm = np.random.default_rng(seed).permutation(n)
        test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])

        pixels = resize_area(images, int(size)).reshape(n, -1) / float(max_value)
        if standardise:
            mu = pixels[train_idx].mean(0)
            sd = pixels[train_idx].std(0)
            pixels = (pixels - mu) / np.where(sd > 1e-12, sd, 1.0)
        x = np.concatenate([pixels, np.ones((n, 1))], axis=1)
        y = _targets(labels, classes, signed)

        def part(idx):
            return x[idx], y[idx], labels[idx]

        xtr, ytr, ltr = part(train_idx)
        xte, yte, lte = part(test_idx)
        return cls(
            EmpiricalStatistics.from_samples(xtr, ytr),
            EmpiricalStatistics.from_samples(xte, yte),
            classes,
            xtr,
            ytr,
            ltr,
            xte,
            yte,
            lte,
        )

    @classmethod
    def load(
        cls,
        classes: Sequence[int] = tuple(range(10)),
        *,
        mnist_folder: str | os.PathLike | None = None,
        mnist_split: str = "t10k",
        size: int = 5,
        test_fraction: float = 0.2,
        seed: int = 0,
        standardise: bool = True,
        signed: bool = False,
    ) -> Digits:
        """Load a digit task from an offline source (nothing is downloaded).

        By default the 1797 8×8 digits that ship inside scikit-learn
        (`sklearn.datasets.load_digits`, pixel values 0–16), an offline stand-in
        for MNIST. With `mnist_folder`, the MNIST idx files of `mnist_split` in
        that folder (`load_mnist`, pixel values 0–255; a relative folder is
        looked up from the current directory, then from the source checkout's
        root, see `find_mnist`).

        **Arguments:** `classes`, `size`, `test_fraction`, `seed`, `standardise`
        and `signed` as in `from_images`; `mnist_folder` and `mnist_split`
        (``"t10k"``: the 10 000-image test set; ``"train"``: the 60 000-image
        training set) choose the source.
        """
        if mnist_folder is None:
            from sklearn.datasets import load_digits

            data = load_digits()
            images, labels, max_value = data.images, data.target, 16.0
        else:
            if mnist_split not in SPLITS:
                raise ValueError(
                    f'`mnist_split` must be "t10k" or "train"; got {mnist_split!r}.'
                )
            try:
                folder = find_mnist(mnist_folder, mnist_split)
            except ValueError as e:
                raise ValueError(f"`mnist_folder`: {e}") from None
            images, labels = load_mnist(folder, mnist_split)
            max_value = 255.0
        return cls.from_images(
            images,
            labels,
            classes,
            max_value=max_value,
            size=size,
            test_fraction=test_fraction,
            seed=seed,
            standardise=standardise,
            signed=signed,
        )


def _check_classes(classes) -> None:
    if len(classes) < 2:
        raise ValueError(f"`classes` needs at least two digits; got {classes}.")
    if len(set(classes)) != len(classes):
        raise ValueError(f"`classes` must not repeat a digit; got {classes}.")
    if any(not 0 <= c <= 9 for c in classes):
        raise ValueError(f"`classes` must be digits 0–9; got {classes}.")


def _targets(labels: np.ndarray, classes: tuple[int, ...], signed: bool) -> np.ndarray:
    if len(classes) == 2:
        return np.where(labels == classes[0], 1.0, -1.0)[:, None]
    onehot = (labels[:, None] == np.asarray(classes)[None, :]).astype(float)
    return 2 * onehot - 1 if signed else onehot
