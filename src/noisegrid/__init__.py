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

if TYPE_CHECKING:
    __version__: str

    from .advising import advise
    from .analysis import Analysis, TradeoffResult, analyze, tradeoff
    from .analysis.advise import AdviceResult
    from .auditing import AuditResult, audit, load_audit
    from .config import ExperimentSpec, load_spec
    from .data import Corpus, Split, check_corpus, load_corpus
    from .errors import (
        AnalysisError,
        BackendError,
        ConfigError,
        DataError,
        MissingDependencyError,
        NoisegridError,
        OutputError,
        StoreError,
        TrackerError,
    )
    from .evaluation import draw_test_sample, score
    from .grid import Cell, expand_grid
    from .noise import FlipPlan, NoiseModel, NoisyLabels, apply_plan, inject_noise
    from .planning import ExperimentPlan, plan_experiment
    from .records import CellResult
    from .report import build_report
    from .results import experiment_status, export_results, load_results
    from .runner import RunSummary, run_experiment
    from .sampling import subsample_per_class
    from .store import ResultStore
    from .tracking import export_to_tracker, track_report, track_results
    from .worker import Worker

# Every public name loads on first use, from the module that defines it. Importing the package
# then costs almost nothing, so the command line starts fast (``noisegrid status --help`` needs
# none of numpy, pandas, scikit-learn or pydantic) and worker processes never load the analysis
# stack (scipy, statsmodels, plotly).
_LAZY = {
    "Analysis": "analysis",
    "TradeoffResult": "analysis",
    "analyze": "analysis",
    "tradeoff": "analysis",
    "ExperimentSpec": "config",
    "load_spec": "config",
    "Corpus": "data",
    "Split": "data",
    "check_corpus": "data",
    "load_corpus": "data",
    "AnalysisError": "errors",
    "BackendError": "errors",
    "ConfigError": "errors",
    "DataError": "errors",
    "MissingDependencyError": "errors",
    "NoisegridError": "errors",
    "OutputError": "errors",
    "StoreError": "errors",
    "TrackerError": "errors",
    "draw_test_sample": "evaluation",
    "score": "evaluation",
    "Cell": "grid",
    "expand_grid": "grid",
    "FlipPlan": "noise",
    "NoiseModel": "noise",
    "NoisyLabels": "noise",
    "apply_plan": "noise",
    "inject_noise": "noise",
    "build_report": "report",
    "ExperimentPlan": "planning",
    "plan_experiment": "planning",
    "AuditResult": "auditing",
    "audit": "auditing",
    "load_audit": "auditing",
    "AdviceResult": "analysis.advise",
    "advise": "advising",
    "experiment_status": "results",
    "export_results": "results",
    "load_results": "results",
    "CellResult": "records",
    "RunSummary": "runner",
    "Worker": "worker",
    "run_experiment": "runner",
    "subsample_per_class": "sampling",
    "ResultStore": "store",
    "export_to_tracker": "tracking",
    "track_report": "tracking",
    "track_results": "tracking",
    # importlib.metadata scans the installed distributions: a tenth of a second, paid on use.
    "__version__": "_version",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'noisegrid' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "AdviceResult",
    "Analysis",
    "AnalysisError",
    "AuditResult",
    "BackendError",
    "Cell",
    "CellResult",
    "ConfigError",
    "Corpus",
    "DataError",
    "ExperimentPlan",
    "ExperimentSpec",
    "FlipPlan",
    "MissingDependencyError",
    "NoiseModel",
    "NoisegridError",
    "NoisyLabels",
    "OutputError",
    "ResultStore",
    "RunSummary",
    "Split",
    "StoreError",
    "TrackerError",
    "TradeoffResult",
    "Worker",
    "__version__",
    "advise",
    "analyze",
    "apply_plan",
    "audit",
    "build_report",
    "check_corpus",
    "draw_test_sample",
    "expand_grid",
    "experiment_status",
    "export_results",
    "export_to_tracker",
    "inject_noise",
    "load_audit",
    "load_corpus",
    "load_results",
    "load_spec",
    "plan_experiment",
    "run_experiment",
    "score",
    "subsample_per_class",
    "track_report",
    "track_results",
    "tradeoff",
]
