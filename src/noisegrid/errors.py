"""The package's exception types.

Every error a user can act on derives from :class:`NoisegridError`; the CLI prints its message as
one line on stderr and exits non-zero, without a traceback.
"""

from __future__ import annotations


class NoisegridError(Exception):
    """Base class for errors the user can fix (bad config, bad data, missing extra)."""


class ConfigError(NoisegridError):
    """The experiment spec is invalid: unknown key, bad value, unknown backend or noise model."""


class DataError(NoisegridError):
    """The dataset cannot serve the experiment: missing columns, too few examples, empty texts."""


class MissingDependencyError(NoisegridError):
    """An optional dependency is not installed; the message names the pip extra."""


class StoreError(NoisegridError):
    """The results store cannot be used: locked, not a store, damaged, full or read-only disk."""


class OutputError(NoisegridError):
    """An output (export file, report folder) cannot be written: full or read-only disk, ..."""


class BackendError(NoisegridError):
    """A backend cannot run as configured (model not found, cannot classify, ...)."""


class AnalysisError(NoisegridError):
    """A results table cannot answer the question asked (missing columns, too few cells, ...)."""


class TrackerError(NoisegridError):
    """A tracker (MLflow) cannot be reached or refused a request; the store is intact."""


def require(module: str, *, extra: str, purpose: str) -> None:
    """Raise :class:`MissingDependencyError` if ``module`` cannot be imported.

    Parameters
    ----------
    module : str
        Importable module name, e.g. ``"torch"``.
    extra : str
        The pip extra of noisegrid that installs it, e.g. ``"transformers"``.
    purpose : str
        What needs it, for the message, e.g. ``"the 'finetune' backend"``.
    """
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(
            f"{purpose} needs the Python package '{module}', which is not installed; "
            f"install it with: pip install 'noisegrid[{extra}]'"
        )
