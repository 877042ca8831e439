"""Records several floors pass around: the outcome of one cell.

A worker builds a :class:`CellResult`, an executor carries it to the driver, and the store writes
it; none of them needs the others to name it. This module sits below all three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .grid import Cell

__all__ = ["CellResult", "now"]


@dataclass
class CellResult:
    """The outcome of one cell, as a worker returns it to the driver."""

    cell: Cell
    status: str
    noise_model: str
    metrics: dict[str, float] = field(default_factory=dict)
    realized_noise: float | None = None
    n_flipped: int | None = None
    test_size: int | None = None
    fit_seconds: float | None = None
    predict_seconds: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    traceback: str = ""
    host: str = ""
    attempts: int = 1
    finished_at: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "done"


def now() -> str:
    """The current UTC time as an ISO 8601 string to the second (``finished_at``)."""
    return datetime.now(UTC).isoformat(timespec="seconds")
