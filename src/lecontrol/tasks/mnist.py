"""Reading MNIST from IDX files (raw or gzip-compressed), with validation.

The IDX format (LeCun et al.) is a 4-byte magic number — two zero bytes, a
type code and the number of dimensions — followed by one big-endian
``uint32`` per dimension and then the data, big-endian, row-major. Every
problem a user can meet (a missing file, a truncated download, a file that
is not IDX at all) is reported as a `ValueError` that names the file and
says what is wrong.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

# IDX type code -> numpy dtype (big-endian).
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise ValueError(f"IDX file {str(path)!r} does not exist.")
    if not path.is_file():
        raise ValueError(f"IDX path {str(path)!r} is not a file.")
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            with gzip.open(path, "rb") as f:
                return f.read()
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(
                f"IDX file {str(path)!r} is a corrupt or truncated gzip archive "
                f"({e}). Download it again."
            ) from None
    return path.read_bytes()


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) into a numpy array.

    The header is validated: the magic number must start with two zero bytes,
    the type code must be one of the IDX types (``0x08`` unsigned byte,
    ``0x09`` signed byte, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32,
    ``0x0E`` float64), there must be at least one dimension, and the file must
    hold exactly the number of bytes the dimensions announce. Compressed files
    are recognised by their content (the gzip magic bytes), not their name.

    **Arguments:**

    - `path`: the file.

    **Returns:** an array of the announced shape, in native byte order.

    **Raises:** `ValueError` naming the file if it is missing, not IDX,
    truncated or has trailing bytes.
    """
    path = Path(path)
    data = _read_bytes(path)
    name = str(path)
    if len(data) < 4:
        raise ValueError(
            f"IDX file {name!r} is truncated: {len(data)} bytes, shorter than the "
            "4-byte magic number."
        )
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"IDX file {name!r} has a wrong magic number {data[:4].hex()} (an IDX "
            "file starts with two zero bytes); it is not an IDX file or is corrupt."
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_TYPES:
        raise ValueError(
            f"IDX file {name!r} has an unknown data type code 0x{code:02x} in its "
            f"magic number (known: {', '.join(f'0x{c:02x}' for c in _IDX_TYPES)})."
        )
    if ndim == 0:
        raise ValueError(f"IDX file {name!r} declares zero dimensions.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"IDX file {name!r} is truncated inside its header: it declares {ndim} "
            f"dimensions ({header} header bytes) but has {len(data)} bytes."
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than announced"
        raise ValueError(
            f"IDX file {name!r} is {problem}: its header announces shape {shape} of "
            f"{dtype.name} ({expected} bytes in all) but the file holds {len(data)} "
            "bytes. Download it again."
        )
    arr = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


SPLITS = {"t10k": 10_000, "train": 60_000}
"""MNIST's two sets and their number of images: ``"t10k"`` (the test set) and
``"train"`` (the training set)."""


def _stems(split: str) -> tuple[str, str]:
    if split not in SPLITS:
        raise ValueError(f'`split` must be "t10k" or "train"; got {split!r}.')
    return f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"


def _file(folder: Path, stem: str) -> Path | None:
    """The raw file `stem` in `folder`, else its ``.gz``, else `None`."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    return None


def checkout_root() -> Path | None:
    """The root of the source checkout lecontrol runs from, or `None`.

    The folder above ``src/`` when the package is imported from
    ``<root>/src/lecontrol`` (a clone, or an editable install); `None` when it
    is installed anywhere else.
    """
    src = Path(os.path.abspath(__file__)).parents[2]
    return src.parent if src.name == "src" else None


def find_mnist(folder: str | os.PathLike, split: str = "t10k") -> Path:
    """The folder that holds MNIST's idx files of `split`, as an absolute path.

    An absolute `folder` is taken as it is. A relative one is looked up first
    from the current directory, then from the root of the source checkout
    (`checkout_root`, the folder above ``src/``), so the default
    ``"../shared/data/mnist"`` of the experiments works from any directory of
    a checkout. The folder must hold ``{split}-images-idx3-ubyte`` and
    ``{split}-labels-idx1-ubyte``, raw or with a ``.gz`` suffix. Nothing is
    downloaded.

    **Arguments:**

    - `folder`: the folder, absolute or relative.
    - `split`: ``"t10k"`` (the 10 000-image test set) or ``"train"`` (the
      60 000-image training set).

    **Returns:** the first candidate folder that holds both files.

    **Raises:** `ValueError` listing the folders looked in, and which file is
    missing where the folder exists.
    """
    stems = _stems(split)
    folder = Path(folder)
    candidates = {os.path.abspath(folder): "the current directory"}
    root = checkout_root()
    if not folder.is_absolute() and root is not None:
        candidates.setdefault(os.path.abspath(root / folder), "the lecontrol checkout")
    problems = []
    for path, origin in candidates.items():
        path = Path(path)
        missing = [s for s in stems if _file(path, s) is None]
        if not missing:
            return path
        where = f"{str(path)!r}" + ("" if folder.is_absolute() else f" (from {origin})")
        if not path.is_dir():
            problems.append(f"{where} does not exist")
        else:
            files = " and ".join(f"{s!r}" for s in missing)
            problems.append(f"{files} (raw or .gz) not found in {where}")
    raise ValueError(
        f"MNIST folder {str(folder)!r} does not hold the {split} idx files: "
        f"{'; '.join(problems)}. Give the folder that holds {stems[0]!r} and "
        f"{stems[1]!r} (raw or .gz); nothing is downloaded."
    )


def load_mnist(
    folder: str | os.PathLike, split: str = "t10k"
) -> tuple[np.ndarray, np.ndarray]:
    """Load the MNIST images and labels of one split from a folder.

    Finds the folder with `find_mnist` (a relative `folder` from the current
    directory, else from the source checkout's root), reads
    ``{split}-images-idx3-ubyte`` and ``{split}-labels-idx1-ubyte``, raw or
    with a ``.gz`` suffix (the raw file wins when both exist), with `read_idx`
    and checks that they fit together.

    **Arguments:**

    - `folder`: directory with the idx files (nothing is downloaded).
    - `split`: ``"t10k"`` (the 10 000-image test set) or ``"train"`` (the
      60 000-image training set).

    **Returns:** `(images, labels)`: ``uint8`` images of shape `(n, rows, cols)`
    with values 0–255, and integer labels 0–9 of shape `(n,)`.
    """
    folder = find_mnist(folder, split)
    img_path, lab_path = (_file(folder, stem) for stem in _stems(split))
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"MNIST image file {str(img_path)!r} must hold a 3-D array of unsigned "
            f"bytes; it holds {images.ndim}-D {images.dtype}."
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(
            f"MNIST label file {str(lab_path)!r} must hold a 1-D array of unsigned "
            f"bytes; it holds {labels.ndim}-D {labels.dtype}."
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"MNIST files disagree: {str(img_path)!r} holds {images.shape[0]} images "
            f"but {str(lab_path)!r} holds {labels.shape[0]} labels."
        )
    if labels.size and labels.max() > 9:
        raise ValueError(
            f"MNIST label file {str(lab_path)!r} holds labels above 9 "
            f"(max {int(labels.max())}); it is corrupt."
        )
    return images, labels.astype(np.int64)
