"""``tfidf``: TF-IDF (word 1–2-grams, sublinear tf) + logistic regression, with scikit-learn.

Seconds per cell on a laptop; the baseline every other backend is compared with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field, model_validator
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from . import BACKENDS
from .base import Backend, BackendOptions, FitOutput, Predictor


class TfidfOptions(BackendOptions):
    """``[backend]`` options of ``tfidf``."""

    ngram_min: int = Field(default=1, ge=1)
    ngram_max: int = Field(default=2, ge=1)
    sublinear_tf: bool = True
    min_df: int = Field(default=2, ge=1)
    max_df: float = Field(default=1.0, gt=0, le=1)
    max_features: int | None = Field(default=None, ge=1)
    lowercase: bool = True
    strip_accents: Literal["ascii", "unicode"] | None = None
    C: float = Field(default=4.0, gt=0)
    """Inverse regularisation strength of the logistic regression."""
    max_iter: int = Field(default=1000, ge=1)
    class_weight: Literal["balanced"] | None = None

    @model_validator(mode="after")
    def _ngrams(self) -> TfidfOptions:
        if self.ngram_max < self.ngram_min:
            raise ValueError(
                f"ngram_max ({self.ngram_max}) must be >= ngram_min ({self.ngram_min})"
            )
        return self


class _PipelinePredictor(Predictor):
    def __init__(self, pipeline: Pipeline, n_classes: int) -> None:
        self.pipeline = pipeline
        self.n_classes = n_classes

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        proba = self.pipeline.predict_proba(list(texts))
        classes = self.pipeline.classes_
        if len(classes) == self.n_classes:
            return np.asarray(proba)
        # A cell whose noisy labels miss a class: put its columns back (probability 0).
        full = np.zeros((len(texts), self.n_classes))
        full[:, classes] = proba
        return full


@BACKENDS.register("tfidf")
class TfidfBackend(Backend):
    """TF-IDF features + multinomial logistic regression (lbfgs)."""

    Options = TfidfOptions
    options: TfidfOptions

    def fit(self, texts: Sequence[str], labels: np.ndarray, *, seed: int) -> FitOutput:
        o = self.options
        pipeline = Pipeline(
            [
                (
                    "tfidf",
                    TfidfVectorizer(
                        ngram_range=(o.ngram_min, o.ngram_max),
                        sublinear_tf=o.sublinear_tf,
                        min_df=o.min_df,
                        max_df=o.max_df,
                        max_features=o.max_features,
                        lowercase=o.lowercase,
                        strip_accents=o.strip_accents,
                        dtype=np.float32,
                    ),
                ),
                (
                    "clf",
                    LogisticRegression(
                        C=o.C,
                        max_iter=o.max_iter,
                        class_weight=o.class_weight,
                        random_state=seed,
                    ),
                ),
            ]
        )
        pipeline.fit(list(texts), np.asarray(labels))
        n_features = len(pipeline.named_steps["tfidf"].vocabulary_)
        return FitOutput(
            predictor=_PipelinePredictor(pipeline, self.context.n_classes),
            info={"n_features": n_features},
        )
