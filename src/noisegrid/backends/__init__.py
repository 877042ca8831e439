"""Backends: from TF-IDF + logistic regression to fine-tuning a transformer.

Each module in this package registers its backend with :data:`BACKENDS`. Backends whose optional
dependencies are missing still register; their :meth:`~Backend.check` names the pip extra.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING

from .._registry import Registry, load_members, validate_options
from .base import (
    Backend,
    BackendContext,
    BackendOptions,
    CostPlan,
    FitOutput,
    GroupCost,
    PlannedGroup,
    Predictor,
)

if TYPE_CHECKING:
    from ..config import ExperimentSpec

BACKENDS: Registry[Backend] = Registry("backend", key="backend.name")


def _load_builtin_backends() -> None:
    load_members(__name__, __path__, shared=("base", "hf"))  # shared parts, not members


def get_backend_class(name: str) -> type[Backend]:
    """The backend class registered as ``name``; the error lists the valid names.

    A built-in backend lives in the module of its name, which is imported alone: checking a
    tfidf config does not import the transformer backends. Any other name loads every built-in
    backend first, so that the error can list them.
    """
    if name not in BACKENDS.names(include_hidden=True) and name.isidentifier():
        builtin = {m.name for m in pkgutil.iter_modules(__path__)} - {"base", "hf"}
        if name in builtin:
            importlib.import_module(f"{__name__}.{name}")
    if name not in BACKENDS.names(include_hidden=True):
        _load_builtin_backends()
    return BACKENDS.get(name)


def make_backend(spec: ExperimentSpec, *, n_classes: int, cache_dir: Path) -> Backend:
    """Instantiate the spec's backend with its validated options."""
    cls = get_backend_class(spec.backend.name)
    options = validate_options(
        cls.Options, spec.backend_options(), where=f"[backend] of backend '{cls.name}'"
    )
    stack = spec.run.stack if isinstance(spec.run.stack, int) else None
    context = BackendContext(
        train=spec.train, n_classes=n_classes, cache_dir=cache_dir, stack=stack
    )
    return cls(options, context)  # type: ignore[arg-type]


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendContext",
    "BackendOptions",
    "CostPlan",
    "FitOutput",
    "GroupCost",
    "PlannedGroup",
    "Predictor",
    "get_backend_class",
    "make_backend",
]
