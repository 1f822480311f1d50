"""Figures read like the paper's: labelled axes, lettered panels, one style per
kind of line, mean ± sd over seeds, and time axes that show early dynamics.

The generic plotters are drawn on synthetic arrays; the experiments' figure code
(`Experiment.plot`) is driven by synthetic results of the shapes a quick run
saves, so no optimisation runs here.
"""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from lecontrol import io, plotting
from lecontrol.experiments import get

TS = np.linspace(0.0, 100.0, 401)
FAST = np.exp(-TS / 0.5)  # done within the first 1% of the run
SLOW = np.exp(-TS / 40.0)  # spread over the whole run


def _is_bound(line) -> bool:
    return (
        line.get_linestyle() == ":"
        and line.get_color() == plotting.BOUND_STYLE["color"]
        and line.get_linewidth() == plotting.BOUND_STYLE["linewidth"]
    )


def check_figure(fig, name: str = "figure") -> None:
    """What every saved figure must satisfy."""
    axes = plotting.main_axes(fig)
    assert axes, name
    for ax in axes:
        assert ax.get_xlabel().strip(), f"{name}: a panel has no x label"
        assert ax.get_ylabel().strip(), f"{name}: a panel has no y label"
        for line in ax.get_lines():
            if "bound" in str(line.get_label()).lower():
                assert _is_bound(line), f"{name}: {line.get_label()} not BOUND_STYLE"
    letters = [ax.get_title(loc="left").split(" ")[0] for ax in axes]
    if len(axes) > 1:
        assert letters == list("abcdefghijklmnopqrstuvwxyz"[: len(axes)]), name
    else:
        assert letters == [""], f"{name}: a one-panel figure is not lettered"


def _lines(ax, label):
    return [ln for ln in ax.get_lines() if ln.get_label().startswith(label)]


# ------------------------------------------------------------ generic plotters


def test_generic_plotters_label_every_axis_and_style_bounds():
    figures = {
        "lines": plotting.plot_lines(
            TS,
            {"control": FAST, "baseline": SLOW},
            title="t",
            ylabel="y",
            hlines=plotting.bounds(0.0, 1.0),
        ),
        "difference": plotting.plot_difference(
            TS, FAST - SLOW, title="t", ylabel="d", label="d"
        ),
        "optimisation": plotting.plot_optimisation(SLOW[:20], baseline=0.5),
        "panels": plotting.plot_panels(
            [("a", [1.0, 2.0], [3.0, 4.0], False)] * 4, title="t", ylabel="y"
        ),
        "by value": plotting.plot_curves_by_value(
            TS, np.stack([FAST, SLOW]), [1.0, 2.0], title="t", ylabel="y", label="v"
        ),
    }
    for name, fig in figures.items():
        plotting.letter_panels(fig)
        check_figure(fig, name)
    bounds = _lines(figures["lines"].axes[0], "lower bound")
    bounds += _lines(figures["lines"].axes[0], "upper bound")
    assert len(bounds) == 2 and all(map(_is_bound, bounds))
    plt.close("all")


def test_old_style_bounds_fail_the_check():
    """The check catches a bound drawn as a grey dotted reference line."""
    fig = plotting.plot_lines(
        TS,
        {"c": FAST},
        title="t",
        ylabel="y",
        hlines=[(1.0, "upper bound", dict(color="0.6", linestyle=":"))],
    )
    with pytest.raises(AssertionError, match="BOUND_STYLE"):
        check_figure(fig)
    fig.axes[0].set_ylabel("")
    with pytest.raises(AssertionError, match="no y label"):
        check_figure(fig)
    plt.close("all")


# ------------------------------------------------------------------ time axis


def test_time_axis_is_symlog_only_when_the_dynamics_are_early():
    def scale(*curves, **kw):
        fig = plotting.plot_lines(
            TS, {str(i): c for i, c in enumerate(curves)}, title="", ylabel="", **kw
        )
        out = fig.axes[0].get_xscale()
        plt.close(fig)
        return out

    assert scale(FAST) == "symlog"
    assert scale(SLOW) == "linear"
    assert scale(FAST, SLOW) == "linear"  # every curve's dynamics must be early
    assert scale(np.ones_like(TS)) == "linear"
    assert scale(FAST, time_scale="linear") == "linear"
    assert scale(SLOW, time_scale="symlog") == "symlog"
    with pytest.raises(ValueError, match="time_scale"):
        scale(FAST, time_scale="log2")


def test_early_time_and_linear_threshold():
    t_half = -0.5 * np.log(0.5)  # FAST has made half its change by then
    assert plotting.early_time([(TS, FAST)]) == pytest.approx(t_half, abs=0.25)
    assert plotting.early_time([(TS, np.zeros_like(TS))]) is None
    fig = plotting.plot_lines(TS, {"c": FAST}, title="", ylabel="")
    transform = fig.axes[0].xaxis.get_transform()
    assert transform.linthresh == pytest.approx(TS[1] - TS[0])  # Δt > t_e / 5
    assert fig.axes[0].get_xlim() == (TS[0], TS[-1])
    plt.close(fig)


# --------------------------------------------------------------- seed bands


