"""Expanding a spec into cells, and the per-cell seeds.

A cell is (train_size, noise_rate, seed). Its randomness comes only from the repeat seed plus the
cell's own coordinates (see :func:`noisegrid.sampling.rng_for`), so every cell is reproducible on
its own and cells of one seed share subsamples and flip orders (the coupled design).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import NOISE_RATE_DECIMALS, ExperimentSpec
from .sampling import STREAM_TRAIN, rng_for


@dataclass(frozen=True, order=True)
class Cell:
    """One grid cell."""

    seed: int
    train_size: int
    noise_rate: float

    @property
    def key(self) -> tuple[int, float, int]:
        """The store's key within one experiment: (train_size, noise_rate, seed)."""
        return (self.train_size, round(self.noise_rate, NOISE_RATE_DECIMALS), self.seed)

    def label(self) -> str:
        return f"n={self.train_size} noise={self.noise_rate:.3g} seed={self.seed}"

    def train_seed(self) -> int:
        """Seed for the backend's own randomness (initialisation, shuffling) in this cell."""
        ppm = round(self.noise_rate * 10**NOISE_RATE_DECIMALS)
        rng = rng_for(self.seed, STREAM_TRAIN, self.train_size, ppm)
        return int(rng.integers(0, 2**31 - 1))


def expand_grid(spec: ExperimentSpec) -> list[Cell]:
    """All cells of the spec, ordered by seed, then size, then noise rate.

    Examples
    --------
    >>> spec = ExperimentSpec.from_dict({"grid": {"sizes": [10, 20], "noise_rates": [0, 0.1],
    ...     "seeds": [0, 1]}, "backend": {"name": "tfidf"}})
    >>> len(expand_grid(spec)), expand_grid(spec)[0]
    (8, Cell(seed=0, train_size=10, noise_rate=0.0))
    """
    g = spec.grid
    return [
        Cell(seed=seed, train_size=size, noise_rate=float(rate))
        for seed in g.seeds
        for size in g.sizes
        for rate in g.noise_rates
    ]
