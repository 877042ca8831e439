"""Analysis of a results table: what one point of label noise is worth in training examples.

This module owns the statistics behind the report, as pure functions over the tidy results table
(see ``docs/results-schema.md``; rows with ``status == "done"`` are analysed, failed rows are
counted and excluded):

- per-cell statistics over repeat seeds (mean, standard deviation, 95% interval);
- the reference regression exactly as published, OLS
  ``eval_accuracy_pct ~ train_size_1k + noise_level_pct``, and its exchange rate
  ``1000 × (−β_noise / β_size)`` with a delta-method interval;
- a comparison of candidate accuracy surfaces by leave-one-cell-out cross-validation, and the
  *local* exchange rate of the best one at every grid cell, with cell-bootstrap intervals;
- the trade-off at one (size, noise) point: :func:`tradeoff`.

Every table that holds several noise models is analysed per noise model. Accuracy is in percent
(``_pct``) in every output; noise is a fraction in inputs (as in the table) and in points
(percent) where the text says "point". The methods are described in ``docs/analysis.md``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize, stats

from .errors import AnalysisError

__all__ = [
    "Analysis",
    "Coverage",
    "Interval",
    "NoiseModelAnalysis",
    "RegressionResult",
    "SurfaceFit",
    "TradeoffResult",
    "analyze",
    "cell_summary",
    "reference_regression",
    "tradeoff",
]

FloatArray = npt.NDArray[np.float64]

REQUIRED_COLUMNS = ("train_size", "noise_level", "seed", "status", "eval_accuracy")
"""Columns of the tidy table that the analysis cannot do without."""

REFERENCE_FORMULA = "eval_accuracy_pct ~ train_size_1k + noise_level_pct"
"""The published regression (Simmering 2023), in statsmodels formula syntax."""

NOISE_DECIMALS = 6
"""Noise rates are rounded to this many decimals so that 0.025 * 3 and 0.075 are one cell."""


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


@dataclass(frozen=True, eq=False)
class Analysis:
    """The result of :func:`analyze`: one :class:`NoiseModelAnalysis` per noise model.

    Attributes
    ----------
    results : pandas.DataFrame
        The table as analysed (every row, done and failed).
    by_noise_model : dict of str to NoiseModelAnalysis
    focus : tuple of (int, float) or None
        The (size, noise level) cell inside the grid that the plain-language summary talks about.
    noise_model_comparison : pandas.DataFrame or None
        Exchange rates side by side when the table holds more than one noise model.
    """

    results: pd.DataFrame = field(repr=False)
    by_noise_model: dict[str, NoiseModelAnalysis]
    focus: tuple[int, float] | None
    noise_model_comparison: pd.DataFrame | None
    general_notes: tuple[str, ...] = ()
    n_classes: int = 2
    confidence: float = 0.95
    n_bootstrap: int = 500
    seed: int = 0

    @property
    def noise_models(self) -> list[str]:
        """The noise models in the table, ``uniform`` first."""
        return list(self.by_noise_model)

    def notes(self) -> list[str]:
        """Every noise model's caveats, prefixed by the noise model when there are several."""
        many = len(self.by_noise_model) > 1
        return [*self.general_notes] + [
            f"{nm} noise: {note}" if many else note
            for nm, a in self.by_noise_model.items()
            for note in a.notes
        ]

    def summary(self) -> str:
        """A few plain-language sentences per noise model (the top of the report)."""
        return "\n\n".join(_summary_lines(self, nm) for nm in self.by_noise_model)


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
# Public functions
# --------------------------------------------------------------------------------------------


