"""The audit's calibration: the raw noise count read off a curve of known truth.

Confident learning does not count noise one for one: on text classifiers its count rises faster
than the noise (about 1.2 points per point on IMDB with TF-IDF), and not at the same pace
everywhere. The audit measures the count's response on the same texts, features and folds with
a **reference labelling** whose noise is known: the model's own out-of-fold predictions (labels
the model finds no fault with), with uniform noise injected at known rates. That gives the count
``g(r)`` at true noise ``r``; the calibrated estimate is ``g⁻¹(raw count)``.

Uncertainty: the raw count's bootstrap interval is mapped through ``g⁻¹`` too (``g`` is made
non-decreasing first), and widened by the curve's own scatter around a quadratic through its
points (divided by its slope at the estimate), with Student-t at ``m − 3`` degrees of freedom for
``m`` points (a line and ``m − 2`` with three points).

What it cannot do is separate wrong labels from examples the model cannot separate: both look
like noise to the count before anything is injected, and the reference labelling has neither. The
calibrated level is therefore an upper bound on the wrong labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from ._types import Interval

__all__ = ["MIN_CALIBRATION_POINTS", "calibrate_noise"]

MIN_CALIBRATION_POINTS = 3
"""Points of the reference curve needed for an interval (0 included)."""


def calibrate_noise(
    raw: Interval,
    true_rates: Sequence[float],
    counts: Sequence[float],
    *,
    upper: float = 1.0,
) -> Interval:
    """The noise rate whose count on the reference curve equals the raw count.

    Parameters
    ----------
    raw : Interval
        The raw count with its interval (bounds may be NaN).
    true_rates : sequence of float
        Known noise rates of the reference labelling (realised injected rates).
    counts : sequence of float
        The count at each.
    upper : float, default 1.0
        Largest noise rate possible (``1 − 1/K``); the estimate is kept below it.

    Returns
    -------
    Interval
        The calibrated estimate (NaN with fewer than two distinct points); NaN bounds with
        fewer than :data:`MIN_CALIBRATION_POINTS` points or without the raw interval.

    Examples
    --------
    >>> cal = calibrate_noise(Interval(0.12, 0.10, 0.14), [0, .1, .2, .3], [0, .12, .24, .36])
    >>> round(cal.estimate, 3), round(cal.low, 3), round(cal.high, 3)
    (0.1, 0.083, 0.117)
    """
    r = np.asarray(true_rates, dtype=float)
    g = np.asarray(counts, dtype=float)
    ok = np.isfinite(r) & np.isfinite(g)
    order = np.argsort(r[ok], kind="stable")
    r, g = r[ok][order], g[ok][order]
    m = r.size
    method = f"read off a reference curve of {m} known noise rates"
    if m < 2 or np.unique(r).size < 2:
        return Interval(math.nan, math.nan, math.nan, raw.level, "no calibration")
    g = np.maximum.accumulate(g)

    def inverse(x: float) -> float:
        if math.isnan(x):
            return math.nan
        if x <= g[0]:
            lo = r[0] - (g[0] - x) / _slope(r[:2], g[:2])
        elif x >= g[-1]:
            lo = r[-1] + (x - g[-1]) / _slope(r[-2:], g[-2:])
        else:
            lo = float(np.interp(x, g, r))
        return float(min(max(lo, 0.0), upper))

    est = inverse(raw.estimate)
    low, high = inverse(raw.low), inverse(raw.high)
    if m < MIN_CALIBRATION_POINTS or math.isnan(low) or math.isnan(high):
        return Interval(est, math.nan, math.nan, raw.level, method)
    # The curve bends (the count rises faster at higher noise): its own noise is the scatter
    # around a quadratic (a line with three points), not the bend.
    degree = 2 if m >= 4 else 1
    x = np.vander(r, degree + 1)
    coef, *_ = np.linalg.lstsq(x, g, rcond=None)
    resid = g - x @ coef
    df = m - degree - 1
    scatter = math.sqrt(float(resid @ resid) / df)
    slope = max(_local_slope(r, g, est), 1e-6)
    q = float(stats.t.ppf(0.5 + raw.level / 2, df))
    widen = q * scatter / slope
    low = max(est - math.hypot(est - low, widen), 0.0)
    high = min(est + math.hypot(high - est, widen), upper)
    return Interval(est, low, high, raw.level, method)


def _slope(r: np.ndarray, g: np.ndarray) -> float:
    dr = float(r[-1] - r[0])
    s = float(g[-1] - g[0]) / dr if dr > 0 else 1.0
    return s if s > 1e-6 else 1.0


def _local_slope(r: np.ndarray, g: np.ndarray, at: float) -> float:
    """The curve's slope on the segment holding ``at`` (its end segments outside)."""
    i = int(np.clip(np.searchsorted(r, at), 1, r.size - 1))
    return _slope(r[i - 1 : i + 1], g[i - 1 : i + 1])
