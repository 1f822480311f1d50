"""Bad input, as a new user would meet it, gives an error that names the problem.

One test per case: control knots and bounds; horizon, discount, weights and
cost scales; control and coefficient shapes; task statistics that are not
finite, symmetric or positive semi-definite; solver settings; configuration
keys, types and ranges through `--set` and TOML files; MNIST folders with
missing, truncated or corrupt idx files (through the command line); output
folders that hold a run or cannot be written. Solver failures (max_steps
reached, dynamics that blow up or turn nan, a failing backward costate solve)
raise an error that says what happened and what to change, through
`lc.value`, `lc.solve`, `jax.grad`, `jit` and the command line, which then
writes neither results nor figures.

Each check asserts the words a user needs (the argument or key), so a check
that stopped running, or a message that stopped naming its argument, fails.
"""

from __future__ import annotations

import math
import os
import struct

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lecontrol as lc
import lecontrol.experiments
from lecontrol import cli, io
from lecontrol.optimize import runtime_error_message


def _main(capsys, *args):
    status = cli.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def _neuron(T=0.6, knots=None, lower=0.0, upper=0.5):
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    system = lc.systems.SingleNeuronGain(task, lam=0.1, tau=1.0, w0=0.0)
    knots = jnp.linspace(0.0, T, 7) if knots is None else knots
    control = lc.controls.PiecewiseLinear(knots, shape=(), lower=lower, upper=upper)
    return system, control, lc.costs.Quadratic(0.3), lc.Objective(T=T, gamma=0.9)


def _raises(fn, *words):
    """`fn()` raises ValueError/TypeError whose message holds every word."""
    with pytest.raises((ValueError, TypeError)) as info:
        fn()
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)
    return message


# ------------------------------------------------------------ knots and times


@pytest.mark.parametrize(
    "cls", [lc.controls.PiecewiseLinear, lc.controls.PiecewiseConstant]
)
@pytest.mark.parametrize(
    "knots, words",
    [
        ([0.0, 0.5, 0.4, 1.0], ["knots", "strictly increasing", "knots[1]"]),
        ([0.0, 0.5, 0.5, 1.0], ["knots", "strictly increasing"]),
        ([0.1, 0.5, 1.0], ["knots", "start at 0"]),
        ([0.0, np.nan, 1.0], ["knots", "finite"]),
        ([0.0], ["knots", "at least two"]),
        ([[0.0, 1.0]], ["knots", "1-D"]),
    ],
    ids=["decreasing", "repeated", "not-from-0", "nan", "one", "2-d"],
)
def test_bad_knots(cls, knots, words):
    _raises(lambda: cls(jnp.asarray(knots)), *words)


def test_knots_must_end_at_the_horizon():
    system, control, cost, _ = _neuron(T=0.6)
    obj = lc.Objective(T=1.0)
    for call in (
        lambda: lc.value(lc.Problem(system, control, cost, obj), control.init(0.0)),
        lambda: lc.optimize(
            lc.Problem(system, control, cost, obj), control.init(0.0), steps=1
        ),
    ):
        _raises(call, "last knot", "0.6", "T=1.0", "linspace")


def test_bad_solve_times():
    system, control, cost, obj = _neuron()
    args = (lc.Problem(system, control, cost, obj), control.init(0.0))
    _raises(lambda: lc.solve(*args, ts=jnp.asarray([0.0, 0.4, 0.2])), "ts")
    _raises(lambda: lc.solve(*args, ts=jnp.asarray([0.0, 0.3, 0.9])), "ts")


# ------------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    "lower, upper, words",
    [
        (0.5, 0.0, ["lower", "upper", "Swap"]),
        (math.nan, 1.0, ["bounds", "nan"]),
        (0.0, math.nan, ["bounds", "nan"]),
    ],
)
@pytest.mark.parametrize(
    "make",
    [
        lambda lo, hi: lc.controls.PiecewiseLinear(
            jnp.linspace(0, 1, 3), lower=lo, upper=hi
        ),
        lambda lo, hi: lc.controls.PiecewiseConstant(
            jnp.linspace(0, 1, 3), lower=lo, upper=hi
        ),
        lambda lo, hi: lc.controls.Constant(lower=lo, upper=hi),
    ],
    ids=["linear", "constant-pieces", "constant"],
)
def test_bad_bounds(make, lower, upper, words):
    _raises(lambda: make(lower, upper), *words)


def test_initial_control_outside_bounds():
    _, control, _, _ = _neuron(lower=0.0, upper=0.5)
    _raises(lambda: control.init(0.7), "value", "bounds", "0.5")


