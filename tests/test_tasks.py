"""Tasks: closed-form and empirical statistics, samplers, the MNIST reader.

Monte-Carlo checks compare every entry of a statistic with the sample mean of
the corresponding products and require agreement within 5 standard errors
(estimated from the same samples), plus 1e-12 for entries that are exact.
"""

import gzip
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lecontrol as lc
from lecontrol.tasks.digits import area_matrix

# The shared MNIST test set sits beside the checkout (../shared/data/mnist);
# LECONTROL_MNIST overrides the folder.
MNIST = Path(
    os.environ.get(
        "LECONTROL_MNIST",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist",
    )
)
# The experiments' default folder, "../shared/data/mnist" from the checkout.
BESIDE_CHECKOUT = Path(lc.tasks.mnist.checkout_root() or "/nonexistent").joinpath(
    "..", "shared", "data", "mnist"
)
needs_mnist = pytest.mark.skipif(
    not (MNIST / "t10k-images-idx3-ubyte.gz").exists(),
    reason=f"MNIST test files not found in {MNIST} (the shared data folder).",
)


def assert_moments_match(task, n, seed=0, z=5.0):
    """Every entry of Sx, Sxy, Sy and mean_x within z standard errors of MC."""
    x, y = task.sample(jax.random.key(seed), n)
    x, y = np.asarray(x), np.asarray(y)
    assert x.shape == (n, task.n_inputs) and y.shape == (n, task.n_outputs)
    one = np.ones((n, 1))
    cases = {
        "Sx": (x, x, task.Sx),
        "Sxy": (x, y, task.Sxy),
        "Sy": (y, y, task.Sy),
        "mean_x": (x, one, np.asarray(task.mean_x())[:, None]),
    }
    for name, (a, b, exact) in cases.items():
        # Sample mean and standard error of the products a_i b_j, entrywise.
        mc = a.T @ b / n
        var = np.maximum((a**2).T @ (b**2) / n - mc**2, 0.0)
        se = np.sqrt(var / n)
        err = np.abs(mc - np.asarray(exact))
        assert np.all(err <= z * se + 1e-12), (
            f"{name}: MC {mc} vs exact {np.asarray(exact)}; max error/SE "
            f"{np.max(err / (se + 1e-300)):.2f}"
        )


def assert_symmetric_psd(S, tol=1e-10):
    S = np.asarray(S)
    np.testing.assert_allclose(S, S.T, atol=tol, rtol=0)
    assert np.linalg.eigvalsh(S).min() >= -tol * max(1.0, np.abs(S).max())


# ------------------------------------------------------------ correlated gaussians


def test_correlated_gaussians_closed_form_defaults():
    t = lc.tasks.CorrelatedGaussians()
    r = 1 - 2 * 0.8
    np.testing.assert_allclose(t.Sy, [[1, r], [r, 1]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(
        t.Sxy, [[3, 3 * r], [1 * r, 1], [0, 0]], rtol=0, atol=1e-15
    )
    np.testing.assert_allclose(
        t.Sx, [[10, 3 * r, 0], [3 * r, 2, 0], [0, 0, 1]], rtol=0, atol=1e-15
    )
    assert (t.n_inputs, t.n_outputs) == (3, 2)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"mu": (-2.0, 2.0), "p": 0.2},
        {"mu": (1.5, -0.5), "sigma": (0.3, 2.0), "p": 0.5},
    ],
)
def test_correlated_gaussians_monte_carlo(kw):
    t = lc.tasks.CorrelatedGaussians(**kw)
    assert_symmetric_psd(t.Sx)
    assert_symmetric_psd(t.Sy)
    assert_moments_match(t, 200_000)
    _, y = t.sample(jax.random.key(1), 200_000)
    np.testing.assert_allclose(np.mean(np.asarray(y), 0), t.mean_y(), atol=0.012)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"p": 1.2}, "`p`"),
        ({"p": -0.1}, "`p`"),
        ({"sigma": (1.0, -1.0)}, "`sigma`"),
        ({"mu": (1.0, np.nan)}, "`mu`"),
        ({"mu": (1.0, 2.0, 3.0)}, "`mu`"),
    ],
)
def test_correlated_gaussians_rejects_bad_parameters(kw, match):
    with pytest.raises(ValueError, match=match):
        lc.tasks.CorrelatedGaussians(**kw)


