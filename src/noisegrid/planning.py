"""Planning a run: what a grid will cost on this machine, before anything long starts.

:func:`plan_experiment` checks the spec and the data exactly as ``noisegrid run`` does, expands
the grid into the sibling groups the runner will hand out (:func:`~noisegrid.worker.plan_groups`),
and asks the backend to project each one (:meth:`~noisegrid.backends.Backend.plan_cost`): the
optimiser steps and training tokens of a member, how the members stack, the memory a group needs,
and its wall time, calibrated by a short timed probe unless ``probe=False``. It never touches the
results store; the tokens it counts stay in the token cache for the run. ``noisegrid plan
CONFIG`` prints :meth:`ExperimentPlan.describe`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .backends import GroupCost, PlannedGroup, make_backend
from .config import ExperimentSpec
from .data import resolve_data_identity, resolve_test_size, texts_at
from .errors import ConfigError
from .evaluation import draw_test_sample
from .grid import expand_grid
from .runner import prepare_run
from .sampling import subsample_per_class
from .worker import default_cache_dir, plan_groups


@dataclass
class GroupPlan:
    """One sibling group of the plan (or a single cell, where groups do not pay) and its cost."""

    seed: int
    train_size: int
    noise_model: str
    n_cells: int
    cost: GroupCost | None = None


@dataclass
class ExperimentPlan:
    """What :func:`plan_experiment` projects for a spec on this machine."""

    name: str
    fingerprint: str
    backend: str
    n_cells: int
    groups: list[GroupPlan]
    device: str = ""
    notes: list[str] = field(default_factory=list)
    gpu_hour_cost: float | None = None
    n_workers: int = 1
    """Local worker processes the groups are spread over (the wall time divides by them)."""
    no_projection: str = "this backend has no cost model: no projection of time or memory"
    """What the plan says when there is no projection."""

    @property
    def seconds(self) -> float | None:
        """Projected wall time of the whole grid (None without a cost model)."""
        if not self.groups or any(g.cost is None for g in self.groups):
            return None
        total = sum(g.cost.seconds for g in self.groups if g.cost is not None)
        return total / max(self.n_workers, 1)

    @property
    def cost(self) -> float | None:
        """``gpu_hour_cost`` × projected hours (None when either is unknown)."""
        if self.gpu_hour_cost is None or self.seconds is None:
            return None
        return self.gpu_hour_cost * self.seconds / 3600

    def _describe_times(self) -> list[str]:
        """Rows of size, seed, cells and time, for a backend that projects time only."""
        lines = ["", f"{'size':>7} {'seed':>5} {'noise model':<18} {'cells':>5} {'time':>9}"]
        for g in self.groups:
            seconds = g.cost.seconds if g.cost is not None else None
            lines.append(
                f"{g.train_size:>7} {g.seed:>5} {g.noise_model:<18} {g.n_cells:>5} "
                f"{_duration(seconds):>9}"
            )
        workers = (
            f" ({self.n_workers} worker processes share the groups)" if self.n_workers > 1 else ""
        )
        lines += ["", f"projected wall time on this machine: {_duration(self.seconds)}{workers}"]
        lines.append("(the fits alone: loading the data and starting workers come on top)")
        return lines

    def describe(self) -> str:
        """The plan as text: a header, one row per group, the totals."""
        n_groups = len(self.groups)
        sizes = sorted({g.n_cells for g in self.groups})
        per = "/".join(str(s) for s in sizes)
        lines = [
            f"plan for {self.name} (fingerprint {self.fingerprint}), backend {self.backend}",
            f"{self.n_cells} cells in {n_groups} sibling groups ({per} cells each)",
        ]
        if self.device:
            lines.append(f"device: {self.device}")
        lines += [f"  {note}" for note in self.notes]
        if self.seconds is None:
            lines.append(self.no_projection)
            return "\n".join(lines)
        if all(g.cost is not None and g.cost.steps == 0 for g in self.groups):
            return "\n".join(lines + self._describe_times())
        header = (
            f"{'size':>7} {'seed':>5} {'noise model':<18} {'cells':>5} {'stacked':>9} "
            f"{'steps':>6} {'tokens':>9} {'padding':>8} {'memory':>10} {'time':>9}"
        )
        lines += ["", header]
        real = padded = 0
        for g in self.groups:
            c = g.cost
            assert c is not None
            real += c.train_tokens * g.n_cells
            padded += c.padded_tokens * g.n_cells
            chunks = _chunks(c.chunks)
            pad = c.padded_tokens / c.train_tokens - 1 if c.train_tokens else 0.0
            lines.append(
                f"{g.train_size:>7} {g.seed:>5} {g.noise_model:<18} {g.n_cells:>5} {chunks:>9} "
                f"{c.steps:>6} {_si(c.train_tokens):>9} {pad:>8.1%} "
                f"{_bytes(c.memory_bytes):>10} {_duration(c.seconds):>9}"
            )
        lines += [
            "",
            f"training tokens over all cells: {_si(real)} real, {_si(padded)} with padding "
            "(per cell: one member's steps × its batches)",
            f"projected wall time on this machine: {_duration(self.seconds)}",
        ]
        if self.cost is not None:
            unit = "GPU-hour" if self.device.startswith("cuda") else "hour of this machine"
            lines.append(
                f"cost at ${self.gpu_hour_cost:g} per {unit}: ${self.cost:,.2f} "
                f"({self.seconds / 3600:.2f} hours)"
            )
        return "\n".join(lines)


def plan_experiment(
    spec: ExperimentSpec,
    *,
    probe: bool = True,
    probe_seconds: float = 60.0,
    gpu_hour_cost: float | None = None,
) -> ExperimentPlan:
    """Project the cost of running every cell of ``spec`` on this machine.

    Parameters
    ----------
    spec : ExperimentSpec
    probe : bool, default True
        Time a few training steps (within about ``probe_seconds``) to calibrate the projection;
        False projects from FLOP counts and the device's peak rate.
    probe_seconds : float, default 60
    gpu_hour_cost : float, optional
        Price of one GPU-hour, to print the cost.

    Returns
    -------
    ExperimentPlan

    Raises
    ------
    noisegrid.errors.NoisegridError
        Invalid config, data or model (the same checks as ``noisegrid run``), or a negative
        ``gpu_hour_cost`` or ``probe_seconds``.
    """
    if gpu_hour_cost is not None and gpu_hour_cost < 0:
        raise ConfigError(f"--gpu-hour-cost must be >= 0, got {gpu_hour_cost}")
    if probe_seconds <= 0:
        raise ConfigError(f"--probe-seconds must be > 0, got {probe_seconds}")
    corpus = prepare_run(spec)
    # The fingerprint every other command prints: the data by what it is, not where it is.
    spec = resolve_data_identity(spec, cache_dir=default_cache_dir(spec))
    k = corpus.n_classes
    backend = make_backend(spec, n_classes=k, cache_dir=default_cache_dir(spec))
    test_size = resolve_test_size(corpus, spec)
    tests = {s: draw_test_sample(corpus, test_size, seed=s) for s in spec.grid.seeds}
    units: list[GroupPlan] = []
    planned: list[PlannedGroup] = []
    for variant in spec.variants():
        for group in plan_groups(variant, expand_grid(variant)):
            rows = subsample_per_class(
                corpus.train.labels, group.train_size, seed=group.seed, n_classes=k
            )
            units.append(
                GroupPlan(group.seed, group.train_size, variant.grid.noise_model_name, len(group))
            )
            planned.append(
                PlannedGroup(
                    texts=texts_at(corpus.train, rows),
                    seed=group.train_seed(),
                    n_members=len(group),
                    test_texts=texts_at(corpus.test, tests[group.seed]),
                    labels=corpus.train.labels[rows],
                )
            )
    costs = backend.plan_cost(planned, probe=probe, probe_seconds=probe_seconds)
    plan = ExperimentPlan(
        name=spec.name or "experiment",
        fingerprint=spec.fingerprint(),
        backend=spec.backend.name,
        n_cells=spec.grid.n_cells_total,
        groups=units,
        gpu_hour_cost=gpu_hour_cost,
    )
    if costs is not None:
        plan.device = costs.device
        plan.notes = list(costs.notes)
        for unit, group_cost in zip(units, costs.groups, strict=True):
            unit.cost = group_cost
        # Backends that keep a known number of threads busy run in several local processes.
        if spec.run.executor == "local" and type(backend).threads_per_worker is not None:
            from .executors.local import n_local_workers

            cells = [c for v in spec.variants() for c in expand_grid(v)]
            plan.n_workers = n_local_workers(spec, cells)
    elif not probe:
        plan.no_projection = (
            f"backend {spec.backend.name} has no count-based cost model: without the probe "
            "there is no projection of time (drop --no-probe to time one sibling group)"
        )
    else:
        plan.no_projection = (
            f"backend {spec.backend.name} has no cost model: no projection of time or memory "
            "(the plan projects finetune from FLOP counts and a timed probe, and tfidf from a "
            "timed probe)"
        )
    return plan


def _chunks(sizes: tuple[int, ...]) -> str:
    """How a group's members stack: ``11`` (all at once), ``4+4+3``, ``1 (×11)``."""
    if not sizes:
        return "-"
    if len(sizes) > 2 and len(set(sizes)) == 1:
        return f"{sizes[0]} (×{len(sizes)})"
    return "+".join(str(k) for k in sizes)


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1024:.0f} KiB"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


__all__ = ["ExperimentPlan", "GroupPlan", "plan_experiment"]