def test_seed_runs_are_drawn_as_mean_and_sd_band():
    rng = np.random.default_rng(0)
    runs = SLOW + 0.1 * rng.standard_normal((3, TS.size))
    fig = plotting.plot_lines(
        TS, {"SGD": plotting.SeedRuns(runs)}, title="", ylabel="loss"
    )
    ax = fig.axes[0]
    (line,) = _lines(ax, "SGD")
    assert line.get_label() == "SGD (mean ± sd, 3 seeds)"
    np.testing.assert_allclose(line.get_ydata(), runs.mean(0))
    (band,) = ax.collections
    ys = band.get_paths()[0].vertices[:, 1]
    sd = runs.std(0, ddof=1)
    assert ys.max() == pytest.approx((runs.mean(0) + sd).max())
    assert ys.min() == pytest.approx((runs.mean(0) - sd).min())
    with pytest.raises(ValueError, match=r"\(seeds, 401\)"):
        plotting.plot_lines(TS, {"SGD": plotting.SeedRuns(runs.T)}, title="", ylabel="")
    plt.close("all")


# ------------------------------------------------------------ panel letters


def test_save_figure_letters_panels_but_not_colorbars_or_insets(tmp_path):
    fig, axes = plt.subplots(1, 2, layout="constrained")
    mesh = axes[1].pcolormesh(np.ones((3, 3)))
    fig.colorbar(mesh, ax=axes[1])
    axes[0].inset_axes([0.6, 0.6, 0.3, 0.3])
    axes[0].set_title("long title")
    io.save_figure(fig, tmp_path / "f.png")
    assert [ax.get_title(loc="left") for ax in axes] == ["a", "b"]
    assert axes[0].get_title() == "long title"
    assert plotting.main_axes(fig) == list(axes)
    one = plotting.plot_lines(TS, {"c": SLOW}, title="", ylabel="")
    io.save_figure(one, tmp_path / "one.png")
    assert one.axes[0].get_title(loc="left") == ""


# ------------------------------------------------------ experiments' figures

# The arrays a quick run saves (shapes as of the quick configurations).
T = 101
SHAPES = {
    "single-neuron": dict(
        values=(18,),
        **{
            f"{r}_{k}": (T,)
            for r in ("baseline", "control")
            for k in ("w", "g", "loss", "v", "V")
        },
    ),
    "effort-gaussians": dict(
        values=(12,),
        sgd_ts=(T,),
        **{
            f"{r}_{k}": s
            for r in ("baseline", "control")
            for k, s in dict(
                w0=(T, 6, 3),
                w1=(T, 2, 6),
                g0=(T, 6, 3),
                g1=(T, 2, 6),
                loss=(T,),
                v=(T,),
                V=(T,),
                l1=(T,),
                l2=(T,),
                mean_abs_g0=(T,),
                mean_abs_g1=(T,),
            ).items()
        },
        **{
            f"sgd_{r}_loss_{k}": (T,)
            for r in ("baseline", "control")
            for k in ("mean", "stderr")
        },
    ),
    "engagement-attentive": dict(
        values=(8,),
        sgd_ts=(T,),
        **{
            f"{r}_{k}": s
            for r in ("baseline", "control")
            for k, s in dict(g=(T, 3), loss=(T,), v=(T,), V=(T,), parts=(T, 3)).items()
        },
        sgd_baseline_loss=(2, T),
        sgd_control_loss=(2, T),
    ),
    "category-semantic": dict(
        values=(8,),
        paper_rank=(15,),
        sgd_ts=(T,),
        sgd_baseline_loss=(2, T),
        sgd_control_loss=(2, T),
        **{
            f"{r}_{k}": s
            for r in ("baseline", "control")
            for k, s in dict(
                g=(T, 15), loss=(T,), v=(T,), V=(T,), parts=(T, 15)
            ).items()
        },
    ),
}


def synthetic(shapes) -> dict:
    """Smooth curves, relaxing early (so the time axis goes symlog), of `shapes`."""
    rng = np.random.default_rng(1)
    ts = np.linspace(0.0, 50.0, T)
    out = {"ts": ts}
    for key, shape in shapes.items():
        if key == "sgd_ts":
            out[key] = ts
        elif shape[0] == T:
            a, b = rng.uniform(0.2, 1.0, (2, *shape[1:]))
            decay = np.exp(-ts / 0.8).reshape(-1, *[1] * (len(shape) - 1))
            out[key] = a + b * decay
        else:
            out[key] = rng.uniform(0.5, 1.0, shape)
    if "paper_rank" in out:
        out["paper_rank"] = np.repeat(np.arange(4.0), [1, 2, 4, 8])
    return out


@pytest.mark.parametrize("name", list(SHAPES))
def test_experiment_figures_read_like_the_papers(name, tmp_path, monkeypatch):
    drawn = []

    def save(fig, path, **kw):  # letter and keep, without rendering a PNG
        plotting.letter_panels(fig)
        drawn.append((str(path), fig))
        return path

    monkeypatch.setattr(io, "save_figure", save)
    experiment = get(name)
    cfg = experiment.default_config(quick=True)
    paths = experiment.plot(synthetic(SHAPES[name]), cfg, tmp_path)
    assert len(paths) == len(drawn) >= 4
    for path, fig in drawn:
        check_figure(fig, path)
    overview = [f for p, f in drawn if p.endswith("overview.png")]
    if name != "effort-gaussians":  # the gain family has no overview yet
        assert len(overview) == 1 and len(plotting.main_axes(overview[0])) == 4
    early = [f for p, f in drawn if "early" not in p and "optimisation" not in p]
    scales = {f.axes[0].get_xscale() for f in early}
    assert "symlog" in scales, f"{name}: no time axis shows the early dynamics"
    plt.close("all")