# --------------------------------------------------------------- semantic hierarchy


def test_hierarchy_matrix_h3_explicit():
    H = lc.tasks.hierarchy_matrix(3)
    want = np.array(
        [
            [1, 1, 1, 1],
            [1, 1, 0, 0],
            [0, 0, 1, 1],
            [1, 0, 0, 0],
            [0, 1, 0, 0],
            [0, 0, 1, 0],
            [0, 0, 0, 1],
        ]
    )
    np.testing.assert_array_equal(H, want)


@pytest.mark.parametrize("h", [1, 2, 3, 4])
def test_semantic_hierarchy_structure(h):
    t = lc.tasks.SemanticHierarchy(h)
    n = 2 ** (h - 1)
    H = np.asarray(t.H)
    assert H.shape == (2**h - 1, n) and (t.n_inputs, t.n_outputs) == (n, 2**h - 1)
    level = t.level_of_output()
    for lev in range(h):
        rows = H[level == lev]
        assert rows.shape[0] == 2**lev
        # Each item has exactly one feature per level ...
        np.testing.assert_array_equal(rows.sum(0), np.ones(n))
        # ... shared by a contiguous block of 2^(h-1-lev) items.
        np.testing.assert_array_equal(rows.sum(1), np.full(2**lev, 2 ** (h - 1 - lev)))
        np.testing.assert_array_equal(
            rows, np.kron(np.eye(2**lev), np.ones((1, 2 ** (h - 1 - lev))))
        )
    np.testing.assert_allclose(t.Sx, np.eye(n) / n, rtol=0, atol=1e-15)
    np.testing.assert_allclose(t.Sxy, H.T / n, rtol=0, atol=1e-15)
    np.testing.assert_allclose(t.Sy, H @ H.T / n, rtol=0, atol=1e-15)
    np.testing.assert_allclose(t.mean_y(), H.mean(1), rtol=0, atol=1e-15)


@pytest.mark.parametrize("h", [3, 4])
def test_semantic_hierarchy_sampler(h):
    t = lc.tasks.SemanticHierarchy(h)
    x, y = t.sample(jax.random.key(3), 50_000)
    item = np.argmax(np.asarray(x), 1)
    np.testing.assert_array_equal(np.asarray(x).sum(1), 1.0)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(t.H).T[item])
    assert_moments_match(t, 50_000)


def test_semantic_hierarchy_rejects_bad_levels():
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="levels"):
            lc.tasks.SemanticHierarchy(bad)


# ---------------------------------------------------------------------- resizing


def test_area_resize_properties():
    rng = np.random.default_rng(0)
    A = area_matrix(8, 5)
    np.testing.assert_allclose(A.sum(1), 1.0, rtol=0, atol=1e-14)
    # Every input pixel carries the same total weight n_out/n_in: mean preserved.
    np.testing.assert_allclose(A.sum(0), 5 / 8, rtol=0, atol=1e-14)
    imgs = rng.uniform(size=(7, 8, 8))
    out = lc.tasks.resize_area(imgs, 5)
    assert out.shape == (7, 5, 5)
    np.testing.assert_allclose(out.mean((1, 2)), imgs.mean((1, 2)), rtol=1e-13)
    np.testing.assert_allclose(lc.tasks.resize_area(np.full((1, 8, 8), 3.0), 5), 3.0)
    # Integer ratio: plain block means.
    big = rng.uniform(size=(2, 10, 10))
    block = big.reshape(2, 5, 2, 5, 2).mean((2, 4))
    np.testing.assert_allclose(lc.tasks.resize_area(big, 5), block, rtol=1e-13)
    # 28 -> 5 (MNIST): first output cell covers pixels [0, 5.6).
    A28 = area_matrix(28, 5)
    np.testing.assert_allclose(A28[0, :6], [1, 1, 1, 1, 1, 0.6] / np.float64(5.6))
    assert np.all(A28[0, 6:] == 0)


# ------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits01():
    return lc.tasks.Digits.load((0, 1), seed=0)


@pytest.fixture(scope="module")
def digits10():
    return lc.tasks.Digits.load(seed=1)


