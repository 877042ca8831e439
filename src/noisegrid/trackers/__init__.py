"""Trackers: optional sinks for results (MLflow), chosen by ``[track] to``.

Each module in this package registers its tracker with :data:`TRACKERS`; a tracker whose client
is not installed still registers, and its :meth:`~Tracker.check` names the pip extra. The store
stays the source of truth: :mod:`noisegrid.tracking` sends it to a tracker.
"""

from __future__ import annotations

import importlib
import pkgutil

from .._registry import Registry
from .base import CellRecord, ParentRecord, Tracker

TRACKERS: Registry[Tracker] = Registry("tracker", key="track.to")
TRACKERS.plan("wandb")

_loaded = False


def _load_builtin_trackers() -> None:
    global _loaded
    if _loaded:
        return
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "base":
            importlib.import_module(f"{__name__}.{mod.name}")
    _loaded = True


def get_tracker_class(name: str) -> type[Tracker]:
    """The tracker class registered as ``name``; the error lists the valid names."""
    _load_builtin_trackers()
    return TRACKERS.get(name)


__all__ = ["TRACKERS", "CellRecord", "ParentRecord", "Tracker", "get_tracker_class"]
