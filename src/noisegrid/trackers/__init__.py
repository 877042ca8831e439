"""Trackers: optional sinks for results (MLflow), chosen by ``[track] to``.

Each module in this package registers its tracker with :data:`TRACKERS`; a tracker whose client
is not installed still registers, and its :meth:`~Tracker.check` names the pip extra. The store
stays the source of truth: :mod:`noisegrid.tracking` sends it to a tracker.
"""

from __future__ import annotations

from .._registry import Registry, load_members
from .base import CellRecord, ParentRecord, Tracker

TRACKERS: Registry[Tracker] = Registry("tracker", key="track.to")
TRACKERS.plan("wandb")


def _load_builtin_trackers() -> None:
    load_members(__name__, __path__)


def get_tracker_class(name: str) -> type[Tracker]:
    """The tracker class registered as ``name``; the error lists the valid names."""
    _load_builtin_trackers()
    return TRACKERS.get(name)


__all__ = ["TRACKERS", "CellRecord", "ParentRecord", "Tracker", "get_tracker_class"]
