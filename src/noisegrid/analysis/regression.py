"""The reference regression, exactly as published, and the interval of its exchange rate.

OLS ``eval_accuracy_pct ~ train_size_1k + noise_level_pct`` (Simmering 2023) with the statsmodels
formula API, standard errors clustered by seed when there are several seeds, and the exchange
rate ``1000 × (−β_noise / β_size)`` with Fieller's interval (:func:`reference_regression`); the
delta-method interval is kept beside it for comparison. :func:`fieller_interval` (the confidence
set of a ratio of two normal estimates) also serves the local exchange rates (``rates.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import AnalysisError
from ._format import pct_text, size_text
from ._types import FloatArray, Interval, RegressionResult
from .cells import check_confidence, done_rows, pick_noise_model, prepare_table

__all__ = ["reference_regression"]


REFERENCE_FORMULA = "eval_accuracy_pct ~ train_size_1k + noise_level_pct"
"""The published regression (Simmering 2023), in statsmodels formula syntax."""


def reference_regression(
    results: pd.DataFrame,
    *,
    noise_model: str | None = None,
    cov_type: Literal["auto", "nonrobust", "cluster"] = "auto",
    confidence: float = 0.95,
) -> RegressionResult:
    """Fit the published regression ``eval_accuracy_pct ~ train_size_1k + noise_level_pct``.

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results table; only ``status == "done"`` rows are used.
    noise_model : str, optional
        Which noise model's rows to use; required when the table holds several.
    cov_type : {"auto", "nonrobust", "cluster"}, default "auto"
        Standard errors: ``"cluster"`` clusters by repeat seed (Student-t with seeds − 1 degrees
        of freedom), ``"nonrobust"`` is plain OLS as published, ``"auto"`` clusters when there
        are at least two seeds.
    confidence : float, default 0.95

    Returns
    -------
    RegressionResult
        Coefficients, p-values, intervals, R² and the exchange rate
        ``1000 × (−β_noise / β_size)`` with Fieller's interval (unbounded when the size slope is
        not significant) and, beside it, the delta-method interval; or, when the table has a
        single size or a single noise level, ``skipped`` says why nothing was fitted.

    Raises
    ------
    AnalysisError
        If the table lacks a required column, or holds several noise models and
        ``noise_model`` is not given.
    """
    check_confidence(confidence)
    if cov_type not in ("auto", "nonrobust", "cluster"):
        raise AnalysisError(f"cov_type must be 'auto', 'nonrobust' or 'cluster'; got {cov_type!r}")
    df = prepare_table(results)
    nm = pick_noise_model(df, noise_model)
    return fit_reference(done_rows(df[df["noise_model"] == nm]), confidence, cov_type)


def fit_reference(done: pd.DataFrame, confidence: float, cov_type: str) -> RegressionResult:
    import statsmodels.formula.api as smf

    empty = pd.DataFrame(columns=["coef", "std_err", "t", "p_value", "ci_low", "ci_high"])
    n_sizes, n_noise = done["train_size"].nunique(), done["noise_level"].nunique()
    skipped = None
    if done.empty:
        skipped = "no runs are done yet"
    elif n_sizes < 2:
        skipped = (
            "needs at least two training sizes to estimate the effect of size; the done runs "
            f"have {_values(done['train_size'], size_text)}"
        )
    elif n_noise < 2:
        skipped = (
            "needs at least two noise levels to estimate the effect of noise; the done runs "
            f"have {_values(done['noise_level'], pct_text)}"
        )
    elif len(done) <= 3:
        skipped = f"needs more than 3 done runs for 3 coefficients; there are {len(done)}"
    elif done["eval_accuracy"].nunique() == 1:
        skipped = (
            f"accuracy is {done['eval_accuracy'].iloc[0] * 100:g}% in every done run, so there "
            "is no effect of size or noise to estimate"
        )
    if skipped is not None:
        return RegressionResult(formula=REFERENCE_FORMULA, table=empty, skipped=skipped)

    data = pd.DataFrame(
        {
            "eval_accuracy_pct": done["eval_accuracy"].to_numpy(dtype=float) * 100,
            "train_size_1k": done["train_size"].to_numpy(dtype=float) / 1000,
            "noise_level_pct": done["noise_level"].to_numpy(dtype=float) * 100,
            "seed": done["seed"].to_numpy(dtype=int),
        }
    )
    n_seeds = data["seed"].nunique()
    cluster = cov_type == "cluster" or (cov_type == "auto" and n_seeds >= 2)
    if cluster and n_seeds < 2:
        raise AnalysisError(
            f"cov_type='cluster' needs at least two repeat seeds; the done runs have {n_seeds}"
        )
    # A perfect fit (zero residuals) divides by zero in t and p; those become inf/NaN quietly.
    with np.errstate(all="ignore"):
        model = smf.ols(REFERENCE_FORMULA, data=data)
        iid = model.fit()
        if cluster:
            fit = model.fit(cov_type="cluster", cov_kwds={"groups": data["seed"]}, use_t=True)
        else:
            fit = iid
        ci = fit.conf_int(alpha=1 - confidence)
        table = pd.DataFrame(
            {
                "coef": fit.params,
                "std_err": fit.bse,
                "t": fit.tvalues,
                "p_value": fit.pvalues,
                "ci_low": ci[0],
                "ci_high": ci[1],
            }
        )
        r_squared, adj_r_squared = float(fit.rsquared), float(fit.rsquared_adj)
        rate, rate_iid = _fieller_rate(fit, confidence), _fieller_rate(iid, confidence)
        rate_delta = _delta_rate(fit, confidence)
    return RegressionResult(
        formula=REFERENCE_FORMULA,
        table=table,
        r_squared=r_squared,
        adj_r_squared=adj_r_squared,
        n_obs=int(fit.nobs),
        cov_type="cluster(seed)" if cluster else "nonrobust",
        n_clusters=n_seeds if cluster else 0,
        exchange_rate=rate,
        exchange_rate_iid=rate_iid,
        exchange_rate_delta=rate_delta,
    )


def _quantile(fit: Any, confidence: float) -> float:
    if fit.use_t:
        return float(stats.t.ppf(0.5 + confidence / 2, _df_inference(fit)))
    return float(stats.norm.ppf(0.5 + confidence / 2))


def _fieller_rate(fit: Any, confidence: float) -> Interval:
    """``1000 × (−b_noise / b_size)`` with Fieller's interval from the fit's covariance.

    Clustered by seed when the fit is (statsmodels' cluster-robust covariance, Student-t with
    seeds − 1 degrees of freedom); unbounded when the size slope is not significant.
    """
    names = ["train_size_1k", "noise_level_pct"]
    b_size, b_noise = (float(fit.params[n]) for n in names)
    cov = np.asarray(fit.cov_params().loc[names, names], dtype=float)
    clustered = getattr(fit, "cov_type", "nonrobust") == "cluster"
    method = "Fieller" + (", clustered by seed" if clustered else "")
    if b_size == 0 or not math.isfinite(b_size):
        return Interval(math.nan, math.nan, math.nan, confidence, method)
    # The ratio a / b with a = −1000·b_noise, b = b_size.
    a, v_aa, v_ab = -1000 * b_noise, 1e6 * cov[1, 1], -1000 * cov[0, 1]
    low, high = fieller_interval(
        np.array([a]), np.array([b_size]), v_aa, v_ab, cov[0, 0], _quantile(fit, confidence)
    )
    if not math.isfinite(float(low[0])):
        method += " (unbounded: the size slope is not significant)"
    return Interval(a / b_size, float(low[0]), float(high[0]), confidence, method)


def fieller_interval(
    a: FloatArray,
    b: FloatArray,
    v_aa: FloatArray | float,
    v_ab: FloatArray | float,
    v_bb: FloatArray | float,
    q: float,
) -> tuple[FloatArray, FloatArray]:
    """Fieller's confidence set for the ratio ``a / b`` of two (jointly normal) estimates.

    The set is every r with ``(a − r·b)² ≤ q²·Var(a − r·b)``. When ``b`` is significant
    (``b² > q²·v_bb``) it is a finite interval, skewed away from zero where ``b`` is imprecise;
    otherwise it is unbounded (the whole line, or two half-lines), returned as ``(−inf, inf)``.
    Element-wise over arrays of estimates and (co)variances.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    q2 = q * q
    qa = b * b - q2 * np.asarray(v_bb, dtype=float)
    qb = a * b - q2 * np.asarray(v_ab, dtype=float)
    qc = a * a - q2 * np.asarray(v_aa, dtype=float)
    bounded = qa > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.sqrt(np.maximum(qb * qb - qa * qc, 0.0))
        low = np.where(bounded, (qb - root) / qa, -np.inf)
        high = np.where(bounded, (qb + root) / qa, np.inf)
    nan = ~(np.isfinite(a) & np.isfinite(b) & np.isfinite(qa) & np.isfinite(qc))
    return np.where(nan, np.nan, low), np.where(nan, np.nan, high)


def _delta_rate(fit: Any, confidence: float) -> Interval:
    """``1000 × (−b_noise / b_size)`` with a delta-method interval from the fit's covariance."""
    names = ["train_size_1k", "noise_level_pct"]
    b_size, b_noise = (float(fit.params[n]) for n in names)
    cov = np.asarray(fit.cov_params().loc[names, names], dtype=float)
    if b_size == 0 or not math.isfinite(b_size):
        return Interval(math.nan, math.nan, math.nan, confidence, "delta method")
    rate = 1000 * (-b_noise / b_size)
    grad = np.array([1000 * b_noise / b_size**2, -1000 / b_size])
    var = float(grad @ cov @ grad)
    se = math.sqrt(var) if math.isfinite(var) and var > 0 else math.nan
    q = _quantile(fit, confidence)
    return Interval(rate, rate - q * se, rate + q * se, confidence, "delta method")


def _df_inference(fit: Any) -> float:
    df = getattr(fit, "df_resid_inference", None)
    return float(df) if df is not None else float(fit.df_resid)


def _values(series: pd.Series, fmt: Callable[[Any], str]) -> str:
    return ", ".join(fmt(v) for v in sorted(set(series))) or "none"
