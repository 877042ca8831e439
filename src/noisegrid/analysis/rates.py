"""Cell-bootstrap intervals and local exchange rates of the chosen surface.

Refits the chosen surface on resamples of whole cells (every seed of a cell travels with it) and
turns the fits into the local exchange rate ``−(∂acc/∂p) / (∂acc/∂n)`` with percentile intervals,
at given points or at every cell of the expected grid.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ._types import FloatArray, SurfaceFit, _Candidate, _local_rate


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
