"""The bootstrap of the chosen surface, and local exchange rates with their intervals.

**Resampling.** With two or more repeat seeds a replicate draws whole seeds with replacement and
refits the surface on every run of the drawn seeds: one seed's cells share nested subsamples,
nested flips and the test sample, so their errors are correlated (about 0.7 between cells on
real grids) and the seed, not the cell, is the independent unit. With one seed the replicate
draws cells, and the intervals cover test-sample and fitting noise only, not replication.
Every replicate is a fresh fit whose failures are counted by reason (:class:`Resampling`).

**Intervals.** The marginal exchange rate ``−(∂acc/∂p) / (∂acc/∂n)`` is a ratio of two slopes,
so its interval is Fieller's (``regression.fieller_interval``) with the slopes' covariance from the
replicates, scaled by ``U/(U − 1)`` for ``U`` resampled units, and Student-t with ``U − 1``
degrees of freedom: with few seeds a percentile interval of the replicates is far too narrow
(``benchmarks/coverage.py``). Fitted accuracies get the matching t interval.

**Exact compensation.** Beside the marginal rate, the Δn with ``acc(n + Δn, p + 1) = acc(n, p)``
on the fitted surface: what one whole point of noise costs, where the surface curves.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize, stats

from ._types import FloatArray, Resampling, SurfaceCandidate, SurfaceFit, local_rate
from .regression import fieller_interval

ONE_SEED_NOTE = (
    "One repeat seed: every interval here covers test-sample and fitting noise only, not "
    "replication. Another seed draws other subsamples, flips and test reviews, and moves the "
    "results by more than these intervals say. Run at least 3 seeds (e.g. --set "
    "'grid.seeds=[0,1,2]'); 5 give intervals about half as wide as 3."
)
"""The caveat of a one-seed analysis, in the notes."""

ONE_SEED_SUMMARY = (
    "With one repeat seed these intervals cover test-sample and fitting noise only, not "
    "replication; run at least 3 seeds for intervals that do."
)
"""The same caveat in one sentence, at the end of the summary."""

SINGLE_LEVEL = "drew a single training size or noise level"
"""Why a cell-bootstrap replicate cannot be refitted (a surface needs two of each)."""


def bootstrap_fits(
    cand: SurfaceCandidate,
    n: FloatArray,
    eta: FloatArray,
    y: FloatArray,
    cell: npt.NDArray[np.integer[Any]],
    seed: npt.NDArray[np.integer[Any]],
    *,
    n_bootstrap: int,
    rng: np.random.Generator,
) -> tuple[FloatArray, Resampling]:
    """Refit ``cand`` on ``n_bootstrap`` resamples of whole seeds (of whole cells with one seed).

    Returns the fitted replicates' parameters and how the resampling went.
    """
    seeds = np.unique(seed)
    unit, groups = ("seed", seed) if seeds.size >= 2 else ("cell", cell)
    rows_of = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    out = []
    failures: Counter[str] = Counter()
    for _ in range(n_bootstrap):
        pick = rng.integers(0, len(rows_of), size=len(rows_of))
        idx = np.concatenate([rows_of[i] for i in pick])
        if np.unique(n[idx]).size < 2 or np.unique(eta[idx]).size < 2:
            failures[SINGLE_LEVEL] += 1
            continue
        params, why = cand.fit_checked(n[idx], eta[idx], y[idx])
        if params is None:
            failures[why or "could not be fitted"] += 1
            continue
        out.append(params)
    boot = np.vstack(out) if out else np.empty((0, cand.n_params), dtype=float)
    resampling = Resampling(
        unit=unit,
        n_units=len(rows_of),
        n_requested=n_bootstrap,
        n_fitted=len(out),
        failures=tuple(failures.most_common()),
    )
    return boot, resampling


def _scale_and_quantile(best: SurfaceFit, confidence: float) -> tuple[float, float] | None:
    """Variance inflation ``U/(U − 1)`` and the t quantile with ``U − 1`` degrees of freedom."""
    rs = best.resampling
    if rs is None or best.boot_params.shape[0] < 2 or best.candidate.rate_from_form:
        return None
    units = rs.n_units
    return units / max(units - 1, 1), float(stats.t.ppf(0.5 + confidence / 2, rs.df))


def rate_interval(
    best: SurfaceFit, n: FloatArray, eta: FloatArray, confidence: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The marginal rate at each point with Fieller's interval from the bootstrap's covariance."""
    est = local_rate(best.candidate, best.params, n, eta)
    sq = _scale_and_quantile(best, confidence)
    if sq is None:
        nan = np.full_like(est, np.nan)
        return est, nan, nan
    scale, q = sq
    d_size, d_noise = best.candidate.slopes(best.params, n, eta)
    draws = [best.candidate.slopes(p, n, eta) for p in best.boot_params]
    b_draws = np.vstack([d for d, _ in draws])  # d acc / d n: the ratio's denominator
    a_draws = -np.vstack([d for _, d in draws])  # −d acc / d p: its numerator
    finite = np.all(np.isfinite(a_draws) & np.isfinite(b_draws), axis=1)
    a_draws, b_draws = a_draws[finite], b_draws[finite]
    if a_draws.shape[0] < 2:
        nan = np.full_like(est, np.nan)
        return est, nan, nan
    a_c, b_c = a_draws - a_draws.mean(axis=0), b_draws - b_draws.mean(axis=0)
    k = a_draws.shape[0] - 1
    v_aa = scale * np.einsum("ij,ij->j", a_c, a_c) / k
    v_ab = scale * np.einsum("ij,ij->j", a_c, b_c) / k
    v_bb = scale * np.einsum("ij,ij->j", b_c, b_c) / k
    low, high = fieller_interval(-d_noise, d_size, v_aa, v_ab, v_bb, q)
    return est, np.asarray(low, dtype=float), np.asarray(high, dtype=float)


