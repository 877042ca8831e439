"""``instance``: instance-dependent noise — the labels of hard examples flip first.

Human annotators err on ambiguous examples, not at random. This model orders each class's
examples by a *difficulty* signal and flips the hardest first:

- ``[noise] difficulty = "model"`` (default): the margin ``p(true class) − max p(other class)``
  of a reference model (TF-IDF word 1–2-grams + logistic regression, ``C = reference_C``) whose
  probabilities are predicted out-of-fold (``reference_folds``-fold stratified cross-validation on
  the *clean* labels). It is fitted once per repeat seed, on the rows every cell of that seed draws
  from: the grid's largest subsample of the seed (subsamples are nested, so smaller cells are
  subsets). Smaller margin = harder; negative margins (the reference model gets the example wrong)
  flip first.
- ``[noise] difficulty = "<column>"``: a numeric column of the training split (for IMDB,
  ``"rating"``). Difficulty is the distance of the value from the column's midpoint
  ``(min + max) / 2`` over the whole training split: smaller distance = harder. IMDB ratings
  1–4 and 7–10 have midpoint 5.5, so 4- and 7-star reviews flip first, 1- and 10-star ones last.

Ties in difficulty are broken by a seeded random order.

``[noise] mix`` (in [0, 1], default 1) moves between uniform and hardest-first noise. Within a
class, flips are chosen one at a time; the ``k``-th flip of a class is a *hardest-first pick*
(the hardest example not yet flipped) when ``⌊k · mix⌋ > ⌊(k − 1) · mix⌋`` and a *random pick*
(a uniformly random example not yet flipped) otherwise. So exactly ``⌊k · mix⌋`` of a class's
first ``k`` flips are hardest-first picks: ``mix = 1`` flips strictly hardest-first, ``mix = 0``
flips in a uniformly random order (the distribution of ``uniform`` noise, for binary labels),
``mix = 0.5`` alternates.

Flips are spread evenly over classes, as in ``uniform`` noise (per-class counts differ by at most
one at every rate): the observed class balance stays that of the clean subsample, so the only
thing that differs from uniform noise is *which* examples of a class flip. (Ranking all classes
together would also move flips towards the class the reference model finds harder, mixing
instance-dependent with class-conditional noise; ``class_conditional`` covers the latter.)

Binary labels flip to the other class; with K > 2 classes a flipped label goes to the reference
model's most likely wrong class (the reference model is also fitted when the difficulty is a
column, to choose these targets).
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from .._cache import write_entry
from ..data import texts_at
from ..errors import DataError
from ..sampling import STREAM_NOISE, STREAM_NOISE_MODEL, rng_for, subsample_per_class
from .base import NOISE_MODELS, FlipPlan, NoiseModel, interleave_classes

if TYPE_CHECKING:
    from ..config import ExperimentSpec
    from ..data import Corpus

REFERENCE_CACHE_VERSION = 1
"""Bumped when the reference model changes, so cached margins are recomputed."""

MODEL_DIFFICULTY = "model"
"""The ``difficulty`` value that selects the reference model's margin (not a column name)."""