def cell_summary(results: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """Per-cell accuracy statistics over repeat seeds.

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results table.
    confidence : float, default 0.95
        Level of the intervals.

    Returns
    -------
    pandas.DataFrame
        One row per (``noise_model``, ``train_size``, ``noise_level``) with ``n_done``,
        ``n_failed``, ``accuracy_pct`` (mean over seeds), ``sd_pct`` (standard deviation over
        seeds, NaN with one seed), ``ci_low_pct``, ``ci_high_pct`` and ``ci_method``: a Student-t
        interval over seeds when there are several, else a Wilson interval for the test-sample
        accuracy (from ``test_size``; the interval then covers test sampling only).

    Raises
    ------
    AnalysisError
        If the table lacks a required column or ``confidence`` is not in (0, 1).

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"train_size": [1000, 1000], "noise_level": [0.1, 0.1],
    ...     "seed": [0, 1], "status": ["done", "done"], "eval_accuracy": [0.80, 0.82]})
    >>> row = cell_summary(table).iloc[0]
    >>> int(row["n_done"]), round(float(row["accuracy_pct"]), 1), row["ci_method"]
    (2, 81.0, 't over seeds')
    """
    _check_confidence(confidence)
    return _cell_summary(_prepare(results), confidence)


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
        ``1000 × (−β_noise / β_size)`` with a delta-method interval; or, when the table has a
        single size or a single noise level, ``skipped`` says why nothing was fitted.

    Raises
    ------
    AnalysisError
        If the table lacks a required column, or holds several noise models and
        ``noise_model`` is not given.
    """
    _check_confidence(confidence)
    if cov_type not in ("auto", "nonrobust", "cluster"):
        raise AnalysisError(f"cov_type must be 'auto', 'nonrobust' or 'cluster'; got {cov_type!r}")
    df = _prepare(results)
    nm = _pick_noise_model(df, noise_model)
    return _reference(_done(df[df["noise_model"] == nm]), confidence, cov_type)


def analyze(
    results: pd.DataFrame,
    *,
    grid: Mapping[str, Any] | None = None,
    n_classes: int | None = None,
    n_bootstrap: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> Analysis:
    """Analyse a (finished or partial) grid: cells, reference regression, surfaces, exchange rates.

    Parameters
    ----------
    results : pandas.DataFrame
        The tidy results table (``noisegrid.load_results`` or ``noisegrid export``).
    grid : mapping, optional
        The experiment's ``[grid]`` section (``sizes``, ``noise_rates``, ``seeds``), so that runs
        not in the table yet are reported as missing. Default: the values seen in the table.
    n_classes : int, optional
        Number of classes K; sets the label signal ``1 − η·K/(K−1)`` used by the
        effective-sample-size candidates (``1 − 2η`` for binary tasks). Default: read from the
        ``info`` column (``flipped_per_class``), else 2 (with a note saying so).
    n_bootstrap : int, default 500
        Cell-bootstrap replicates for the local exchange-rate intervals (0: no intervals).
    confidence : float, default 0.95
    seed : int, default 0
        Seed of the bootstrap's random generator (no global state is touched).

    Returns
    -------
    Analysis

    Raises
    ------
    AnalysisError
        If the table is empty or lacks a required column, or an option is out of range.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> sizes, noise = [1000, 2000, 4000, 8000], [0.0, 0.1, 0.2]
    >>> rows = [{"train_size": n, "noise_level": e, "seed": 0, "status": "done",
    ...          "eval_accuracy": 0.6 + 0.03 * np.log(n / 1000) - 0.4 * e}
    ...         for n in sizes for e in noise]
    >>> result = analyze(pd.DataFrame(rows), n_bootstrap=50)
    >>> round(result.by_noise_model["uniform"].reference.coef("noise_level_pct"), 3)
    -0.4
    """
    _check_confidence(confidence)
    if n_classes is not None and (not isinstance(n_classes, int | np.integer) or n_classes < 2):
        raise AnalysisError(f"n_classes must be an integer >= 2; got {n_classes!r}")
    if not isinstance(n_bootstrap, int | np.integer) or n_bootstrap < 0:
        raise AnalysisError(f"n_bootstrap must be an integer >= 0; got {n_bootstrap!r}")
    df = _prepare(results)
    if df.empty:
        raise AnalysisError(
            "the results table has no rows; run the grid first (noisegrid run CONFIG)"
        )
    general = []
    if n_classes is None:
        n_classes = _infer_n_classes(df)
        if n_classes is None:
            n_classes = 2
            general.append(
                "The number of classes is not recorded in the table; the effective-size surfaces "
                "assume 2 (pass n_classes=... if that is wrong)."
            )
    expected = _expected_grid(df, grid)
    focus = _focus_cell(expected[0], expected[1])
    rng = np.random.default_rng(seed)
    by_nm = {
        nm: _analyze_noise_model(
            df[df["noise_model"] == nm],
            nm,
            expected=expected,
            focus=focus,
            n_classes=int(n_classes),
            n_bootstrap=int(n_bootstrap),
            confidence=confidence,
            rng=rng,
        )
        for nm in _ordered_noise_models(df)
    }
    comparison = _compare_noise_models(by_nm, focus) if len(by_nm) > 1 else None
    return Analysis(
        results=df,
        by_noise_model=by_nm,
        focus=focus,
        noise_model_comparison=comparison,
        general_notes=tuple(general),
        n_classes=int(n_classes),
        confidence=confidence,
        n_bootstrap=int(n_bootstrap),
        seed=seed,
    )


def tradeoff(
    results: pd.DataFrame | Analysis,
    *,
    size: int,
    noise: float,
    noise_model: str | None = None,
    n_classes: int | None = None,
    n_bootstrap: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> TradeoffResult:
    """The local exchange rate at one (size, noise) point: labels to correct vs labels to collect.

    Parameters
    ----------
    results : pandas.DataFrame or Analysis
        The tidy results table, or an :class:`Analysis` already computed (then the remaining
        analysis options are ignored).
    size : int
        Training-set size (examples) to ask about.
    noise : float
        Noise rate there, as a fraction in [0, 1) (0.1 for 10%).
    noise_model : str, optional
        Required when the table holds several noise models.
    n_classes, n_bootstrap, confidence, seed
        As in :func:`analyze`.

    Returns
    -------
    TradeoffResult
        ``str()`` of it is a short explanation.

    Raises
    ------
    AnalysisError
        If ``size`` or ``noise`` is out of range, the noise model is unknown or ambiguous, or the
        grid cannot support a surface (a single size or a single noise level).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rows = [{"train_size": n, "noise_level": e, "seed": 0, "status": "done",
    ...          "eval_accuracy": 0.6 + 0.03 * np.log(n / 1000) - 0.4 * e}
    ...         for n in [1000, 2000, 4000, 8000] for e in [0.0, 0.1, 0.2]]
    >>> t = tradeoff(pd.DataFrame(rows), size=4000, noise=0.1, n_bootstrap=50)
    >>> round(t.examples_per_noise_point.estimate)
    533
    """
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise AnalysisError(f"size must be a positive number of examples; got {size!r}")
    if isinstance(noise, bool) or not isinstance(noise, int | float | np.floating):
        raise AnalysisError(f"noise must be a fraction in [0, 1) such as 0.1; got {noise!r}")
    if not 0 <= noise < 1:
        hint = f"; did you mean {noise / 100:g} ({noise:g}%)?" if 1 <= noise < 100 else ""
        raise AnalysisError(f"noise must be a fraction in [0, 1) such as 0.1; got {noise:g}{hint}")
    if isinstance(results, Analysis):
        nm = _pick_noise_model_from(results.noise_models, noise_model)
        nma = results.by_noise_model[nm]
    else:
        # Only the chosen noise model is analysed (and a bad name fails before any fitting).
        table = _prepare(results)
        nm = _pick_noise_model(table, noise_model)
        analysis = analyze(
            table[table["noise_model"] == nm],
            n_classes=n_classes,
            n_bootstrap=n_bootstrap,
            confidence=confidence,
            seed=seed,
        )
        nma = analysis.by_noise_model[nm]
    if nma.best is None:
        raise AnalysisError(
            f"cannot compute an exchange rate for noise model '{nm}': {nma.surface_skipped}"
        )
    return _tradeoff_at(nma, int(size), float(noise))


def format_number(x: float) -> str:
    """Format a count-like number for text: ``1,234``, ``45``, ``3.2``, ``n/a``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if abs(x) >= 9.95:
        return f"{x:,.0f}"
    return f"{x:.1f}"


# --------------------------------------------------------------------------------------------
# Preparation and cell statistics
# --------------------------------------------------------------------------------------------


def _prepare(results: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(results, pd.DataFrame):
        raise AnalysisError(
            "results must be a pandas DataFrame (the tidy table from noisegrid.load_results or "
            f"`noisegrid export`); got {type(results).__name__}"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    if missing:
        raise AnalysisError(
            f"the results table lacks column(s) {', '.join(missing)}; it has "
            f"{', '.join(map(str, results.columns)) or 'no columns'}; pass the tidy table from "
            "noisegrid.load_results or `noisegrid export`"
        )
    df = results.copy()
    if "noise_model" not in df.columns:
        df["noise_model"] = "uniform"
    df["noise_model"] = df["noise_model"].fillna("uniform").astype(str)
    df["status"] = df["status"].astype(str).str.lower()
    for col in ("train_size", "noise_level", "seed"):
        values = pd.to_numeric(df[col], errors="coerce")
        if values.isna().any():
            raise AnalysisError(
                f"column '{col}' of the results table must be numeric with no gaps; "
                f"{int(values.isna().sum())} row(s) are empty or not numbers"
            )
        df[col] = values
    df["train_size"] = df["train_size"].astype(int)
    df["seed"] = df["seed"].astype(int)
    df["noise_level"] = df["noise_level"].astype(float).round(NOISE_DECIMALS)
    df["eval_accuracy"] = pd.to_numeric(df["eval_accuracy"], errors="coerce").astype(float)
    done_acc = df.loc[df["status"] == "done", "eval_accuracy"]
    if (done_acc > 1).any():
        raise AnalysisError(
            "eval_accuracy must be a fraction in [0, 1]; the table has values up to "
            f"{done_acc.max():g} — divide by 100 if they are percentages"
        )
    return df.reset_index(drop=True)


def _done(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["status"] == "done") & df["eval_accuracy"].notna()]


def _cell_summary(df: pd.DataFrame, confidence: float) -> pd.DataFrame:
    keys = ["noise_model", "train_size", "noise_level"]
    columns = [*keys, "n_done", "n_failed", "accuracy_pct", "sd_pct", "ci_low_pct"]
    columns += ["ci_high_pct", "ci_method"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    cells = df[keys].drop_duplicates().sort_values(keys).reset_index(drop=True)
    done = _done(df).assign(acc_pct=lambda d: d["eval_accuracy"] * 100)
    agg = done.groupby(keys)["acc_pct"].agg(["count", "mean", "std"]).reset_index()
    failed = df[df["status"] == "failed"].groupby(keys).size().rename("n_failed").reset_index()
    out = cells.merge(agg, on=keys, how="left").merge(failed, on=keys, how="left")
    if "test_size" in done.columns:
        tests = done.assign(m=pd.to_numeric(done["test_size"], errors="coerce"))
        out = out.merge(tests.groupby(keys)["m"].first().reset_index(), on=keys, how="left")
    else:
        out["m"] = np.nan
    k = out["count"].fillna(0).to_numpy(dtype=float)
    mean = out["mean"].to_numpy(dtype=float)
    sd = np.where(k > 1, out["std"].to_numpy(dtype=float), np.nan)
    low = np.full(len(out), np.nan)
    high = np.full(len(out), np.nan)
    method = np.full(len(out), "", dtype=object)
    several = k > 1
    if several.any():
        q = stats.t.ppf(0.5 + confidence / 2, k[several] - 1)
        half = q * sd[several] / np.sqrt(k[several])
        low[several], high[several] = mean[several] - half, mean[several] + half
        method[several] = "t over seeds"
    m = out["m"].to_numpy(dtype=float)
    one = (k == 1) & np.isfinite(m) & (m > 0)
    if one.any():
        w_low, w_high = _wilson(mean[one] / 100, m[one], confidence)
        low[one], high[one] = w_low * 100, w_high * 100
        method[one] = "Wilson (test sample)"
    return pd.DataFrame(
        {
            "noise_model": out["noise_model"],
            "train_size": out["train_size"].astype(int),
            "noise_level": out["noise_level"].astype(float),
            "n_done": k.astype(int),
            "n_failed": out["n_failed"].fillna(0).astype(int),
            "accuracy_pct": mean,
            "sd_pct": sd,
            "ci_low_pct": low,
            "ci_high_pct": high,
            "ci_method": method.astype(str),
        },
        columns=columns,
    )


def _wilson(p: FloatArray, n: FloatArray, confidence: float) -> tuple[FloatArray, FloatArray]:
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def _expected_grid(
    df: pd.DataFrame, grid: Mapping[str, Any] | None
) -> tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]:
    sizes = set(df["train_size"].astype(int))
    noise = set(df["noise_level"].astype(float))
    seeds = set(df["seed"].astype(int))
    if grid is not None:
        if not isinstance(grid, Mapping):
            raise AnalysisError(
                "grid must be a mapping like the spec's [grid] section (sizes, noise_rates, "
                f"seeds); got {type(grid).__name__}"
            )
        sizes |= {int(s) for s in grid.get("sizes", ())}
        noise |= {round(float(e), NOISE_DECIMALS) for e in grid.get("noise_rates", ())}
        if grid.get("seeds"):
            seeds |= {int(s) for s in grid["seeds"]}
        elif grid.get("repeats"):
            seeds |= set(range(int(grid["repeats"])))
    return tuple(sorted(sizes)), tuple(sorted(noise)), tuple(sorted(seeds))


def _coverage(
    df: pd.DataFrame, expected: tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]
) -> Coverage:
    sizes, noise, seeds = expected
    key = ["train_size", "noise_level", "seed"]
    full = pd.MultiIndex.from_product([sizes, noise, seeds], names=key).to_frame(index=False)
    present = df[key].drop_duplicates()
    merged = full.merge(present, on=key, how="left", indicator=True)
    missing = merged.loc[merged["_merge"] == "left_only", key].reset_index(drop=True)
    failed_rows = df[df["status"] != "done"]
    errors = failed_rows["error"] if "error" in failed_rows.columns else ""
    failed = failed_rows[key].assign(error=errors).reset_index(drop=True)
    n_done = len(_done(df))
    return Coverage(
        sizes=sizes,
        noise_levels=noise,
        seeds=seeds,
        n_expected=len(full),
        n_done=n_done,
        n_failed=len(failed),
        n_missing=len(missing),
        missing=missing,
        failed=failed,
    )


def _list_cells(
    cells: pd.DataFrame,
    max_items: int,
    grid: tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]] | None = None,
) -> str:
    """Name runs compactly: whole sizes or noise levels first, then cells with their seeds."""
    items = []
    rest = cells
    if grid is not None:
        sizes, noise, seeds = grid
        per_size = cells.groupby("train_size").size()
        full = len(noise) * len(seeds)
        full_sizes = [int(n) for n, k in zip(per_size.index, per_size, strict=True) if k == full]
        items += [f"size {n:,} at every noise level" for n in full_sizes]
        rest = rest[~rest["train_size"].isin(full_sizes)]
        per_noise = rest.groupby("noise_level").size()
        remaining_sizes = len(sizes) - len(full_sizes)
        full = remaining_sizes * len(seeds)
        full_noise = [
            float(e) for e, k in zip(per_noise.index, per_noise, strict=True) if k == full
        ]
        if remaining_sizes > 1:
            items += [f"noise {_pct(e)} at every size" for e in full_noise]
            rest = rest[~rest["noise_level"].isin(full_noise)]
    all_seeds = set(grid[2]) if grid is not None else None
    groups = rest.groupby(["train_size", "noise_level"], sort=True)["seed"].apply(list)
    for key, seeds_here in groups.items():
        n, eta = cast(tuple[int, float], key)
        text = f"{int(n):,} @ {_pct(float(eta))}"
        if len(seeds_here) > 1 and all_seeds is not None and set(seeds_here) == all_seeds:
            text += " (every seed)"
        else:
            plural = "s" if len(seeds_here) > 1 else ""
            text += f" seed{plural} {', '.join(str(x) for x in seeds_here)}"
        items.append(text)
    text = "; ".join(items[:max_items])
    if len(items) > max_items:
        text += f"; and {len(items) - max_items} more"
    return text


