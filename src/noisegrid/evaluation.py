"""The held-out test sample and the metrics computed for every cell.

The test sample is drawn once per (spec, seed) from the test split — class-balanced, on its own
random stream — and never overlaps training data (:func:`noisegrid.data.load_corpus` drops test
rows whose text also appears in the training split).
"""

from __future__ import annotations

import numpy as np

from .data import Corpus
from .sampling import STREAM_TEST, subsample_per_class

PROBA_EPS = 1e-7


def draw_test_sample(corpus: Corpus, test_size: int, *, seed: int) -> np.ndarray:
    """Indices into ``corpus.test`` of a class-balanced sample of ``test_size`` rows."""
    return subsample_per_class(
        corpus.test.labels, test_size, seed=seed, n_classes=corpus.n_classes, stream=STREAM_TEST
    )


def score(y_true: np.ndarray, proba: np.ndarray, *, n_classes: int) -> dict[str, float]:
    """Accuracy (the reference metric), macro-F1 and log-loss of predicted probabilities.

    Parameters
    ----------
    y_true : ndarray of int, shape (n,)
    proba : ndarray of float, shape (n, n_classes)

    Returns
    -------
    dict with keys ``accuracy``, ``macro_f1``, ``log_loss``.

    Examples
    --------
    >>> s = score(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), n_classes=2)
    >>> s["accuracy"], round(s["log_loss"], 3)
    (1.0, 0.164)
    """
    # Imported here, not at the top: the commands that only check a config never score a cell.
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (len(y_true), n_classes):
        raise ValueError(f"proba has shape {proba.shape}, expected {(len(y_true), n_classes)}")
    pred = proba.argmax(axis=1)
    clipped = np.clip(proba, PROBA_EPS, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)
    labels = list(range(n_classes))
    return {
        "accuracy": float(accuracy_score(y_true, pred)),
        "macro_f1": float(f1_score(y_true, pred, labels=labels, average="macro", zero_division=0)),
        "log_loss": float(log_loss(y_true, clipped, labels=labels)),
    }