# --------------------------------------------------- horizon, discount, scales


@pytest.mark.parametrize("T", [0.0, -1.0, math.inf, math.nan])
def test_bad_horizon(T):
    _raises(lambda: lc.Objective(T=T), "`T`", "> 0")


@pytest.mark.parametrize("gamma", [0.0, -0.5, 1.5, 7.0, math.nan])
def test_bad_discount(gamma):
    _raises(lambda: lc.Objective(T=1.0, gamma=gamma), "`gamma`", "(0, 1]")


@pytest.mark.parametrize("eta", [-0.1, math.inf, math.nan])
def test_bad_eta(eta):
    _raises(lambda: lc.Objective(T=1.0, eta=eta), "`eta`", ">= 0")


@pytest.mark.parametrize(
    "make",
    [
        lambda b: lc.costs.Quadratic(beta=b),
        lambda b: lc.costs.ExpQuadratic(beta=b),
        lambda b: lc.costs.FixedNorm(beta=b, norm2=1.0),
    ],
    ids=["quadratic", "exp-quadratic", "fixed-norm"],
)
@pytest.mark.parametrize("beta", [-0.3, math.nan])
def test_bad_cost_scale(make, beta):
    _raises(lambda: make(beta), "`beta`")


def test_bad_system_parameters():
    task = lc.tasks.TwoGaussians(mu=2.0, sigma=1.0)
    _raises(lambda: lc.systems.SingleNeuronGain(task, lam=-1.0), "`lam`")
    _raises(lambda: lc.systems.SingleNeuronGain(task, tau=0.0), "`tau`")
    _raises(lambda: lc.tasks.TwoGaussians(mu=2.0, sigma=-1.0), "`sigma`")
    _raises(lambda: lc.tasks.TwoGaussians(mu=math.nan, sigma=1.0), "`mu`")


# ---------------------------------------------------------------- shapes


def test_control_shape_must_match_the_system():
    system, _, cost, obj = _neuron()
    control = lc.controls.PiecewiseLinear(jnp.linspace(0, obj.T, 7), shape=(2,))
    theta = control.init(0.0)
    for call in (
        lambda: lc.value(lc.Problem(system, control, cost, obj), theta),
        lambda: lc.solve(
            lc.Problem(system, control, cost, obj), theta, ts=jnp.linspace(0, obj.T, 3)
        ),
        lambda: lc.optimize(lc.Problem(system, control, cost, obj), theta, steps=1),
    ):
        _raises(
            call,
            "control's shape (2,)",
            "control_shape ()",
            "shape=system.control_shape",
        )


def test_theta_shape_must_match_the_control():
    system, control, cost, obj = _neuron()  # 7 knots
    _raises(
        lambda: lc.value(lc.Problem(system, control, cost, obj), jnp.zeros(6)),
        "`theta`",
        "(6,)",
        "(7,)",
        "control.init()",
    )
    _raises(
        lambda: lc.value(
            lc.Problem(system, control, cost, obj), (jnp.zeros(7), jnp.zeros(7))
        ),
        "`theta` has 2 leaves",
        "expects 1",
    )
    _raises(
        lambda: lc.optimize(
            lc.Problem(system, control, cost, obj), jnp.zeros((7, 1)), steps=1
        ),
        "`theta`",
    )


def test_objects_of_the_wrong_kind():
    system, control, cost, obj = _neuron()
    theta = control.init(0.0)
    _raises(
        lambda: lc.value(lc.Problem(control, control, cost, obj), theta), "`system`"
    )
    _raises(lambda: lc.value(lc.Problem(system, system, cost, obj), theta), "`control`")
    _raises(lambda: lc.value(lc.Problem(system, control, 0.3, obj), theta), "`cost`")
    _raises(
        lambda: lc.value(lc.Problem(system, control, cost, 1.0), theta), "`objective`"
    )


def test_bad_solver_settings():
    system, control, cost, obj = _neuron()
    args = (lc.Problem(system, control, cost, obj), control.init(0.0))
    _raises(lambda: lc.SolverOptions(rtol=0.0), "rtol")
    _raises(lambda: lc.SolverOptions(atol=-1.0), "atol")
    _raises(lambda: lc.SolverOptions(max_steps=0), "`max_steps`")
    _raises(lambda: lc.SolverOptions(solver="tsit5"), "`solver`")
    _raises(lambda: lc.value(*args, options={"rtol": 1e-6}), "`options`")
    _raises(lambda: lc.value(control, control.init(0.0)), "`problem`")
    _raises(lambda: lc.optimize(*args, steps=-1), "`steps`")