class InstanceOptions(BaseModel):
    """``[noise]`` options of ``instance``.

    Attributes
    ----------
    mix : float in [0, 1], default 1
        Share of flips that go to the hardest remaining example (the rest are uniformly random).
    difficulty : str, default "model"
        ``"model"`` for the reference model's out-of-fold margin, or the name of a numeric column
        of the training split (distance from the column's midpoint; smaller = harder).
    reference_C : float, default 4.0
        Inverse regularisation strength of the reference logistic regression.
    reference_folds : int, default 5
        Cross-validation folds of the reference model.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mix: float = Field(default=1.0, ge=0.0, le=1.0)
    difficulty: str = Field(default=MODEL_DIFFICULTY, min_length=1)
    reference_C: float = Field(default=4.0, gt=0)
    reference_folds: int = Field(default=5, ge=2)


def reference_margins(
    texts: Sequence[str],
    labels: np.ndarray,
    *,
    n_classes: int,
    seed: int,
    C: float = 4.0,
    folds: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold margin and most likely wrong class of every example.

    A TF-IDF (word 1–2-grams, sublinear tf, ``min_df = 2``) + logistic regression model predicts
    each example's class probabilities without having seen it (``folds``-fold stratified
    cross-validation, folds shuffled with the seed's ``STREAM_NOISE_MODEL`` stream).

    Parameters
    ----------
    texts : sequence of str, length n
    labels : ndarray of int, shape (n,)
        Clean class ids ``0..K-1``; every class needs at least ``folds`` examples.
    n_classes : int
    seed : int
        Repeat seed.
    C : float, default 4.0
        Inverse regularisation strength.
    folds : int, default 5

    Returns
    -------
    margin : ndarray of float, shape (n,)
        ``p(true class) − max p(other class)``, in [-1, 1]; smaller = harder.
    wrong : ndarray of int, shape (n,)
        The most likely class other than the true one.

    Raises
    ------
    DataError
        A class has fewer than ``folds`` examples.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import Pipeline

    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=n_classes)
    if counts.min() < folds:
        raise DataError(
            f"the instance noise model's reference model needs at least {folds} examples per class "
            f"for {folds}-fold cross-validation, but class {int(counts.argmin())} has "
            f"{int(counts.min())}; use larger grid.sizes or lower [noise] reference_folds"
        )
    n_docs = len(labels)
    pipeline = Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(
                    ngram_range=(1, 2),
                    sublinear_tf=True,
                    min_df=2,
                    dtype=np.float32,
                ),
            ),
            ("clf", LogisticRegression(C=C, max_iter=1000)),
        ]
    )
    rng = rng_for(seed, STREAM_NOISE_MODEL)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=int(rng.integers(2**31 - 1)))
    proba = np.asarray(
        cross_val_predict(pipeline, list(texts), labels, cv=cv, method="predict_proba"),
        dtype=np.float64,
    )
    rows = np.arange(n_docs)
    true_p = proba[rows, labels]
    others = proba.copy()
    others[rows, labels] = -np.inf
    wrong = others.argmax(axis=1)
    return true_p - others[rows, wrong], wrong.astype(np.int64)


def cached_reference_margins(
    texts: Sequence[str],
    labels: np.ndarray,
    *,
    n_classes: int,
    seed: int,
    C: float = 4.0,
    folds: int = 5,
    cache_dir: Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`reference_margins`, cached on disk under ``cache_dir`` (no cache when None).

    The cache key hashes everything the result depends on: the texts and labels (in order),
    ``n_classes``, ``seed``, ``C``, ``folds`` and the scikit-learn version. An unreadable cache
    file is a miss (recomputed and replaced); a cache that cannot be written logs one warning and
    the margins are used uncached.
    """
    if cache_dir is None:
        return reference_margins(texts, labels, n_classes=n_classes, seed=seed, C=C, folds=folds)
    import sklearn

    labels = np.asarray(labels, dtype=np.int64)
    digest = hashlib.sha256()
    head = f"{REFERENCE_CACHE_VERSION}|{sklearn.__version__}|{n_classes}|{seed}|{C!r}|{folds}|"
    digest.update(head.encode())
    digest.update(labels.tobytes())
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    path = Path(cache_dir) / "instance-reference" / f"{digest.hexdigest()[:32]}.npz"
    try:
        with np.load(path) as cached:
            margin, wrong = cached["margin"], cached["wrong"]
        if len(margin) == len(labels) == len(wrong):
            return margin, wrong
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # no entry, or an unreadable one: a miss (recomputed and replaced)
    margin, wrong = reference_margins(
        texts, labels, n_classes=n_classes, seed=seed, C=C, folds=folds
    )

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:  # a handle: np.savez would add ".npz" to a path
            np.savez(handle, margin=margin, wrong=wrong)

    # Atomic, so concurrent workers never read a half-written file; an unwritable cache warns.
    write_entry(path, write)
    return margin, wrong


