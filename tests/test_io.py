"""Result files: atomic writes, no pickle, strict JSON, figures that refuse NaN."""

import json
import os
import stat

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

from lecontrol import io, plotting

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _leftovers(folder):
    """Temporary files an atomic write may have left behind."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------ atomic file


def test_atomic_file_replaces_target_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with io.atomic_file(target, "w") as f:
        f.write("new")
        # Until the block ends, readers still see the old file.
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    assert _leftovers(tmp_path) == []


def test_atomic_file_failure_keeps_old_content_and_removes_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), io.atomic_file(target, "w") as f:
        f.write("half a file")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_atomic_file_gives_normal_permissions(tmp_path):
    path = io.write_json(tmp_path / "x.json", {"a": 1})
    mode = stat.S_IMODE(os.stat(path).st_mode)
    mask = os.umask(0)
    os.umask(mask)
    assert mode == 0o666 & ~mask


# ------------------------------------------------------------------------- JSON


def test_json_round_trip_converts_numpy_and_jax(tmp_path):
    data = {
        "f": np.float64(1.5),
        "i": np.int32(3),
        "arr": np.arange(3.0),
        "jax": jnp.asarray(2.5),
        "nested": {"t": (1, 2), "s": "x", "n": None, "b": True},
    }
    path = io.write_json(tmp_path / "d.json", data)
    back = io.read_json(path)
    assert back == {
        "f": 1.5,
        "i": 3,
        "arr": [0.0, 1.0, 2.0],
        "jax": 2.5,
        "nested": {"t": [1, 2], "s": "x", "n": None, "b": True},
    }
    json.loads(path.read_text())  # strict JSON


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), np.array([1.0, np.nan])])
def test_json_refuses_non_finite_and_writes_nothing(tmp_path, bad):
    with pytest.raises(ValueError, match=r"\$\.summary\.V"):
        io.write_json(tmp_path / "s.json", {"summary": {"V": bad}})
    assert list(tmp_path.iterdir()) == []


def test_json_refuses_unknown_objects(tmp_path):
    with pytest.raises(TypeError, match="obj"):
        io.write_json(tmp_path / "s.json", {"obj": object()})
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------- NPZ


def test_npz_round_trip_without_pickle(tmp_path):
    arrays = {
        "ts": np.linspace(0, 1, 5),
        "theta": jnp.ones((3, 2)),
        "n": np.int64(7),
        "flag": np.array([True, False]),
    }
    path = io.write_npz(tmp_path / "r.npz", arrays)
    back = io.read_npz(path)
    assert set(back) == set(arrays)
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k], np.asarray(v))
    with np.load(path, allow_pickle=False) as data:  # loads without pickle
        assert data["theta"].shape == (3, 2)
    assert _leftovers(tmp_path) == []


def test_npz_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="ragged"):
        io.write_npz(
            tmp_path / "r.npz", {"ragged": np.array([[1], [1, 2]], dtype=object)}
        )
    with pytest.raises(TypeError, match="name"):
        io.write_npz(tmp_path / "r.npz", {"name": "a string"})
    assert list(tmp_path.iterdir()) == []


def test_npz_refuses_bad_names(tmp_path):
    with pytest.raises(ValueError, match="'/'"):
        io.write_npz(tmp_path / "r.npz", {"a/b": np.zeros(2)})


# -------------------------------------------------------------------------- PNG


def test_save_figure_writes_png_and_closes(tmp_path):
    plt.close("all")
    fig = plotting.plot_lines(
        np.linspace(0, 1, 11),
        {"curve": np.linspace(0, 1, 11) ** 2, "matrix": np.ones((11, 2, 2))},
        title="t",
        ylabel="y",
    )
    path = io.save_figure(fig, tmp_path / "f.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert plt.get_fignums() == []
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_plots_refuse_non_finite_data(bad):
    ts = np.linspace(0, 1, 5)
    y = np.ones(5)
    y[2] = bad
    with pytest.raises(ValueError, match="`curve`.*not finite"):
        plotting.plot_lines(ts, {"curve": y}, title="t", ylabel="y")
    with pytest.raises(ValueError, match="not finite"):
        plotting.plot_difference(ts, y, title="t", ylabel="y", label="d")
    with pytest.raises(ValueError, match="not finite"):
        plotting.plot_optimisation(y)
    plt.close("all")


def test_plots_refuse_mismatched_lengths():
    with pytest.raises(ValueError, match="leading axis"):
        plotting.plot_lines(
            np.linspace(0, 1, 5), {"c": np.ones(4)}, title="t", ylabel="y"
        )
    plt.close("all")


# ------------------------------------------------------------------- metadata


def test_package_versions_lists_the_stack():
    v = io.package_versions()
    for name in (
        "python",
        "lecontrol",
        "jax",
        "diffrax",
        "equinox",
        "optax",
        "optimistix",
        "numpy",
    ):
        assert isinstance(v[name], str) and v[name], name


def test_prepare_out_dir(tmp_path):
    new = io.prepare_out_dir(tmp_path / "a" / "b")
    assert new.is_dir()
    assert io.prepare_out_dir(new) == new  # empty folder is fine
    (new / "config.json").write_text("{}")
    with pytest.raises(io.OutputDirError, match="--overwrite"):
        io.prepare_out_dir(new)
    assert io.prepare_out_dir(new, overwrite=True) == new
    assert (new / "config.json").read_text() == "{}"  # overwrite deletes nothing itself
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(io.OutputDirError, match="not a folder"):
        io.prepare_out_dir(afile, overwrite=True)
    with pytest.raises(io.OutputDirError, match="not writable"):
        io.prepare_out_dir(afile / "run")  # cannot create a folder inside a file


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere"
)
def test_prepare_out_dir_not_writable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(io.OutputDirError, match="not writable"):
            io.prepare_out_dir(locked / "run")
    finally:
        locked.chmod(0o700)


def test_source_commit_names_the_checkout(tmp_path, monkeypatch):
    """In a git checkout: the short commit (the test suite runs from one, and
    CI from a clean clone); outside one, or without git: None."""
    commit = io.source_commit()
    if commit is not None:
        assert commit.split("+")[0].isalnum() and len(commit.split("+")[0]) >= 7
        assert io.package_versions()["lecontrol_commit"] == commit
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on the path
    assert io.source_commit() is None
    assert "lecontrol_commit" not in io.package_versions()
