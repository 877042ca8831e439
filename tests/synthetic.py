"""Synthetic grids with a known accuracy surface and seed-level errors like the real ones.

Within one repeat seed the cells of a grid share nested subsamples, nested flips and the test
sample, so a seed's deviations from the true surface are correlated across cells (0.66-0.78 on a
10-seed TF-IDF grid on IMDB). :func:`seed_errors` draws such deviations: a shift shared by every
cell of the seed, a seed-level tilt along log-size and along noise (what moves the exchange
rate), and an independent part per cell. :func:`synthetic_table` turns a surface and those errors
into a tidy results table that :func:`noisegrid.analyze` accepts.

Used by ``tests/test_coverage.py`` and ``benchmarks/coverage.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from noisegrid.analysis import SurfaceFit
from noisegrid.analysis.rates import bootstrap_fits
from noisegrid.analysis.surfaces import _candidates

LAPTOP_SIZES = (1000, 2000, 3000, 4000, 5000)
LAPTOP_NOISE = tuple(round(0.025 * i, 4) for i in range(10))
SHARED = 0.70
"""Share of a cell's error variance that is one shift for every cell of the seed."""
TILT = 0.035
"""Share that is a seed-level tilt (along standardised log size and noise). With it a one-seed
cell bootstrap's 95% intervals are about 1.8× too narrow (cover about 70%), as the spread of
the rate across seeds of a 10-seed TF-IDF grid showed (1.7-1.9×)."""
SD = 0.85
"""Standard deviation of a cell's error over seeds, in accuracy points (0.87 on the 3-seed TF-IDF
laptop grid)."""

Surface = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Accuracy in percent from sizes (examples) and noise (fractions)."""


def laptop_surface(n: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """``log_size_interaction`` with coefficients near the TF-IDF laptop grid's fit."""
    p = 100 * np.asarray(eta, dtype=float)
    ln = np.log(np.asarray(n, dtype=float))
    return 65.0 + 2.3 * ln - 0.35 * p + 0.02 * p * ln


def laptop_rate(n: float, eta: float) -> float:
    """The marginal exchange rate of :func:`laptop_surface`: examples per noise point."""
    p = 100 * eta
    return float(-(-0.35 + 0.02 * np.log(n)) * n / (2.3 + 0.02 * p))


def seed_errors(
    sizes: Sequence[int],
    noise: Sequence[float],
    n_seeds: int,
    rng: np.random.Generator,
    *,
    sd: float = SD,
    shared: float = SHARED,
    tilt: float = TILT,
) -> np.ndarray:
    """Seed-level errors, shape ``(n_seeds, len(sizes) * len(noise))``, cells size-major.

    Each cell's error has standard deviation ``sd``; ``shared`` of its variance is common to the
    seed's cells, ``tilt`` is a seed-level slope along standardised log size and noise, and the
    rest is independent per cell. The mean correlation between two cells of a seed is about
    ``shared``.
    """
    if shared < 0 or tilt < 0 or shared + tilt > 1:
        raise ValueError("shared and tilt are variance shares: both >= 0, sum <= 1")
    n, eta = (a.ravel() for a in np.meshgrid(sizes, noise, indexing="ij"))
    x = np.log(n.astype(float))
    x = (x - x.mean()) / (x.std() or 1.0)
    z = (eta - eta.mean()) / (eta.std() or 1.0)
    u = rng.standard_normal((n_seeds, 3))
    own = rng.standard_normal((n_seeds, n.size))
    field = np.sqrt(shared) * u[:, :1] + np.sqrt(tilt / 2) * (u[:, 1:2] * x + u[:, 2:3] * z)
    return np.asarray(sd * (field + np.sqrt(1 - shared - tilt) * own), dtype=float)


def mean_correlation(shared: float = SHARED, tilt: float = TILT) -> float:
    """The mean correlation between two distinct cells of a seed on the laptop grid."""
    n, eta = (a.ravel() for a in np.meshgrid(LAPTOP_SIZES, LAPTOP_NOISE, indexing="ij"))
    x = np.log(n.astype(float))
    x, z = (x - x.mean()) / x.std(), (eta - eta.mean()) / eta.std()
    cov = (
        shared + tilt / 2 * (np.outer(x, x) + np.outer(z, z)) + (1 - shared - tilt) * np.eye(n.size)
    )
    d = np.sqrt(np.diag(cov))
    corr = cov / np.outer(d, d)
    k = n.size
    return float((corr.sum() - k) / (k * k - k))


def synthetic_table(
    surface: Surface,
    errors: np.ndarray,
    *,
    sizes: Sequence[int] = LAPTOP_SIZES,
    noise: Sequence[float] = LAPTOP_NOISE,
    test_size: int = 2000,
) -> pd.DataFrame:
    """A tidy results table: ``surface`` plus one row of ``errors`` per seed (see above)."""
    n, eta = (a.ravel() for a in np.meshgrid(sizes, noise, indexing="ij"))
    truth = surface(n.astype(float), eta.astype(float))
    frames = []
    for seed, err in enumerate(np.atleast_2d(errors)):
        frames.append(
            pd.DataFrame(
                {
                    "train_size": n.astype(int),
                    "noise_level": eta.astype(float),
                    "seed": seed,
                    "noise_model": "uniform",
                    "status": "done",
                    "eval_accuracy": (truth + err) / 100,
                    "test_size": test_size,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def fit_surface(
    table: pd.DataFrame, name: str, *, n_bootstrap: int, rng: np.random.Generator
) -> SurfaceFit:
    """Fit one candidate surface and bootstrap it as :func:`noisegrid.analyze` does.

    The same fit and resampling code as the analysis, without the cross-validated comparison of
    every candidate (which costs seconds per grid): simulations over hundreds of grids use it.
    """
    cand = next(c for c in _candidates(2) if c.name == name)
    n = table["train_size"].to_numpy(dtype=float)
    eta = table["noise_level"].to_numpy(dtype=float)
    y = table["eval_accuracy"].to_numpy(dtype=float) * 100
    cell = table.groupby(["train_size", "noise_level"], sort=True).ngroup().to_numpy()
    seed = table["seed"].to_numpy(dtype=int)
    params = cand.fit(n, eta, y)
    if params is None:
        raise ValueError(f"{name} cannot be fitted to this table")
    boot, resampling = bootstrap_fits(cand, n, eta, y, cell, seed, n_bootstrap=n_bootstrap, rng=rng)
    return SurfaceFit(
        name=name,
        expression=cand.expression,
        params=params,
        boot_params=boot,
        cv_rmse=float("nan"),
        candidate=cand,
        resampling=resampling,
    )