# -------------------------------------------------------- task statistics


class _RawMoments(lc.tasks.AbstractTask):
    """A user's own task that simply holds its statistics."""

    sx: jax.Array
    sxy: jax.Array
    sy: jax.Array

    @property
    def Sx(self):
        return self.sx

    @property
    def Sxy(self):
        return self.sxy

    @property
    def Sy(self):
        return self.sy

    def sample(self, key, n):
        raise NotImplementedError


GOOD = dict(
    sx=np.array([[2.0, 0.5], [0.5, 1.0]]),
    sxy=np.array([[1.0], [0.2]]),
    sy=np.array([[1.0]]),
)
BAD_STATISTICS = {
    "Sx-nan": (dict(sx=np.array([[np.nan, 0.0], [0.0, 1.0]])), ["Sx", "non-finite"]),
    "Sx-inf": (dict(sx=np.array([[np.inf, 0.0], [0.0, 1.0]])), ["Sx", "non-finite"]),
    "Sx-asymmetric": (
        dict(sx=np.array([[2.0, 0.5], [-0.5, 1.0]])),
        ["Sx", "symmetric"],
    ),
    "Sx-not-psd": (
        dict(sx=np.array([[1.0, 2.0], [2.0, 1.0]])),
        ["Sx", "positive semi-definite", "-1"],
    ),
    "Sx-not-square": (dict(sx=np.ones((2, 3))), ["Sx", "square"]),
    "Sy-negative": (dict(sy=np.array([[-1.0]])), ["Sy", "positive semi-definite"]),
    "Sxy-nan": (dict(sxy=np.array([[np.nan], [0.0]])), ["Sxy", "non-finite"]),
    "Sxy-shape": (dict(sxy=np.ones((3, 1))), ["Sxy", "shape", "(2, 1)"]),
}


@pytest.mark.parametrize("case", list(BAD_STATISTICS))
def test_bad_statistics_of_a_user_task(case):
    change, words = BAD_STATISTICS[case]
    _raises(lambda: _RawMoments(**(GOOD | change)), *words)


@pytest.mark.parametrize(
    "case", [c for c in BAD_STATISTICS if not c.startswith("Sxy-shape")]
)
def test_bad_empirical_statistics(case):
    change, words = BAD_STATISTICS[case]
    kw = GOOD | change
    _raises(
        lambda: lc.tasks.EmpiricalStatistics(
            kw["sx"], kw["sxy"], kw["sy"], np.zeros(len(kw["sx"])), np.zeros(1)
        ),
        *words,
    )


def test_good_statistics_pass_and_the_check_runs_for_every_task():
    task = _RawMoments(**GOOD)
    assert task.n_inputs == 2
    # A system never sees an unchecked task: MAML, whose own statistics are
    # stacked copies, and the tasks of lc.tasks are checked the same way.
    lc.systems.SingleLayerGain(task)
    with pytest.raises(ValueError, match="positive semi-definite"):
        lc.systems.SingleLayerGain(_RawMoments(**(GOOD | {"sx": -np.eye(2)})))


# ------------------------------------------- non-finite and non-numeric input


def _value(system, control, theta, cost, objective):
    return lc.value(lc.Problem(system, control, cost, objective), theta)


def _solve_count(monkeypatch):
    """Count forward solves, to show that a check ran before any solve."""
    import lecontrol.adjoint as adjoint_module

    calls = []
    real = adjoint_module.forward_solve

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(adjoint_module, "forward_solve", counting)
    return calls


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_theta_is_refused_before_a_solve(bad, monkeypatch):
    system, control, cost, obj = _neuron()
    theta = control.init(0.0).at[2].set(bad)
    calls = _solve_count(monkeypatch)
    msg = _raises(lambda: _value(system, control, theta, cost, obj), "`theta`")
    assert "non-finite" in msg and "max_steps" not in msg
    assert calls == []


@pytest.mark.parametrize(
    "where, field",
    [
        (lambda s: s.tau, "`system.tau`"),
        (lambda s: s.lam, "`system.lam`"),
        (lambda s: s.w0, "`system.w0`"),
        (lambda s: s.task.mu, "`system.task.mu`"),
    ],
    ids=["tau", "lam", "w0", "task-mu"],
)
def test_non_finite_system_field_set_after_construction(where, field, monkeypatch):
    """A field changed with eqx.tree_at skips the constructor's check; the
    verb's own check still names it, before any solve."""
    system, control, cost, obj = _neuron()
    bad = eqx.tree_at(where, system, jnp.nan)
    calls = _solve_count(monkeypatch)
    _raises(lambda: _value(bad, control, control.init(0.0), cost, obj), field)
    assert calls == []


