"""The backend interface: how models are trained on one cell or a sibling group, and scored.

A backend instance lives for a whole worker (all the cells it runs), so heavy assets — a loaded
tokenizer, cached embeddings — are loaded once in :meth:`Backend.prepare`, not once per cell.
The fixed sequence (subsample → noise → fit → evaluate) lives in the runner; backends only fit
and predict.

The runner hands a backend a *sibling group*: the cells that share one subsample and differ only in
their labels (one labeling per noise rate). :meth:`Backend.fit_group` fits them all; its default
fits one cell at a time with :meth:`Backend.fit`, and a backend overrides it where sharing pays
(one feature matrix for every labeling; K stacked transformer copies in the same kernels).
:meth:`Backend.predict_group` is the matching evaluation. With ``[run] stack = 1`` the runner calls
:meth:`Backend.fit` per cell instead (the per-cell path), which a group fit must match.
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
class PlannedGroup:
    """A sibling group as :meth:`Backend.plan_cost` sees it, before anything trains."""

    texts: Sequence[str]
    """The group's training texts (its subsample)."""
    seed: int
    """The training seed its members share."""
    n_members: int
    """Cells (labelings) in the group."""
    test_texts: Sequence[str]
    """The texts every member is evaluated on."""
    labels: np.ndarray | None = None
    """The subsample's clean labels, for a backend whose probe fits a member."""


@dataclass
class GroupCost:
    """What one sibling group costs, as a backend projects it (see :meth:`Backend.plan_cost`)."""

    seconds: float
    """Projected wall time: training, evaluation and loading, every chunk of the group."""
    steps: int = 0
    """Optimiser steps of one member."""
    train_tokens: int = 0
    """Real (non-padding) training tokens of one member."""
    padded_tokens: int = 0
    """Training tokens of one member with padding: what the arithmetic sees."""
    chunks: tuple[int, ...] = ()
    """How the members train together: the sizes of the stacked chunks (1s: one at a time)."""
    memory_bytes: int | None = None
    """Projected peak device memory while the group trains."""


@dataclass
class CostPlan:
    """A backend's projection for a list of groups (see :meth:`Backend.plan_cost`)."""

    groups: list[GroupCost]
    device: str
    notes: list[str] = field(default_factory=list)
    """How the projection was made: what was timed, what was assumed, one line each."""


@dataclass(frozen=True)
class BackendContext:
    """What a backend may know about the run, besides its options."""

    train: TrainSpec
    n_classes: int
    cache_dir: Path
    stack: int | None = None
    """``[run] stack``: the most sibling cells to fit together (None: the backend decides)."""


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
    threads_per_worker: ClassVar[int | None] = None
    """Threads one worker of this backend keeps busy; None: all the cores. ``[run] workers =
    "auto"`` runs ``cores // threads_per_worker`` local workers (one when None)."""
    uses_gpu: ClassVar[bool] = False
    """Whether the backend computes on a GPU when there is one: ``[run] workers = "auto"`` then
    runs one local worker per visible GPU, each pinned to its own."""
    train_keys: ClassVar[tuple[str, ...]] = ()
    """The ``[train]`` settings this backend reads; only these enter the fingerprint and the
    report (tfidf reads none)."""

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

    @property
    def fits_groups(self) -> bool:
        """True when this backend overrides :meth:`fit_group` (fitting siblings shares work).

        The runner uses the per-cell path for backends that do not: same results, and a cell
        that raises fails alone.
        """
        return type(self).fit_group is not Backend.fit_group

    def fit_group(
        self, texts: Sequence[str], labelings: Sequence[np.ndarray], *, seed: int
    ) -> list[FitOutput]:
        """Train one model per labeling of the same texts (the cells of a sibling group).

        Parameters
        ----------
        texts : sequence of str
            The group's training texts (its shared subsample).
        labelings : sequence of ndarray of int, each shape (len(texts),)
            One (noisy) labeling per cell, in the group's cell order.
        seed : int
            The group's training seed, the same for every member (common random numbers).

        Returns
        -------
        list of FitOutput
            One per labeling, in order; each must equal what :meth:`fit` returns for that
            labeling up to floating-point tolerance. The default calls :meth:`fit` for each; a
            backend overrides this where fitting together shares work, splitting the group into
            chunks of at most ``context.stack`` members when that is set.
        """
        return [self.fit(texts, labels, seed=seed) for labels in labelings]

    def predict_group(self, outputs: Sequence[FitOutput], texts: Sequence[str]) -> list[np.ndarray]:
        """Class probabilities of every fitted member on ``texts``; one (n, K) array each.

        The default asks each predictor in turn; a backend whose members share work at prediction
        time (a stacked model) overrides it.
        """
        return [output.predictor.predict_proba(texts) for output in outputs]

    def plan_cost(
        self, groups: Sequence[PlannedGroup], *, probe: bool, probe_seconds: float = 60.0
    ) -> CostPlan | None:
        """Projected cost of each group on this machine, for ``noisegrid plan``.

        ``probe`` allows a short timed run (a few steps) to calibrate the projection, within
        about ``probe_seconds``; without it the backend projects from counts alone. None means
        the backend has no cost model (the plan then lists cells and groups only).
        """
        return None
