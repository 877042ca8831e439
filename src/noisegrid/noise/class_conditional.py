"""``class_conditional``: label noise shaped by a noise matrix, scaled to the grid's rate.

The user gives a noise matrix ``T`` (``[noise] matrix``; entry ``[i, j]`` is P(observed label j |
true label i), rows sum to 1), or ``[noise] pair_flip = true`` for the matrix that sends every
class ``k`` to class ``k + 1 mod K``. The matrix fixes the *shape* of the noise; the grid's noise
rate fixes its *amount*.

Scaling to the grid's rate
--------------------------
Let ``ρ = (1/K) Σ_i Σ_{j≠i} T[i, j]`` be the matrix's own noise rate on class-balanced data (the
subsample always is class-balanced). At grid rate ``p`` the injected noise matrix is

    T_p = I + (p / ρ) (T − I),

so its off-diagonal entries are ``T[i, j] · p / ρ``: the pair (true i → observed j) receives the
share ``q_ij = T[i, j] / Σ_{a≠b} T[a, b]`` of the ``m = round(p · n)`` flips, and class ``i`` loses
the share ``r_i = Σ_{j≠i} q_ij``. At ``p = ρ`` the injected noise is ``T`` itself. Rate ``p`` is
reachable only while no class must give more flips than it has members, i.e. while
``p · (1 − T[i, i]) / ρ ≤ 1`` for every row ``i`` (up to rounding, checked exactly per grid size).

Exact counts and rounding
-------------------------
The flips are scheduled one at a time (:func:`flip_schedule`); at ``m`` flips pair ``(i, j)`` has
received ``m · q_ij`` flips rounded down or up — never further from the exact share than one flip —
and exactly ``m · q_ij`` whenever that is an integer. Which pairs round up is decided by an
earliest-deadline-first quota schedule, so every prefix keeps that property and the flipped sets
stay nested across rates. (Plain largest-remainder rounding of each ``m`` separately cannot
guarantee nesting: a pair can lose a flip when ``m`` grows, the "Alabama paradox".) Within a class,
which members flip is a seeded random order, so the flipped set of class ``i`` is also nested.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ..errors import DataError
from ..sampling import STREAM_NOISE, rng_for
from .base import NOISE_MODELS, FlipPlan, NoiseModel, Reach, find_shortfall

if TYPE_CHECKING:
    from ..config import ExperimentSpec
    from ..data import Corpus

ROW_SUM_TOLERANCE = 1e-6
"""How far a row of the noise matrix may be from summing to 1."""


def check_noise_matrix(matrix: Sequence[Sequence[float]], *, n_classes: int | None = None) -> None:
    """Raise ``ValueError`` naming the problem if ``matrix`` is not a usable noise matrix.

    Entry ``[i, j]`` is P(observed label j | true label i); rows sum to 1. A usable matrix is
    square (K × K with K ≥ 2, and K = ``n_classes`` when given), has no negative entries, rows
    summing to 1, and some off-diagonal mass (otherwise it never flips a label).

    Parameters
    ----------
    matrix : sequence of sequences of float, shape (K, K)
    n_classes : int, optional
        The dataset's number of classes, when known.

    Raises
    ------
    ValueError

    Examples
    --------
    >>> check_noise_matrix([[0.9, 0.1], [0.3, 0.7]])
    >>> check_noise_matrix([[0.9, 0.2], [0.3, 0.7]])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: row 0 of the noise matrix sums to 1.1, ...
    """
    k = len(matrix)
    if k < 2:
        raise ValueError(
            f"the noise matrix must be K × K with K ≥ 2 classes; got {k} row(s); write it as "
            "[[P(0|0), P(1|0)], [P(0|1), P(1|1)]] (entry [i, j] = P(observed j | true i))"
        )
    for i, row in enumerate(matrix):
        if len(row) != k:
            raise ValueError(
                f"the noise matrix must be square: it has {k} rows but row {i} has {len(row)} "
                f"entries; give {k} entries per row (entry [i, j] = P(observed j | true i))"
            )
    if n_classes is not None and k != n_classes:
        raise ValueError(
            f"the noise matrix is {k} × {k} but the dataset has {n_classes} classes; give a "
            f"{n_classes} × {n_classes} matrix (rows and columns in the order of the class names)"
        )
    arr = np.asarray(matrix, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("the noise matrix has a non-finite entry (nan or inf)")
    negative = np.argwhere(arr < 0)
    if len(negative):
        i, j = (int(x) for x in negative[0])
        raise ValueError(
            f"the noise matrix has a negative entry {arr[i, j]:g} at [{i}, {j}]; entries are "
            "probabilities P(observed j | true i) and must be ≥ 0"
        )
    sums = arr.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOLERANCE)
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"row {i} of the noise matrix sums to {sums[i]:.6g}, but each row i holds "
            "P(observed j | true i) over all j and must sum to 1; fix that row"
        )
    if not (arr - np.diag(np.diag(arr))).any():
        raise ValueError(
            "the noise matrix has no off-diagonal mass, so it never flips a label; put the flip "
            'probabilities off the diagonal, or use noise_model = "uniform"'
        )


MAX_DENOMINATOR = 10**6


def as_fraction(value: float) -> Fraction:
    """``value`` as the nearest fraction with denominator at most 10⁶ (exact for decimals).

    Examples
    --------
    >>> as_fraction(0.1), as_fraction(1 / 3), as_fraction(0.4 * 0.2)
    (Fraction(1, 10), Fraction(1, 3), Fraction(2, 25))
    """
    return Fraction(float(value)).limit_denominator(MAX_DENOMINATOR)


def pair_flip_matrix(n_classes: int) -> np.ndarray:
    """The pair-flip noise matrix: class ``k`` is observed as class ``k + 1 mod K``.

    Entry ``[i, j]`` is P(observed label j | true label i); rows sum to 1. Scaled to rate ``p``
    (see the module docstring) it keeps ``1 − p`` on the diagonal and puts ``p`` on ``[k, k+1]``.

    Examples
    --------
    >>> pair_flip_matrix(3).tolist()
    [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    out = np.zeros((n_classes, n_classes))
    out[np.arange(n_classes), (np.arange(n_classes) + 1) % n_classes] = 1.0
    return out


def flip_schedule(noise_matrix: Sequence[Sequence[float]] | np.ndarray, n: int) -> np.ndarray:
    """The (true class, observed class) pair of each of the first ``n`` flips.

    The noise matrix (entry ``[i, j]`` = P(observed j | true i), rows sum to 1) gives each
    off-diagonal pair the share ``q_ij = T[i, j] / Σ_{a≠b} T[a, b]`` of the flips. After any
    ``m ≤ n`` flips, pair ``(i, j)`` has had ``m · q_ij`` rounded down or up (exactly ``m · q_ij``
    when that is an integer). Among the pairs allowed to take the next flip, the one whose
    lower-quota deadline comes first takes it (ties: the smaller ``(i, j)``), which keeps every
    prefix within quota. Entries are read as exact fractions (:func:`as_fraction`: ``0.1`` is
    1/10, ``0.3333333333333333`` is 1/3), so the shares, and which counts are integers, are exact.
    The schedule depends on the matrix only, never on a seed.

    Parameters
    ----------
    noise_matrix : array-like of float, shape (K, K)
        Entry ``[i, j]`` = P(observed j | true i); rows sum to 1.
    n : int
        Number of flips to schedule.

    Returns
    -------
    ndarray of int, shape (n, 2)
        Row ``t`` is ``(i, j)``, the true and observed class of flip ``t + 1``.

    Examples
    --------
    >>> flip_schedule([[0.9, 0.1], [0.3, 0.7]], 4).tolist()
    [[1, 0], [1, 0], [0, 1], [1, 0]]
    """
    arr = np.asarray(noise_matrix, dtype=np.float64)
    k = arr.shape[0]
    pairs = [(i, j) for i in range(k) for j in range(k) if i != j and arr[i, j] > 0]
    weights = [as_fraction(arr[i, j]) for i, j in pairs]
    total = sum(weights, Fraction(0))
    shares = [w / total for w in weights]

    # The c-th flip of pair p (c = 1, 2, ...) may happen at step t only if c ≤ ceil(t·q) (upper
    # quota), i.e. from step floor((c − 1)/q) + 1 on, and must have happened by step ceil(c/q)
    # (lower quota). These unit jobs satisfy Hall's condition because Σ q = 1, so serving the
    # released job with the earliest deadline meets every deadline.
    def release(p: int, c: int) -> int:
        q = shares[p]
        return (c - 1) * q.denominator // q.numerator + 1

    def deadline(p: int, c: int) -> int:
        q = shares[p]
        return -(-c * q.denominator // q.numerator)

    waiting = [(release(p, 1), p) for p in range(len(pairs))]
    heapq.heapify(waiting)
    ready: list[tuple[int, int]] = []
    done = [0] * len(pairs)
    out = np.empty((n, 2), dtype=np.int64)
    for t in range(1, n + 1):
        while waiting and waiting[0][0] <= t:
            _, p = heapq.heappop(waiting)
            heapq.heappush(ready, (deadline(p, done[p] + 1), p))
        if not ready:  # impossible when the shares sum to 1
            raise RuntimeError(f"flip schedule has no pair ready at step {t}")
        _, p = heapq.heappop(ready)
        done[p] += 1
        out[t - 1] = pairs[p]
        heapq.heappush(waiting, (release(p, done[p] + 1), p))
    return out


def matrix_noise_rate(noise_matrix: Sequence[Sequence[float]] | np.ndarray) -> float:
    """The noise rate ``ρ`` a noise matrix injects on class-balanced data.

    ``ρ = (1/K) Σ_i Σ_{j≠i} T[i, j]`` for the matrix ``T`` (entry ``[i, j]`` = P(observed j |
    true i), rows sum to 1). At grid rate ``ρ`` the ``class_conditional`` model injects ``T``.

    Examples
    --------
    >>> round(matrix_noise_rate([[0.9, 0.1], [0.3, 0.7]]), 6)
    0.2
    """
    arr = np.asarray(noise_matrix, dtype=np.float64)
    return float((arr.sum() - np.trace(arr)) / arr.shape[0])


class ClassConditionalOptions(BaseModel):
    """``[noise]`` options of ``class_conditional``: give exactly one of the two.

    Attributes
    ----------
    matrix : list of lists of float, shape (K, K), optional
        The noise matrix: entry ``[i, j]`` is P(observed label j | true label i), rows sum to 1,
        rows and columns in the order of the dataset's class names. Scaled to each grid rate.
    pair_flip : bool, default False
        Use the pair-flip matrix instead: class ``k`` flips to class ``k + 1 mod K``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    matrix: tuple[tuple[float, ...], ...] | None = None
    pair_flip: bool = Field(default=False, validate_default=True)

    @field_validator("matrix")
    @classmethod
    def _valid_matrix(
        cls, v: tuple[tuple[float, ...], ...] | None
    ) -> tuple[tuple[float, ...], ...] | None:
        if v is not None:
            check_noise_matrix(v)
        return v

    @field_validator("pair_flip")
    @classmethod
    def _one_source(cls, v: bool, info: ValidationInfo) -> bool:
        if "matrix" not in info.data:  # the matrix itself was invalid; that error is enough
            return v
        given = info.data["matrix"] is not None
        if v and given:
            raise ValueError("give either matrix or pair_flip = true, not both")
        if not v and not given:
            raise ValueError(
                "class_conditional needs a noise matrix: set [noise] matrix = [[...], ...] "
                "(entry [i, j] = P(observed j | true i), rows sum to 1) or pair_flip = true"
            )
        return v


@NOISE_MODELS.register("class_conditional")
class ClassConditionalNoise(NoiseModel):
    """Flips distributed over (true i → observed j) pairs as a noise matrix says.

    The noise matrix has entry ``[i, j]`` = P(observed label j | true label i) and rows summing
    to 1. At grid rate ``p`` it is scaled to ``I + (p / ρ)(T − I)`` (``ρ``: the matrix's own rate
    on class-balanced data, :func:`matrix_noise_rate`), and exactly ``round(p · n)`` labels flip,
    pair ``(i, j)`` receiving its share rounded as :func:`flip_schedule` documents. Nested across
    rates for one seed.
    """

    Options = ClassConditionalOptions
    options: ClassConditionalOptions

    def __init__(self, options: BaseModel, *, n_classes: int) -> None:
        super().__init__(options, n_classes=n_classes)
        self._schedule = np.empty((0, 2), dtype=np.int64)

    @property
    def noise_matrix(self) -> np.ndarray:
        """The K × K matrix in use: entry ``[i, j]`` = P(observed j | true i), rows sum to 1.

        Raises
        ------
        DataError
            The configured matrix is not ``n_classes × n_classes``.
        """
        if self.options.pair_flip:
            return pair_flip_matrix(self.n_classes)
        matrix = self.options.matrix or ()  # not None: the options require matrix or pair_flip
        try:
            check_noise_matrix(matrix, n_classes=self.n_classes)
        except ValueError as exc:
            raise DataError(f"[noise] matrix: {exc}") from None
        return np.asarray(matrix, dtype=np.float64)

    def schedule(self, n: int) -> np.ndarray:
        """The (true, observed) class pair of each of the first ``n`` flips (cached)."""
        if len(self._schedule) < n:
            self._schedule = flip_schedule(self.noise_matrix, max(n, 2 * len(self._schedule)))
        return self._schedule[:n]

    def max_flips(self, n_per_class: int, n: int) -> int:
        """How many flips the schedule can make before a class with ``n_per_class`` runs out."""
        steps = self.schedule(n)
        per_class = np.zeros((len(steps), self.n_classes), dtype=np.int64)
        per_class[np.arange(len(steps)), steps[:, 0]] = 1
        over = np.flatnonzero((np.cumsum(per_class, axis=0) > n_per_class).any(axis=1))
        return int(over[0]) if len(over) else n

    def check(self, corpus: Corpus, spec: ExperimentSpec) -> None:
        """Refuse a matrix of the wrong shape or a rate the matrix cannot reach at some size."""
        matrix = self.noise_matrix
        k = self.n_classes
        reaches = [Reach(size, self.max_flips(size // k, size)) for size in spec.grid.sizes]
        short = find_shortfall(reaches, spec.grid.noise_rates)
        if short is None:
            return
        rate, size, m = short.rate, short.at.size, short.n_needed
        steps = self.schedule(m)
        counts = np.bincount(steps[:, 0], minlength=k)
        row = int(np.argmax(counts - size // k))
        name = corpus.label_names[row]
        shown = np.array2string(matrix, separator=", ", precision=4).replace("\n", "")
        raise DataError(
            f"noise rate {rate:g} is out of reach for the class_conditional matrix {shown}: at "
            f"size {size} it needs {m} flips, {counts[row]} of them from class '{name}' (row "
            f"{row}), which has only {size // k} examples in the subsample; this matrix reaches at "
            f"most rate {short.worst.max_rate:.4g} over the grid's sizes (at size "
            f"{short.worst.size}); lower "
            f"grid.noise_rates or move flip probability off row {row}"
        )

    def plan(self, labels: np.ndarray, *, indices: np.ndarray, seed: int) -> FlipPlan:
        labels = np.asarray(labels, dtype=np.int64)
        n, k = len(labels), self.n_classes
        rng = rng_for(seed, STREAM_NOISE, n)
        members = [rng.permutation(np.flatnonzero(labels == c)) for c in range(k)]
        steps = self.schedule(n)
        used = np.zeros(k, dtype=np.int64)
        order = np.empty(n, dtype=np.int64)
        targets = (labels + 1) % k  # only read at positions in the order
        n_order = 0
        for true, observed in steps:
            if used[true] == len(members[true]):
                break  # class `true` has no member left: the plan ends here (nesting)
            pos = members[true][used[true]]
            used[true] += 1
            order[n_order] = pos
            targets[pos] = observed
            n_order += 1
        return FlipPlan(order=order[:n_order], targets=targets)