def test_digits_pair_shapes_bias_targets(digits01):
    d = digits01
    assert (d.n_inputs, d.n_outputs) == (26, 1)
    n_total = d.x_train.shape[0] + d.x_test.shape[0]
    from sklearn.datasets import load_digits

    labels = load_digits().target
    assert n_total == np.sum(np.isin(labels, (0, 1)))
    assert d.x_test.shape[0] == round(0.2 * n_total)
    np.testing.assert_array_equal(d.x_train[:, -1], 1.0)
    np.testing.assert_array_equal(d.x_test[:, -1], 1.0)
    assert float(d.mean_x()[-1]) == 1.0 and float(d.Sx[-1, -1]) == 1.0
    y, lab = np.asarray(d.y_train[:, 0]), np.asarray(d.labels_train)
    np.testing.assert_array_equal(y, np.where(lab == 0, 1.0, -1.0))
    # Pixels standardised over the training set.
    pix = np.asarray(d.x_train[:, :-1])
    np.testing.assert_allclose(pix.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(pix.std(0), 1.0, rtol=1e-12)


def test_digits_statistics_are_training_moments(digits01, digits10):
    for d in (digits01, digits10):
        X, Y = np.asarray(d.x_train), np.asarray(d.y_train)
        N = X.shape[0]
        np.testing.assert_allclose(d.Sx, X.T @ X / N, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(d.Sxy, X.T @ Y / N, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(d.Sy, Y.T @ Y / N, rtol=1e-12, atol=1e-13)
        Xt, Yt = np.asarray(d.x_test), np.asarray(d.y_test)
        np.testing.assert_allclose(
            d.test.Sxy, Xt.T @ Yt / Xt.shape[0], rtol=1e-12, atol=1e-13
        )
        for S in (d.Sx, d.Sy, d.test.Sx, d.test.Sy):
            assert_symmetric_psd(S)
        # The bias row of Sx is the mean input.
        np.testing.assert_allclose(d.Sx[-1], d.mean_x(), rtol=1e-12, atol=1e-13)


def test_digits_ten_classes(digits10):
    d = digits10
    assert (d.n_inputs, d.n_outputs) == (26, 10)
    Y = np.asarray(d.y_train)
    np.testing.assert_array_equal(Y.sum(1), 1.0)
    np.testing.assert_array_equal(np.argmax(Y, 1), np.asarray(d.labels_train))
    s = lc.tasks.Digits.load(seed=1, signed=True)
    np.testing.assert_array_equal(np.asarray(s.y_train), 2 * Y - 1)
    np.testing.assert_allclose(s.x_train, d.x_train)


def test_digits_split_is_seeded_and_disjoint(digits01):
    again = lc.tasks.Digits.load((0, 1), seed=0)
    np.testing.assert_array_equal(again.x_train, digits01.x_train)
    other = lc.tasks.Digits.load((0, 1), seed=1)
    assert other.x_train.shape == digits01.x_train.shape
    assert not np.allclose(other.Sx, digits01.Sx)
    # Train and test rows are distinct images (no row appears in both).
    tr = {r.tobytes() for r in np.asarray(digits01.x_train)}
    te = {r.tobytes() for r in np.asarray(digits01.x_test)}
    assert not tr & te


def test_digits_sampler_and_test_task(digits01):
    assert_moments_match(digits01, 40_000)
    x, _ = digits01.sample(jax.random.key(0), 100)
    rows = {r.tobytes() for r in np.asarray(digits01.x_train)}
    assert all(r.tobytes() in rows for r in np.asarray(x))
    tt = digits01.test_task()
    np.testing.assert_allclose(tt.Sx, digits01.test.Sx)
    np.testing.assert_allclose(tt.test.Sxy, digits01.Sxy)
    x, _ = tt.sample(jax.random.key(0), 50)
    rows = {r.tobytes() for r in np.asarray(digits01.x_test)}
    assert all(r.tobytes() in rows for r in np.asarray(x))


def test_digits_from_statistics_and_validation(digits01):
    d = lc.tasks.Digits(digits01.train, digits01.test, (0, 1))
    np.testing.assert_allclose(d.Sx, digits01.Sx)
    with pytest.raises(ValueError, match="statistics only"):
        d.sample(jax.random.key(0), 3)
    S = np.asarray(digits01.Sx).copy()
    good = digits01.train
    args = (good.Sxy, good.Sy, good.mean_x, good.mean_y)
    bad_sym = S.copy()
    bad_sym[0, 1] += 0.5
    with pytest.raises(ValueError, match="`Sx` must be symmetric"):
        lc.tasks.EmpiricalStatistics(bad_sym, *args)
    with pytest.raises(ValueError, match="`Sx` must be positive semi-definite"):
        lc.tasks.EmpiricalStatistics(S - 10 * np.eye(26), *args)
    bad_nan = S.copy()
    bad_nan[2, 2] = np.nan
    with pytest.raises(ValueError, match="`Sx` contains non-finite"):
        lc.tasks.EmpiricalStatistics(bad_nan, *args)
    with pytest.raises(ValueError, match="`Sxy` has shape"):
        lc.tasks.EmpiricalStatistics(S, np.zeros((26, 2)), *args[1:])
    with pytest.raises(ValueError, match="classes"):
        lc.tasks.Digits.load((3, 3))
    with pytest.raises(ValueError, match="classes"):
        lc.tasks.Digits.load((1, 12))
    with pytest.raises(ValueError, match="test_fraction"):
        lc.tasks.Digits.load((0, 1), test_fraction=1.0)
    with pytest.raises(ValueError, match=r"3 classes need 3 output"):
        lc.tasks.Digits(digits01.train, digits01.test, (0, 1, 2))


@needs_mnist
def test_digits_from_mnist_folder():
    d = lc.tasks.Digits.load((1, 3), mnist_folder=MNIST, seed=0)
    _, labels = lc.tasks.load_mnist(MNIST)
    n = np.sum(np.isin(labels, (1, 3)))
    assert d.x_train.shape[0] + d.x_test.shape[0] == n
    assert (d.n_inputs, d.n_outputs) == (26, 1)
    np.testing.assert_array_equal(d.x_train[:, -1], 1.0)
    assert_symmetric_psd(d.Sx)
    # Ones and threes are separable: the best linear read-out of the training
    # statistics fits much better than predicting the mean.
    W = np.linalg.lstsq(np.asarray(d.Sx), np.asarray(d.Sxy), rcond=None)[0].T
    fit = 0.5 * (np.trace(d.Sy) - 2 * np.sum(W.T * d.Sxy) + np.sum((W @ d.Sx) * W))
    assert fit < 0.3 * 0.5 * float(d.Sy[0, 0])


# ---------------------------------------------------------------------------- idx


def write_idx(path, arr, code=0x08, compress=False):
    arr = np.asarray(arr)
    dt = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    data = header + arr.astype(dt[code]).tobytes()
    if compress:
        data = gzip.compress(data)
    Path(path).write_bytes(data)
    return data


@pytest.mark.parametrize(
    "code, dtype", [(0x08, np.uint8), (0x0B, np.int16), (0x0D, np.float32)]
)
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, code, dtype, compress):
    arr = (np.arange(2 * 3 * 4).reshape(2, 3, 4) * 7 - 20).astype(dtype)
    if code == 0x08:
        arr = np.abs(arr).astype(dtype)
    p = tmp_path / ("a.idx.gz" if compress else "a.idx")
    write_idx(p, arr, code, compress)
    out = lc.tasks.read_idx(p)
    assert out.shape == arr.shape and out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, arr)


@needs_mnist
def test_load_mnist_real_files(tmp_path):
    images, labels = lc.tasks.load_mnist(MNIST)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    assert images.max() == 255 and images.min() == 0
    # A raw (decompressed) copy reads identically.
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / stem).write_bytes(
            gzip.decompress((MNIST / f"{stem}.gz").read_bytes())
        )
    raw_images, raw_labels = lc.tasks.load_mnist(tmp_path)
    np.testing.assert_array_equal(raw_images, images)
    np.testing.assert_array_equal(raw_labels, labels)


