r"""Measures of the paper's findings, as plain functions of saved arrays.

The experiments report these as summary entries, and `lecontrol plot` or a
reproduction report can recompute them from `results.npz`. Times are
interpolated linearly between the saved samples.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "best_lag",
    "crossing_time",
    "delayed_control",
    "levels_sooner",
    "fraction_in_first_quarter",
    "integral",
    "rank_correlation",
    "steepest_drop_time",
    "two_cluster_separation",
]


def integral(ts, y) -> float:
    """$\\int y\\,dt$ by the trapezoid rule on `ts`."""
    return float(np.trapezoid(np.asarray(y, dtype=float), np.asarray(ts, dtype=float)))


def crossing_time(ts, x, level: float) -> float | None:
    """First time at which `x` <= `level` (interpolated), or `None` if never."""
    ts, x = np.asarray(ts, dtype=float), np.asarray(x, dtype=float)
    below = np.flatnonzero(x <= level)
    if below.size == 0:
        return None
    i = int(below[0])
    if i == 0:
        return float(ts[0])
    x0, x1 = x[i - 1], x[i]
    return float(ts[i - 1] + (x0 - level) / (x0 - x1) * (ts[i] - ts[i - 1]))


def fraction_in_first_quarter(ts, effort) -> float | None:
    r"""$\int_0^{T/4} e\,dt / \int_0^T e\,dt$ (trapezoid on `ts`); `None` if $e \equiv 0$.

    For a control that does not depend on time the fraction is 1/4; the paper's
    finding "control concentrated early" is a fraction well above that.
    """
    ts, e = np.asarray(ts, dtype=float), np.asarray(effort, dtype=float)
    total = integral(ts, e)
    if not total > 0:
        return None
    quarter = ts[0] + 0.25 * (ts[-1] - ts[0])
    grid = np.union1d(ts[ts <= quarter], [quarter])
    return integral(grid, np.interp(grid, ts, e)) / total


def steepest_drop_time(ts, loss) -> float:
    r"""Time of the fastest loss decrease, $\arg\max_t(-d\langle L\rangle/dt)$."""
    ts, loss = np.asarray(ts, dtype=float), np.asarray(loss, dtype=float)
    rate = -np.diff(loss) / np.diff(ts)
    i = int(np.argmax(rate))
    return float(0.5 * (ts[i] + ts[i + 1]))


def rank_correlation(a, b, *, constant: float = float("nan")) -> float:
    """Spearman's rank correlation of two vectors (ties ranked by position);
    `constant` when either vector is constant."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(float)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return constant
    return float(np.corrcoef(ra, rb)[0, 1])


def levels_sooner(results) -> tuple[float, str]:
    r"""$\min_k(1 - t^c_k / t^b_k)$ over the levels of a hierarchy, $t_k$ when
    level $k$'s loss (`{run}_level_loss`, times × levels) has halved; a
    `lecontrol.findings.Finding` measure."""
    ts, times = results["ts"], {}
    for run in ("baseline", "control"):
        losses = np.asarray(results[f"{run}_level_loss"]).T
        halved = [crossing_time(ts, x, 0.5 * x[0]) for x in losses]
        times[run] = np.array([np.nan if t is None else t for t in halved])
    pairs = zip(times["baseline"], times["control"])
    text = ", ".join(f"{b:.3g} → {c:.3g}" for b, c in pairs)
    gain = float(np.min(1 - times["control"] / times["baseline"]))
    return gain, f"time to halve each level's loss, baseline → control: {text}"


def best_lag(ts, a, b, max_lag: float) -> tuple[float, float]:
    r"""The lag $\tau^*$ at which `b` follows `a` best: the $\tau$, $|\tau| \le$
    `max_lag`, of the largest cross-correlation
    $c(\tau) = \sum_t \hat a(t)\,\hat b(t + \tau) / (N\sigma_a\sigma_b)$ on the
    $N$ saved times `ts` (evenly spaced; $\hat a$, $\hat b$: `a`, `b` less their
    means, zero outside the run, so that a lag which pushes a peak out of the
    run loses it; $c(0)$ is Pearson's $r$; $\tau^* > 0$: `b` comes after `a`).

    **Returns:** $\tau^*$ and $c(\tau^*)$; nan and nan for a constant signal.
    """
    ts = np.asarray(ts, dtype=float)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not (np.ptp(a) > 0 and np.ptp(b) > 0):
        return float("nan"), float("nan")
    dt, n = (ts[-1] - ts[0]) / (len(ts) - 1), len(ts)
    a, b = (a - a.mean()) / a.std(), (b - b.mean()) / b.std()
    c = np.correlate(b, a, mode="full") / n  # c[n - 1 + k] = Σ a(t) b(t + k)
    k = np.arange(-(n - 1), n)
    keep = np.abs(k) <= int(max_lag / dt + 1e-9)
    best = int(np.argmax(np.where(keep, c, -np.inf)))
    return float(k[best] * dt), float(c[best])


def delayed_control(results, lag: float) -> dict:
    r"""The run with its optimised control delayed by `lag` $\ell$ (a negative
    control for claims about *when* the control acts): every `control_g*`
    array $g(t)$ becomes $g(t - \ell)$ on the saved times `ts` (the nearest
    earlier sample), and 0 for $t < t_0 + \ell$; the other arrays are
    unchanged."""
    out, ts = dict(results), np.asarray(results["ts"], dtype=float)
    late = ts - lag >= ts[0] - 1e-12 * (1 + abs(lag))
    source = np.searchsorted(ts, ts - lag + 1e-12 * (1 + abs(lag)), side="right") - 1
    source = np.clip(source, 0, len(ts) - 1)
    for key in results:
        if key.startswith("control_g"):
            g = np.asarray(results[key])[source]
            out[key] = np.where(late.reshape((-1,) + (1,) * (g.ndim - 1)), g, 0 * g)
    return out


def two_cluster_separation(x) -> tuple[float, int]:
    r"""How well the values `x` split into two groups: Otsu's criterion, the
    largest share of the variance of `x` between the two groups of a split at
    a threshold, $\eta = \max_\theta \sigma^2_\text{between} / \sigma^2$, in
    $[0, 1]$ (1: two tight clusters; about 0.67 for a half-normal sample).

    **Returns:** $\eta$ (nan for constant `x`) and the size of the upper group.
    """
    x = np.sort(np.asarray(x, dtype=float).ravel())
    n, total = x.size, float(np.var(x))
    if n < 2 or not total > 0:
        return float("nan"), 0
    k = np.arange(1, n)  # the lower group is x[:k]
    mean_low = np.cumsum(x)[:-1] / k
    mean_high = (x.sum() - np.cumsum(x)[:-1]) / (n - k)
    between = (k / n) * (1 - k / n) * (mean_high - mean_low) ** 2
    best = int(np.argmax(between))
    return float(between[best] / total), int(n - k[best])