def column_difficulty(values: pd.Series | np.ndarray) -> np.ndarray:
    """Distance of each value from the midpoint ``(min + max) / 2``; smaller = harder.

    Examples
    --------
    >>> column_difficulty(np.array([1, 4, 7, 10])).tolist()
    [4.5, 1.5, 1.5, 4.5]
    """
    arr = np.asarray(values, dtype=np.float64)
    mid = (np.nanmin(arr) + np.nanmax(arr)) / 2.0
    return np.abs(arr - mid)


def mixed_order(hard_first: np.ndarray, random_order: np.ndarray, mix: float) -> np.ndarray:
    """Merge a hardest-first and a random order of the same items, a share ``mix`` hardest-first.

    The ``k``-th item (1-based) is the first not-yet-taken item of ``hard_first`` when
    ``⌊k · mix⌋ > ⌊(k − 1) · mix⌋`` and of ``random_order`` otherwise (``mix`` read as the nearest
    fraction with denominator at most 10⁶, so ``0.1`` is exactly 1/10).

    Examples
    --------
    >>> mixed_order(np.array([0, 1, 2, 3]), np.array([3, 2, 1, 0]), 0.5).tolist()
    [3, 0, 2, 1]
    """
    n = len(hard_first)
    share = Fraction(float(mix)).limit_denominator(10**6)
    k = np.arange(n + 1, dtype=np.int64)
    quota = k * share.numerator // share.denominator
    hard_pick = np.diff(quota) > 0
    pos = {int(item): i for i, item in enumerate(hard_first)}
    taken = np.zeros(n, dtype=bool)
    out = np.empty(n, dtype=np.int64)
    h = r = 0
    for step in range(n):
        if hard_pick[step]:
            while taken[h]:
                h += 1
            item = int(hard_first[h])
        else:
            while taken[pos[int(random_order[r])]]:
                r += 1
            item = int(random_order[r])
        taken[pos[item]] = True
        out[step] = item
    return out


