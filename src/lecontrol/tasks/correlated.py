"""Two correlated binary outputs read from two Gaussian inputs and a bias."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_finite, check_positive, concrete
from .base import AbstractTask


def _f(x) -> Array:
    return jnp.asarray(x, dtype=float)


class CorrelatedGaussians(AbstractTask):
    r"""Correlated-Gaussians task of the paper's App. J, Eq. 85 (3 inputs, 2 outputs).

    $y_1 = \pm 1$ with probability ½ each; $y_2 = y_1 s$ where $s = -1$ with
    probability $p$ and $s = +1$ otherwise (so $\langle y_1 y_2\rangle = 1 - 2p$).
    Inputs $x_k \sim \mathcal N(y_k\mu_k, \sigma_k^2)$ for $k = 1, 2$ (independent
    noise) and a bias $x_3 = 1$. The statistics are

    $$\Sigma_y = \begin{pmatrix}1 & 1-2p\\ 1-2p & 1\end{pmatrix},\qquad
    \Sigma_{xy} = \begin{pmatrix}\mu_1 & \mu_1(1-2p)\\ \mu_2(1-2p) & \mu_2\\
    0 & 0\end{pmatrix},$$
    $$\Sigma_x = \begin{pmatrix}\mu_1^2+\sigma_1^2 & \mu_1\mu_2(1-2p) & 0\\
    \mu_1\mu_2(1-2p) & \mu_2^2+\sigma_2^2 & 0\\ 0 & 0 & 1\end{pmatrix},$$

    with $\langle x\rangle = (0, 0, 1)$ and $\langle y\rangle = 0$. The paper's
    task switch alternates between the defaults and
    `CorrelatedGaussians(mu=(-2, 2), p=0.2)`.

    **Arguments:**

    - `mu`: the two class means $(\mu_1, \mu_2)$ (finite).
    - `sigma`: the two noise standard deviations $(\sigma_1, \sigma_2) \ge 0$.
    - `p`: probability $p \in [0, 1]$ that $y_2$ is the flipped $y_1$.
    """

    mu: Float[Array, " 2"] = eqx.field(converter=_f, default=(3.0, 1.0))
    sigma: Float[Array, " 2"] = eqx.field(converter=_f, default=(1.0, 1.0))
    p: Float[Array, ""] = eqx.field(converter=_f, default=0.8)

    def __check_init__(self):
        for name in ("mu", "sigma"):
            if jnp.shape(getattr(self, name)) != (2,):
                raise ValueError(
                    f"`{name}` of CorrelatedGaussians must have two entries; got "
                    f"shape {jnp.shape(getattr(self, name))}."
                )
        check_finite("mu", self.mu)
        check_positive("sigma", self.sigma, allow_zero=True)
        p = concrete(self.p)
        if p is not None and (p.shape != () or not (0.0 <= float(p) <= 1.0)):
            raise ValueError(f"`p` must be a probability in [0, 1]; got {p!r}.")

    @property
    def Sx(self) -> Float[Array, "3 3"]:
        m1, m2 = self.mu
        s1, s2 = self.sigma
        c = m1 * m2 * (1 - 2 * self.p)
        z = jnp.zeros(())
        return jnp.stack(
            [
                jnp.stack([m1**2 + s1**2, c, z]),
                jnp.stack([c, m2**2 + s2**2, z]),
                jnp.stack([z, z, jnp.ones(())]),
            ]
        )

    @property
    def Sxy(self) -> Float[Array, "3 2"]:
        m1, m2 = self.mu
        r = 1 - 2 * self.p
        z = jnp.zeros(())
        return jnp.stack(
            [jnp.stack([m1, m1 * r]), jnp.stack([m2 * r, m2]), jnp.stack([z, z])]
        )

    @property
    def Sy(self) -> Float[Array, "2 2"]:
        r = 1 - 2 * self.p
        one = jnp.ones(())
        return jnp.stack([jnp.stack([one, r]), jnp.stack([r, one])])

    def mean_x(self) -> Float[Array, " 3"]:
        return jnp.array([0.0, 0.0, 1.0])

    def mean_y(self) -> Float[Array, " 2"]:
        r"""$\langle y\rangle = 0$."""
        return jnp.zeros(2)

    def sample(self, key: PRNGKeyArray, n: int):
        k1, k2, kx = jax.random.split(key, 3)
        y1 = jnp.where(jax.random.bernoulli(k1, 0.5, (n,)), 1.0, -1.0)
        s = jnp.where(jax.random.bernoulli(k2, self.p, (n,)), -1.0, 1.0)
        y = jnp.stack([y1, y1 * s], axis=1)
        noise = jax.random.normal(kx, (n, 2))
        x = jnp.concatenate([y * self.mu + noise * self.sigma, jnp.ones((n, 1))], 1)
        return x, y
