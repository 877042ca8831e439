"""The tracker interface: where a grid's runs appear besides the results store.

A tracker is a sink. It receives plain records (a parent per experiment fingerprint, a child per
cell) and never reads the store or the spec; :mod:`noisegrid.tracking` decides what to send and
when. Every method may raise whatever its client raises (a server that is down, a refused
request): the caller keeps the results in the store and says once what was not logged.

Idempotence is the tracker's half of the contract: :meth:`Tracker.find_or_create_parent` finds a
parent by its fingerprint tag before creating one, and :meth:`Tracker.logged_cells` lists the cells
already logged under it, so a re-run, a resume or a second export adds no duplicates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar


@dataclass(frozen=True)
class ParentRecord:
    """One experiment (one fingerprint): the parent of its cells' runs."""

    fingerprint: str
    name: str
    """The run's display name."""
    params: Mapping[str, str]
    """The resolved spec, flattened (``grid.sizes``, ``backend.name``, ...)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Fingerprint, noisegrid version, dataset identity, noise model."""


@dataclass(frozen=True)
class CellRecord:
    """One stored cell: a child run of its experiment's parent."""

    key: str
    """The cell's key, ``"size/noise_rate/seed"``: what finds it again."""
    name: str
    """The run's display name."""
    params: Mapping[str, str | int | float]
    """``train_size``, ``noise_rate``, ``noise_model``, ``seed``."""
    metrics: Mapping[str, float]
    """``accuracy``, ``macro_f1``, ``log_loss``, ``realized_noise``, ``fit_seconds``, ...
    (finite values only)."""
    tags: Mapping[str, str] = field(default_factory=dict)


class Tracker(ABC):
    """Base of a tracker; subclasses register with :data:`noisegrid.trackers.TRACKERS`.

    Parameters
    ----------
    uri : str
        Where the tracker lives (an MLflow tracking URI); see :meth:`default_uri`.
    experiment : str
        The tracker's experiment (project) the runs go into.
    """

    name: ClassVar[str]
    extra: ClassVar[str] = ""
    """The pip extra that installs the tracker's client, for the missing-dependency error."""

    def __init__(self, *, uri: str, experiment: str) -> None:
        self.uri = uri
        self.experiment = experiment

    @classmethod
    def check(cls) -> None:
        """Raise :class:`~noisegrid.errors.MissingDependencyError` if the client is missing."""

    @classmethod
    @abstractmethod
    def default_uri(cls, store_folder: Path) -> str:
        """Where runs go when ``[track] uri`` is not set (``store_folder``: the store's folder)."""

    @abstractmethod
    def find_or_create_parent(self, parent: ParentRecord) -> str:
        """The id of the parent run tagged with ``parent.fingerprint``, created if there is none."""

    @abstractmethod
    def logged_cells(self, parent_id: str) -> set[str]:
        """Keys of the cells fully logged under ``parent_id``."""

    @abstractmethod
    def log_cell(self, parent_id: str, cell: CellRecord) -> None:
        """Log one cell as a child run of ``parent_id`` (completing a half-logged one)."""

    @abstractmethod
    def attach(
        self, parent_id: str, *, files: Sequence[tuple[Path, str]], metrics: Mapping[str, float]
    ) -> None:
        """Attach files (each with its folder in the run, ``""`` for the top) and log metrics
        of the whole experiment on the parent run."""

    def describe(self) -> str:
        """Where the runs go, for messages: ``"mlflow at sqlite:///runs/mlflow.db"``."""
        return f"{self.name} at {self.uri}"
