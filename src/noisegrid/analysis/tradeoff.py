"""Trade-off queries: the local exchange rate at one (size, noise) point, and across noise models.

:func:`tradeoff_at` answers "at this size and noise, what is one point of noise worth in
examples, and one corrected label in new labels?" (the marginal rate, with the exact
compensation for one whole point beside it) for one analysed noise model (the public
:func:`~noisegrid.analysis.tradeoff` checks its arguments, analyses a table when given one and
calls it); :func:`compare_noise_models` puts every noise model's rates side by side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import AnalysisError
from ._format import pct_text
from ._types import Interval, NoiseModelAnalysis, TradeoffResult, broadcast
from .rates import compute_exact_compensation, rate_interval


def tradeoff_at(nma: NoiseModelAnalysis, size: int, noise: float) -> TradeoffResult:
    best = nma.best
    if best is None:  # pragma: no cover - callers check
        raise AnalysisError(f"no surface for noise model '{nma.noise_model}'")
    n, eta = broadcast(size, noise)
    cov = nma.coverage
    if best.candidate.skip_reason(n, eta) is not None:
        top = max(cov.noise_levels) if cov.noise_levels else 0.0
        raise AnalysisError(
            f"at {pct_text(noise)} noise the labels carry no signal for the surface the rates "
            f"come from, {best.describe()}; the measured grid stops at {pct_text(top)} noise; ask "
            f"about a lower noise rate, at most {pct_text(top)}"
        )
    est, low, high = rate_interval(best, n, eta, nma.confidence)
    rs = best.resampling
    if best.candidate.rate_from_form:
        method = f"no sampling interval: the surface ({best.label}) fixes the rate by its form"
    elif rs is not None and best.boot_params.shape[0] >= 2:
        method = f"Fieller, {rs.describe()}"
        if rs.unit == "cell":
            method += "; one seed: test-sample noise only, not replication"
    else:
        method = "no interval (n_bootstrap=0)"
    rate = Interval(float(est[0]), float(low[0]), float(high[0]), nma.confidence, method)
    notes = []
    # Measured means done runs of this noise model, not the spec's grid or failed cells.
    in_grid = cov.measured(size, noise)
    if not in_grid:
        notes.append(
            f"({size:,}, {pct_text(noise)}) lies outside the measured grid "
            f"({cov.measured_text()}, done runs of {nma.noise_model} noise); the rate is "
            "extrapolated."
        )
    if noise == 0:
        notes.append(
            "At 0% noise there is nothing to correct; the rate is what the first point of noise "
            "would cost."
        )
    if not math.isfinite(rate.estimate):
        notes.append("Here the fitted surface gains nothing from more examples.")
    accuracy = float(best.predict(n, eta)[0])
    if in_grid:
        # Inside the grid a surface may overshoot its edge (100.3% where every run scored 100%):
        # the accuracy is what it can be.
        accuracy = min(max(accuracy, 0.0), 100.0)
    elif not 0.0 <= accuracy <= 100.0:
        # A surface extrapolated this far says nothing: refuse rather than print its number.
        raise AnalysisError(
            f"at ({size:,}, {pct_text(noise)}) the fitted {best.name} surface predicts "
            f"{accuracy:.1f}% accuracy, which is impossible: the point lies too far outside the "
            f"measured grid (sizes {min(cov.sizes):,}-{max(cov.sizes):,}, noise "
            f"{pct_text(min(cov.noise_levels))}-{pct_text(max(cov.noise_levels))}); ask about a "
            "point inside or near the grid, or grow the grid"
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
        exact_compensation=float(
            compute_exact_compensation(best.candidate, best.params, n, eta)[0]
        ),
        surface_description=best.describe(),
        rate_from_form=best.candidate.rate_from_form,
    )


def compare_noise_models(
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
                t = tradeoff_at(a, *focus)
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