def test_non_finite_cost_and_objective_set_after_construction():
    system, control, cost, obj = _neuron()
    theta = control.init(0.0)
    bad_cost = eqx.tree_at(lambda c: c.beta, cost, jnp.inf)
    _raises(lambda: _value(system, control, theta, bad_cost, obj), "`cost.beta`")
    bad_obj = eqx.tree_at(lambda o: o.eta, obj, jnp.nan)
    _raises(lambda: _value(system, control, theta, cost, bad_obj), "`objective.eta`")


def _two_layer(**kw):
    task = lc.tasks.CorrelatedGaussians()
    return lc.systems.TwoLayerGain(task, hidden=2, **kw)


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: lc.systems.SingleNeuronGain(
            lc.tasks.TwoGaussians(mu=2.0, sigma=1.0), tau=math.nan), "`tau`"),
        (lambda: lc.systems.SingleNeuronGain(
            lc.tasks.TwoGaussians(mu=2.0, sigma=1.0), lam=math.inf), "`lam`"),
        (lambda: lc.systems.SingleNeuronGain(
            lc.tasks.TwoGaussians(mu=2.0, sigma=1.0), w0=math.nan), "`w0`"),
        (lambda: lc.systems.SingleLayerGain(
            lc.tasks.CorrelatedGaussians(), W0=jnp.full((1, 2), jnp.nan)), "`W0`"),
        (lambda: _two_layer(tau=math.inf), "`tau`"),
        (lambda: _two_layer(W1_0=jnp.full((2, 2), jnp.nan)), "`W1_0`"),
        (lambda: lc.systems.MAML(
            [_RawMoments(**GOOD)], hidden=2, lam=math.nan), "`lam`"),
    ],
    ids=["neuron-tau", "neuron-lam", "neuron-w0", "layer-W0", "two-layer-tau",
         "two-layer-W1_0", "maml-lam"],
)  # fmt: skip
def test_non_finite_system_parameters(make, field):
    _raises(make, field)


class _UserSystem(lc.systems.AbstractLearningSystem):
    """A user's system with a parameter of its own and no checks of its own."""

    rate: jax.Array

    @property
    def control_shape(self):
        return ()

    def init_state(self):
        return jnp.asarray(0.0)

    def vector_field(self, t, w, g):
        return self.rate * (1.0 + g - w)

    def loss(self, t, w, g):
        return 0.5 * (1.0 - w) ** 2


def test_non_finite_field_of_a_user_system():
    _UserSystem(jnp.asarray(2.0))
    _raises(lambda: _UserSystem(jnp.asarray(np.inf)), "`rate` of _UserSystem")


class _WithMean(_RawMoments):
    """A user's task that also stores its input mean."""

    mx: jax.Array


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: _WithMean(**GOOD, mx=np.array([0.0, np.nan])),
         ["`mx` of _WithMean", "non-finite"]),
        (lambda: lc.tasks.CorrelatedGaussians(p=math.nan), ["`p`"]),
        (lambda: lc.tasks.CorrelatedGaussians(sigma=(1.0, math.inf)), ["`sigma`"]),
        (lambda: lc.tasks.TwoGaussians(mu=2.0, sigma=math.inf), ["`sigma`"]),
        (lambda: lc.tasks.EmpiricalStatistics(
            GOOD["sx"], GOOD["sxy"], GOOD["sy"], [0.0, np.nan], [0.0]), ["`mean_x`"]),
        (lambda: lc.tasks.EmpiricalStatistics(
            GOOD["sx"], GOOD["sxy"], GOOD["sy"], [0.0, 0.0], [np.inf]), ["`mean_y`"]),
    ],
    ids=["user-field", "correlated-p", "correlated-sigma", "gaussians-sigma",
         "empirical-mean_x", "empirical-mean_y"],
)  # fmt: skip
def test_non_finite_task_statistics_and_means(make, words):
    _raises(make, *words)


def test_non_finite_mean_of_a_combined_task():
    class Sampled(_RawMoments):
        def sample(self, key, n):
            return jnp.zeros((n, 2)), jnp.zeros((n, 1))

    class BadMean(Sampled):
        def mean_x(self):
            return jnp.array([jnp.nan, 0.0])

    good = Sampled(**GOOD)
    lc.tasks.ConcatenatedTasks([good, good])  # the same without the nan is fine
    _raises(
        lambda: lc.tasks.ConcatenatedTasks([good, BadMean(**GOOD)]),
        "`mean_x() of tasks[1]`",
    )
    _raises(
        lambda: lc.tasks.SwitchingTasks([good, BadMean(**GOOD)], 1.0, 2.0),
        "`mean_x_stack`",
    )


