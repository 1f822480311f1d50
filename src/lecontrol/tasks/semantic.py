"""The hierarchical semantic task (items with nested binary features)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .base import AbstractTask


def hierarchy_matrix(levels: int) -> np.ndarray:
    r"""The output matrix $H_h$ (outputs × items) of an $h$-level binary hierarchy.

    $H_1 = (1)$ and $H_{h} = \begin{pmatrix} H_{h-1}\otimes(1\;1)\\ I_{2^{h-1}}
    \end{pmatrix}$: every column (item) of the level above is duplicated, then an
    identity block adds one feature per new item. $H_h$ has $2^{h-1}$ columns
    and $2^h - 1$ rows, with entries in $\{0, 1\}$; row $r$ belongs to level
    $\lfloor\log_2(r + 1)\rfloor$ (level 0 is the root feature shared by all items).
    """
    levels = int(levels)
    if levels < 1:
        raise ValueError(f"`levels` must be an integer >= 1; got {levels}.")
    H = np.ones((1, 1))
    for _ in range(levels - 1):
        H = np.repeat(H, 2, axis=1)
        H = np.vstack([H, np.eye(H.shape[1])])
    return H


class SemanticHierarchy(AbstractTask):
    r"""Items with hierarchical features (the paper's App. J, Eq. 86; Saxe et al.).

    $n = 2^{h-1}$ items, each presented as a one-hot input $x = e_i$, and
    targets $y = H_{:, i}$, the $i$-th column of the $(2^h - 1) \times n$ matrix of
    `hierarchy_matrix`. With items drawn uniformly,

    $$\Sigma_x = I/n,\qquad \Sigma_{xy} = H^\top/n,\qquad \Sigma_y = H H^\top/n,$$

    (the paper's Eq. 86 prints the unnormalised $\Sigma_x = I$ and $\Sigma_{xy} = H$,
    outputs × inputs; here `Sxy` is inputs × outputs), $\langle x\rangle = \mathbf 1/n$ and
    $\langle y\rangle = H\mathbf 1/n$. There is no bias input. Small initial
    weights give step-like learning curves, one step per level.

    **Arguments:**

    - `levels`: number of levels $h \ge 1$.
    """

    levels: int = eqx.field(static=True)

    def __check_init__(self):
        if not isinstance(self.levels, (int, np.integer)) or self.levels < 1:
            raise ValueError(
                f"`levels` of SemanticHierarchy must be an integer >= 1; got "
                f"{self.levels!r}."
            )

    @property
    def H(self) -> Float[Array, "outputs items"]:
        """The output matrix (outputs × items) of `hierarchy_matrix`."""
        return jnp.asarray(hierarchy_matrix(self.levels), dtype=float)

    @property
    def n_items(self) -> int:
        return 2 ** (self.levels - 1)

    @property
    def Sx(self) -> Float[Array, "items items"]:
        return jnp.eye(self.n_items) / self.n_items

    @property
    def Sxy(self) -> Float[Array, "items outputs"]:
        return self.H.T / self.n_items

    @property
    def Sy(self) -> Float[Array, "outputs outputs"]:
        H = self.H
        return H @ H.T / self.n_items

    def level_of_output(self) -> np.ndarray:
        """Level (0 = root) of each output feature, shape `(2^h - 1,)`."""
        return np.floor(np.log2(np.arange(1, 2**self.levels))).astype(int)

    def level_losses(self, W) -> np.ndarray:
        r"""The fit loss of the network map `W` split by level, shape
        `(..., levels)` for `W` of shape `(..., outputs, items)`.

        Output $r$ contributes $\tfrac12[\Sigma_y - 2W\Sigma_{xy} +
        W\Sigma_xW^\top]_{rr}$; the levels add up to the expected loss without
        a regulariser. For a two-layer network $W = \tilde W_2\tilde W_1$
        (with gains, the effective weights $(1 + G_i)\circ W_i$).
        """
        W = np.asarray(W)
        Sx, Sxy, Sy = (np.asarray(a) for a in (self.Sx, self.Sxy, self.Sy))
        fit = 0.5 * (
            np.diag(Sy)
            - 2 * np.einsum("...oi,io->...o", W, Sxy)
            + np.einsum("...oi,ij,...oj->...o", W, Sx, W)
        )
        level = self.level_of_output()
        return np.stack(
            [fit[..., level == k].sum(-1) for k in range(self.levels)], axis=-1
        )

    def mean_x(self) -> Float[Array, " items"]:
        return jnp.full((self.n_items,), 1.0 / self.n_items)

    def mean_y(self) -> Float[Array, " outputs"]:
        r"""$\langle y\rangle = H\mathbf 1/n$."""
        return self.H.mean(axis=1)

    def sample(self, key: PRNGKeyArray, n: int):
        i = jax.random.randint(key, (n,), 0, self.n_items)
        x = jax.nn.one_hot(i, self.n_items, dtype=float)
        return x, self.H.T[i]
