"""``real``: real noisy labels from a second label column (crowd or weak supervision).

The dataset carries, beside the clean label, a column ``[noise] noisy_label_column`` of the
training split holding the label an annotator (or a labelling function) gave. Its values map to
class ids through the same mapping as the clean labels (the dataset's class names); a value that
is not one of them is refused. Missing values mean "no noisy label": such examples never flip.

At grid rate ``p`` exactly ``round(p · n)`` examples of the subsample take their noisy label,
chosen among the examples whose noisy label *disagrees* with the clean one, in one seeded order per
repeat seed, so the flipped sets are nested across rates:

- ``balance_classes = true`` (default): the order takes one disagreeing example from each class in
  turn (classes in a shuffled sequence, a random order within each class), like ``uniform`` noise;
  once a class has no disagreeing example left the others continue, so flips are balanced across
  classes as far as the data allows.
- ``balance_classes = false``: one random order over all disagreeing examples, so the flips keep
  the real noise's own class mix (in expectation).

The highest usable rate is set by the data: a subsample of size ``n`` with ``d`` disagreeing
labels supports rates up to about ``d / n``. The grid is refused before any work when a rate needs
more flips than some (size, seed) subsample has disagreements, with the maximum the grid supports
(the worst case over its sizes and seeds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..data import label_key
from ..errors import DataError
from ..sampling import STREAM_NOISE, rng_for, subsample_per_class
from .base import NOISE_MODELS, FlipPlan, NoiseModel, Reach, balanced_order, find_shortfall

if TYPE_CHECKING:
    from pathlib import Path

    from ..config import ExperimentSpec
    from ..data import Corpus

MISSING = -1
"""Class id used for a missing noisy label (never flipped)."""


class RealOptions(BaseModel):
    """``[noise]`` options of ``real``.

    Attributes
    ----------
    noisy_label_column : str
        Column of the training split with the noisy labels (required).
    balance_classes : bool, default True
        Spread flips evenly over classes as far as the data allows; false keeps the real noise's
        class mix.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    noisy_label_column: str | None = Field(default=None, validate_default=True)
    balance_classes: bool = True

    @field_validator("noisy_label_column")
    @classmethod
    def _required(cls, v: str | None) -> str | None:
        if not v:
            raise ValueError(
                'the real noise model needs [noise] noisy_label_column = "<column>", the column '
                "of the training split that holds the noisy labels"
            )
        return v


def noisy_label_ids(corpus: Corpus, column: str) -> np.ndarray:
    """The noisy label of every training row as a class id (``-1`` where missing).

    Values map to class ids through the corpus's class names, exactly as the clean labels do.

    Raises
    ------
    DataError
        The column does not exist, or holds a value that is not one of the class names.
    """
    extra = corpus.train.extra
    if column not in extra.columns:
        have = ", ".join(map(str, extra.columns)) or "(none)"
        raise DataError(
            f"[noise] noisy_label_column = '{column}' is not a column of the training split (the "
            f"clean label column is not available for this); its other columns are: {have}"
        )
    index = {name: i for i, name in enumerate(corpus.label_names)}
    values = extra[column]
    missing = values.isna().to_numpy()
    keys = [None if m else label_key(v) for v, m in zip(values, missing, strict=True)]
    unknown = sorted({k for k in keys if k is not None and k not in index})
    if unknown:
        raise DataError(
            f"[noise] noisy_label_column '{column}' has values that are not class names of the "
            f"clean labels: {unknown[:5]}; the classes are: {list(corpus.label_names)}; map them "
            "to those names before running"
        )
    return np.fromiter(
        (MISSING if k is None else index[k] for k in keys), dtype=np.int64, count=len(keys)
    )


@NOISE_MODELS.register("real")
class RealNoise(NoiseModel):
    """Takes the dataset's real noisy label where it disagrees with the clean one.

    See the module docstring for the order, class balance and the maximum rate. Exact counts,
    nested across rates for one seed.
    """

    Options = RealOptions
    options: RealOptions

    def __init__(self, options: BaseModel, *, n_classes: int) -> None:
        super().__init__(options, n_classes=n_classes)
        self._noisy: np.ndarray | None = None

    @property
    def column(self) -> str:
        return str(self.options.noisy_label_column)

    def check(self, corpus: Corpus, spec: ExperimentSpec) -> None:
        """Refuse a missing or unmappable column, or a rate some subsample cannot reach."""
        noisy = noisy_label_ids(corpus, self.column)
        disagree = (noisy != MISSING) & (noisy != corpus.train.labels)
        k, top = corpus.n_classes, max(spec.grid.noise_rates)
        reaches = []
        for seed in spec.grid.seeds:
            for size in spec.grid.sizes:
                rows = subsample_per_class(corpus.train.labels, size, seed=seed, n_classes=k)
                reaches.append(Reach(size, int(disagree[rows].sum()), seed))
        # The flips needed grow with the rate, so the top rate fails wherever any rate does.
        short = find_shortfall(reaches, [top])
        if short is None:
            return
        at, worst = short.at, short.worst
        raise DataError(
            f"noise rate {top:g} needs {short.n_needed} flipped labels at size {at.size} (seed "
            f"{at.seed}), but only {at.max_flips} examples of that subsample have a noisy label "
            f"('{self.column}') that differs from the clean one; this grid supports at most rate "
            f"{worst.max_rate:.4g} (size {worst.size}, seed {worst.seed}: {worst.max_flips} "
            "disagreements); lower grid.noise_rates"
        )

    def prepare(
        self,
        corpus: Corpus,
        *,
        seeds: tuple[int, ...],
        train_size: int | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        """Map the noisy column to class ids once."""
        self._noisy = noisy_label_ids(corpus, self.column)

    def plan(self, labels: np.ndarray, *, indices: np.ndarray, seed: int) -> FlipPlan:
        if self._noisy is None:
            raise RuntimeError("call RealNoise.prepare(corpus, seeds=...) before plan()")
        labels = np.asarray(labels, dtype=np.int64)
        noisy = self._noisy[np.asarray(indices, dtype=np.int64)]
        flippable = np.flatnonzero((noisy != MISSING) & (noisy != labels))
        rng = rng_for(seed, STREAM_NOISE, len(labels))
        if self.options.balance_classes:
            order = flippable[balanced_order(labels[flippable], self.n_classes, rng)]
        else:
            order = rng.permutation(flippable)
        targets = np.where(noisy == MISSING, (labels + 1) % self.n_classes, noisy)
        return FlipPlan(order=order.astype(np.int64), targets=targets)
