"""The analysis's result types, and the interface that every candidate surface implements.

Frozen dataclasses returned by the public functions: :class:`Interval`, :class:`Coverage`,
:class:`RegressionResult`, :class:`SurfaceFit`, :class:`NoiseModelAnalysis` and
:class:`TradeoffResult`. The whole-table :class:`~noisegrid.analysis.Analysis` lives in
``summary.py``, because its summary needs the trade-off queries, which sit above these types.
``_Candidate`` is here because a :class:`SurfaceFit` holds one; the candidates themselves are in
``surfaces.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ._format import _list_cells, _pct, format_number

__all__ = [
    "Coverage",
    "Interval",
    "NoiseModelAnalysis",
    "RegressionResult",
    "SurfaceFit",
    "TradeoffResult",
]


FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """An estimate with a confidence interval.

    Attributes
    ----------
    estimate, low, high : float
        Point estimate and interval bounds (NaN when not available; ``high`` may be ``inf``).
    level : float
        Confidence level, e.g. 0.95.
    method : str
        How the interval was computed, e.g. ``"delta method"`` or ``"cell bootstrap (B=500)"``.
    """

    estimate: float
    low: float
    high: float
    level: float = 0.95
    method: str = ""

    def __str__(self) -> str:
        ci = self.ci_text()
        return f"{format_number(self.estimate)} ({ci})" if ci else format_number(self.estimate)

    def ci_text(self) -> str:
        """The interval alone, e.g. ``"95% CI 430 to 498"``; empty when there is none."""
        if math.isnan(self.low) and math.isnan(self.high):
            return ""
        return f"{self.level * 100:g}% CI {format_number(self.low)} to {format_number(self.high)}"

    def scaled(self, factor: float) -> Interval:
        """Return the interval multiplied by a positive ``factor`` (a change of units)."""
        return Interval(
            self.estimate * factor, self.low * factor, self.high * factor, self.level, self.method
        )


@dataclass(frozen=True)
class Coverage:
    """Which runs of the grid are done, failed or missing.

    Attributes
    ----------
    sizes, noise_levels, seeds : tuple
        The expected grid (from the spec when given, else every value seen in the table).
    n_expected, n_done, n_failed, n_missing : int
        Run counts; a run is one (size, noise level, seed). ``n_missing`` counts runs that are in
        the expected grid but not in the table at all.
    missing : pandas.DataFrame
        ``train_size``, ``noise_level``, ``seed`` of the missing runs.
    failed : pandas.DataFrame
        ``train_size``, ``noise_level``, ``seed``, ``error`` of the failed runs.
    """

    sizes: tuple[int, ...]
    noise_levels: tuple[float, ...]
    seeds: tuple[int, ...]
    n_expected: int
    n_done: int
    n_failed: int
    n_missing: int
    missing: pd.DataFrame = field(repr=False)
    failed: pd.DataFrame = field(repr=False)

    @property
    def _grid(self) -> tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]:
        return self.sizes, self.noise_levels, self.seeds

    def describe(self, *, max_items: int = 8) -> str:
        """One or two sentences: runs done, failed and missing, naming the first few."""
        text = f"{self.n_done} of {self.n_expected} runs done"
        parts = []
        if self.n_failed:
            failed = _list_cells(self.failed, max_items, self._grid)
            parts.append(f"{self.n_failed} failed ({failed})")
        if self.n_missing:
            missing = _list_cells(self.missing, max_items, self._grid)
            parts.append(f"{self.n_missing} not run yet ({missing})")
        if parts:
            text += "; " + "; ".join(parts)
        return text + "."


@dataclass(frozen=True, eq=False)
class RegressionResult:
    """An OLS fit (the reference regression) or the reason it was skipped.

    Attributes
    ----------
    formula : str
        The statsmodels formula.
    table : pandas.DataFrame
        One row per term: ``coef``, ``std_err``, ``t``, ``p_value``, ``ci_low``, ``ci_high``.
        Empty when skipped.
    r_squared, adj_r_squared : float
    n_obs : int
        Runs used.
    cov_type : str
        ``"nonrobust"`` (one seed) or ``"cluster(seed)"`` (several seeds).
    n_clusters : int
        Number of seeds the standard errors are clustered by (0 when not clustered).
    exchange_rate : Interval or None
        Examples that one point of noise is worth, ``1000 × (−β_noise / β_size)``, with a
        delta-method interval using ``cov_type``'s covariance.
    exchange_rate_iid : Interval or None
        The same with conventional (non-clustered) standard errors, as published.
    skipped : str or None
        Why the regression was not fitted; ``None`` when it was.
    """

    formula: str
    table: pd.DataFrame
    r_squared: float = math.nan
    adj_r_squared: float = math.nan
    n_obs: int = 0
    cov_type: str = ""
    n_clusters: int = 0
    exchange_rate: Interval | None = None
    exchange_rate_iid: Interval | None = None
    skipped: str | None = None

    def coef(self, term: str) -> float:
        """Return one coefficient, e.g. ``"noise_level_pct"``."""
        return float(self.table.at[term, "coef"])  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class SurfaceFit:
    """The fitted accuracy surface chosen by cross-validation.

    Attributes
    ----------
    name : str
        Candidate name, e.g. ``"log_size_interaction"``.
    expression : str
        The model in words/symbols (accuracy in percent, ``n`` examples, ``p`` noise points).
    params : numpy.ndarray
        Fitted parameters.
    boot_params : numpy.ndarray, shape (n_replicates, n_params)
        Parameters refitted on cell-bootstrap resamples (empty when ``n_bootstrap=0``).
    cv_rmse : float
        Leave-one-cell-out root mean squared error, in accuracy points.
    """

    name: str
    expression: str
    params: FloatArray
    boot_params: FloatArray
    cv_rmse: float
    candidate: _Candidate = field(repr=False)

    def predict(self, train_size: Any, noise_level: Any) -> FloatArray:
        """Predicted accuracy in percent at sizes (examples) and noise levels (fractions)."""
        n, eta = _broadcast(train_size, noise_level)
        return self.candidate.predict(self.params, n, eta)

    def exchange_rate(self, train_size: Any, noise_level: Any) -> FloatArray:
        """Local exchange rate: examples that compensate one more point of noise there."""
        n, eta = _broadcast(train_size, noise_level)
        return _local_rate(self.candidate, self.params, n, eta)


@dataclass(frozen=True, eq=False)
class NoiseModelAnalysis:
    """Everything :func:`analyze` finds for one noise model.

    Attributes
    ----------
    noise_model : str
    coverage : Coverage
    cells : pandas.DataFrame
        One row per (size, noise level) cell; see :func:`cell_summary`.
    reference : RegressionResult
        The published regression (or why it was skipped).
    surfaces : pandas.DataFrame
        The candidate comparison: ``name``, ``expression``, ``n_params``, ``cv_rmse``, ``cv_mae``,
        ``rmse``, ``r_squared``, ``rate_at_focus``, ``selected``, ``skipped``.
    best : SurfaceFit or None
        The candidate with the lowest cross-validated error.
    local_rates : pandas.DataFrame
        At every (size, noise level) of the grid: ``accuracy_pct`` (fitted), ``rate``,
        ``rate_low``, ``rate_high`` (examples per noise point), ``labels_per_correction``
        (new labels one corrected label is worth) with ``_low``/``_high``, and ``observed``.
    surface_skipped : str or None
        Why no surface was fitted.
    notes : tuple of str
        Caveats in plain language (failed runs, few seeds, extrapolation, ...).
    """

    noise_model: str
    coverage: Coverage
    cells: pd.DataFrame
    reference: RegressionResult
    surfaces: pd.DataFrame
    best: SurfaceFit | None
    local_rates: pd.DataFrame
    surface_skipped: str | None
    notes: tuple[str, ...]
    confidence: float = 0.95
    n_bootstrap: int = 0


@dataclass(frozen=True)
class TradeoffResult:
    """The local exchange rate at one (size, noise) point and what it means.

    Attributes
    ----------
    size : int
        Training examples.
    noise : float
        Noise rate (fraction).
    noise_model : str
    surface : str
        The fitted surface the rate comes from.
    examples_per_noise_point : Interval
        Extra examples that compensate one more point (percentage point) of noise there.
    labels_per_noise_point : float
        Labels to correct to remove one point of noise: ``size / 100``.
    labels_per_correction : Interval
        New labels that one corrected label is worth:
        ``examples_per_noise_point / labels_per_noise_point``.
    accuracy_pct : float
        Fitted accuracy there, in percent.
    in_grid : bool
        Whether the point lies inside the measured grid (otherwise it is extrapolated).
    notes : tuple of str
    """

    size: int
    noise: float
    noise_model: str
    surface: str
    examples_per_noise_point: Interval
    labels_per_noise_point: float
    labels_per_correction: Interval
    accuracy_pct: float
    in_grid: bool
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        r = self.examples_per_noise_point
        k = self.labels_per_correction
        per100 = self.labels_per_correction.scaled(100)
        lines = [
            f"At {self.size:,} examples and {_pct(self.noise)} noise ({self.noise_model} noise; "
            f"surface {self.surface}, fitted accuracy {self.accuracy_pct:.1f}%):",
            f"  one point of noise = {format_number(self.labels_per_noise_point)} wrong labels; "
            f"it costs as much accuracy as {format_number(r.estimate)} examples "
            f"({r.ci_text() or 'no interval'}; {r.method}).",
            f"  Correcting 100 labels is worth about {format_number(per100.estimate)} new labels "
            f"({per100.ci_text() or 'no interval'}), i.e. "
            f"{format_number(k.estimate)} new labels per corrected label.",
            f"  Clean first if correcting one label costs less than {format_number(k.estimate)} "
            "times what collecting and labelling a new example costs; otherwise collect more.",
        ]
        lines += [f"  Note: {n}" for n in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The candidate-surface interface
# --------------------------------------------------------------------------------------------
# Each candidate predicts accuracy in percent from n (examples) and eta (noise fraction) and gives
# the two slopes the exchange rate needs: d acc / d n (per example) and d acc / d p (per noise
# point, p = 100 eta). The local exchange rate is r = -(d acc/d p) / (d acc/d n).


class _Candidate:
    name: str = ""
    expression: str = ""
    n_params: int = 0
    rate_from_form: bool = False
    """True when the exchange rate follows from the model's form alone (no parameter enters)."""

    def skip_reason(self, n: FloatArray, eta: FloatArray) -> str | None:
        return None

    def fit(
        self, n: FloatArray, eta: FloatArray, y: FloatArray, start: FloatArray | None = None
    ) -> FloatArray | None:
        """Least-squares parameters, or None when the data cannot identify them.

        ``start`` (parameters of a fit to similar data) lets refits on resamples skip the
        global search of nonlinear candidates.
        """
        raise NotImplementedError

    def predict(self, params: FloatArray, n: FloatArray, eta: FloatArray) -> FloatArray:
        raise NotImplementedError

    def slopes(
        self, params: FloatArray, n: FloatArray, eta: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        raise NotImplementedError


def _local_rate(cand: _Candidate, params: FloatArray, n: FloatArray, eta: FloatArray) -> FloatArray:
    d_size, d_noise = cand.slopes(params, n, eta)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(d_size > 0, -d_noise / d_size, np.where(d_noise < 0, np.inf, np.nan))
    return np.asarray(rate, dtype=float)


def _broadcast(train_size: Any, noise_level: Any) -> tuple[FloatArray, FloatArray]:
    n, eta = np.broadcast_arrays(
        np.asarray(train_size, dtype=float), np.asarray(noise_level, dtype=float)
    )
    return np.atleast_1d(n).astype(float), np.atleast_1d(eta).astype(float)
