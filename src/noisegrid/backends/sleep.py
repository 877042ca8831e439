"""``sleep``: a diagnostic backend that sleeps, then predicts the training labels' class prior.

It trains nothing, so a grid of ``sleep`` cells measures what everything around the model costs:
executor overhead per cell (``seconds = 0``), parallel speed-up and fault handling (``seconds > 0``
gives a worker something to be interrupted in). Its accuracy is that of always predicting the
majority class of the cell's noisy labels.

Examples
--------
.. code-block:: toml

    [backend]
    name = "sleep"
    seconds = 0.5
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np
from pydantic import Field

from . import BACKENDS
from .base import Backend, BackendOptions, FitOutput, Predictor


class SleepOptions(BackendOptions):
    """``[backend]`` options of ``sleep``."""

    seconds: float = Field(default=0.0, ge=0)
    """Wall-clock seconds each cell's fit sleeps."""
    fail_sizes: tuple[int, ...] = ()
    """Training sizes whose cells raise instead (to exercise failure handling)."""


class _PriorPredictor(Predictor):
    def __init__(self, prior: np.ndarray) -> None:
        self.prior = prior

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return np.tile(self.prior, (len(texts), 1))


# Hidden: a diagnostic for benchmarks and fault tests, not a model anyone should choose.
@BACKENDS.register("sleep", hidden=True)
class SleepBackend(Backend):
    """Sleeps ``seconds`` per cell and predicts the class frequencies of the training labels."""

    Options = SleepOptions
    options: SleepOptions

    def fit(self, texts: Sequence[str], labels: np.ndarray, *, seed: int) -> FitOutput:
        if len(texts) in self.options.fail_sizes:
            raise RuntimeError(
                f"the sleep backend fails cells of size {len(texts)} as configured "
                "([backend] fail_sizes)"
            )
        time.sleep(self.options.seconds)
        counts = np.bincount(np.asarray(labels), minlength=self.context.n_classes)
        prior = counts / max(1, counts.sum())
        # The process id shows which worker ran the cell, and the GPU it was given which device
        # (stored with the result's info).
        info: dict[str, object] = {"pid": os.getpid()}
        if "CUDA_VISIBLE_DEVICES" in os.environ:
            info["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
        return FitOutput(predictor=_PriorPredictor(prior), info=info)