@pytest.mark.skipif(
    not (BESIDE_CHECKOUT / "t10k-images-idx3-ubyte.gz").exists(),
    reason=f"the shared MNIST folder {BESIDE_CHECKOUT} is absent",
)
def test_the_experiments_mnist_folder_from_any_directory(tmp_path, monkeypatch):
    """The experiments' default folder, relative: found from the checkout's root
    when the current directory has no such folder; the 10 000 test images."""
    monkeypatch.chdir(tmp_path)
    images, labels = lc.tasks.load_mnist("../shared/data/mnist")
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10_000,) and set(np.unique(labels)) == set(range(10))
    folder = lc.tasks.find_mnist("../shared/data/mnist")
    assert folder.is_absolute() and folder.parent.parent.name == "shared"


def test_find_mnist_looks_in_the_current_directory_first(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    _mnist_folder(tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    assert lc.tasks.find_mnist("m") == tmp_path / "m"
    assert lc.tasks.find_mnist(tmp_path / "m") == tmp_path / "m"
    with pytest.raises(ValueError, match="from the current directory.*checkout"):
        lc.tasks.find_mnist("no/such/folder")
    with pytest.raises(ValueError, match="`mnist_folder`: MNIST folder 'no/such'"):
        lc.tasks.Digits.load((0, 1), mnist_folder="no/such")
    with pytest.raises(ValueError, match="`mnist_split` must be"):
        lc.tasks.Digits.load((0, 1), mnist_folder="m", mnist_split="test")


def _mnist_folder(tmp_path, n_img=4, n_lab=4, compress=True):
    rng = np.random.default_rng(0)
    sfx = ".gz" if compress else ""
    write_idx(
        tmp_path / f"t10k-images-idx3-ubyte{sfx}",
        rng.integers(0, 256, (n_img, 28, 28)),
        compress=compress,
    )
    write_idx(
        tmp_path / f"t10k-labels-idx1-ubyte{sfx}",
        rng.integers(0, 10, n_lab),
        compress=compress,
    )
    return tmp_path


def test_load_mnist_small_folder(tmp_path):
    images, labels = lc.tasks.load_mnist(_mnist_folder(tmp_path))
    assert images.shape == (4, 28, 28) and labels.shape == (4,)


def test_idx_errors_name_file_and_problem(tmp_path):
    read = lc.tasks.read_idx
    with pytest.raises(ValueError, match="does not exist"):
        read(tmp_path / "nope")
    good = write_idx(tmp_path / "good", np.zeros((3, 5), np.uint8))

    def bad(name, data):
        p = tmp_path / name
        p.write_bytes(data)
        return p

    with pytest.raises(ValueError, match="wrong magic number.*") as e:
        read(bad("magic", b"\x08\x03" + good[2:]))
    assert "magic" in str(e.value) and str(tmp_path / "magic") in str(e.value)
    with pytest.raises(ValueError, match="unknown data type code 0x07"):
        read(bad("code", good[:2] + b"\x07" + good[3:]))
    with pytest.raises(ValueError, match="zero dimensions"):
        read(bad("ndim0", good[:3] + b"\x00"))
    with pytest.raises(ValueError, match="shorter than the 4-byte"):
        read(bad("tiny", good[:3]))
    with pytest.raises(ValueError, match="truncated inside its header"):
        read(bad("head", good[:9]))
    with pytest.raises(
        ValueError, match=r"truncated: its header announces shape \(3, 5\)"
    ):
        read(bad("short", good[:-1]))
    with pytest.raises(ValueError, match="longer than announced"):
        read(bad("long", good + b"\x00"))
    with pytest.raises(ValueError, match="truncated: its header"):
        read(bad("short.gz", gzip.compress(good[:-4])))
    with pytest.raises(ValueError, match="corrupt or truncated gzip") as e:
        read(bad("cut.gz", gzip.compress(good)[:-6]))
    assert "cut.gz" in str(e.value)
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        read(bad("garbled.gz", b"\x1f\x8b" + b"\x08\x00" + b"garbage" * 5))


def test_load_mnist_errors(tmp_path):
    with pytest.raises(ValueError, match="folder .* does not exist"):
        lc.tasks.load_mnist(tmp_path / "missing")
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.*not found"):
        lc.tasks.load_mnist(tmp_path)
    with pytest.raises(ValueError, match="split"):
        lc.tasks.load_mnist(tmp_path, split="test")
    (tmp_path / "mismatch").mkdir()
    folder = _mnist_folder(tmp_path / "mismatch", n_img=4, n_lab=3)
    with pytest.raises(ValueError, match="4 images but .* 3 labels"):
        lc.tasks.load_mnist(folder)
    (tmp_path / "trunc").mkdir()
    folder = _mnist_folder(tmp_path / "trunc", compress=False)
    p = folder / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte' is truncated"):
        lc.tasks.load_mnist(folder)
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte' is truncated"):
        lc.tasks.Digits.load((0, 1), mnist_folder=folder)


# --------------------------------------------------------- concatenation, switching


def test_concatenated_tasks_blocks_and_monte_carlo():
    a = lc.tasks.CorrelatedGaussians(mu=(1.0, -0.5), p=0.3)
    b = lc.tasks.SemanticHierarchy(3)  # non-zero <x> and <y>: cross blocks matter
    c = lc.tasks.ConcatenatedTasks([a, b])
    assert (c.n_inputs, c.n_outputs, c.n_tasks) == (7, 9, 2)
    assert c.input_slices == ((0, 3), (3, 7)) and c.output_slices == ((0, 2), (2, 9))
    np.testing.assert_array_equal(c.output_task(), [0, 0] + [1] * 7)
    np.testing.assert_allclose(c.Sx[:3, :3], a.Sx)
    np.testing.assert_allclose(c.Sx[3:, 3:], b.Sx)
    np.testing.assert_allclose(c.Sx[:3, 3:], np.outer(a.mean_x(), b.mean_x()))
    np.testing.assert_allclose(c.Sxy[3:, 2:], b.Sxy)
    np.testing.assert_allclose(c.Sxy[:3, 2:], np.outer(a.mean_x(), b.mean_y()))
    np.testing.assert_allclose(c.Sxy[3:, :2], 0.0)  # <y_a> = 0
    np.testing.assert_allclose(c.Sy[:2, 2:], 0.0)
    np.testing.assert_allclose(c.Sy[2:, 2:], b.Sy)
    np.testing.assert_allclose(c.Sxy_task(0) + c.Sxy_task(1), c.Sxy)
    np.testing.assert_allclose(c.Sxy_task(1)[:, :2], 0.0)
    assert_symmetric_psd(c.Sx)
    assert_symmetric_psd(c.Sy)
    assert_moments_match(c, 200_000)


def test_concatenated_digit_pairs():
    pairs = [lc.tasks.Digits.load(p) for p in [(0, 1), (7, 1)]]
    c = lc.tasks.ConcatenatedTasks(pairs)
    assert (c.n_inputs, c.n_outputs) == (52, 2)
    # Cross blocks use each pair's mean target (slightly unbalanced classes).
    np.testing.assert_allclose(
        c.Sxy[26:, 0], np.asarray(pairs[1].mean_x()) * float(pairs[0].mean_y()[0])
    )
    assert_moments_match(c, 40_000)


def test_target_mean_fallback_and_registered():
    np.testing.assert_array_equal(
        lc.tasks.target_mean(lc.tasks.TwoGaussians(mu=1.0, sigma=1.0)), [0.0]
    )

    class Shifted(lc.tasks.AbstractTask):
        @property
        def Sx(self):
            return jnp.ones((1, 1))

        @property
        def Sxy(self):
            return 2 * jnp.ones((1, 1))

        @property
        def Sy(self):
            return 4 * jnp.ones((1, 1))

        def sample(self, key, n):
            return jnp.ones((n, 1)), 2 * jnp.ones((n, 1))

    np.testing.assert_allclose(lc.tasks.target_mean(Shifted()), [2.0])


def test_concatenated_rejects_non_tasks():
    with pytest.raises(ValueError, match="at least one"):
        lc.tasks.ConcatenatedTasks([])
    with pytest.raises(TypeError, match=r"tasks\[1\]"):
        lc.tasks.ConcatenatedTasks([lc.tasks.CorrelatedGaussians(), np.eye(2)])


def test_switching_tasks_schedule():
    a = lc.tasks.CorrelatedGaussians()
    b = lc.tasks.CorrelatedGaussians(mu=(-2.0, 2.0), p=0.2)
    s = lc.tasks.SwitchingTasks([a, b], period=0.3, horizon=1.0)
    np.testing.assert_allclose(s.switch_times, [0.3, 0.6, 0.9], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(s.jump_times(), s.switch_times)
    sw = np.asarray(s.switch_times)
    for k, ts in enumerate(sw):
        assert int(s.active(np.nextafter(ts, -np.inf))) == k % 2
        assert int(s.active(ts)) == (k + 1) % 2
    assert int(s.active(0.0)) == 0 and int(s.active(0.95)) == 1
    np.testing.assert_allclose(s.Sx_at(0.1), a.Sx)
    np.testing.assert_allclose(s.Sxy_at(0.4), b.Sxy)
    np.testing.assert_allclose(s.Sy_at(0.7), a.Sy)
    # Exact multiples of the period at the horizon are not switches inside it.
    s2 = lc.tasks.SwitchingTasks([a, b], period=0.5, horizon=1.0)
    np.testing.assert_allclose(s2.switch_times, [0.5])
    # Sampling follows the active task: y1 and y2 anti-correlate under a only.
    _, ya = s.sample_at(jax.random.key(0), 20_000, 0.1)
    _, yb = s.sample_at(jax.random.key(0), 20_000, 0.45)
    assert abs(float(jnp.mean(ya[:, 0] * ya[:, 1])) - (1 - 2 * 0.8)) < 0.03
    assert abs(float(jnp.mean(yb[:, 0] * yb[:, 1])) - (1 - 2 * 0.2)) < 0.03


def test_switching_tasks_validation():
    a = lc.tasks.CorrelatedGaussians()
    with pytest.raises(ValueError, match="same numbers of inputs"):
        lc.tasks.SwitchingTasks([a, lc.tasks.SemanticHierarchy(2)], 1.0, 3.0)
    with pytest.raises(ValueError, match="`period`"):
        lc.tasks.SwitchingTasks([a], 0.0, 3.0)
    with pytest.raises(ValueError, match="`horizon`"):
        lc.tasks.SwitchingTasks([a], 1.0, np.inf)


def test_semantic_level_losses_add_up_to_the_fit_loss():
    """Per-level losses sum to ½E‖y − Wx‖² computed item by item, and each
    level holds only its own outputs' error."""
    task = lc.tasks.SemanticHierarchy(3)
    H = np.asarray(task.H)
    rng = np.random.default_rng(0)
    W = rng.normal(size=(2, *H.shape))  # two maps at once (leading axis)
    levels = task.level_losses(W)
    assert levels.shape == (2, 3)
    direct = 0.5 * ((H[None] - W) ** 2).sum(1).mean(-1)  # items: x = e_i
    np.testing.assert_allclose(levels.sum(-1), direct, rtol=1e-12)
    exact = task.level_losses(np.where(task.level_of_output()[:, None] == 0, H, 0.0))
    assert exact[0] == pytest.approx(0.0, abs=1e-15) and exact[1] > 0


def test_linear_loss_floor_is_the_least_squares_residual(digits01, digits10):
    # The floor of the statistics equals the residual of least squares on the
    # training samples those statistics came from (any task with data).
    for task in (digits01, digits10):
        x, y = np.asarray(task.x_train), np.asarray(task.y_train)
        W = np.linalg.lstsq(x, y, rcond=None)[0]
        residual = 0.5 * np.mean(np.sum((y - x @ W) ** 2, axis=1))
        np.testing.assert_allclose(task.linear_loss_floor(), residual, rtol=1e-9)


def test_linear_loss_floor_of_a_noiseless_linear_task_is_zero():
    # One-hot items whose targets are a linear function of them: nothing is
    # left over. A noisy task's floor is positive (the floor is not always 0).
    task = lc.tasks.SemanticHierarchy(3)
    assert float(task.linear_loss_floor()) == pytest.approx(0.0, abs=1e-12)
    two = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    # One input, one output: L* = ½(⟨y²⟩ − ⟨xy⟩²/⟨x²⟩).
    want = 0.5 * (two.Sy[0, 0] - two.Sxy[0, 0] ** 2 / two.Sx[0, 0])
    assert float(two.linear_loss_floor()) == pytest.approx(float(want), rel=1e-12)
    assert float(want) > 0.01
