"""The ground floor of the noise models: flip plans, exact nested injection, the registry.

Every noise model produces a :class:`FlipPlan` for one subsample: an *order* in which positions get
flipped and the *target* label each position takes when flipped. Injecting noise at rate ``p``
flips exactly the first ``round(p × n)`` positions of the order (round half up), so

- the count is exact (never a Bernoulli draw that lands near the rate),
- the flipped set at 5% is a subset of the flipped set at 10% (nesting across rates), and
- clean labels and the flipped mask are kept with the result.

Models register with :data:`NOISE_MODELS` (``@NOISE_MODELS.register("name")``) and read their
options from the ``[noise]`` section; each model is one module of this package (``uniform``,
``class_conditional``, ``instance``, ``real``). :func:`find_shortfall` is their shared check that
every subsample of a grid can reach the grid's noise rates.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from .._registry import Registry
from ..errors import DataError

if TYPE_CHECKING:
    from ..config import ExperimentSpec
    from ..data import Corpus


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
    return interleave_classes(per_class, rng)


def interleave_classes(per_class: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Take one item from each class's order in turn (class sequence shuffled once).

    Every prefix is spread over classes as evenly as the orders' lengths allow.

    Examples
    --------
    >>> order = interleave_classes([np.array([0, 1, 2]), np.array([5])], np.random.default_rng(0))
    >>> sorted(order[:2].tolist()), order[2:].tolist()
    ([0, 5], [1, 2])
    """
    turn = rng.permutation(len(per_class))
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


@dataclass(frozen=True)
class Reach:
    """How many labels a noise model can flip in one subsample of a grid.

    Attributes
    ----------
    size : int
        The subsample's size.
    max_flips : int
        The most labels the noise model can flip in it.
    seed : int or None
        The repeat seed, where the reach depends on it.
    """

    size: int
    max_flips: int
    seed: int | None = None

    @property
    def max_rate(self) -> float:
        return self.max_flips / self.size


@dataclass(frozen=True)
class Shortfall:
    """The smallest grid rate some subsample cannot reach (see :func:`find_shortfall`).

    Attributes
    ----------
    rate : float
        The smallest unreachable noise rate.
    n_needed : int
        Flips that rate needs in the failing subsample.
    at : Reach
        The first subsample (in the order given) that cannot reach ``rate``.
    worst : Reach
        The first subsample with the lowest reachable rate (the grid's maximum rate).
    """

    rate: float
    n_needed: int
    at: Reach
    worst: Reach


def find_shortfall(reaches: Iterable[Reach], noise_rates: Sequence[float]) -> Shortfall | None:
    """The smallest of ``noise_rates`` some subsample cannot reach; None when all are reachable.

    Noise models call this from :meth:`NoiseModel.check` with one :class:`Reach` per subsample of
    the grid, and word the error with what they know about why a subsample falls short.

    Examples
    --------
    >>> s = find_shortfall([Reach(10, 3), Reach(20, 2)], [0.1, 0.2])
    >>> s.rate, s.n_needed, s.at.size, s.worst.max_rate
    (0.2, 4, 20, 0.1)
    >>> find_shortfall([Reach(10, 3)], [0.1, 0.2]) is None
    True
    """
    worst: Reach | None = None
    failing: tuple[float, int, Reach] | None = None
    for reach in reaches:
        if worst is None or reach.max_rate < worst.max_rate:
            worst = reach
        for rate in noise_rates:
            need = n_flips(rate, reach.size)
            if need > reach.max_flips and (failing is None or rate < failing[0]):
                failing = (rate, need, reach)
    if failing is None or worst is None:
        return None
    return Shortfall(rate=failing[0], n_needed=failing[1], at=failing[2], worst=worst)


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
    from .._registry import validate_options

    cls = get_noise_model_class(spec.grid.noise_model_name)
    options = validate_options(
        cls.Options, spec.noise.options(), where=f"[noise] of noise model '{cls.name}'"
    )
    return cls(options, n_classes=n_classes)


def _load_builtin_models() -> None:
    # Import side effect: every module of this package but base registers its model.
    from .._registry import load_members

    load_members(str(__package__), [str(Path(__file__).parent)])