@pytest.mark.parametrize("key", ["T", "gamma", "eta"])
@pytest.mark.parametrize("bad", ["1.0", True, None, [0.5, "x"]], ids=repr)
def test_non_numeric_objective_parameters(key, bad):
    kw = {"T": 1.0, key: bad}
    with pytest.raises(TypeError) as info:
        lc.Objective(**kw)
    assert f"`{key}" in str(info.value) and "real number" in str(info.value)


@pytest.mark.parametrize(
    "make, exc, name",
    [
        (lambda: lc.optimizers.ProjectedGradientAscent(lr=-1), ValueError, "`lr`"),
        (lambda: lc.optimizers.ProjectedGradientAscent(lr=0.0), ValueError, "`lr`"),
        (lambda: lc.optimizers.ProjectedGradientAscent(lr=math.nan), ValueError, "`lr`"),
        (lambda: lc.optimizers.ProjectedGradientAscent(lr="0.1"), TypeError, "`lr`"),
        (lambda: lc.optimizers.Adam(lr=0), ValueError, "`lr`"),
        (lambda: lc.optimizers.Adam(lr=math.inf), ValueError, "`lr`"),
        (lambda: lc.optimizers.Adam(lr=True), TypeError, "`lr`"),
        (lambda: lc.optimizers.Adam(lr=0.1, b1=1.0), ValueError, "`b1`"),
        (lambda: lc.optimizers.Adam(lr=0.1, b2=-0.1), ValueError, "`b2`"),
        (lambda: lc.optimizers.Adam(lr=0.1, eps=math.nan), ValueError, "`eps`"),
        (lambda: lc.optimizers.LBFGS(rtol=-1e-3), ValueError, "`rtol`"),
        (lambda: lc.optimizers.LBFGS(atol=math.inf), ValueError, "`atol`"),
        (lambda: lc.optimizers.LBFGS(history_length=0), ValueError, "`history_length`"),
        (lambda: lc.optimizers.LBFGS(history_length=2.5), TypeError, "`history_length`"),
    ],
)  # fmt: skip
def test_bad_optimiser_parameters(make, exc, name):
    with pytest.raises(exc) as info:
        make()
    assert name in str(info.value)


def test_good_optimiser_parameters_and_schedules_pass():
    import optax

    lc.optimizers.Adam(lr=optax.linear_schedule(0.1, 0.01, 10))
    lc.optimizers.ProjectedGradientAscent(lr=jnp.asarray(0.3))
    lc.optimizers.LBFGS()
    lrs = jax.vmap(lambda lr: lc.optimizers.Adam(lr=lr).lr)(jnp.array([0.1, 0.2]))
    np.testing.assert_allclose(lrs, [0.1, 0.2])


def test_checks_skip_traced_values():
    """vmap and jit over gamma, T or a system field still work (the checks
    inspect concrete values only), and so does grad through them."""
    system, control, cost, obj = _neuron()
    theta = control.init(0.1)

    def over_gamma(gamma):
        return _value(system, control, theta, cost, lc.Objective(T=obj.T, gamma=gamma))

    gammas = jnp.array([0.5, 0.9, 1.0])
    batched = jax.vmap(over_gamma)(gammas)
    for g, v in zip(gammas, batched):
        np.testing.assert_allclose(v, over_gamma(g), rtol=1e-10)
    np.testing.assert_allclose(jax.jit(over_gamma)(0.9), over_gamma(0.9), rtol=1e-10)
    assert np.isfinite(jax.grad(over_gamma)(0.9))

    def over_tau(tau):
        s = lc.systems.SingleNeuronGain(system.task, lam=system.lam, tau=tau)
        return _value(s, control, theta, cost, obj)

    assert np.all(np.isfinite(jax.vmap(over_tau)(jnp.array([0.5, 1.0]))))

    def over_T(T):  # theta of a control whose knots follow T
        c = lc.controls.PiecewiseLinear(jnp.linspace(0.0, T, 7), upper=0.5)
        return _value(system, c, c.init(0.1), cost, lc.Objective(T=T, gamma=0.9))

    assert np.all(np.isfinite(jax.vmap(over_T)(jnp.array([0.4, 0.6]))))


# -------------------------------------------------------- configuration keys