def _pct(eta: float) -> str:
    return f"{eta * 100:g}%"


def _size(n: float) -> str:
    return f"{int(n):,}"


def _infer_n_classes(df: pd.DataFrame) -> int | None:
    """K from the runner's ``info`` JSON (``flipped_per_class`` has one entry per class)."""
    if "info" not in df.columns:
        return None
    found = 0
    for text in df["info"].dropna().astype(str).head(50):
        try:
            info = json.loads(text)
        except ValueError:
            continue
        per_class = info.get("flipped_per_class") if isinstance(info, dict) else None
        if isinstance(per_class, list):
            found = max(found, len(per_class))
    return found if found >= 2 else None


def _ordered_noise_models(df: pd.DataFrame) -> list[str]:
    names = sorted(set(df["noise_model"]))
    return sorted(names, key=lambda s: (s != "uniform", s))


def _pick_noise_model(df: pd.DataFrame, noise_model: str | None) -> str:
    return _pick_noise_model_from(_ordered_noise_models(df), noise_model)


def _pick_noise_model_from(available: list[str], noise_model: str | None) -> str:
    if not available:
        raise AnalysisError(
            "the results table has no rows; run the grid first (noisegrid run CONFIG)"
        )
    if noise_model is None:
        if len(available) == 1:
            return available[0]
        raise AnalysisError(
            f"the table holds several noise models ({', '.join(available)}); choose one with "
            "noise_model=... (CLI: --noise-model NAME)"
        )
    if noise_model not in available:
        raise AnalysisError(
            f"noise model '{noise_model}' is not in the table; it has: {', '.join(available)}"
        )
    return noise_model


