"""The backend interface: how a model is trained on one cell and scores the test sample.

A backend instance lives for a whole worker (all the cells it runs), so heavy assets — a loaded
tokenizer, cached embeddings — are loaded once in :meth:`Backend.prepare`, not once per cell.
The fixed sequence per cell (subsample → noise → fit → evaluate) lives in the runner; backends
only fit and predict.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from ..config import ExperimentSpec, TrainSpec
    from ..data import Corpus


class BackendOptions(BaseModel):
    """Base for a backend's ``[backend]`` options; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Predictor(ABC):
    """A model trained on one cell."""

    @abstractmethod
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape (n_texts, n_classes), rows sum to 1."""


@dataclass
class FitOutput:
    """What :meth:`Backend.fit` returns: the predictor and extras stored with the result."""

    predictor: Predictor
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackendContext:
    """What a backend may know about the run, besides its options."""

    train: TrainSpec
    n_classes: int
    cache_dir: Path


class Backend(ABC):
    """Base class of backends. Register subclasses with ``@BACKENDS.register("name")``.

    Parameters
    ----------
    options : BackendOptions
        The validated ``[backend]`` options (an instance of the subclass's ``Options``).
    context : BackendContext
        Training hyper-parameters (``[train]``), number of classes, cache folder.
    """

    name: ClassVar[str]
    Options: ClassVar[type[BackendOptions]] = BackendOptions
    extra: ClassVar[str | None] = None
    """The pip extra this backend needs, if any (checked before any work)."""

    def __init__(self, options: BackendOptions, context: BackendContext) -> None:
        self.options = options
        self.context = context

    @classmethod
    def check(cls, spec: ExperimentSpec) -> None:
        """Cheap checks before any work (dependencies, model exists); raise NoisegridError."""

    @classmethod
    def model_id(cls, options: BackendOptions) -> str:
        """The model this backend trains, for results and reports ('' when not applicable)."""
        return str(getattr(options, "model", "") or "")

    def prepare(
        self, corpus: Corpus, *, train_indices: np.ndarray, test_indices: np.ndarray
    ) -> None:
        """One-time work per worker before its cells run.

        ``train_indices`` are the training rows any cell of the grid can use (the largest subsample
        of every seed) and ``test_indices`` the test sample rows, so a backend can precompute and
        cache exactly what the grid needs.
        """

    @abstractmethod
    def fit(self, texts: Sequence[str], labels: np.ndarray, *, seed: int) -> FitOutput:
        """Train on one cell's texts and (noisy) labels; ``seed`` fixes all randomness."""
