"""The digit experiments' data (`shared.digits`): real MNIST by default, the
scikit-learn stand-in for quick runs, named in every summary and figure; a
missing MNIST folder is reported before anything runs."""

import pytest

import lecontrol as lc
from lecontrol import cli
from lecontrol.experiments import get
from lecontrol.experiments.shared import digits, figures
from lecontrol.runner import ConfigError, Experiment, RunOutput, config

DIGIT_EXPERIMENTS = [
    "effort-digits",
    "engagement-attentive",
    "engagement-active",
    "engagement-vector",
    "category-digits",
    "maml",
]
DEFAULT_MNIST = lc.tasks.mnist.checkout_root() / ".." / "shared" / "data" / "mnist"


@pytest.mark.parametrize("name", DIGIT_EXPERIMENTS)
def test_mnist_by_default_and_the_stand_in_when_quick(name):
    experiment = get(name)
    full, quick = experiment.default_config(), experiment.default_config(quick=True)
    assert full.task.dataset == "mnist" and full.task.mnist_split == "t10k"
    assert full.task.mnist_folder == "../shared/data/mnist"
    assert quick.task.dataset == "sklearn-digits"
    assert "stand-in, not MNIST" in digits.describe(quick)


@pytest.mark.parametrize("name", DIGIT_EXPERIMENTS)
def test_a_missing_mnist_folder_names_the_key_and_the_way_out(name):
    experiment = get(name)
    cfg = experiment.default_config().replace(
        {"task.mnist_folder": "/nonexistent/mnist"}, source="test"
    )
    with pytest.raises(ConfigError) as e:
        experiment.validate(cfg)
    for words in ("(config: task.mnist_folder)", "'/nonexistent/mnist' does not"):
        assert words in str(e.value)
    assert "--set task.dataset=sklearn-digits" in str(e.value)


def test_a_missing_mnist_folder_through_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "effort-digits", "--out", str(out)]
    status = cli.main([*argv, "--set", "task.mnist_folder=/nonexistent"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert "task.mnist_folder" in err and "task.dataset=sklearn-digits" in err
    assert not out.exists()
    status = cli.main([*argv, "--set", "task.dataset=emnist"])
    err = capsys.readouterr().err
    assert status == 2 and "`task.dataset` must be one of" in err


@pytest.mark.skipif(
    not (DEFAULT_MNIST / "t10k-labels-idx1-ubyte.gz").exists(),
    reason=f"the shared MNIST folder {DEFAULT_MNIST} is absent",
)
def test_the_default_names_the_mnist_files_read(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # found from the checkout, not the directory
    cfg = get("maml").default_config()
    assert digits.mnist_folder(cfg).samefile(DEFAULT_MNIST)
    words = digits.describe(cfg)
    assert words.startswith("MNIST t10k (10,000 test-set images), resized to 5×5")
    assert str(digits.mnist_folder(cfg)) in words and "60,000" in words


def test_the_data_is_in_the_summary_and_under_every_figure(tmp_path):
    """`on_digits` adds `dataset` to any run's summary and a footnote to each
    figure its plot saves."""
    drawn = []

    def draw():
        series = {"loss": [1.0, 0.5]}
        drawn.append(figures.plotting.plot_lines([0, 1], series, title="", ylabel=""))
        return drawn[-1]

    plain = Experiment(
        "toy",
        "toy",
        config(task=digits.TASK),
        {},
        build=lambda cfg: None,
        run=lambda cfg, out, progress, checkpoints: RunOutput({}, {"V_control": 1}),
        plot=lambda results, cfg, out: figures.save({"a.png": draw}, out),
    )
    toy = digits.on_digits(plain)
    cfg = toy.default_config(quick=True)
    assert cfg.task.dataset == "sklearn-digits"
    summary = toy.run(cfg, tmp_path, False).summary
    assert summary == {"dataset": digits.describe(cfg), "V_control": 1}
    assert toy.plot({}, cfg, tmp_path) == [tmp_path / "a.png"]
    notes = [t.get_text() for t in drawn[0].texts]
    assert notes == [f"data: {digits.label(cfg)}"] and "not MNIST" in notes[0]
    plain.plot({}, cfg, tmp_path)  # outside `on_digits`: no footnote
    assert not drawn[1].texts
