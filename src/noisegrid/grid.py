"""Expanding a spec into cells and sibling groups, and the per-cell seeds.

A cell is (train_size, noise_rate, seed). Its randomness comes only from the repeat seed plus the
cell's own coordinates (see :func:`noisegrid.sampling.rng_for`), so every cell is reproducible on
its own and cells of one seed share subsamples and flip orders (the coupled design).

The cells that share a subsample — every noise rate at one (seed, train_size) — form a
:class:`SiblingGroup`: what an executor hands a worker, and what ``noisegrid plan`` projects.
Their training randomness (initialisation, batch order, dropout) depends on (seed, train_size)
only, so siblings differ in nothing but the labels the grid changes (architecture decision 9).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
        """Seed for the backend's own randomness (initialisation, shuffling, dropout).

        It depends on (seed, train_size) only, not on the noise rate: sibling cells train with
        the same initialisation, batches and dropout (common random numbers), so the difference
        between two noise rates carries no training noise, and siblings can train stacked.

        Examples
        --------
        >>> Cell(0, 100, 0.0).train_seed() == Cell(0, 100, 0.2).train_seed()
        True
        >>> Cell(0, 100, 0.0).train_seed() == Cell(0, 200, 0.0).train_seed()
        False
        """
        rng = rng_for(self.seed, STREAM_TRAIN, self.train_size)
        return int(rng.integers(0, 2**31 - 1))

    @property
    def group_key(self) -> tuple[int, int]:
        """The sibling group this cell belongs to: (seed, train_size)."""
        return (self.seed, self.train_size)


@dataclass(frozen=True)
class SiblingGroup:
    """Cells that share one subsample: some or all noise rates at one (seed, train_size).

    They train on the same texts with the same training seed and differ only in their labels, so a
    backend may fit them together (:meth:`noisegrid.backends.Backend.fit_group`).
    """

    seed: int
    train_size: int
    cells: tuple[Cell, ...]

    def __len__(self) -> int:
        return len(self.cells)

    def train_seed(self) -> int:
        """The training seed every member shares."""
        return self.cells[0].train_seed()

    def label(self) -> str:
        rates = ", ".join(f"{c.noise_rate:.3g}" for c in self.cells)
        return f"n={self.train_size} seed={self.seed} noise=[{rates}]"


def group_cells(cells: Iterable[Cell]) -> list[SiblingGroup]:
    """Gather cells into sibling groups, one per (seed, train_size), noise rates ascending.

    Groups come in the order their first cell appears; only the given cells are included, so
    a resumed grid's groups hold just its missing cells.

    Examples
    --------
    >>> cells = [Cell(0, 10, 0.1), Cell(0, 20, 0.0), Cell(0, 10, 0.0)]
    >>> [(g.train_size, [c.noise_rate for c in g.cells]) for g in group_cells(cells)]
    [(10, [0.0, 0.1]), (20, [0.0])]
    """
    groups: dict[tuple[int, int], list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.group_key, []).append(cell)
    return [
        SiblingGroup(seed=seed, train_size=size, cells=tuple(sorted(members)))
        for (seed, size), members in groups.items()
    ]


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


def split_groups(groups: Sequence[SiblingGroup], *, at_least: int) -> list[SiblingGroup]:
    """Split the largest groups in halves until there are ``at_least`` groups (or all are single).

    Parallel executors use it so that a grid of few groups still keeps every worker busy; the
    halves still share their subsample and seed, so results do not change.

    Examples
    --------
    >>> g = SiblingGroup(0, 10, tuple(Cell(0, 10, r) for r in (0.0, 0.1, 0.2)))
    >>> [len(x) for x in split_groups([g], at_least=2)]
    [2, 1]
    """
    out = list(groups)
    while len(out) < at_least:
        largest = max(range(len(out)), key=lambda i: len(out[i]), default=None)
        if largest is None or len(out[largest]) < 2:
            break
        group = out.pop(largest)
        half = (len(group) + 1) // 2
        for part in (group.cells[:half], group.cells[half:]):
            out.insert(largest, SiblingGroup(group.seed, group.train_size, part))
            largest += 1
    return out
