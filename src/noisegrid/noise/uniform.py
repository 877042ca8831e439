"""``uniform``: the reference experiment's noise, and :func:`inject_noise`, its one-call form.

Flips are spread evenly over classes (per-class counts differ by at most one at every rate) and
are uniform within a class; binary labels go to the other class, K > 2 to a uniformly chosen other
class.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..sampling import STREAM_NOISE, rng_for
from .base import (
    NOISE_MODELS,
    FlipPlan,
    NoiseModel,
    NoisyLabels,
    NoOptions,
    apply_plan,
    balanced_order,
    other_class,
)


@NOISE_MODELS.register("uniform")
class UniformNoise(NoiseModel):
    """The reference experiment's noise: flips spread evenly over classes, uniform within a class.

    Binary labels flip to the other class; with K > 2 classes a flipped label goes to a uniformly
    chosen other class. As a noise matrix (entry [i, j] = P(observed j | true i), rows sum to 1):
    ``1 - p`` on the diagonal and ``p / (K - 1)`` elsewhere.
    """

    def plan(self, labels: np.ndarray, *, indices: np.ndarray, seed: int) -> FlipPlan:
        rng = rng_for(seed, STREAM_NOISE, len(labels))
        order = balanced_order(labels, self.n_classes, rng)
        return FlipPlan(order=order, targets=other_class(labels, self.n_classes, rng))


def inject_noise(
    labels: np.ndarray,
    noise_rate: float,
    *,
    seed: int,
    n_classes: int | None = None,
) -> NoisyLabels:
    """Flip exactly ``round(noise_rate × n)`` labels uniformly, spread evenly over classes.

    Parameters
    ----------
    labels : ndarray of int, shape (n,)
        Clean class ids ``0..K-1``.
    noise_rate : float
        Fraction of labels to flip, in ``[0, 1 - 1/K)``.
    seed : int
        Repeat seed; for one seed, the flipped set grows with the rate (nested).
    n_classes : int, optional
        K; defaults to ``labels.max() + 1``.

    Returns
    -------
    NoisyLabels

    Examples
    --------
    >>> y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    >>> out = inject_noise(y, 0.25, seed=0)
    >>> out.n_flipped, np.bincount(out.clean[out.flipped]).tolist()
    (2, [1, 1])
    """
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1 if n_classes is None else n_classes
    limit = 1.0 - 1.0 / k
    if not 0.0 <= noise_rate < limit:
        raise DataError(f"noise_rate must be in [0, {limit:g}) for {k} classes; got {noise_rate}")
    model = UniformNoise(NoOptions(), n_classes=k)
    plan = model.plan(labels, indices=np.arange(len(labels)), seed=seed)
    return apply_plan(labels, noise_rate, plan)