def t_interval(
    estimate: Any, draws: Any, resampling: Resampling, confidence: float
) -> tuple[FloatArray, FloatArray]:
    """``estimate ± t(U − 1) · SE``, the SE from bootstrap draws inflated by ``U/(U − 1)``.

    The one interval construction of every fitted accuracy, gain and difference the package
    prints (``analyze``, ``tradeoff``, ``advise``): ``U`` resampled units (seeds, or cells with one
    seed) give the t quantile with ``U − 1`` degrees of freedom and the variance inflation that
    corrects the bootstrap's ``(U − 1)/U`` shrinkage. With few seeds a percentile interval of the
    draws is far too narrow (``benchmarks/coverage.py``).

    Parameters
    ----------
    estimate : float or array, shape (m,)
        The point estimates.
    draws : array, shape (B, m) or (B,)
        Bootstrap replicates of the same quantities (non-finite replicates are dropped).
    resampling : Resampling
        How the draws were made (its ``n_units`` and ``df``).
    confidence : float

    Returns
    -------
    (low, high) : arrays of shape (m,)
        NaN where fewer than two finite draws exist.
    """
    est = np.atleast_1d(np.asarray(estimate, dtype=float))
    d = np.asarray(draws, dtype=float)
    d = d.reshape(d.shape[0], -1) if d.ndim >= 1 and d.size else np.empty((0, est.size))
    nan = np.full(est.shape, np.nan)
    if d.shape[0] < 2:
        return nan, nan.copy()
    finite = np.isfinite(d)
    count = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite, d, 0.0).sum(axis=0) / count
        var = np.where(finite, (d - mean) ** 2, 0.0).sum(axis=0) / (count - 1)
    scale = resampling.n_units / max(resampling.n_units - 1, 1)
    se = np.sqrt(scale * var)
    q = float(stats.t.ppf(0.5 + confidence / 2, resampling.df))
    low = np.where(count >= 2, est - q * se, np.nan)
    high = np.where(count >= 2, est + q * se, np.nan)
    return low, high


