"""Label-noise models and exact, nested noise injection.

Every noise model produces a :class:`FlipPlan` for one subsample: an *order* in which positions get
flipped and the *target* label each position takes when flipped. Injecting noise at rate ``p``
flips exactly the first ``round(p × n)`` positions of the order (round half up), so

- the count is exact (never a Bernoulli draw that lands near the rate),
- the flipped set at 5% is a subset of the flipped set at 10% (nesting across rates), and
- clean labels and the flipped mask are kept with the result.

Models register with :data:`NOISE_MODELS` (``@NOISE_MODELS.register("name")``) and read their
options from the ``[noise]`` section. ``uniform`` is the reference experiment's noise: flips spread
evenly over classes; binary labels go to the other class, K > 2 to a uniformly chosen other class.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from ._registry import Registry
from .errors import DataError
from .sampling import STREAM_NOISE, rng_for

if TYPE_CHECKING:
    from pathlib import Path

    from .config import ExperimentSpec
    from .data import Corpus


def n_flips(noise_rate: float, n: int) -> int:
    """Number of labels flipped at ``noise_rate`` in a set of ``n``: round half up.

    Examples
    --------
    >>> n_flips(0.025, 1000), n_flips(0.25, 10), n_flips(0.0, 50)
    (25, 3, 0)
    """
    return math.floor(noise_rate * n + 0.5 + 1e-9)


@dataclass(frozen=True)
class FlipPlan:
    """Which positions flip, in which order, and to what.

    Attributes
    ----------
    order : ndarray of int, shape (n_flippable,)
        Positions into the subsample; the first ``m`` are the flipped set at ``m`` flips.
    targets : ndarray of int, shape (n,)
        The noisy label each position takes if flipped (differs from the clean label at every
        position in ``order``).
    """

    order: np.ndarray
    targets: np.ndarray

    @property
    def max_flips(self) -> int:
        return len(self.order)


@dataclass(frozen=True)
class NoisyLabels:
    """Result of :func:`inject_noise`.

    Attributes
    ----------
    labels : ndarray of int, shape (n,)
        Observed (noisy) labels.
    clean : ndarray of int, shape (n,)
        The true labels.
    flipped : ndarray of bool, shape (n,)
        ``labels != clean``.
    """

    labels: np.ndarray
    clean: np.ndarray
    flipped: np.ndarray

    @property
    def n_flipped(self) -> int:
        return int(self.flipped.sum())

    @property
    def realized_rate(self) -> float:
        return self.n_flipped / len(self.labels) if len(self.labels) else 0.0


def apply_plan(labels: np.ndarray, noise_rate: float, plan: FlipPlan) -> NoisyLabels:
    """Flip exactly ``round(noise_rate × n)`` labels following ``plan``.

    Raises
    ------
    DataError
        The plan cannot reach the rate (fewer flippable positions than flips needed).
    """
    clean = np.asarray(labels, dtype=np.int64)
    m = n_flips(noise_rate, len(clean))
    if m > plan.max_flips:
        raise DataError(
            f"noise rate {noise_rate} needs {m} flipped labels out of {len(clean)}, but this noise "
            f"model can flip at most {plan.max_flips} (rate {plan.max_flips / len(clean):.4g}); "
            "lower grid.noise_rates"
        )
    noisy = clean.copy()
    chosen = plan.order[:m]
    noisy[chosen] = plan.targets[chosen]
    flipped = noisy != clean
    if int(flipped.sum()) != m:  # a plan bug, not a user error
        raise RuntimeError(f"flip plan flipped {int(flipped.sum())} labels instead of {m}")
    return NoisyLabels(labels=noisy, clean=clean, flipped=flipped)


def balanced_order(labels: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """All positions, ordered so that every prefix is spread as evenly as possible over classes.

    Each class's positions are shuffled; the order takes one from each class in turn (the class
    sequence itself is shuffled), so after ``m`` flips per-class counts differ by at most one.
    """
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(n_classes)]
    turn = rng.permutation(n_classes)
    out: list[int] = []
    depth = max((len(p) for p in per_class), default=0)
    for i in range(depth):
        out.extend(int(per_class[c][i]) for c in turn if i < len(per_class[c]))
    return np.asarray(out, dtype=np.int64)


def other_class(labels: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """For each label, a uniformly chosen *different* class (binary: the other class)."""
    labels = np.asarray(labels, dtype=np.int64)
    if n_classes == 2:
        return 1 - labels
    return (labels + rng.integers(1, n_classes, size=len(labels))) % n_classes


class NoOptions(BaseModel):
    """A noise model without options: any key under ``[noise]`` is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoiseModel(ABC):
    """Base class of noise models.

    Subclasses set ``Options`` (a pydantic model of their ``[noise]`` keys) and implement
    :meth:`plan`. :meth:`check` validates against the data before any work; :meth:`prepare` does
    heavy one-time work per worker (e.g. fitting a reference model).
    """

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: BaseModel, *, n_classes: int) -> None:
        self.options = options
        self.n_classes = n_classes

    def check(self, corpus: Corpus, spec: ExperimentSpec) -> None:
        """Refuse, with a :class:`~noisegrid.errors.DataError`, a grid this model cannot serve."""

    def prepare(
        self,
        corpus: Corpus,
        *,
        seeds: tuple[int, ...],
        train_size: int | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        """One-time work before cells run (per worker).

        ``train_size`` is the grid's largest size: the rows any cell of seed ``s`` can use are
        ``subsample_per_class(corpus.train.labels, train_size, seed=s)`` (None: the largest
        class-balanced size of the corpus). ``cache_dir`` is where slow results may be cached,
        keyed by content (None: no disk cache).
        """

    @abstractmethod
    def plan(self, labels: np.ndarray, *, indices: np.ndarray, seed: int) -> FlipPlan:
        """The flip plan for one subsample.

        Parameters
        ----------
        labels : ndarray of int, shape (n,)
            Clean labels of the subsample.
        indices : ndarray of int, shape (n,)
            Their row indices in the corpus's training split (for per-example signals).
        seed : int
            Repeat seed; use :func:`~noisegrid.sampling.rng_for` with ``STREAM_NOISE`` and ``n``.
        """


NOISE_MODELS: Registry[NoiseModel] = Registry("noise model", key="grid.noise_model")


def get_noise_model_class(name: str) -> type[NoiseModel]:
    """The noise model class registered as ``name``; the error lists the valid names."""
    _load_builtin_models()
    return NOISE_MODELS.get(name)


def make_noise_model(spec: ExperimentSpec, *, n_classes: int) -> NoiseModel:
    """Instantiate the spec's noise model with its validated ``[noise]`` options."""
    from ._registry import validate_options

    cls = get_noise_model_class(spec.grid.noise_model_name)
    options = validate_options(
        cls.Options, spec.noise.options(), where=f"[noise] of noise model '{cls.name}'"
    )
    return cls(options, n_classes=n_classes)


@NOISE_MODELS.register("uniform")
class UniformNoise(NoiseModel):
    """The reference experiment's noise: flips spread evenly over classes, uniform within a class.

    Binary labels flip to the other class; with K > 2 classes a flipped label goes to a uniformly
    chosen other class. As a noise matrix (entry [i, j] = P(observed j | true i), rows sum to 1):
    ``1 - p`` on the diagonal and ``p / (K - 1)`` elsewhere.
    """

    def plan(self, labels: np.ndarray, *, indices: np.ndarray, seed: int) -> FlipPlan:
        rng = rng_for(seed, STREAM_NOISE, len(labels))
        order = balanced_order(labels, self.n_classes, rng)
        return FlipPlan(order=order, targets=other_class(labels, self.n_classes, rng))


def inject_noise(
    labels: np.ndarray,
    noise_rate: float,
    *,
    seed: int,
    n_classes: int | None = None,
) -> NoisyLabels:
    """Flip exactly ``round(noise_rate × n)`` labels uniformly, spread evenly over classes.

    Parameters
    ----------
    labels : ndarray of int, shape (n,)
        Clean class ids ``0..K-1``.
    noise_rate : float
        Fraction of labels to flip, in ``[0, 1 - 1/K)``.
    seed : int
        Repeat seed; for one seed, the flipped set grows with the rate (nested).
    n_classes : int, optional
        K; defaults to ``labels.max() + 1``.

    Returns
    -------
    NoisyLabels

    Examples
    --------
    >>> y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    >>> out = inject_noise(y, 0.25, seed=0)
    >>> out.n_flipped, np.bincount(out.clean[out.flipped]).tolist()
    (2, [1, 1])
    """
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1 if n_classes is None else n_classes
    limit = 1.0 - 1.0 / k
    if not 0.0 <= noise_rate < limit:
        raise DataError(f"noise_rate must be in [0, {limit:g}) for {k} classes; got {noise_rate}")
    model = UniformNoise(NoOptions(), n_classes=k)
    plan = model.plan(labels, indices=np.arange(len(labels)), seed=seed)
    return apply_plan(labels, noise_rate, plan)


def _load_builtin_models() -> None:
    # Import side effect: modules under noise_models/ register themselves.
    import importlib
    import pkgutil

    from . import noise_models

    for mod in pkgutil.iter_modules(noise_models.__path__):
        importlib.import_module(f"{noise_models.__name__}.{mod.name}")
