"""Executors: where cells run (this process, worker processes, a Ray cluster)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._registry import Registry, load_members
from .base import Executor

if TYPE_CHECKING:
    from ..config import ExperimentSpec

EXECUTORS: Registry[Executor] = Registry("executor", key="run.executor")


def _load_builtin_executors() -> None:
    load_members(__name__, __path__)


def get_executor_class(name: str) -> type[Executor]:
    _load_builtin_executors()
    return EXECUTORS.get(name)


def check_executor(name: str) -> None:
    """Raise a ConfigError if ``name`` is not a known executor (called during spec validation)."""
    get_executor_class(name)


def make_executor(spec: ExperimentSpec) -> Executor:
    """The spec's executor, after its own checks (e.g. the ray extra is installed)."""
    cls = get_executor_class(spec.run.executor)
    cls.check(spec)
    return cls()


__all__ = ["EXECUTORS", "Executor", "check_executor", "get_executor_class", "make_executor"]