@NOISE_MODELS.register("instance")
class InstanceNoise(NoiseModel):
    """Instance-dependent noise: the hardest examples of each class flip first.

    See the module docstring for the difficulty signals, the meaning of ``mix`` and the targets.
    Exact counts, flips spread evenly over classes, nested across rates for one seed.
    """

    Options = InstanceOptions
    options: InstanceOptions

    def __init__(self, options: BaseModel, *, n_classes: int) -> None:
        super().__init__(options, n_classes=n_classes)
        self._corpus: Corpus | None = None
        self._train_size: int | None = None
        self._column: np.ndarray | None = None
        self._cache_dir: Path | None = None
        self._reference: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @property
    def uses_column(self) -> bool:
        return self.options.difficulty != MODEL_DIFFICULTY

    @property
    def needs_reference(self) -> bool:
        """The reference model is fitted for the margin, or for multi-class targets."""
        return not self.uses_column or self.n_classes > 2

    def check(self, corpus: Corpus, spec: ExperimentSpec) -> None:
        """Refuse a missing or non-numeric difficulty column, or too few examples for the folds."""
        if self.uses_column:
            self._column_values(corpus)
        if self.needs_reference:
            per_class = max(spec.grid.sizes) // corpus.n_classes
            folds = self.options.reference_folds
            if per_class < folds:
                raise DataError(
                    f"the instance noise model's reference model is fitted on the largest "
                    f"subsample ({max(spec.grid.sizes)} examples, {per_class} per class), too few "
                    f"for [noise] reference_folds = {folds}; lower reference_folds to at most "
                    f"{max(per_class, 2)} or use larger grid.sizes"
                )

    def _column_values(self, corpus: Corpus) -> np.ndarray:
        name = self.options.difficulty
        extra = corpus.train.extra
        if name not in extra.columns:
            have = ", ".join(map(str, extra.columns)) or "(none)"
            raise DataError(
                f"[noise] difficulty = '{name}' is not a column of the training split; its other "
                f'columns are: {have}; use one of them or "{MODEL_DIFFICULTY}" for the '
                "reference model's margin"
            )
        values = pd.to_numeric(extra[name], errors="coerce")
        bad = values.isna() & extra[name].notna()
        if bad.any() or values.notna().sum() == 0:
            example = extra[name][bad].iloc[0] if bad.any() else None
            raise DataError(
                f"[noise] difficulty column '{name}' must be numeric; it has non-numeric values "
                f'such as {example!r}; choose a numeric column or "{MODEL_DIFFICULTY}"'
            )
        if values.isna().any():
            rows = np.flatnonzero(values.isna().to_numpy())
            raise DataError(
                f"[noise] difficulty column '{name}' has {len(rows)} missing values (training "
                f"rows {', '.join(map(str, rows[:5]))}); fill or drop them"
            )
        return column_difficulty(values.to_numpy())

    def prepare(
        self,
        corpus: Corpus,
        *,
        seeds: tuple[int, ...],
        train_size: int | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        """Read the difficulty column, or fit (or load from the cache) the reference model per seed.

        The reference model's margins are cached under ``cache_dir/instance-reference/``, keyed
        by a hash of the texts, labels, seed and reference options.
        """
        self._corpus = corpus
        self._train_size = train_size
        self._cache_dir = cache_dir
        self._reference.clear()
        if self.uses_column:
            self._column = self._column_values(corpus)
        if self.needs_reference:
            for seed in seeds:
                self.reference(seed)

    def reference(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows of the training split the seed's cells draw from, their margin and wrong class.

        Returns
        -------
        rows : ndarray of int, shape (n_ref,)
            Sorted row indices (the grid's largest subsample of ``seed``).
        margin : ndarray of float, shape (n_ref,)
            Out-of-fold ``p(true) − max p(other)`` (see :func:`reference_margins`).
        wrong : ndarray of int, shape (n_ref,)
            The reference model's most likely wrong class.
        """
        if seed not in self._reference:
            corpus = self._require_corpus()
            labels = corpus.train.labels
            size = self._train_size or corpus.max_train_size()
            rows = subsample_per_class(labels, size, seed=seed, n_classes=self.n_classes)
            margin, wrong = cached_reference_margins(
                texts_at(corpus.train, rows),
                labels[rows],
                n_classes=self.n_classes,
                seed=seed,
                C=self.options.reference_C,
                folds=self.options.reference_folds,
                cache_dir=self._cache_dir,
            )
            self._reference[seed] = (rows, margin, wrong)
        return self._reference[seed]

    def _require_corpus(self) -> Corpus:
        if self._corpus is None:
            raise RuntimeError("call InstanceNoise.prepare(corpus, seeds=...) before plan()")
        return self._corpus

    def plan(self, labels: np.ndarray, *, indices: np.ndarray, seed: int) -> FlipPlan:
        labels = np.asarray(labels, dtype=np.int64)
        indices = np.asarray(indices, dtype=np.int64)
        n, k = len(labels), self.n_classes
        self._require_corpus()
        difficulty, targets = self._signal(labels, indices, seed)
        rng = rng_for(seed, STREAM_NOISE, n)
        per_class = []
        for c in range(k):
            random_order = rng.permutation(np.flatnonzero(labels == c))
            hard_first = random_order[np.argsort(difficulty[random_order], kind="stable")]
            per_class.append(mixed_order(hard_first, random_order, self.options.mix))
        return FlipPlan(order=interleave_classes(per_class, rng), targets=targets)

    def _signal(
        self, labels: np.ndarray, indices: np.ndarray, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Difficulty (smaller = harder) and flip target of each position of a subsample."""
        targets = 1 - labels
        difficulty = None
        if self.needs_reference:
            rows, margin, wrong = self.reference(seed)
            pos = np.minimum(np.searchsorted(rows, indices), len(rows) - 1)
            if not np.array_equal(rows[pos], indices):
                raise RuntimeError(
                    f"rows outside seed {seed}'s reference subsample of {len(rows)}; prepare() "
                    "with the grid's largest train_size"
                )
            difficulty = margin[pos]
            if self.n_classes > 2:
                targets = wrong[pos]
        if self.uses_column:
            if self._column is None:
                raise RuntimeError("call InstanceNoise.prepare(corpus, seeds=...) before plan()")
            difficulty = self._column[indices]
        if difficulty is None:  # unreachable: a column or the reference model is always used
            raise RuntimeError("instance noise has no difficulty signal")
        return difficulty, targets
