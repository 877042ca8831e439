"""Analysis of a results table: what one point of label noise is worth in training examples.

This package owns the statistics behind the report, as pure functions over the tidy results table
(see ``docs/results-schema.md``; rows with ``status == "done"`` are analysed, failed rows are
counted and excluded). One module per method:

- ``cells.py``: per-cell statistics over repeat seeds (mean, standard deviation, 95% interval)
  and which runs of the grid are done, failed or missing;
- ``regression.py``: the reference regression exactly as published, OLS
  ``eval_accuracy_pct ~ train_size_1k + noise_level_pct``, and its exchange rate
  ``1000 × (−β_noise / β_size)`` with Fieller's interval;
- ``surfaces.py``: a comparison of candidate accuracy surfaces by leave-one-cell-out
  cross-validation;
- ``rates.py``: the bootstrap of the best surface (whole seeds resampled; cells with one seed)
  and its *local* (marginal) exchange rate at every grid cell, with Fieller intervals, and the
  exact compensation beside it;
- ``tradeoff.py``: the trade-off at one (size, noise) point (the engine of :func:`tradeoff`) and
  across noise models;
- ``summary.py``: :class:`Analysis` and its plain-language summary;
- ``advise.py``: the statistics of :func:`noisegrid.advise` (what a budget buys on the surface);
- ``_types.py`` (the other result types) and ``_format.py`` (numbers in text) serve them all.

:func:`analyze` (here) runs these steps for every noise model. A module imports only modules
listed after it in this order, never one before it: ``advise``, ``summary``, ``tradeoff``,
``surfaces``, ``rates``, ``regression``, ``cells``, ``_types``, ``_format`` (an import-linter
contract in ``pyproject.toml``). The package imports nothing else of noisegrid but ``errors``: no
data loading, no backends, no report.

Every table that holds several noise models is analysed per noise model. Accuracy is in percent
(``pct_text``) in every output; noise is a fraction in inputs (as in the table) and in points
(percent) where the text says "point". The methods are described in ``docs/analysis.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import AnalysisError
from ._format import format_number as format_number
from ._format import list_cells, pct_text
from ._types import (
    Coverage,
    Interval,
    NoiseModelAnalysis,
    RegressionResult,
    Resampling,
    SurfaceFit,
    TradeoffResult,
)
from ._types import FloatArray as FloatArray
from .cells import NOISE_DECIMALS as NOISE_DECIMALS
from .cells import REQUIRED_COLUMNS as REQUIRED_COLUMNS
from .cells import (
    cell_stats,
    cell_summary,
    check_confidence,
    done_rows,
    expected_grid,
    focus_cell,
    infer_n_classes,
    measure_coverage,
    ordered_noise_models,
    pick_noise_model,
    pick_noise_model_from,
    prepare_table,
)
from .rates import ONE_SEED_NOTE, compute_local_rates
from .regression import REFERENCE_FORMULA as REFERENCE_FORMULA
from .regression import fit_reference, reference_regression
from .summary import Analysis
from .surfaces import fit_surfaces
from .tradeoff import compare_noise_models, tradeoff_at

__all__ = [
    "Analysis",
    "Coverage",
    "Interval",
    "NoiseModelAnalysis",
    "RegressionResult",
    "Resampling",
    "SurfaceFit",
    "TradeoffResult",
    "analyze",
    "cell_summary",
    "reference_regression",
    "tradeoff",
]


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


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
        Bootstrap replicates for the intervals of the surface and its local exchange rates
        (0: no intervals). With two or more seeds a replicate resamples whole seeds; with one,
        cells (and the intervals then cover test-sample noise only, not replication).
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
    check_confidence(confidence)
    if n_classes is not None and (not isinstance(n_classes, int | np.integer) or n_classes < 2):
        raise AnalysisError(f"n_classes must be an integer >= 2; got {n_classes!r}")
    if not isinstance(n_bootstrap, int | np.integer) or n_bootstrap < 0:
        raise AnalysisError(f"n_bootstrap must be an integer >= 0; got {n_bootstrap!r}")
    df = prepare_table(results)
    if df.empty:
        raise AnalysisError(
            "the results table has no rows; run the grid first (noisegrid run CONFIG)"
        )
    general = []
    if n_classes is None:
        n_classes = infer_n_classes(df)
        if n_classes is None:
            n_classes = 2
            general.append(
                "The number of classes is not recorded in the table; the effective-size surfaces "
                "assume 2 (pass n_classes=... if that is wrong)."
            )
    expected = expected_grid(df, grid)
    focus = focus_cell(expected[0], expected[1])
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
        for nm in ordered_noise_models(df)
    }
    comparison = compare_noise_models(by_nm, focus) if len(by_nm) > 1 else None
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
        Noise rate there, as a fraction in [0, 1 − 1/K) for K classes (0.1 for 10%).
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
        raise AnalysisError(
            f"noise must be a fraction in [0, 1 − 1/K) (K classes) such as 0.1; got {noise!r}"
        )
    if isinstance(results, Analysis):
        nm = pick_noise_model_from(results.noise_models, noise_model)
        nma = results.by_noise_model[nm]
        _check_noise(float(noise), results.n_classes, nma.coverage.noise_levels)
    else:
        # Only the chosen noise model is analysed (and a bad name or noise rate fails before
        # any fitting).
        table = prepare_table(results)
        nm = pick_noise_model(table, noise_model)
        k = n_classes or infer_n_classes(table) or 2
        levels = table.loc[table["noise_model"] == nm, "noise_level"]
        _check_noise(float(noise), int(k), tuple(float(v) for v in levels))
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
    return tradeoff_at(nma, int(size), float(noise))


def _check_noise(noise: float, n_classes: int, grid_levels: tuple[float, ...]) -> None:
    """Refuse a noise rate outside [0, 1 − 1/K), where K-class labels still carry signal."""
    limit = 1 - 1 / n_classes
    if 0 <= noise < limit:
        return
    top = f"; the measured grid stops at {pct_text(max(grid_levels))}" if grid_levels else ""
    if 1 <= noise < 100:
        hint = f"{top}; did you mean {noise / 100:g} ({noise:g}%)?"
    elif limit <= noise < 1:
        hint = f" (from 1 − 1/K on, the labels carry no signal){top}; ask about a lower noise rate"
    else:
        hint = top
    raise AnalysisError(
        f"noise must be a fraction in [0, 1 − 1/K) = [0, {limit:.4g}) for K = {n_classes} "
        f"classes, such as 0.1; got {noise:g}{hint}"
    )


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
    coverage = measure_coverage(df, expected)
    cells = cell_stats(df, confidence).drop(columns="noise_model")
    done = done_rows(df)
    reference = fit_reference(done, confidence, "auto")
    surfaces, best, skipped, form_fixed = fit_surfaces(
        done, n_classes=n_classes, n_bootstrap=n_bootstrap, rng=rng, focus=focus
    )
    local = compute_local_rates(best, expected, cells, confidence)

    notes = []
    if coverage.n_failed:
        notes.append(
            f"{coverage.n_failed} failed run(s) are excluded from every statistic "
            f"({list_cells(coverage.failed, 5, expected)})."
        )
    if coverage.n_missing:
        notes.append(
            f"{coverage.n_missing} run(s) of the grid are not in the table yet "
            f"({list_cells(coverage.missing, 5, expected)}); the analysis uses what is there."
        )
    n_seeds = done["seed"].nunique()
    if n_seeds == 1:
        notes.append(ONE_SEED_NOTE)
    elif 2 <= n_seeds < 5 and (reference.skipped is None or best is not None):
        notes.append(
            f"Only {n_seeds} repeat seeds: regression standard errors are clustered by seed and "
            "the surface's bootstrap resamples whole seeds (Student-t with "
            f"{n_seeds - 1} degree{'s' if n_seeds > 2 else ''} of freedom), so intervals are "
            "wide; more repeat seeds narrow them."
        )
    if best is not None and best.candidate.rate_from_form:
        notes.append(
            f"The only surfaces that could be fitted fix the exchange rate by their form "
            f"({best.describe()}: r = 2n·(K/(K−1))/(100·s) examples per noise point), so the "
            "rates come from that form, not from the data, and have no sampling interval."
        )
    elif best is not None and form_fixed is not None:
        notes.append(
            f"The surface that fits best, {form_fixed.describe()}, with a cross-validated error "
            f"of {form_fixed.cv_rmse:.2f} points, fixes the exchange rate by its form: "
            "r = 2n·(K/(K−1))/(100·s) examples per noise point, whatever was measured. The rates "
            f"come from the best surface whose rate the data determine, {best.describe()}, with "
            f"a cross-validated error of {best.cv_rmse:.2f} points."
        )
    if best is not None and best.resampling is not None and best.resampling.n_failed:
        notes.append(
            f"{best.resampling.failure_text()}; the intervals use the "
            f"{best.resampling.n_fitted} that were refitted."
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
        form_fixed=form_fixed,
    )