def _check_confidence(confidence: float) -> None:
    if not isinstance(confidence, int | float) or not 0 < confidence < 1:
        raise AnalysisError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")


def _focus_cell(sizes: Sequence[int], noise: Sequence[float]) -> tuple[int, float] | None:
    if not sizes or not noise:
        return None
    positive = [e for e in noise if e > 0] or list(noise)
    return int(sizes[(len(sizes) - 1) // 2]), float(positive[(len(positive) - 1) // 2])


# --------------------------------------------------------------------------------------------
# The reference regression
# --------------------------------------------------------------------------------------------


def _reference(done: pd.DataFrame, confidence: float, cov_type: str) -> RegressionResult:
    import statsmodels.formula.api as smf

    empty = pd.DataFrame(columns=["coef", "std_err", "t", "p_value", "ci_low", "ci_high"])
    n_sizes, n_noise = done["train_size"].nunique(), done["noise_level"].nunique()
    skipped = None
    if done.empty:
        skipped = "no runs are done yet"
    elif n_sizes < 2:
        skipped = (
            "needs at least two training sizes to estimate the effect of size; the done runs "
            f"have {_values(done['train_size'], _size)}"
        )
    elif n_noise < 2:
        skipped = (
            "needs at least two noise levels to estimate the effect of noise; the done runs "
            f"have {_values(done['noise_level'], _pct)}"
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
        rate, rate_iid = _delta_rate(fit, confidence), _delta_rate(iid, confidence)
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
    )


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
    if fit.use_t:
        q = stats.t.ppf(0.5 + confidence / 2, _df_inference(fit))
    else:
        q = stats.norm.ppf(0.5 + confidence / 2)
    return Interval(rate, rate - q * se, rate + q * se, confidence, "delta method")


def _df_inference(fit: Any) -> float:
    df = getattr(fit, "df_resid_inference", None)
    return float(df) if df is not None else float(fit.df_resid)


def _values(series: pd.Series, fmt: Callable[[Any], str]) -> str:
    return ", ".join(fmt(v) for v in sorted(set(series))) or "none"


# --------------------------------------------------------------------------------------------
# Candidate surfaces
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


_Features = Callable[[FloatArray, FloatArray], FloatArray]


class _LinearCandidate(_Candidate):
    """Linear in its parameters: acc = X(n, eta) @ beta, fitted by least squares."""

    def __init__(
        self,
        name: str,
        expression: str,
        features: _Features,
        d_size: _Features,
        d_noise: _Features,
        signal_coef: float | None = None,
        rate_from_form: bool = False,
    ) -> None:
        self.name, self.expression = name, expression
        self.rate_from_form = rate_from_form
        self._features, self._d_size, self._d_noise = features, d_size, d_noise
        self._signal_coef = signal_coef
        self.n_params = features(np.ones(1), np.zeros(1)).shape[1]

    def skip_reason(self, n: FloatArray, eta: FloatArray) -> str | None:
        return _signal_skip(self._signal_coef, eta)

    def fit(
        self, n: FloatArray, eta: FloatArray, y: FloatArray, start: FloatArray | None = None
    ) -> FloatArray | None:
        x = self._features(n, eta)
        if np.linalg.matrix_rank(x) < x.shape[1]:
            return None
        beta, *_ = np.linalg.lstsq(x, y, rcond=None)
        return np.asarray(beta, dtype=float)

    def predict(self, params: FloatArray, n: FloatArray, eta: FloatArray) -> FloatArray:
        return np.asarray(self._features(n, eta) @ params, dtype=float)

    def slopes(
        self, params: FloatArray, n: FloatArray, eta: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        return (
            np.asarray(self._d_size(n, eta) @ params, dtype=float),
            np.asarray(self._d_noise(n, eta) @ params, dtype=float),
        )


class _PowerCandidate(_Candidate):
    """acc = a − b·m^(−g) with m = n·s²/1000: a power-law learning curve in effective size."""

    name = "effective_size_power"
    n_params = 3
    rate_from_form = True

    def __init__(self, signal_coef: float) -> None:
        self._c = signal_coef
        self.expression = "a − b·(n·s²/1000)^(−g)"

    def skip_reason(self, n: FloatArray, eta: FloatArray) -> str | None:
        return _signal_skip(self._c, eta)

    def _m(self, n: FloatArray, eta: FloatArray) -> FloatArray:
        return n * (1 - self._c * eta) ** 2 / 1000

    def fit(
        self, n: FloatArray, eta: FloatArray, y: FloatArray, start: FloatArray | None = None
    ) -> FloatArray | None:
        m = self._m(n, eta)
        if np.unique(np.round(m, 9)).size < 3:
            return None
        logm = np.log(m)
        yc = y - y.mean()
        syy = float(yc @ yc)

        def sse(g: FloatArray) -> FloatArray:
            # For a fixed exponent g the model is linear in (a, b): the least-squares error has a
            # closed form, so g is found by a 1-D search (deterministic, no starting values).
            x = -np.exp(-np.outer(g, logm))
            xc = x - x.mean(axis=1, keepdims=True)
            sxx = np.einsum("ij,ij->i", xc, xc)
            sxy = xc @ yc
            with np.errstate(divide="ignore", invalid="ignore"):
                out = syy - sxy**2 / sxx
            return np.where(sxx > 0, out, np.inf)

        grid = np.geomspace(0.01, 3.0, 40)
        errors = sse(grid)
        i = int(np.argmin(errors))
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
        res = optimize.minimize_scalar(
            lambda g: float(sse(np.array([g]))[0]),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-6},
        )
        g = float(res.x) if res.fun <= errors[i] else float(grid[i])
        x = -np.exp(-g * logm)
        xc = x - x.mean()
        if not np.isfinite(errors[i]) or float(xc @ xc) <= 0:
            return None
        b = float(xc @ yc) / float(xc @ xc)
        a = float(y.mean()) - b * float(x.mean())
        return np.array([a, b, g], dtype=float)

    def predict(self, params: FloatArray, n: FloatArray, eta: FloatArray) -> FloatArray:
        a, b, g = params
        return np.asarray(a - b * self._m(n, eta) ** (-g), dtype=float)

    def slopes(
        self, params: FloatArray, n: FloatArray, eta: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        _, b, g = params
        s = 1 - self._c * eta
        dm = b * g * self._m(n, eta) ** (-g - 1)
        return dm * s**2 / 1000, dm * (n / 1000) * 2 * s * (-self._c / 100)


class _PowerSignalCandidate(_Candidate):
    """acc = a − b·(n/1000)^(−g)·s^(−h): the power law with the signal's exponent set free.

    With ``h = 2g`` this is :class:`_PowerCandidate`; the exchange rate is
    ``(h/g)·c·n/(100·s)``, so the data decide how much a noise point costs relative to theory.
    """

    name = "power_size_signal"
    n_params = 4

    def __init__(self, signal_coef: float) -> None:
        self._c = signal_coef
        self.expression = "a − b·(n/1000)^(−g)·s^(−h)"

    def skip_reason(self, n: FloatArray, eta: FloatArray) -> str | None:
        return _signal_skip(self._c, eta)

    def fit(
        self, n: FloatArray, eta: FloatArray, y: FloatArray, start: FloatArray | None = None
    ) -> FloatArray | None:
        if np.unique(n).size < 2 or np.unique(eta).size < 2:
            return None
        lu, ls = np.log(n / 1000), np.log(1 - self._c * eta)
        x0 = self._global_start(lu, ls, y) if start is None else start
        if x0 is None:
            return None

        def basis(p: FloatArray) -> FloatArray:
            return np.asarray(np.exp(-(p[2] * lu + p[3] * ls)), dtype=float)

        def resid(p: FloatArray) -> FloatArray:
            return p[0] - p[1] * basis(p) - y

        def jac(p: FloatArray) -> FloatArray:
            x = basis(p)
            return np.column_stack([np.ones_like(x), -x, p[1] * x * lu, p[1] * x * ls])

        with np.errstate(all="ignore"):
            try:
                # A warm start needs few steps; the cap bounds the time spent where the power law
                # degenerates (g → 0, b → ∞ when accuracy is linear in log size).
                res = optimize.least_squares(
                    resid,
                    x0,
                    jac=jac,
                    method="lm",
                    xtol=1e-10,
                    max_nfev=200 if start is None else 40,
                )
            except (ValueError, np.linalg.LinAlgError):
                return None
        params = np.asarray(res.x, dtype=float)
        if not np.all(np.isfinite(params)) or params[2] <= 0:
            return None
        return params

    def _global_start(self, lu: FloatArray, ls: FloatArray, y: FloatArray) -> FloatArray | None:
        # Linear in (a, b) for fixed exponents (g, h): a closed-form error over a grid of
        # exponents gives a deterministic starting point for the local refinement.
        yc = y - y.mean()
        g_grid, h_grid = np.meshgrid(np.geomspace(0.02, 3.0, 15), np.linspace(0.0, 10.0, 15))
        g, h = g_grid.ravel(), h_grid.ravel()
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            x = -np.exp(-(np.outer(g, lu) + np.outer(h, ls)))
            xc = x - x.mean(axis=1, keepdims=True)
            sxx = np.einsum("ij,ij->i", xc, xc)
            sxy = xc @ yc
            err = float(yc @ yc) - sxy**2 / sxx
        err = np.where(np.isfinite(err) & (sxx > 0), err, np.inf)
        i = int(np.argmin(err))
        if not np.isfinite(err[i]):
            return None
        b = sxy[i] / sxx[i]
        a = float(y.mean()) - b * float(x[i].mean())
        return np.array([a, b, g[i], h[i]], dtype=float)

    def predict(self, params: FloatArray, n: FloatArray, eta: FloatArray) -> FloatArray:
        a, b, g, h = params
        s = 1 - self._c * eta
        return np.asarray(a - b * (n / 1000) ** (-g) * s ** (-h), dtype=float)

    def slopes(
        self, params: FloatArray, n: FloatArray, eta: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        _, b, g, h = params
        u, s = n / 1000, 1 - self._c * eta
        d_size = b * g * u ** (-g - 1) * s ** (-h) / 1000
        d_noise = -b * h * u ** (-g) * s ** (-h - 1) * self._c / 100
        return d_size, d_noise


def _signal_skip(signal_coef: float | None, eta: FloatArray) -> str | None:
    if signal_coef is None or eta.size == 0:
        return None
    limit = 1 / signal_coef
    if float(eta.max()) >= limit:
        return (
            f"needs noise below {_pct(limit)} (where labels still carry signal); the grid goes "
            f"up to {_pct(float(eta.max()))}"
        )
    return None


def _candidates(n_classes: int) -> list[_Candidate]:
    c = n_classes / (n_classes - 1)

    def ones(n: FloatArray) -> FloatArray:
        return np.ones_like(n, dtype=float)

    def zeros(n: FloatArray) -> FloatArray:
        return np.zeros_like(n, dtype=float)

    def sig(eta: FloatArray) -> FloatArray:
        return 1 - c * eta

    s_text = "1 − 2η" if n_classes == 2 else f"1 − η·{n_classes}/{n_classes - 1}"
    return [
        _LinearCandidate(
            "linear",
            "b0 + b1·n/1000 + b2·p (the reference regression)",
            lambda n, e: np.column_stack([ones(n), n / 1000, 100 * e]),
            lambda n, e: np.column_stack([zeros(n), ones(n) / 1000, zeros(n)]),
            lambda n, e: np.column_stack([zeros(n), zeros(n), ones(n)]),
        ),
        _LinearCandidate(
            "interaction",
            "b0 + b1·n/1000 + b2·p + b3·(n/1000)·p",
            lambda n, e: np.column_stack([ones(n), n / 1000, 100 * e, n / 1000 * 100 * e]),
            lambda n, e: np.column_stack([zeros(n), ones(n) / 1000, zeros(n), 100 * e / 1000]),
            lambda n, e: np.column_stack([zeros(n), zeros(n), ones(n), n / 1000]),
        ),
        _LinearCandidate(
            "log_size",
            "b0 + b1·ln n + b2·p",
            lambda n, e: np.column_stack([ones(n), np.log(n), 100 * e]),
            lambda n, e: np.column_stack([zeros(n), 1 / n, zeros(n)]),
            lambda n, e: np.column_stack([zeros(n), zeros(n), ones(n)]),
        ),
        _LinearCandidate(
            "log_size_interaction",
            "b0 + b1·ln n + b2·p + b3·p·ln n",
            lambda n, e: np.column_stack([ones(n), np.log(n), 100 * e, 100 * e * np.log(n)]),
            lambda n, e: np.column_stack([zeros(n), 1 / n, zeros(n), 100 * e / n]),
            lambda n, e: np.column_stack([zeros(n), zeros(n), ones(n), np.log(n)]),
        ),
        _LinearCandidate(
            "log_size_log_signal",
            f"b0 + b1·ln n + b2·ln s, s = {s_text}",
            lambda n, e: np.column_stack([ones(n), np.log(n), np.log(sig(e))]),
            lambda n, e: np.column_stack([zeros(n), 1 / n, zeros(n)]),
            lambda n, e: np.column_stack([zeros(n), zeros(n), -c / 100 / sig(e)]),
            signal_coef=c,
        ),
        _LinearCandidate(
            "effective_size_log",
            f"b0 + b1·ln(n·s²), s = {s_text}",
            lambda n, e: np.column_stack([ones(n), np.log(n * sig(e) ** 2)]),
            lambda n, e: np.column_stack([zeros(n), 1 / n]),
            lambda n, e: np.column_stack([zeros(n), -2 * c / 100 / sig(e)]),
            signal_coef=c,
            rate_from_form=True,
        ),
        _PowerCandidate(c),
        _PowerSignalCandidate(c),
    ]


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


def _cross_validate(
    cand: _Candidate,
    n: FloatArray,
    eta: FloatArray,
    y: FloatArray,
    cell: npt.NDArray[np.integer[Any]],
    start: FloatArray | None = None,
) -> tuple[float, float] | str:
    """Leave-one-cell-out: all seeds of a (size, noise) cell are held out together."""
    pred = np.empty_like(y)
    for c in np.unique(cell):
        test = cell == c
        params = cand.fit(n[~test], eta[~test], y[~test], start=start)
        if params is None:
            return "cannot be fitted when one cell is left out; the grid is too sparse for it"
        pred[test] = cand.predict(params, n[test], eta[test])
    resid = y - pred
    return float(np.sqrt(np.mean(resid**2))), float(np.mean(np.abs(resid)))


def _fit_surfaces(
    done: pd.DataFrame,
    *,
    n_classes: int,
    n_bootstrap: int,
    rng: np.random.Generator,
    focus: tuple[int, float] | None,
) -> tuple[pd.DataFrame, SurfaceFit | None, str | None]:
    columns = [
        "name",
        "expression",
        "n_params",
        "cv_rmse",
        "cv_mae",
        "rmse",
        "r_squared",
        "rate_at_focus",
        "selected",
        "skipped",
    ]
    n_sizes, n_noise = done["train_size"].nunique(), done["noise_level"].nunique()
    if done.empty:
        return pd.DataFrame(columns=columns), None, "no runs are done yet"
    if n_sizes < 2 or n_noise < 2:
        what = "training size" if n_sizes < 2 else "noise level"
        why = (
            f"a surface needs at least two training sizes and two noise levels; the done runs have "
            f"a single {what}"
        )
        return pd.DataFrame(columns=columns), None, why

    if done["eval_accuracy"].nunique() == 1:
        why = "accuracy is the same in every done run, so there is no surface to fit"
        return pd.DataFrame(columns=columns), None, why
    n = done["train_size"].to_numpy(dtype=float)
    eta = done["noise_level"].to_numpy(dtype=float)
    y = done["eval_accuracy"].to_numpy(dtype=float) * 100
    cell = done.groupby(["train_size", "noise_level"], sort=True).ngroup().to_numpy()
    n_cells = int(cell.max()) + 1
    tss = float(np.sum((y - y.mean()) ** 2))

    rows: list[dict[str, Any]] = []
    fitted: dict[str, tuple[_Candidate, FloatArray, float]] = {}
    for cand in _candidates(n_classes):
        row: dict[str, Any] = {"name": cand.name, "expression": cand.expression}
        row["n_params"] = cand.n_params
        reason: str | None = cand.skip_reason(n, eta)
        if reason is None and n_cells <= cand.n_params:
            reason = (
                f"needs more cells than its {cand.n_params} parameters for cross-validation; "
                f"there are {n_cells}"
            )
        params = None
        if reason is None:
            params = cand.fit(n, eta, y)
            if params is None:
                reason = "cannot be fitted: the grid does not separate its terms"
        cv: tuple[float, float] | str | None = reason
        if reason is None:
            cv = _cross_validate(cand, n, eta, y, cell, start=params)
            if isinstance(cv, str):
                reason = cv
        if reason is not None or params is None or cv is None or isinstance(cv, str):
            rows.append({**row, "skipped": reason, "selected": False})
            continue
        resid = y - cand.predict(params, n, eta)
        rate_focus = math.nan
        if focus is not None:
            rate_focus = float(_local_rate(cand, params, *_broadcast(*focus))[0])
        rows.append(
            {
                **row,
                "cv_rmse": cv[0],
                "cv_mae": cv[1],
                "rmse": float(np.sqrt(np.mean(resid**2))),
                "r_squared": 1 - float(resid @ resid) / tss if tss > 0 else math.nan,
                "rate_at_focus": rate_focus,
                "selected": False,
                "skipped": None,
            }
        )
        fitted[cand.name] = (cand, params, cv[0])

    table = pd.DataFrame(rows, columns=columns)
    if not fitted:
        return table, None, "no candidate surface could be fitted (see the comparison table)"
    best_name = min(fitted, key=lambda k: fitted[k][2])
    table["selected"] = table["name"] == best_name
    cand, params, cv_rmse = fitted[best_name]
    if cand.rate_from_form:
        # Every refit gives the same rate, so resampling would only produce a zero-width interval.
        boot = np.empty((0, cand.n_params), dtype=float)
    else:
        boot = _bootstrap(cand, n, eta, y, cell, n_bootstrap=n_bootstrap, rng=rng, start=params)
    best = SurfaceFit(
        name=best_name,
        expression=cand.expression,
        params=params,
        boot_params=boot,
        cv_rmse=cv_rmse,
        candidate=cand,
    )
    return table, best, None


def _bootstrap(
    cand: _Candidate,
    n: FloatArray,
    eta: FloatArray,
    y: FloatArray,
    cell: npt.NDArray[np.integer[Any]],
    *,
    n_bootstrap: int,
    rng: np.random.Generator,
    start: FloatArray | None = None,
) -> FloatArray:
    """Refit on resamples of whole cells (all seeds of a cell travel together)."""
    rows_of = [np.flatnonzero(cell == c) for c in range(int(cell.max()) + 1)]
    out = []
    for _ in range(n_bootstrap):
        pick = rng.integers(0, len(rows_of), size=len(rows_of))
        idx = np.concatenate([rows_of[i] for i in pick])
        if np.unique(n[idx]).size < 2 or np.unique(eta[idx]).size < 2:
            continue
        params = cand.fit(n[idx], eta[idx], y[idx], start=start)
        if params is not None:
            out.append(params)
    if not out:
        return np.empty((0, cand.n_params), dtype=float)
    return np.vstack(out)


def _rate_interval(
    best: SurfaceFit, n: FloatArray, eta: FloatArray, confidence: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    est = _local_rate(best.candidate, best.params, n, eta)
    if best.boot_params.shape[0] < 2:
        nan = np.full_like(est, np.nan)
        return est, nan, nan
    draws = np.vstack([_local_rate(best.candidate, p, n, eta) for p in best.boot_params])
    alpha = (1 - confidence) / 2
    # "nearest" avoids inf - inf when some replicates find no positive effect of size.
    # Replicates where the rate is undefined (neither size nor noise matters there) are left out.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN bounds
        low = np.nanquantile(draws, alpha, axis=0, method="nearest")
        high = np.nanquantile(draws, 1 - alpha, axis=0, method="nearest")
    return est, np.asarray(low, dtype=float), np.asarray(high, dtype=float)


# --------------------------------------------------------------------------------------------
# Putting it together
# --------------------------------------------------------------------------------------------


def _analyze_noise_model(
    df: pd.DataFrame,
    nm: str,
    *,
    expected: tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]],
    focus: tuple[int, float] | None,
    n_classes: int,
    n_bootstrap: int,
    confidence: float,
    rng: np.random.Generator,
) -> NoiseModelAnalysis:
    coverage = _coverage(df, expected)
    cells = _cell_summary(df, confidence).drop(columns="noise_model")
    done = _done(df)
    reference = _reference(done, confidence, "auto")
    surfaces, best, skipped = _fit_surfaces(
        done, n_classes=n_classes, n_bootstrap=n_bootstrap, rng=rng, focus=focus
    )
    local = _local_rates(best, expected, cells, confidence)

    notes = []
    if coverage.n_failed:
        notes.append(
            f"{coverage.n_failed} failed run(s) are excluded from every statistic "
            f"({_list_cells(coverage.failed, 5, expected)})."
        )
    if coverage.n_missing:
        notes.append(
            f"{coverage.n_missing} run(s) of the grid are not in the table yet "
            f"({_list_cells(coverage.missing, 5, expected)}); the analysis uses what is there."
        )
    n_seeds = done["seed"].nunique()
    if n_seeds == 1:
        notes.append(
            "One repeat seed: cell intervals cover test-sample noise only (Wilson), and regression "
            "standard errors treat runs as independent although nested cells share examples."
        )
    elif 2 <= n_seeds < 5 and reference.skipped is None:
        notes.append(
            f"Standard errors are clustered by seed with only {n_seeds} seeds (Student-t with "
            f"{n_seeds - 1} degrees of freedom), so regression intervals are wide; "
            "more repeat seeds narrow them."
        )
    if best is not None and best.candidate.rate_from_form:
        notes.append(
            f"The best surface ({best.name}) fixes the exchange rate by its form, "
            "r = 2n·(K/(K−1))/(100·s) examples per noise point, so it has no sampling interval; "
            "the comparison table shows what the other surfaces give."
        )
    if (
        best is not None
        and n_bootstrap
        and not best.candidate.rate_from_form
        and best.boot_params.shape[0] < 0.9 * n_bootstrap
    ):
        notes.append(
            f"Only {best.boot_params.shape[0]} of {n_bootstrap} bootstrap resamples could be "
            "fitted."
        )
    if reference.skipped is None and reference.coef("train_size_1k") <= 0:
        notes.append(
            "In the reference regression more examples do not raise accuracy (β_size ≤ 0), so its "
            "exchange rate has no meaning here."
        )
    return NoiseModelAnalysis(
        noise_model=nm,
        coverage=coverage,
        cells=cells,
        reference=reference,
        surfaces=surfaces,
        best=best,
        local_rates=local,
        surface_skipped=skipped,
        notes=tuple(notes),
        confidence=confidence,
        n_bootstrap=n_bootstrap,
    )


def _local_rates(
    best: SurfaceFit | None,
    expected: tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]],
    cells: pd.DataFrame,
    confidence: float,
) -> pd.DataFrame:
    columns = [
        "train_size",
        "noise_level",
        "accuracy_pct",
        "rate",
        "rate_low",
        "rate_high",
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
    est, low, high = _rate_interval(best, n, eta, confidence)
    seen = cells[cells["n_done"] > 0]
    observed = {
        (int(a), float(b)) for a, b in zip(seen["train_size"], seen["noise_level"], strict=True)
    }
    per_label = 100 / n
    return grid.assign(
        accuracy_pct=best.predict(n, eta),
        rate=est,
        rate_low=low,
        rate_high=high,
        labels_per_correction=est * per_label,
        labels_per_correction_low=low * per_label,
        labels_per_correction_high=high * per_label,
        observed=[(int(a), float(b)) in observed for a, b in zip(n, eta, strict=True)],
    )[columns]


def _tradeoff_at(nma: NoiseModelAnalysis, size: int, noise: float) -> TradeoffResult:
    best = nma.best
    if best is None:  # pragma: no cover - callers check
        raise AnalysisError(f"no surface for noise model '{nma.noise_model}'")
    n, eta = _broadcast(size, noise)
    reason = best.candidate.skip_reason(n, eta)
    if reason is not None:
        raise AnalysisError(f"the surface {best.name} {reason}; ask about a lower noise rate")
    est, low, high = _rate_interval(best, n, eta, nma.confidence)
    b = best.boot_params.shape[0]
    if best.candidate.rate_from_form:
        method = f"no sampling interval: the {best.name} surface fixes the rate by its form"
    elif b >= 2:
        method = f"cell bootstrap, B={b}"
    else:
        method = "no interval (n_bootstrap=0)"
    rate = Interval(float(est[0]), float(low[0]), float(high[0]), nma.confidence, method)
    cov = nma.coverage
    notes = []
    in_grid = bool(
        cov.sizes
        and cov.noise_levels
        and min(cov.sizes) <= size <= max(cov.sizes)
        and min(cov.noise_levels) <= noise <= max(cov.noise_levels)
    )
    if not in_grid:
        notes.append(
            f"({size:,}, {_pct(noise)}) lies outside the measured grid (sizes "
            f"{min(cov.sizes):,}-{max(cov.sizes):,}, noise {_pct(min(cov.noise_levels))}-"
            f"{_pct(max(cov.noise_levels))}); the rate is extrapolated."
        )
    if noise == 0:
        notes.append(
            "At 0% noise there is nothing to correct; the rate is what the first point of noise "
            "would cost."
        )
    if not math.isfinite(rate.estimate):
        notes.append("Here the fitted surface gains nothing from more examples.")
    accuracy = float(best.predict(n, eta)[0])
    if not 0.0 <= accuracy <= 100.0:
        # A surface extrapolated this far says nothing: refuse rather than print its number.
        raise AnalysisError(
            f"at ({size:,}, {_pct(noise)}) the fitted {best.name} surface predicts "
            f"{accuracy:.1f}% accuracy, which is impossible: the point lies too far outside the "
            f"measured grid (sizes {min(cov.sizes):,}-{max(cov.sizes):,}, noise "
            f"{_pct(min(cov.noise_levels))}-{_pct(max(cov.noise_levels))}); ask about a point "
            "inside or near the grid, or grow the grid"
        )
    return TradeoffResult(
        size=size,
        noise=noise,
        noise_model=nma.noise_model,
        surface=best.name,
        examples_per_noise_point=rate,
        labels_per_noise_point=size / 100,
        labels_per_correction=rate.scaled(100 / size),
        accuracy_pct=accuracy,
        in_grid=in_grid,
        notes=tuple(notes),
    )


def _compare_noise_models(
    by_nm: Mapping[str, NoiseModelAnalysis], focus: tuple[int, float] | None
) -> pd.DataFrame:
    rows = []
    for nm, a in by_nm.items():
        ref = a.reference.exchange_rate
        row: dict[str, Any] = {
            "noise_model": nm,
            "n_done": a.coverage.n_done,
            "n_failed": a.coverage.n_failed,
            "reference_rate": ref.estimate if ref else math.nan,
            "reference_low": ref.low if ref else math.nan,
            "reference_high": ref.high if ref else math.nan,
            "noise_coef": a.reference.coef("noise_level_pct") if ref else math.nan,
            "best_surface": a.best.name if a.best else None,
            "focus_rate": math.nan,
            "focus_low": math.nan,
            "focus_high": math.nan,
            "min_local_rate": math.nan,
            "max_local_rate": math.nan,
        }
        if a.best is not None and focus is not None:
            try:
                t = _tradeoff_at(a, *focus)
            except AnalysisError:
                t = None
            if t is not None:
                r = t.examples_per_noise_point
                row.update(focus_rate=r.estimate, focus_low=r.low, focus_high=r.high)
        rates = a.local_rates.loc[a.local_rates["observed"], "rate"].to_numpy(dtype=float)
        finite = rates[np.isfinite(rates)]
        if finite.size:
            row.update(min_local_rate=float(finite.min()), max_local_rate=float(finite.max()))
        rows.append(row)
    return pd.DataFrame(rows)


def _summary_lines(analysis: Analysis, nm: str) -> str:
    a = analysis.by_noise_model[nm]
    head = f"{nm} noise: {a.coverage.describe(max_items=3)}"
    lines = [head]
    if analysis.focus is not None and a.best is not None:
        size, noise = analysis.focus
        try:
            t = _tradeoff_at(a, size, noise)
        except AnalysisError:
            t = None
        if t is not None:
            r = t.examples_per_noise_point
            per100 = t.labels_per_correction.scaled(100)
            ci = f" ({per100.ci_text()})" if per100.ci_text() else ""
            lines.append(
                f"At {size:,} examples and {_pct(noise)} noise, correcting 100 labels is worth "
                f"about {format_number(per100.estimate)} new labels{ci}: one point of noise "
                f"({format_number(t.labels_per_noise_point)} wrong labels) costs as much accuracy "
                f"as {format_number(r.estimate)} examples (best surface: {a.best.name}, "
                f"cross-validated error {a.best.cv_rmse:.2f} accuracy points)."
            )
        lr = a.local_rates[a.local_rates["observed"]]
        finite = lr[np.isfinite(lr["rate"].to_numpy(dtype=float))]
        if len(finite):
            lo = finite.loc[finite["rate"].idxmin()]
            hi = finite.loc[finite["rate"].idxmax()]
        if len(finite) and hi["rate"] <= 1.01 * lo["rate"]:
            lines.append(
                f"This surface gives the same rate in every measured cell, "
                f"{format_number(lo['rate'])} examples per point of noise."
            )
        elif len(finite):
            lines.append(
                "Across the measured cells one point of noise is worth from "
                f"{format_number(lo['rate'])} examples (at {int(lo['train_size']):,} examples, "
                f"{_pct(lo['noise_level'])} noise) to {format_number(hi['rate'])} "
                f"(at {int(hi['train_size']):,}, {_pct(hi['noise_level'])})."
            )
    elif a.surface_skipped:
        lines.append(f"No local exchange rate: {a.surface_skipped}.")
    ref = a.reference
    if ref.skipped is None and ref.exchange_rate is not None:
        lines.append(
            f"The reference regression (one constant rate, as published) gives "
            f"{ref.coef('train_size_1k'):+.3f} accuracy points per 1,000 examples and "
            f"{ref.coef('noise_level_pct'):+.3f} per noise point, so one point of noise is worth "
            f"{format_number(ref.exchange_rate.estimate)} examples ({ref.exchange_rate.ci_text()}; "
            f"R² {ref.r_squared:.2f}; the published IMDB/DistilBERT value is 456)."
        )
    else:
        lines.append(f"Reference regression skipped: {ref.skipped}.")
    return "\n".join(lines)
