"""noisegrid: more labels or cleaner labels? Measure the trade-off on real data and real models.

Run a grid of experiments (training-set size × label-noise rate × repeat seed), store every cell,
and turn the grid into an answer.

Examples
--------
>>> import noisegrid
>>> spec = noisegrid.ExperimentSpec.from_dict({
...     "grid": {"sizes": [1000, 2000], "noise_rates": [0.0, 0.1]},
...     "backend": {"name": "tfidf"},
... })
>>> spec.grid.n_cells
4
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .config import ExperimentSpec, load_spec
from .data import Corpus, Split, check_corpus, load_corpus
from .errors import (
    AnalysisError,
    BackendError,
    ConfigError,
    DataError,
    MissingDependencyError,
    NoisegridError,
    StoreError,
)
from .evaluation import draw_test_sample, score
from .grid import Cell, expand_grid
from .noise import FlipPlan, NoiseModel, NoisyLabels, apply_plan, inject_noise
from .results import experiment_status, export_results, load_results
from .runner import CellResult, RunSummary, Worker, run_experiment
from .sampling import subsample_per_class
from .store import ResultStore

if TYPE_CHECKING:
    from .analysis import Analysis, TradeoffResult, analyze, tradeoff
    from .report import build_report

# Analysis and report pull in scipy, statsmodels and plotly; worker processes never need them,
# so they load on first use.
_LAZY = {
    "Analysis": "analysis",
    "TradeoffResult": "analysis",
    "analyze": "analysis",
    "tradeoff": "analysis",
    "build_report": "report",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'noisegrid' has no attribute {name!r}")


__all__ = [
    "Analysis",
    "AnalysisError",
    "BackendError",
    "Cell",
    "CellResult",
    "ConfigError",
    "Corpus",
    "DataError",
    "ExperimentSpec",
    "FlipPlan",
    "MissingDependencyError",
    "NoiseModel",
    "NoisegridError",
    "NoisyLabels",
    "ResultStore",
    "RunSummary",
    "Split",
    "StoreError",
    "TradeoffResult",
    "Worker",
    "__version__",
    "analyze",
    "apply_plan",
    "build_report",
    "check_corpus",
    "draw_test_sample",
    "expand_grid",
    "experiment_status",
    "export_results",
    "inject_noise",
    "load_corpus",
    "load_results",
    "load_spec",
    "run_experiment",
    "score",
    "subsample_per_class",
    "tradeoff",
]
