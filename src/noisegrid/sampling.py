"""Class-balanced, nested subsampling (the coupled design).

For one repeat seed, one random order per class decides which examples are in every subsample: a
subsample of size ``n`` takes the first ``n / K`` examples of each class's order, so the
1,000-example set is a subset of the 2,000-example set. Neighbouring cells then differ only in
what the grid changes (common random numbers).
"""

from __future__ import annotations

import numpy as np

from .errors import DataError

# Independent random streams per purpose, all derived from the repeat seed alone (never global
# state), so a cell is reproducible on its own and every backend sees the same subsamples.
STREAM_SAMPLE = 1
STREAM_NOISE = 2
STREAM_TEST = 3
STREAM_TRAIN = 4
STREAM_NOISE_MODEL = 5
STREAM_AUDIT = 6


def rng_for(seed: int, stream: int, *keys: int) -> np.random.Generator:
    """A generator for one purpose (``stream``) of one repeat ``seed``, refined by ``keys``.

    Examples
    --------
    >>> a = rng_for(0, STREAM_SAMPLE).integers(1 << 30)
    >>> b = rng_for(0, STREAM_SAMPLE).integers(1 << 30)
    >>> bool(a == b)
    True
    """
    return np.random.default_rng([int(seed), int(stream), *map(int, keys)])


def class_orders(
    labels: np.ndarray, n_classes: int, *, seed: int, stream: int = STREAM_SAMPLE
) -> list[np.ndarray]:
    """One random order of the indices of each class (the nesting backbone for ``seed``).

    Parameters
    ----------
    labels : ndarray of int, shape (n,)
    n_classes : int
    seed : int
        Repeat seed.
    stream : int, default STREAM_SAMPLE
        Which random stream of the seed to use (the test sample uses ``STREAM_TEST``).

    Returns
    -------
    list of ndarray
        ``orders[c]`` is a permutation of ``np.flatnonzero(labels == c)``.
    """
    rng = rng_for(seed, stream)
    return [rng.permutation(np.flatnonzero(labels == c)) for c in range(n_classes)]


def subsample_per_class(
    labels: np.ndarray,
    n: int,
    *,
    seed: int,
    n_classes: int | None = None,
    stream: int = STREAM_SAMPLE,
) -> np.ndarray:
    """Indices of a class-balanced subsample of size ``n``, nested across ``n`` for one seed.

    Parameters
    ----------
    labels : ndarray of int, shape (n_total,)
        Class ids ``0..K-1``.
    n : int
        Subsample size; must be a multiple of K and at most K × the smallest class count.
    seed : int
        Repeat seed; the same seed gives the same (nested) subsamples.
    n_classes : int, optional
        K; defaults to ``labels.max() + 1``.
    stream : int, default STREAM_SAMPLE
        Random stream of the seed (training subsamples and the test sample use different ones).

    Returns
    -------
    ndarray of int, shape (n,)
        Sorted indices into ``labels``; exactly ``n / K`` per class.

    Raises
    ------
    DataError
        ``n`` is not a multiple of K or exceeds what balanced sampling allows.

    Examples
    --------
    >>> y = np.array([0, 1] * 10)
    >>> small = subsample_per_class(y, 4, seed=0)
    >>> large = subsample_per_class(y, 8, seed=0)
    >>> set(small) <= set(large), np.bincount(y[small]).tolist()
    (True, [2, 2])
    """
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if n_classes is None else n_classes
    if n % k:
        raise DataError(f"subsample size {n} is not a multiple of the {k} classes")
    per_class = n // k
    orders = class_orders(labels, k, seed=seed, stream=stream)
    smallest = min(len(o) for o in orders)
    if per_class > smallest:
        raise DataError(
            f"subsample size {n} needs {per_class} examples per class but the smallest class has "
            f"{smallest}; the maximum balanced size is {k * smallest}"
        )
    return np.sort(np.concatenate([o[:per_class] for o in orders]))
