"""The analysis's result types, and the interface that every candidate surface implements.

Frozen dataclasses returned by the public functions: :class:`Interval`, :class:`Coverage`,
:class:`RegressionResult`, :class:`Resampling`, :class:`SurfaceFit`, :class:`NoiseModelAnalysis`
and :class:`TradeoffResult`. The whole-table :class:`~noisegrid.analysis.Analysis` lives in
``summary.py``, because its summary needs the trade-off queries, which sit above these types.
``SurfaceCandidate`` is here because a :class:`SurfaceFit` holds one; the candidates themselves
are in ``surfaces.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ._format import format_number, list_cells, pct_text

__all__ = [
    "Coverage",
    "Interval",
    "NoiseModelAnalysis",
    "RegressionResult",
    "Resampling",
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
        Point estimate and interval bounds (NaN when not available). A ratio's interval is
        unbounded (``low = -inf``, ``high = inf``) when its denominator is not significantly
        different from zero: then the data are consistent with any value.
    level : float
        Confidence level, e.g. 0.95.
    method : str
        How the interval was computed, e.g. ``"Fieller, clustered by seed (3 seeds)"``.
    """

    estimate: float
    low: float
    high: float
    level: float = 0.95
    method: str = ""

    def __str__(self) -> str:
        ci = self.ci_text()
        return f"{format_number(self.estimate)} ({ci})" if ci else format_number(self.estimate)

    @property
    def unbounded(self) -> bool:
        """Whether the interval is the whole line (a ratio whose denominator may be zero)."""
        return self.low == -math.inf and self.high == math.inf

    @property
    def determined(self) -> bool:
        """Whether a rate's interval pins its sign and size: finite, and not through zero.

        A ratio whose interval reaches zero or infinity (``−112 to 63,132`` labels) is not a
        range of label counts: the data are consistent with no effect, or with any.
        """
        if math.isnan(self.low) or math.isnan(self.high):
            return True  # no interval: nothing to say about it
        finite = math.isfinite(self.low) and math.isfinite(self.high)
        return finite and not self.low <= 0 <= self.high

    def rate_ci_text(self) -> str:
        """:meth:`ci_text`, or ``"the grid does not determine the rate"`` when not
        :attr:`determined`."""
        if not self.determined:
            return "the grid does not determine the rate"
        return self.ci_text()

    def ci_text(self) -> str:
        """The interval alone, e.g. ``"95% CI 430 to 498"``; empty when there is none."""
        if math.isnan(self.low) and math.isnan(self.high):
            return ""
        if self.unbounded:
            return f"{self.level * 100:g}% CI unbounded"
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
    measured_sizes, measured_noise_levels : tuple
        The sizes and noise levels of this noise model's *done* runs: what was measured. A point
        outside their range is extrapolated, whatever the spec's grid or failed runs hold.
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
    measured_sizes: tuple[int, ...] = ()
    measured_noise_levels: tuple[float, ...] = ()

    def measured(self, size: float, noise: float) -> bool:
        """Whether (size, noise) lies within the range of the done runs (no extrapolation)."""
        s, e = self.measured_sizes, self.measured_noise_levels
        return bool(
            s and e and min(s) <= size <= max(s) and min(e) - 1e-12 <= noise <= max(e) + 1e-12
        )

    def measured_text(self) -> str:
        """E.g. ``"sizes 1,000–5,000, noise 0%–20%"``; ``"nothing"`` without done runs."""
        s, e = self.measured_sizes, self.measured_noise_levels
        if not s or not e:
            return "nothing (no done runs)"
        return f"sizes {min(s):,}–{max(s):,}, noise {pct_text(min(e))}–{pct_text(max(e))}"

    @property
    def _grid(self) -> tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]:
        return self.sizes, self.noise_levels, self.seeds

    def describe(self, *, max_items: int = 8) -> str:
        """One or two sentences: runs done, failed and missing, naming the first few."""
        text = f"{self.n_done} of {self.n_expected} runs done"
        parts = []
        if self.n_failed:
            failed = list_cells(self.failed, max_items, self._grid)
            parts.append(f"{self.n_failed} failed ({failed})")
        if self.n_missing:
            missing = list_cells(self.missing, max_items, self._grid)
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
        Examples that one point of noise is worth, ``1000 × (−β_noise / β_size)``, with Fieller's
        interval from ``cov_type``'s covariance: exact for a ratio of normal estimates, skewed
        where the size slope is imprecise, and unbounded where it is not significant.
    exchange_rate_iid : Interval or None
        The same with conventional (non-clustered) standard errors, as published.
    skipped : str or None
        Why the regression was not fitted; ``None`` when it was.
    exchange_rate_delta : Interval or None
        The same estimate with the symmetric delta-method interval (``cov_type``'s covariance),
        for comparison: it understates the upper end when the size slope is imprecise.
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
    exchange_rate_delta: Interval | None = None

    def coef(self, term: str) -> float:
        """Return one coefficient, e.g. ``"noise_level_pct"``."""
        return float(self.table.at[term, "coef"])  # type: ignore[arg-type]


@dataclass(frozen=True)
class Resampling:
    """How a surface's bootstrap resampled the grid, and how many refits failed.

    With two or more repeat seeds the resampling unit is the **seed**: a replicate draws whole
    seeds with replacement (every cell of a seed travels with it, since one seed's cells share
    nested subsamples, nested flips and the test sample) and refits the surface. With one seed
    it is the **cell**, and the intervals cover test-sample and fitting noise only, not
    replication.

    Attributes
    ----------
    unit : {"seed", "cell"}
        What a replicate resamples.
    n_units : int
        Seeds (or cells) resampled.
    n_requested : int
        Replicates asked for (``n_bootstrap``).
    n_fitted : int
        Replicates whose refit succeeded; the intervals use these.
    failures : tuple of (str, int)
        Why the others failed, with counts, most frequent first.
    """

    unit: str
    n_units: int
    n_requested: int
    n_fitted: int
    failures: tuple[tuple[str, int], ...] = ()

    @property
    def n_failed(self) -> int:
        """Replicates that could not be refitted."""
        return self.n_requested - self.n_fitted

    @property
    def df(self) -> int:
        """Degrees of freedom of the intervals: resampling units − 1."""
        return max(self.n_units - 1, 1)

    def describe(self) -> str:
        """E.g. ``"seed bootstrap (3 seeds, B=500)"``, with failures when there were any."""
        units = f"{self.n_units} {self.unit}{'s' if self.n_units != 1 else ''}"
        text = f"{self.unit} bootstrap ({units}, B={self.n_fitted}"
        if self.n_failed:
            text += f" of {self.n_requested}"
        return text + ")"

    def failure_text(self) -> str:
        """E.g. ``"4 of 500 replicates failed: 4 drew a single noise level"``; empty if none."""
        if not self.n_failed:
            return ""
        why = "; ".join(f"{k} {reason}" for reason, k in self.failures)
        return f"{self.n_failed} of {self.n_requested} bootstrap replicates failed: {why}"


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
        Parameters refitted on bootstrap resamples of whole seeds (of cells with one seed);
        empty when ``n_bootstrap=0``. ``resampling`` says which, and how many refits failed.
    cv_rmse : float
        Leave-one-cell-out root mean squared error, in accuracy points.
    resampling : Resampling or None
        How ``boot_params`` were drawn (``None`` when there was no bootstrap).
    label : str
        The form in plain words, e.g. ``"log of size and log of label signal"``.
    """

    name: str
    expression: str
    params: FloatArray
    boot_params: FloatArray
    cv_rmse: float
    candidate: SurfaceCandidate = field(repr=False)
    resampling: Resampling | None = None
    label: str = ""

    @property
    def rate_from_form(self) -> bool:
        """True when the surface's form alone fixes the exchange rate (no fitted parameter)."""
        return self.candidate.rate_from_form

    def describe(self) -> str:
        """Plain words with the formula beside, e.g. ``log of size (b0 + b1·ln n + b2·p)``."""
        return f"{self.label or self.name} ({self.expression})"

    def predict(self, train_size: Any, noise_level: Any) -> FloatArray:
        """Predicted accuracy in percent at sizes (examples) and noise levels (fractions)."""
        n, eta = broadcast(train_size, noise_level)
        return self.candidate.predict(self.params, n, eta)

    def exchange_rate(self, train_size: Any, noise_level: Any) -> FloatArray:
        """Marginal exchange rate: −(∂acc/∂p)/(∂acc/∂n), examples per point of noise there."""
        n, eta = broadcast(train_size, noise_level)
        return local_rate(self.candidate, self.params, n, eta)


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
        The surface the exchange rates come from: the candidate with the lowest cross-validated
        error among those whose rate the data determine (among all candidates only when none of
        those could be fitted).
    local_rates : pandas.DataFrame
        At every (size, noise level) of the grid: ``accuracy_pct`` (fitted), ``rate``,
        ``rate_low``, ``rate_high`` (the marginal exchange rate, examples per noise point, with
        its interval), ``exact_compensation`` (the Δn with acc(n + Δn, p + 1) = acc(n, p);
        ``inf`` where no number of examples makes up for the point), ``labels_per_correction``
        (new labels one corrected label is worth) with ``_low``/``_high``, and ``observed``.
    surface_skipped : str or None
        Why no surface was fitted.
    notes : tuple of str
        Caveats in plain language (failed runs, few seeds, extrapolation, ...).
    form_fixed : SurfaceFit or None
        A candidate that fits better than ``best`` but whose form fixes the exchange rate (an
        effective-size form); the summary names it, the rates do not come from it.
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
    form_fixed: SurfaceFit | None = None


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
        The marginal exchange rate there: −(∂acc/∂p)/(∂acc/∂n), the extra examples that
        compensate one more point (percentage point) of noise, at the margin.
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
    exact_compensation : float
        Examples Δn that make up for one whole point of noise on the fitted surface,
        acc(n + Δn, p + 1) = acc(n, p); ``inf`` when no number does, NaN when not computed. It
        differs from the marginal rate where the surface curves over one point.
    surface_description : str
        The surface in plain words with its formula, for sentences.
    rate_from_form : bool
        Whether the surface's form, not the data, fixes the rate.
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
    exact_compensation: float = math.nan
    surface_description: str = ""
    rate_from_form: bool = False

    @property
    def n_wrong_labels(self) -> int:
        """Wrong labels at this point: ``round(noise × size)``, what there is to correct."""
        return math.floor(self.noise * self.size + 0.5)

    def correction_sentence(self) -> str:
        """What correcting labels is worth here, never for more labels than are wrong.

        The rate is local: "correcting 100 labels" where only 10 are wrong would describe
        corrections that cannot be made, so below 100 wrong labels the sentence speaks of one.

        Returns
        -------
        str
            A clause without a final full stop, e.g. ``"correcting 100 labels is worth about 830
            new labels (95% CI 610 to 1,100)"``.
        """
        k = self.labels_per_correction
        wrong = self.n_wrong_labels
        if wrong >= 100:
            per100 = k.scaled(100)
            ci = f" ({per100.rate_ci_text()})" if per100.rate_ci_text() else ""
            worth = format_number(per100.estimate)
            return f"correcting 100 labels is worth about {worth} new labels{ci}"
        ci = f" ({k.rate_ci_text()})" if k.rate_ci_text() else ""
        one = f"about {format_number(k.estimate)} new labels{ci}"
        if wrong == 0:
            return (
                f"no label is wrong at {pct_text(self.noise)} noise; once labels are wrong, "
                f"correcting one would be worth {one}"
            )
        if wrong == 1:
            return f"correcting the one wrong label is worth {one}"
        return f"correcting one of the {wrong} wrong labels is worth {one}"

    def where(self) -> str:
        """``At 3,000 examples and 12.5% noise``; a point outside the grid says it extrapolates."""
        point = f"{self.size:,} examples and {pct_text(self.noise)} noise"
        return (
            f"At {point}" if self.in_grid else f"Extrapolating beyond the measured grid to {point}"
        )

    def __str__(self) -> str:
        r = self.examples_per_noise_point
        k = self.labels_per_correction
        surface = self.surface_description or self.surface
        correction = self.correction_sentence()
        lines = [
            f"{self.where()} ({self.noise_model} noise; fitted accuracy {self.accuracy_pct:.1f}%):",
            f"  surface: {surface}.",
            f"  one point of noise = {format_number(self.labels_per_noise_point)} wrong labels; "
            f"at the margin it costs as much accuracy as {format_number(r.estimate)} examples "
            f"(the marginal exchange rate; {r.rate_ci_text() or 'no interval'}; {r.method}).",
            f"  {correction[0].upper()}{correction[1:]}"
            + (
                f", i.e. {format_number(k.estimate)} new labels per corrected label."
                if self.n_wrong_labels >= 100
                else "."
            ),
            *self._exact_line(),
            f"  Clean first if correcting one label costs less than {format_number(k.estimate)} "
            "times what collecting and labelling a new example costs; otherwise collect more.",
        ]
        lines += [f"  Note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _exact_line(self) -> list[str]:
        exact, marginal = self.exact_compensation, self.examples_per_noise_point.estimate
        if not differs(exact, marginal):
            return []
        if math.isinf(exact):
            return [
                "  No number of examples makes up for one whole point exactly on this surface "
                "(it levels off below the accuracy the point costs); the marginal rate holds "
                "only for small changes."
            ]
        change = (exact - marginal) / marginal * 100
        return [
            f"  Making up for one whole point exactly takes {format_number(exact)} examples "
            f"(Δn with acc(n + Δn, p + 1) = acc(n, p)), {abs(change):.0f}% "
            f"{'more' if change > 0 else 'fewer'} than the marginal rate, because the surface "
            "curves over one point."
        ]


EXACT_TOLERANCE = 0.03
"""The exact compensation is shown beside the marginal rate when they differ by more than this."""


def differs(exact: float, marginal: float) -> bool:
    """Whether the exact compensation is worth showing beside the marginal rate."""
    if math.isnan(exact) or math.isnan(marginal) or marginal <= 0:
        return False
    if math.isinf(exact):
        return True
    return abs(exact - marginal) > EXACT_TOLERANCE * marginal


# --------------------------------------------------------------------------------------------
# The candidate-surface interface
# --------------------------------------------------------------------------------------------
# Each candidate predicts accuracy in percent from n (examples) and eta (noise fraction) and gives
# the two slopes the exchange rate needs: d acc / d n (per example) and d acc / d p (per noise
# point, p = 100 eta). The local exchange rate is r = -(d acc/d p) / (d acc/d n).


class SurfaceCandidate:
    name: str = ""
    label: str = ""
    """The form in plain words, for sentences (the name is an identifier)."""
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

        ``start`` (parameters of a fit to similar data) is one more starting point for
        nonlinear candidates; it never replaces their global search, so a fit from it is never
        worse than a fresh one.
        """
        raise NotImplementedError

    def fit_checked(
        self, n: FloatArray, eta: FloatArray, y: FloatArray
    ) -> tuple[FloatArray | None, str | None]:
        """A fresh fit with a verdict: ``(params, None)``, or ``(None, why it failed)``.

        The bootstrap refits every replicate this way and counts the failures by reason.
        """
        params = self.fit(n, eta, y)
        if params is None:
            return None, "did not separate the surface's terms"
        return params, None

    def predict(self, params: FloatArray, n: FloatArray, eta: FloatArray) -> FloatArray:
        raise NotImplementedError

    def slopes(
        self, params: FloatArray, n: FloatArray, eta: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        raise NotImplementedError


def local_rate(
    cand: SurfaceCandidate, params: FloatArray, n: FloatArray, eta: FloatArray
) -> FloatArray:
    d_size, d_noise = cand.slopes(params, n, eta)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(d_size > 0, -d_noise / d_size, np.where(d_noise < 0, np.inf, np.nan))
    return np.asarray(rate, dtype=float)


def broadcast(train_size: Any, noise_level: Any) -> tuple[FloatArray, FloatArray]:
    n, eta = np.broadcast_arrays(
        np.asarray(train_size, dtype=float), np.asarray(noise_level, dtype=float)
    )
    return np.atleast_1d(n).astype(float), np.atleast_1d(eta).astype(float)