def _accuracy_interval(
    best: SurfaceFit, n: FloatArray, eta: FloatArray, confidence: float
) -> tuple[FloatArray, FloatArray]:
    """Fitted accuracy ± t·SE, the SE from the bootstrap replicates (NaN without them)."""
    est = best.predict(n, eta)
    rs = best.resampling
    if rs is None or best.boot_params.shape[0] < 2:
        nan = np.full_like(est, np.nan)
        return nan, nan
    draws = np.vstack([best.candidate.predict(p, n, eta) for p in best.boot_params])
    low, high = t_interval(est, draws, rs, confidence)
    return np.clip(low, 0.0, 100.0), np.clip(high, 0.0, 100.0)


def compute_exact_compensation(
    cand: SurfaceCandidate, params: FloatArray, n: FloatArray, eta: FloatArray
) -> FloatArray:
    """Δn with acc(n + Δn, p + 1) = acc(n, p) on the surface, at each point.

    0 where one more point of noise does not lower the fitted accuracy; ``inf`` where no number
    of examples makes up for it (a surface that levels off); NaN where p + 1 is past the
    surface's range (labels without signal).
    """
    out = np.full(n.shape, np.nan)
    for i, (n0, e0) in enumerate(zip(n, eta, strict=True)):
        e1 = np.array([e0 + 0.01])
        if cand.skip_reason(np.array([n0]), e1) is not None:
            continue
        target = float(cand.predict(params, np.array([n0]), np.array([e0]))[0])

        def gap(dn: float, n0: float = n0, e1: FloatArray = e1, target: float = target) -> float:
            return float(cand.predict(params, np.array([n0 + dn]), e1)[0]) - target

        with np.errstate(all="ignore"):
            start = gap(0.0)
            if not math.isfinite(start):
                continue
            if start >= 0:
                out[i] = 0.0
                continue
            # Widen the bracket until the surface at p + 1 climbs back to acc(n, p).
            hi = max(n0, 1.0)
            while gap(hi) < 0 and hi < 1e4 * max(n0, 1.0):
                hi *= 4
            if not gap(hi) >= 0:
                out[i] = math.inf
                continue
            out[i] = optimize.brentq(gap, 0.0, hi, xtol=1e-6 * max(n0, 1.0))
    return out


def compute_local_rates(
    best: SurfaceFit | None,
    expected: tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]],
    cells: pd.DataFrame,
    confidence: float,
) -> pd.DataFrame:
    columns = [
        "train_size",
        "noise_level",
        "accuracy_pct",
        "accuracy_low_pct",
        "accuracy_high_pct",
        "rate",
        "rate_low",
        "rate_high",
        "exact_compensation",
        "labels_per_correction",
        "labels_per_correction_low",
        "labels_per_correction_high",
        "observed",
    ]
    if best is None:
        return pd.DataFrame(columns=columns)
    sizes, noise, _ = expected
    grid = pd.MultiIndex.from_product([sizes, noise], names=columns[:2]).to_frame(index=False)
    n = grid["train_size"].to_numpy(dtype=float)
    eta = grid["noise_level"].to_numpy(dtype=float)
    est, low, high = rate_interval(best, n, eta, confidence)
    acc_low, acc_high = _accuracy_interval(best, n, eta, confidence)
    seen = cells[cells["n_done"] > 0]
    observed = {
        (int(a), float(b)) for a, b in zip(seen["train_size"], seen["noise_level"], strict=True)
    }
    per_label = 100 / n
    return grid.assign(
        accuracy_pct=np.clip(best.predict(n, eta), 0.0, 100.0),
        accuracy_low_pct=acc_low,
        accuracy_high_pct=acc_high,
        rate=est,
        rate_low=low,
        rate_high=high,
        exact_compensation=compute_exact_compensation(best.candidate, best.params, n, eta),
        labels_per_correction=est * per_label,
        labels_per_correction_low=low * per_label,
        labels_per_correction_high=high * per_label,
        observed=[(int(a), float(b)) in observed for a, b in zip(n, eta, strict=True)],
    )[columns]
