r"""Dynamic allocation of memory precision in a tabular reinforcement learner.

The agent of Patel, Acerbi & Pouget (2020), "Dynamic allocation of limited
memory resources in reinforcement learning". Each memory, the value of action
$a$ in state $s$, is a distribution rather than a number,

$$\tilde q_{sa} \sim \mathcal N(\bar q_{sa}, \sigma_{sa}^2),$$

and the agent acts by Thompson sampling: one draw of every memory of the
current state, then the action whose draw is largest. The means $\bar q$ are
learnt by temporal differences; the standard deviations $\sigma$ (the
precision of each memory, the resource) move offline, between trials, up the
gradient of expected return minus the cost of precision
$\lambda\sum_{sa}\mathrm{KL}(\mathcal N(\bar q_{sa}, \sigma_{sa}^2)\Vert
\mathcal N(\bar q_{sa}, \sigma_\text{base}^2))$ ([`lecontrol.costs.KLPrecision`][]).

Everything here is a pure JAX function of equinox modules: `jit`, `vmap`
(over restarts, over agents with different $\lambda$) and `grad` work through
it. Tabular tasks are deterministic: `next_state[s, a]`, `reward[s, a]`.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax.scipy.special import ndtr
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from ._checks import check_positive
from .costs import KLPrecision

__all__ = [
    "AbstractCredit",
    "AbstractTabularTask",
    "AbstractTDRule",
    "Advantage",
    "AgentState",
    "ExpectedSarsa",
    "GridWorld",
    "History",
    "PrecisionAgent",
    "QLearning",
    "RewardToGo",
    "TabularMDP",
    "cost_gradient",
    "discriminability",
    "equal_precision",
    "expected_return",
    "impact",
    "log_policy_gradient",
    "memory_mask",
    "policy_gradient",
    "policy_value",
    "thompson_probabilities",
    "train",
    "train_restarts",
]


def _f(x) -> Array:
    return jnp.asarray(x, dtype=float)


# --------------------------------------------------------------------------
# Tasks


class AbstractTabularTask(eqx.Module):
    r"""A deterministic episodic task with finitely many states and actions.

    Taking action $a$ in state $s$ pays `reward[s, a]` and moves to
    `next_state[s, a]`. An episode starts in `start` and ends on entering a
    state with `terminal[s]` true, or after `max_steps` steps, whichever comes
    first. Memories of terminal states are never used.
    """

    next_state: eqx.AbstractVar[Int[Array, "states actions"]]
    reward: eqx.AbstractVar[Float[Array, "states actions"]]
    terminal: eqx.AbstractVar[Bool[Array, " states"]]
    start: eqx.AbstractVar[int]
    max_steps: eqx.AbstractVar[int]

    @property
    def n_states(self) -> int:
        return self.next_state.shape[0]

    @property
    def n_actions(self) -> int:
        return self.next_state.shape[1]


def _check_tables(next_state, reward, terminal, start, max_steps):
    ns = np.asarray(next_state)
    if ns.ndim != 2:
        raise ValueError(
            f"`next_state` must be a (states, actions) integer table; got shape "
            f"{ns.shape}."
        )
    if np.shape(reward) != ns.shape:
        raise ValueError(
            f"`reward` must have the shape of `next_state` {ns.shape}; got "
            f"{np.shape(reward)}."
        )
    if np.shape(terminal) != ns.shape[:1]:
        raise ValueError(
            f"`terminal` must have one entry per state ({ns.shape[0]}); got shape "
            f"{np.shape(terminal)}."
        )
    if ns.min() < 0 or ns.max() >= ns.shape[0]:
        raise ValueError("`next_state` entries must be state indices in [0, states).")
    if not 0 <= int(start) < ns.shape[0]:
        raise ValueError(f"`start` must be a state index; got {start}.")
    if int(max_steps) < 1:
        raise ValueError(f"`max_steps` must be a positive integer; got {max_steps}.")


class TabularMDP(AbstractTabularTask):
    r"""A deterministic tabular task given by its tables.

    **Arguments:**

    - `next_state`: integer table (states, actions), the state reached.
    - `reward`: table (states, actions), the reward paid for the step.
    - `terminal`: boolean per state; entering one ends the episode.
    - `start`: the start state.
    - `max_steps`: the step limit of an episode.
    """

    next_state: Int[Array, "states actions"]
    reward: Float[Array, "states actions"]
    terminal: Bool[Array, " states"]
    start: int = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(self, next_state, reward, terminal, start: int, max_steps: int):
        _check_tables(next_state, reward, terminal, start, max_steps)
        self.next_state = jnp.asarray(next_state, dtype=jnp.int32)
        self.reward = _f(reward)
        self.terminal = jnp.asarray(terminal, dtype=bool)
        self.start = int(start)
        self.max_steps = int(max_steps)


_DYNA_WALLS = ((1, 2), (2, 2), (3, 2), (4, 5), (0, 7), (1, 7), (2, 7))


class GridWorld(AbstractTabularTask):
    r"""A grid maze: move up, down, left or right; find the goal.

    The default is the 6 × 9 maze of Sutton & Barto's Dyna example (rows
    counted from the top, columns from the left): walls at (1, 2), (2, 2),
    (3, 2), (4, 5), (0, 7), (1, 7), (2, 7); start (2, 0); goal (0, 8). This
    is the maze the authors' published code uses for the grid-world task (the
    paper's appendix does not describe the layout). Every step pays
    `step_reward` ($-1$) except the step that enters the goal, which pays
    `goal_reward` ($+10$) and ends the episode. A move into a wall or off the
    grid leaves the agent where it is (and pays $-1$). Episodes also end after
    `max_steps` steps (default 500). The shortest path takes 14 steps, so the
    best return is $-3$.

    States are the free cells in row-major order; `cells[s]` is the
    (row, column) of state `s`. Actions: 0 up, 1 down, 2 left, 3 right.

    **Arguments:**

    - `height`, `width`: grid size.
    - `walls`: (row, column) of each blocked cell.
    - `start`, `goal`: (row, column) of the start and of the goal.
    - `goal_reward`, `step_reward`: the rewards.
    - `max_steps`: the step limit of an episode.
    """

    next_state: Int[Array, "states actions"]
    reward: Float[Array, "states actions"]
    terminal: Bool[Array, " states"]
    start: int = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    height: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    cells: tuple[tuple[int, int], ...] = eqx.field(static=True)

    def __init__(
        self,
        height: int = 6,
        width: int = 9,
        walls: tuple[tuple[int, int], ...] = _DYNA_WALLS,
        start: tuple[int, int] = (2, 0),
        goal: tuple[int, int] = (0, 8),
        goal_reward: float = 10.0,
        step_reward: float = -1.0,
        max_steps: int = 500,
    ):
        walls = {tuple(int(i) for i in w) for w in walls}
        start, goal = tuple(start), tuple(goal)
        for name, c in (("start", start), ("goal", goal)):
            if not (0 <= c[0] < height and 0 <= c[1] < width) or c in walls:
                raise ValueError(
                    f"`{name}` {c} must be a free cell of the {height}×{width} grid."
                )
        cells = tuple(
            (r, c) for r in range(height) for c in range(width) if (r, c) not in walls
        )
        index = {cell: i for i, cell in enumerate(cells)}
        moves = ((-1, 0), (1, 0), (0, -1), (0, 1))
        ns = np.zeros((len(cells), 4), dtype=np.int32)
        rw = np.full((len(cells), 4), float(step_reward))
        for i, (r, c) in enumerate(cells):
            for a, (dr, dc) in enumerate(moves):
                target = (r + dr, c + dc)
                ns[i, a] = index.get(target, i)
                if target == goal:
                    rw[i, a] = float(goal_reward)
        terminal = np.zeros(len(cells), dtype=bool)
        terminal[index[goal]] = True
        _check_tables(ns, rw, terminal, index[start], max_steps)
        self.next_state = jnp.asarray(ns)
        self.reward = _f(rw)
        self.terminal = jnp.asarray(terminal)
        self.start = index[start]
        self.max_steps = int(max_steps)
        self.height = int(height)
        self.width = int(width)
        self.cells = cells

    def as_grid(self, values: Float[Array, " states"], fill=np.nan) -> np.ndarray:
        """Lay one value per state out on the grid (walls get `fill`)."""
        out = np.full((self.height, self.width), fill, dtype=float)
        v = np.asarray(values)
        for i, (r, c) in enumerate(self.cells):
            out[r, c] = v[i]
        return out


def memory_mask(task: AbstractTabularTask) -> Bool[Array, "states actions"]:
    """True for the memories that are used: those of non-terminal states."""
    return jnp.broadcast_to(~task.terminal[:, None], task.next_state.shape)


# --------------------------------------------------------------------------
# Strategies


class AbstractTDRule(eqx.Module):
    r"""How temporal differences bootstrap: the value $v(s')$ in the target
    $r + \gamma v(s')$ of the update
    $\bar q_{sa} \leftarrow \bar q_{sa} + \alpha_1(r + \gamma v(s') - \bar q_{sa})$.
    """

    @abc.abstractmethod
    def bootstrap(
        self,
        q_next: Float[Array, " actions"],
        sigma_next: Float[Array, " actions"],
        beta: Float[Array, ""],
        key: PRNGKeyArray,
    ) -> Float[Array, ""]:
        """The value of the next state from its memories."""


class ExpectedSarsa(AbstractTDRule):
    r"""On-policy bootstrap: $v(s') = \sum_{a'}\pi_\zeta(a'|s')\,\bar q_{s'a'}$,
    with $\pi_\zeta$ the softmax policy of inverse temperature $\beta$ on one
    fresh draw $\bar q_{s'} + \zeta\sigma_{s'}$ (the relaxed Thompson policy,
    Eq. A.1). This is the rule of the authors' published code."""

    def bootstrap(self, q_next, sigma_next, beta, key):
        zeta = jr.normal(key, q_next.shape, q_next.dtype)
        pi = jax.nn.softmax(beta * (q_next + sigma_next * zeta))
        return jnp.dot(pi, q_next)


class QLearning(AbstractTDRule):
    r"""Off-policy bootstrap: $v(s') = \max_{a'}\bar q_{s'a'}$ (Q-learning)."""

    def bootstrap(self, q_next, sigma_next, beta, key):
        return jnp.max(q_next)


class AbstractCredit(eqx.Module):
    r"""What multiplies the score $\nabla_\sigma\log\pi(a_t|s_t)$ in the
    policy-gradient estimate $\nabla_\sigma\mathbb E[R] \approx
    \frac1{N}\sum_{\text{traj}}\sum_t \nabla_\sigma\log\pi(a_t|s_t)\,\Psi_t$.

    `accumulate` is called once per step with the score row of the state
    visited; it returns the updated gradient and an auxiliary trace.
    """

    @abc.abstractmethod
    def accumulate(
        self,
        grad: Float[Array, "states actions"],
        trace: Float[Array, "states actions"],
        s: Int[Array, ""],
        a: Int[Array, ""],
        r: Float[Array, ""],
        score: Float[Array, " actions"],
        q: Float[Array, "states actions"],
        gamma: Float[Array, ""],
    ) -> tuple[Float[Array, "states actions"], Float[Array, "states actions"]]:
        """Add this step's contribution."""


class Advantage(AbstractCredit):
    r"""$\Psi_t = \bar q_{s_ta_t} - \frac1{|A|}\sum_{a'}\bar q_{s_ta'}$: the
    advantage computed from the learnt means (the paper's choice, appendix
    A.3; the baseline is the mean over actions, as in the authors' code). It
    is unbiased when $\bar q$ equals the relaxed policy's action values."""

    def accumulate(self, grad, trace, s, a, r, score, q, gamma):
        adv = q[s, a] - jnp.mean(q[s])
        return grad.at[s].add(score * adv), trace


class RewardToGo(AbstractCredit):
    r"""$\Psi_t = \sum_{t'\ge t}\gamma^{t'-t} r_{t'}$: the sampled return from
    step $t$ on (REINFORCE). Unbiased for the relaxed policy whatever $\bar q$;
    noisier than [`Advantage`][lecontrol.precision.Advantage]."""

    def accumulate(self, grad, trace, s, a, r, score, q, gamma):
        trace = (gamma * trace).at[s].add(score)
        return grad + r * trace, trace


# --------------------------------------------------------------------------
# Agent


class AgentState(eqx.Module):
    r"""The memories: means $\bar q_{sa}$ and standard deviations $\sigma_{sa}$."""

    q: Float[Array, "states actions"]
    sigma: Float[Array, "states actions"]


class PrecisionAgent(eqx.Module):
    r"""The hyperparameters of the dynamic resource allocator.

    Defaults are the paper's grid-world values (Table B.1): $\alpha_1 =
    \alpha_2 = 0.1$, $\beta = 10$, $\gamma = 1$, $\lambda = 0.2$,
    $\sigma_\text{base} = 5$, $\sigma_0 = 3$, $N_\text{traj} = 10$.

    **Arguments:**

    - `alpha_q`: $\alpha_1$, the TD learning rate of $\bar q$.
    - `alpha_sigma`: $\alpha_2$, the learning rate of $\sigma$.
    - `beta`: $\beta$, the inverse temperature of the relaxed policy (A.1).
    - `gamma`: $\gamma$, the discount.
    - `lam`: $\lambda$, the price of precision.
    - `sigma_base`: $\sigma_\text{base}$, the precision that costs nothing.
    - `sigma0`: $\sigma_0$, the initial standard deviation of every memory.
    - `n_traj`: $N_\text{traj}$, trajectories per allocation update.
    - `sigma_min`, `sigma_max`: bounds $\sigma$ is clipped to after each
      update (0.01 and 100, as in the authors' code).
    - `td`: the temporal-difference rule, default
      [`ExpectedSarsa`][lecontrol.precision.ExpectedSarsa].
    - `credit`: the weight of each score, default
      [`Advantage`][lecontrol.precision.Advantage].
    """

    alpha_q: Float[Array, ""] = eqx.field(converter=_f, default=0.1)
    alpha_sigma: Float[Array, ""] = eqx.field(converter=_f, default=0.1)
    beta: Float[Array, ""] = eqx.field(converter=_f, default=10.0)
    gamma: Float[Array, ""] = eqx.field(converter=_f, default=1.0)
    lam: Float[Array, ""] = eqx.field(converter=_f, default=0.2)
    sigma_base: Float[Array, ""] = eqx.field(converter=_f, default=5.0)
    sigma0: Float[Array, ""] = eqx.field(converter=_f, default=3.0)
    n_traj: int = eqx.field(static=True, default=10)
    sigma_min: Float[Array, ""] = eqx.field(converter=_f, default=0.01)
    sigma_max: Float[Array, ""] = eqx.field(converter=_f, default=100.0)
    td: AbstractTDRule = ExpectedSarsa()
    credit: AbstractCredit = Advantage()

    def __check_init__(self):
        for name in ("beta", "sigma_base", "sigma0", "sigma_min", "sigma_max"):
            check_positive(name, getattr(self, name))
        for name in ("alpha_q", "alpha_sigma", "gamma", "lam"):
            check_positive(name, getattr(self, name), allow_zero=True)
        if self.n_traj < 1:
            raise ValueError(f"`n_traj` must be a positive integer; got {self.n_traj}.")

    @property
    def cost(self) -> KLPrecision:
        """The price of precision, $\\lambda\\,\\mathrm{KL}$, as a cost module."""
        return KLPrecision(self.sigma_base, self.lam)

    def init(self, task: AbstractTabularTask) -> AgentState:
        """Memories before learning: $\\bar q = 0$, $\\sigma = \\sigma_0$."""
        shape = task.next_state.shape
        return AgentState(jnp.zeros(shape), jnp.full(shape, self.sigma0))


def cost_gradient(agent: PrecisionAgent, sigma: Array) -> Array:
    r"""$\partial C/\partial\sigma_{sa} = \lambda(\sigma_{sa}/\sigma_\text{base}^2
    - 1/\sigma_{sa})$, the gradient of the KL cost (Eq. A.7)."""
    return agent.lam * (sigma / agent.sigma_base**2 - 1.0 / sigma)


def log_policy_gradient(
    beta: Float[Array, ""],
    zeta: Float[Array, " actions"],
    pi: Float[Array, " actions"],
    a: Int[Array, ""],
) -> Float[Array, " actions"]:
    r"""The score of the relaxed Thompson policy in the visited state (Eq. A.3):

    $$\frac{\partial\log\pi(a|s)}{\partial\sigma_{sa'}} =
    \beta\,\zeta_{sa'}\big(\delta_{aa'} - \pi(a'|s)\big),$$

    with $\zeta$ the standard-normal draws and $\pi$ the softmax of
    $\beta(\bar q_s + \zeta\sigma_s)$. Memories of other states get 0.
    """
    return beta * zeta * (jax.nn.one_hot(a, zeta.shape[0], dtype=zeta.dtype) - pi)


def _draw(key, state: AgentState, s):
    q_row, sigma_row = state.q[s], state.sigma[s]
    zeta = jr.normal(key, q_row.shape, q_row.dtype)
    return zeta, q_row + sigma_row * zeta


def _episode(task: AbstractTabularTask, agent: PrecisionAgent, state: AgentState, key):
    """One trial: act by Thompson sampling, learn q̄ by TD. Returns the new
    state, the return and the number of steps."""

    def cond(carry):
        _, t, done, *_ = carry
        return (~done) & (t < task.max_steps)

    def body(carry):
        s, t, done, q, ret, key = carry
        key, k_act, k_td = jr.split(key, 3)
        _, draws = _draw(k_act, AgentState(q, state.sigma), s)
        a = jnp.argmax(draws)
        s1 = task.next_state[s, a]
        r = task.reward[s, a]
        end = task.terminal[s1]
        v1 = agent.td.bootstrap(q[s1], state.sigma[s1], agent.beta, k_td)
        target = r + agent.gamma * jnp.where(end, 0.0, v1)
        q = q.at[s, a].add(agent.alpha_q * (target - q[s, a]))
        ret = ret + agent.gamma**t * r
        return s1, t + 1, end, q, ret, key

    init = (
        jnp.asarray(task.start),
        jnp.asarray(0),
        task.terminal[task.start],
        state.q,
        jnp.zeros((), state.q.dtype),
        key,
    )
    _, steps, _, q, ret, _ = jax.lax.while_loop(cond, body, init)
    return AgentState(q, state.sigma), ret, steps


def _gradient_rollout(task, agent, state, key, score_fn):
    """One trajectory of the relaxed policy; its policy-gradient sample."""
    zeros = jnp.zeros_like(state.sigma)

    def cond(carry):
        _, t, done, *_ = carry
        return (~done) & (t < task.max_steps)

    def body(carry):
        s, t, done, grad, trace, key = carry
        key, k_z, k_a = jr.split(key, 3)
        zeta, draws = _draw(k_z, state, s)
        logits = agent.beta * draws
        a = jr.categorical(k_a, logits)
        pi = jax.nn.softmax(logits)
        score = score_fn(agent.beta, zeta, pi, a)
        r = task.reward[s, a]
        grad, trace = agent.credit.accumulate(
            grad, trace, s, a, r, score, state.q, agent.gamma
        )
        s1 = task.next_state[s, a]
        return s1, t + 1, task.terminal[s1], grad, trace, key

    init = (
        jnp.asarray(task.start),
        jnp.asarray(0),
        task.terminal[task.start],
        zeros,
        zeros,
        key,
    )
    return jax.lax.while_loop(cond, body, init)[3]


def _policy_gradient(task, state, agent, key, n_traj, score_fn=log_policy_gradient):
    keys = jr.split(key, n_traj)
    grads = jax.vmap(lambda k: _gradient_rollout(task, agent, state, k, score_fn))(keys)
    return jnp.mean(grads, axis=0)


@eqx.filter_jit
def policy_gradient(
    task: AbstractTabularTask,
    state: AgentState,
    agent: PrecisionAgent,
    key: PRNGKeyArray,
    n_traj: int | None = None,
) -> Float[Array, "states actions"]:
    r"""Estimate $\nabla_\sigma\mathbb E[R]$ from sampled trajectories.

    Each of `n_traj` trajectories (default `agent.n_traj`) starts at
    `task.start` and follows the relaxed Thompson policy: at each step one
    draw $\zeta\sim\mathcal N(0, I)$ of the state's memories, then an action
    sampled from $\mathrm{softmax}(\beta(\bar q_s + \zeta\sigma_s))$ (Eq. A.1
    at finite $\beta$). The estimate is

    $$\widehat{\nabla_\sigma\mathbb E[R]} = \frac1{N_\text{traj}}
    \sum_\text{traj}\sum_t \nabla_\sigma\log\pi(a_t|s_t)\,\Psi_t,$$

    with the score of Eq. A.3 ([`log_policy_gradient`][lecontrol.precision.log_policy_gradient])
    and $\Psi_t$ from `agent.credit`. Treating $\zeta$ as part of the sampled
    trajectory, with `RewardToGo` this is an unbiased estimate of the
    gradient of the relaxed policy's expected return.

    **Returns:** an array of the shape of $\sigma$.
    """
    n = agent.n_traj if n_traj is None else int(n_traj)
    return _policy_gradient(task, state, agent, key, n)


def _update_sigma(task, agent, state, grad):
    mask = memory_mask(task)
    step = agent.alpha_sigma * (grad - cost_gradient(agent, state.sigma))
    sigma = jnp.clip(state.sigma + step, agent.sigma_min, agent.sigma_max)
    return AgentState(state.q, jnp.where(mask, sigma, state.sigma))


def _masked_cost(task, agent, sigma):
    mask = memory_mask(task)
    return agent.cost(jnp.where(mask, sigma, agent.sigma_base))


# --------------------------------------------------------------------------
# Exact evaluation of the Thompson policy


_Z = np.linspace(-8.0, 8.0, 801)
_W = np.exp(-0.5 * _Z**2) / np.sqrt(2 * np.pi) * np.gradient(_Z)
_W[[0, -1]] *= 0.5


def _thompson_row(q_row, sigma_row):
    z = jnp.asarray(_Z, q_row.dtype)
    w = jnp.asarray(_W, q_row.dtype)
    # x[a, z]: the draw of memory a when its standard-normal draw is z.
    x = q_row[:, None] + sigma_row[:, None] * z
    # P(draw of a' < x[a, z]) for every pair (a, a').
    c = ndtr((x[:, None, :] - q_row[None, :, None]) / sigma_row[None, :, None])
    n = q_row.shape[0]
    c = jnp.where(jnp.eye(n, dtype=bool)[:, :, None], 1.0, c)
    p = jnp.prod(c, axis=1) @ w
    return p / jnp.sum(p)


def thompson_probabilities(
    q: Float[Array, "states actions"], sigma: Float[Array, "states actions"]
) -> Float[Array, "states actions"]:
    r"""$\pi(a|s)$ of (hard) Thompson sampling, by quadrature:

    $$\pi(a|s) = \int\phi(z)\prod_{a'\ne a}\Phi\Big(\frac{\bar q_{sa} +
    \sigma_{sa}z - \bar q_{sa'}}{\sigma_{sa'}}\Big)\,dz,$$

    the trapezoid rule on 801 points of $[-8, 8]$, rows renormalised (about
    $10^{-3}$ accurate when one memory is far more precise than another).
    """
    return jax.vmap(_thompson_row)(q, sigma)


def policy_value(
    task: AbstractTabularTask,
    pi: Float[Array, "states actions"],
    gamma: Float[Array, ""] | float = 1.0,
) -> Float[Array, " states"]:
    r"""Expected return of the stationary policy `pi` from each state, within
    the step limit: `task.max_steps` backups of
    $v(s) = \sum_a\pi(a|s)\,[r(s,a) + \gamma v(s'(s,a))]$, with $v = 0$ on
    terminal states (finite-horizon evaluation, exact for the task's
    episodes)."""

    def backup(v, _):
        v = jnp.sum(pi * (task.reward + gamma * v[task.next_state]), axis=1)
        return jnp.where(task.terminal, 0.0, v), None

    v0 = jnp.zeros(task.n_states, pi.dtype)
    return jax.lax.scan(backup, v0, None, length=task.max_steps)[0]


def expected_return(
    task: AbstractTabularTask, agent: PrecisionAgent, state: AgentState
) -> Float[Array, ""]:
    """Expected return from `task.start` of Thompson sampling on `state`."""
    pi = thompson_probabilities(state.q, state.sigma)
    return policy_value(task, pi, agent.gamma)[task.start]


def impact(
    task: AbstractTabularTask, agent: PrecisionAgent, state: AgentState
) -> Float[Array, "states actions"]:
    r"""How much each memory matters for cumulative reward: the drop in
    expected return (of Thompson sampling, exactly evaluated) when that one
    memory's precision is lost, its $\sigma_{sa}$ raised to $\sigma_\text{base}$:

    $$I_{sa} = J(\sigma) - J(\sigma\text{ with }\sigma_{sa}\to\sigma_\text{base}).$$

    Memories of terminal states get 0. (The appendix does not define impact;
    this is our definition.)
    """
    pi = thompson_probabilities(state.q, state.sigma)
    base = policy_value(task, pi, agent.gamma)[task.start]
    n_s, n_a = state.q.shape

    def drop(s, a):
        sigma_row = state.sigma[s].at[a].set(agent.sigma_base)
        pi_s = pi.at[s].set(_thompson_row(state.q[s], sigma_row))
        return base - policy_value(task, pi_s, agent.gamma)[task.start]

    ss, aa = jnp.meshgrid(jnp.arange(n_s), jnp.arange(n_a), indexing="ij")
    out = jax.lax.map(lambda sa: drop(*sa), (ss.ravel(), aa.ravel()), batch_size=64)
    return jnp.where(memory_mask(task), out.reshape(n_s, n_a), 0.0)


def discriminability(state: AgentState) -> Float[Array, "states actions"]:
    r"""How precisely a memory separates its action from the others: the mean
    distance of its mean to the other actions' means, in units of its own
    standard deviation,

    $$d_{sa} = \frac1{|A|-1}\sum_{a'\ne a}\frac{|\bar q_{sa} - \bar q_{sa'}|}
    {\sigma_{sa}}.$$

    (The appendix does not define it; this is our definition.)
    """
    q = state.q
    n = q.shape[1]
    gaps = jnp.abs(q[:, :, None] - q[:, None, :])
    return jnp.sum(gaps, axis=2) / (n - 1) / state.sigma


def equal_precision(
    task: AbstractTabularTask, agent: PrecisionAgent, sigma: Float[Array, "s a"]
) -> Float[Array, "states actions"]:
    r"""The equal-precision allocation of the same total cost: one
    $\sigma_\text{eq} \le \sigma_\text{base}$ for every used memory with
    $\sum_{sa}\mathrm{KL}(\sigma_\text{eq}) = \sum_{sa}\mathrm{KL}(\sigma_{sa})$
    (bisection; other memories keep their value)."""
    mask = memory_mask(task)
    sb = agent.sigma_base

    def kl(x):
        return jnp.log(sb / x) + x**2 / (2 * sb**2) - 0.5

    target = jnp.sum(jnp.where(mask, kl(sigma), 0.0)) / jnp.sum(mask)

    def bisect(lohi, _):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        too_costly = kl(mid) > target  # kl decreases on (0, sigma_base]
        return (jnp.where(too_costly, mid, lo), jnp.where(too_costly, hi, mid)), None

    lo, hi = jax.lax.scan(
        bisect, (jnp.asarray(1e-12, sigma.dtype), sb.astype(sigma.dtype)), None, 200
    )[0]
    return jnp.where(mask, 0.5 * (lo + hi), sigma)


# --------------------------------------------------------------------------
# Training


class History(eqx.Module):
    """Per-trial record of [`train`][lecontrol.precision.train] (leading axis:
    trials; after [`train_restarts`][lecontrol.precision.train_restarts],
    restarts then trials).

    - `q`, `sigma`: the memories at the end of each trial.
    - `returns`: the return collected in the trial.
    - `steps`: the trial's length.
    - `cost`: $\\lambda\\sum\\mathrm{KL}$ of the used memories after the trial.

    For the exact expected return after trial `i`, call
    [`expected_return`][lecontrol.precision.expected_return] on
    `AgentState(history.q[i], history.sigma[i])` (it is not recorded: the
    quadrature costs more than a trial).
    """

    q: Float[Array, "trials states actions"]
    sigma: Float[Array, "trials states actions"]
    returns: Float[Array, " trials"]
    steps: Int[Array, " trials"]
    cost: Float[Array, " trials"]

    @property
    def final(self) -> AgentState:
        """The memories after the last trial."""
        return AgentState(self.q[..., -1, :, :], self.sigma[..., -1, :, :])


@eqx.filter_jit
def train(
    task: AbstractTabularTask,
    agent: PrecisionAgent,
    key: PRNGKeyArray,
    trials: int,
    state: AgentState | None = None,
) -> History:
    r"""Run the dynamic resource allocator for `trials` trials.

    Each trial: one episode acting by Thompson sampling, with $\bar q$
    updated at every step by the TD rule `agent.td` at rate $\alpha_1$; then,
    offline, the allocation update

    $$\sigma \leftarrow \mathrm{clip}\Big(\sigma + \alpha_2\big(
    \widehat{\nabla_\sigma\mathbb E[R]} - \lambda(\sigma/\sigma_\text{base}^2
    - 1/\sigma)\big),\ \sigma_\text{min}, \sigma_\text{max}\Big)$$

    from `agent.n_traj` trajectories ([`policy_gradient`][lecontrol.precision.policy_gradient]).
    Memories of terminal states are not updated.

    **Arguments:**

    - `task`: a tabular task, e.g. [`GridWorld`][lecontrol.precision.GridWorld].
    - `agent`: the hyperparameters.
    - `key`: a JAX PRNG key; the run is a pure function of it.
    - `trials`: number of trials (static).
    - `state`: initial memories; default `agent.init(task)`.

    **Returns:** a [`History`][lecontrol.precision.History].
    """
    if state is None:
        state = agent.init(task)

    def trial(state, key):
        k_ep, k_grad = jr.split(key)
        state, ret, steps = _episode(task, agent, state, k_ep)
        grad = _policy_gradient(task, state, agent, k_grad, agent.n_traj)
        state = _update_sigma(task, agent, state, grad)
        record = (
            state.q,
            state.sigma,
            ret,
            steps,
            _masked_cost(task, agent, state.sigma),
        )
        return state, record

    _, rec = jax.lax.scan(trial, state, jr.split(key, trials))
    return History(*rec)


def train_restarts(
    task: AbstractTabularTask,
    agent: PrecisionAgent,
    key: PRNGKeyArray,
    trials: int,
    n_restarts: int = 5,
) -> History:
    """[`train`][lecontrol.precision.train] vmapped over `n_restarts`
    independent runs (keys `jax.random.split(key, n_restarts)`; the paper
    uses 5)."""
    keys = jr.split(key, n_restarts)
    return eqx.filter_vmap(lambda k: train(task, agent, k, trials))(keys)
