"""Reusable invariant checks for subsamples and injected noise (cf. scikit-learn's checks)."""

from __future__ import annotations

import numpy as np

from noisegrid.noise import NoisyLabels, n_flips


def check_balanced(labels: np.ndarray, rows: np.ndarray, n: int, n_classes: int) -> None:
    """Exactly n rows, no repeats, n / K per class."""
    assert len(rows) == n
    assert len(np.unique(rows)) == n
    counts = np.bincount(labels[rows], minlength=n_classes)
    assert counts.tolist() == [n // n_classes] * n_classes


def check_nested_sets(smaller: np.ndarray, larger: np.ndarray) -> None:
    assert set(smaller.tolist()) <= set(larger.tolist())


def check_exact_noise(out: NoisyLabels, rate: float, n_classes: int) -> None:
    """round(rate × n) flips, spread evenly over classes, flips change the label."""
    m = n_flips(rate, len(out.clean))
    assert out.n_flipped == m
    assert np.array_equal(out.flipped, out.labels != out.clean)
    assert out.realized_rate == m / len(out.clean)
    per_class = np.bincount(out.clean[out.flipped], minlength=n_classes)
    assert per_class.max() - per_class.min() <= 1
    assert ((out.labels >= 0) & (out.labels < n_classes)).all()