@pytest.mark.parametrize(
    "assignment, words",
    [
        ("objective.gamma=7", ["gamma", "(0, 1]"]),
        ("objective.gamma=1.5", ["gamma"]),
        ("objective.gamma=nan", ["objective.gamma"]),
        ("objective.T=1", ["'objective.T'", "unknown config key"]),
        ("objective.Gamma=0.9", ["'objective.Gamma'", "'objective.gamma'"]),
        ("objective.eta=-1", ["eta"]),
        ("cost.beta=-0.1", ["beta"]),
        ("control.upper=abc", ["control.upper", "float", "'abc'"]),
        ("control.knots=2.5", ["control.knots", "int"]),
        ("solver.max_steps=0", ["max_steps"]),
        ("solver.rtol=0", ["rtol"]),
        ("checkpoint_every=-1", ["checkpoint_every", ">= 0"]),
        ("control.lower=nan", ["control.lower"]),
        ("objective.steps=0", ["T"]),
        ("system.tau=0", ["tau"]),
        ("task.sigma=-1", ["sigma"]),
        ("seed=-3", ["seed"]),
        ("=3", ["key=value"]),
    ],
)
def test_bad_set_names_the_key(assignment, words, tmp_path, capsys):
    out = tmp_path / "run"
    status, _, err = _main(
        capsys, "run", "single-neuron", "--out", str(out), "--set", assignment
    )
    assert status == 2, err
    assert err.startswith("lecontrol: error:") and "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert not out.exists()


