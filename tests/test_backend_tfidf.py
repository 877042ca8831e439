"""The tfidf backend and the backend registry."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import synthetic_frame
from noisegrid import ConfigError, ExperimentSpec
from noisegrid.backends import BACKENDS, get_backend_class, make_backend


def make(**options: object):  # type: ignore[no-untyped-def]
    spec = ExperimentSpec.from_dict(
        {"grid": {"sizes": [10], "noise_rates": [0.0]}, "backend": {"name": "tfidf", **options}}
    )
    from pathlib import Path

    return make_backend(spec, n_classes=3, cache_dir=Path("/nonexistent"))


def test_learns_a_three_class_problem() -> None:
    train = synthetic_frame(40, 3, seed=1)
    test = synthetic_frame(20, 3, seed=2)
    fitted = make(min_df=1).fit(train["text"].tolist(), train["label"].to_numpy(), seed=0)
    proba = fitted.predictor.predict_proba(test["text"].tolist())
    assert proba.shape == (60, 3)
    assert np.allclose(proba.sum(axis=1), 1)
    assert (proba.argmax(axis=1) == test["label"].to_numpy()).mean() > 0.8
    assert fitted.info["n_features"] > 10


def test_missing_class_in_training_labels_keeps_all_columns() -> None:
    train = synthetic_frame(20, 2, seed=1)
    fitted = make(min_df=1).fit(train["text"].tolist(), train["label"].to_numpy(), seed=0)
    proba = fitted.predictor.predict_proba(["great movie", "awful movie"])
    assert proba.shape == (2, 3) and (proba[:, 2] == 0).all()


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"ngram_max \(1\) must be >= ngram_min \(2\)"):
        make(ngram_min=2, ngram_max=1)


def test_empty_text_is_handled() -> None:
    train = synthetic_frame(20, 2, seed=1)
    fitted = make(min_df=1).fit(train["text"].tolist(), train["label"].to_numpy(), seed=0)
    assert fitted.predictor.predict_proba([""]).shape == (1, 3)


def test_registry_lists_names() -> None:
    assert get_backend_class("tfidf").name == "tfidf"
    assert "tfidf" in BACKENDS.names()