@pytest.mark.parametrize(
    "text, words",
    [
        ("[objective]\ngamma = 7\n", ["gamma", "(0, 1]"]),
        (
            "[objective]\ngama = 0.9\n",
            ["'objective.gama'", "'objective.gamma'", "config file"],
        ),
        ('[optimiser]\niterations = "100"\n', ["optimiser.iterations", "int"]),
        ("[optimiser]\niterations = 1.5\n", ["optimiser.iterations", "int"]),
        ("[optimiser]\niterations = true\n", ["optimiser.iterations", "int"]),
        ("[objective]\ngamma = [0.9]\n", ["objective.gamma", "float"]),
        ('seed = "x"\n', ["seed", "int"]),
        ("[run]\ngamma = 0.9\n", ["'run.gamma'", "unknown"]),
        ("gamma = 0.9\ngamma = 0.8\n", ["TOML"]),
    ],
)
def test_bad_config_file_names_the_key(text, words, tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text(text)
    out = tmp_path / "run"
    status, _, err = _main(
        capsys, "run", "single-neuron", "--config", str(path), "--out", str(out)
    )
    assert status == 2, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert not out.exists()


@pytest.mark.parametrize(
    "experiment, how, text, key",
    [
        ("single-neuron", "set", "control.upper=inf", "control.upper"),
        ("single-neuron", "set", "control.lower=-inf", "control.lower"),
        ("single-neuron", "set", "objective.eta=nan", "objective.eta"),
        ("single-neuron", "toml", "[control]\nupper = inf\n", "control.upper"),
        ("single-neuron", "toml", "[objective]\nalpha = nan\n", "objective.alpha"),
        ("effort-gaussians", "set", "task.mu=3,inf", "task.mu"),
        ("effort-gaussians", "toml", "[task]\nsigma = [1.0, nan]\n", "task.sigma"),
    ],
)
def test_non_finite_config_values_are_refused(
    experiment, how, text, key, tmp_path, capsys
):
    """Checked while the configuration is assembled, before the output folder
    exists: no traceback (config.json is strict JSON) and no empty folder."""
    out = tmp_path / "run"
    if how == "set":
        extra = ("--set", text)
    else:
        path = tmp_path / "config.toml"
        path.write_text(text)
        extra = ("--config", str(path))
    status, _, err = _main(
        capsys, "run", experiment, "--quick", "--no-progress", "--out", str(out), *extra
    )
    assert status == 2, err
    assert err.startswith("lecontrol: error:") and "Traceback" not in err
    assert f"`{key}`" in err and "finite" in err, err
    assert not out.exists()


def test_non_finite_config_value_in_python():
    config = lecontrol.experiments.get("single-neuron").default_config(quick=True)
    with pytest.raises(lecontrol.experiments.ConfigError, match="`control.upper`"):
        config.replace({"control.upper": math.inf}, source="test")


def test_bad_seed_flag(capsys, tmp_path):
    status, _, err = _main(
        capsys, "run", "single-neuron", "--seed", "-1", "--out", str(tmp_path / "r")
    )
    assert status == 2 and "seed" in err


# ------------------------------------------------------------ output folder


def test_output_folder_with_a_run_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    io.write_json(out / "config.json", {"experiment": "single-neuron"})
    before = (out / "config.json").read_bytes()
    status, _, err = _main(
        capsys,
        "run",
        "single-neuron",
        "--set",
        "objective.gamma=0.9",
        "--out",
        str(out),
    )
    assert status == 2
    assert str(out) in err and "not empty" in err and "--overwrite" in err
    assert (out / "config.json").read_bytes() == before
    # --overwrite accepts it (the folder is only prepared here).
    assert io.prepare_out_dir(out, overwrite=True) == out


def test_output_folder_that_cannot_be_written(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    for out, words in (
        (blocker, ["exists and is not a folder"]),
        (blocker / "run", ["not writable", "--out"]),
    ):
        status, _, err = _main(capsys, "run", "single-neuron", "--out", str(out))
        assert status == 2 and "Traceback" not in err, err
        for word in words:
            assert word in err, (word, err)


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere"
)
def test_read_only_output_folder(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        status, _, err = _main(
            capsys, "run", "single-neuron", "--out", str(locked / "run")
        )
        assert status == 2 and "not writable" in err
    finally:
        locked.chmod(0o700)


# ------------------------------------------- MNIST folders, through the CLI


def _idx(path, arr, code=0x08, magic=None, cut=0):
    arr = np.asarray(arr, dtype=np.uint8)
    header = magic if magic is not None else bytes([0, 0, code, arr.ndim])
    data = header + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()
    path.write_bytes(data[: len(data) - cut] if cut else data)


def _mnist_folder(folder, *, images=None, labels=None):
    folder.mkdir()
    rng = np.random.default_rng(0)
    n = 20
    imgs = rng.integers(0, 256, (n, 28, 28))
    labs = np.arange(n) % 2
    (images or (lambda p, a: _idx(p, a)))(folder / "t10k-images-idx3-ubyte", imgs)
    (labels or (lambda p, a: _idx(p, a)))(folder / "t10k-labels-idx1-ubyte", labs)
    return folder


@pytest.mark.parametrize(
    "case, words",
    [
        ("missing-folder", ["MNIST folder", "does not exist", "task.mnist_folder"]),
        ("missing-labels", ["t10k-labels-idx1-ubyte", "not found"]),
        (
            "truncated-images",
            ["t10k-images-idx3-ubyte", "truncated", "Download it again"],
        ),
        ("wrong-magic", ["t10k-labels-idx1-ubyte", "magic number"]),
        ("wrong-sizes", ["disagree", "20 images", "19 labels"]),
        ("corrupt-gzip", ["gzip", "corrupt"]),
    ],
)
def test_bad_mnist_folder_through_the_cli(case, words, tmp_path, capsys):
    """`effort-digits` reads MNIST from `task.mnist_folder` (`task.dataset =
    "mnist"`, the default but for quick runs): each broken folder is reported
    before anything runs, naming the file and the problem."""
    folder = tmp_path / "mnist"
    if case == "missing-folder":
        pass
    elif case == "missing-labels":
        _mnist_folder(folder)
        (folder / "t10k-labels-idx1-ubyte").unlink()
    elif case == "truncated-images":
        _mnist_folder(folder, images=lambda p, a: _idx(p, a, cut=100))
    elif case == "wrong-magic":
        _mnist_folder(folder, labels=lambda p, a: _idx(p, a, magic=b"\x1f\x00\x08\x01"))
    elif case == "wrong-sizes":
        _mnist_folder(folder, labels=lambda p, a: _idx(p, a[:19]))
    elif case == "corrupt-gzip":
        _mnist_folder(folder)
        (folder / "t10k-images-idx3-ubyte").unlink()
        (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    out = tmp_path / "run"
    status, _, err = _main(
        capsys, "run", "effort-digits", "--quick", "--out", str(out),
        "--set", "task.dataset=mnist", "--set", f"task.mnist_folder={folder}",
    )  # fmt: skip
    assert status == 2, err
    assert "Traceback" not in err and "effort-digits" in err
    for word in words:
        assert word in err, (word, err)
    assert not out.exists()


def test_the_synthetic_mnist_folder_is_valid(tmp_path):
    """Guard: the folder the cases above break is itself readable."""
    task = lc.tasks.Digits.load(
        classes=(0, 1), mnist_folder=_mnist_folder(tmp_path / "m")
    )
    assert task.n_inputs == 26 and task.n_outputs == 1


# ---------------------------------------------------------- solver failures


class _BlowUp(lc.systems.AbstractLearningSystem):
    """dw/dt = w² + g, w(0) = 2: w = 1/(0.5 - t) reaches infinity at t = 0.5."""

    @property
    def control_shape(self):
        return ()

    def init_state(self):
        return jnp.asarray(2.0)

    def vector_field(self, t, w, g):
        return w**2 + g

    def loss(self, t, w, g):
        return 0.5 * w**2


class _NanAfterHalf(lc.systems.AbstractLearningSystem):
    """dw/dt = -w + sqrt(0.5 - t) + g: nan for t > 0.5."""

    @property
    def control_shape(self):
        return ()

    def init_state(self):
        return jnp.asarray(1.0)

    def vector_field(self, t, w, g):
        return -w + jnp.sqrt(0.5 - t) + g

    def loss(self, t, w, g):
        return 0.5 * w**2


class _OscillatingCostate(lc.systems.AbstractLearningSystem):
    """w stays 0, so the forward solve is trivial, but ∂⟨L⟩/∂w = sin(2000 t)
    makes the backward costate solve need thousands of steps."""

    @property
    def control_shape(self):
        return ()

    def init_state(self):
        return jnp.asarray(0.0)

    def vector_field(self, t, w, g):
        return -w + 0.0 * g

    def loss(self, t, w, g):
        return w * jnp.sin(2000.0 * t)


def _failing(system, max_steps):
    control = lc.controls.PiecewiseLinear(jnp.linspace(0.0, 1.0, 5))
    args = (
        lc.Problem(system, control, lc.costs.Quadratic(0.1), lc.Objective(T=1.0)),
        control.init(0.0),
    )
    kw = dict(options=lc.SolverOptions(max_steps=max_steps))
    return {
        "value": lambda: lc.value(*args, **kw),
        "solve": lambda: lc.solve(*args, ts=jnp.linspace(0.0, 1.0, 5), **kw).V,
        "grad": lambda: jax.grad(lc.value, argnums=1)(*args, **kw),
        "grad-checkpoint": lambda: jax.grad(lc.value, argnums=1)(
            *args, adjoint=lc.CheckpointAdjoint(), **kw
        ),
        "jit": lambda: eqx.filter_jit(lc.value)(*args, **kw),
    }


def _assert_solver_advice(call, max_steps):
    # equinox's error through eqx.filter_jit; a JaxRuntimeError that carries it
    # when raised inside a transformation (the backward pass of jax.grad).
    with pytest.raises((eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError)) as info:
        jax.block_until_ready(call())
    message = runtime_error_message(info.value)
    assert "ODE solve" in message and "failed" in message
    assert f"`max_steps` (now {max_steps})" in message
    assert "rtol" in message and "jump" in message


class _Neuron(lc.systems.AbstractLearningSystem):
    """dw/dt = 2 (1 + g) - 5 w: a plain, well-behaved system."""

    @property
    def control_shape(self):
        return ()

    def init_state(self):
        return jnp.asarray(0.0)

    def vector_field(self, t, w, g):
        return 2.0 * (1.0 + g) - 5.0 * w

    def loss(self, t, w, g):
        return 0.5 * (w - 0.4) ** 2


@pytest.mark.parametrize(
    "system, max_steps, how",
    [
        (_Neuron(), 3, how)
        for how in ("value", "solve", "grad", "grad-checkpoint", "jit")
    ]
    + [(_BlowUp(), 300, how) for how in ("value", "grad")]
    + [(_NanAfterHalf(), 300, how) for how in ("solve", "grad-checkpoint")],
    ids=lambda x: (
        x
        if isinstance(x, str)
        else type(x).__name__.strip("_")
        if isinstance(x, lc.systems.AbstractLearningSystem)
        else str(x)
    ),
)
def test_solver_failure_raises_with_advice(system, max_steps, how):
    _assert_solver_advice(_failing(system, max_steps)[how], max_steps)


def test_backward_costate_failure_is_reported():
    """The forward solve succeeds; the continuous adjoint's backward solve does
    not, and says so instead of returning a wrong gradient."""
    calls = _failing(_OscillatingCostate(), 300)
    assert float(calls["value"]()) == 0.0  # forward is fine
    _assert_solver_advice(calls["grad"], 300)


def test_cli_solver_failure_writes_no_results_or_figures(tmp_path, capsys):
    out = tmp_path / "run"
    status, _, err = _main(
        capsys,
        "run",
        "single-neuron",
        "--quick",
        "--no-progress",
        "--out",
        str(out),
        "--set",
        "solver.max_steps=5",
    )
    assert status == 1
    assert "max_steps" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]
