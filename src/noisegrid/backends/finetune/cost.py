"""What a fine-tuning grid will cost on this machine, before it runs (``noisegrid plan``).

For every sibling group the exact batches are known in advance (they depend on the group's seed
and token lengths only, :func:`~.loop.training_batches`): steps, real and padded tokens, and how
many steps meet each batch width. A step's cost is modelled as ``overhead + FLOPs / rate``, with
FLOPs counted per member (6 × non-embedding parameters × tokens, plus attention's
12 × layers × hidden × width² per sequence) times the members stacked. The rate and the overhead
come from a short timed probe — a few stacked steps at widths the grid uses, within a time budget
— or, without a probe, from the device's peak arithmetic rate at an assumed utilisation.
Evaluation is projected at the training rate per FLOP (a forward pass is a third of a step's).

torch is imported only inside functions.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..hf.tokens import inference_batches
from .loop import step_budget, training_batches
from .stack import Arch

if TYPE_CHECKING:
    import torch

    from ...config import TrainSpec

PEAK_TFLOPS: dict[str, tuple[float, float]] = {
    "H200": (989.0, 67.0),
    "H100": (989.0, 67.0),
    "A100": (312.0, 19.5),
    "L40S": (362.0, 91.6),
    "A10G": (125.0, 31.2),
    "L4": (121.0, 30.3),
    "A10": (125.0, 31.2),
    "T4": (65.0, 8.1),
    "V100": (125.0, 15.7),
}
"""Dense peak TFLOP/s by GPU name: (bf16/fp16 tensor cores, fp32), from the vendors' sheets."""

ASSUMED_UTILISATION = 0.4
"""Share of the peak a stacked step reaches, for projections without a probe (the target of a
well-fed transformer step on a datacentre GPU)."""

CPU_GFLOPS_PER_CORE = 25.0
"""A CPU core's sustained fp32 rate on transformer training, for projections without a probe."""


@dataclass
class Batches:
    """The training batches of one member of a group, summarised."""

    steps: int
    tokens: int
    padded_tokens: int
    shapes: Counter[tuple[int, int]]
    """(rows, width) → number of steps."""


def group_batches(
    lengths: np.ndarray,
    *,
    train: TrainSpec,
    seed: int,
    group_by_length: bool,
    pad_multiple: int,
    max_width: int,
) -> Batches:
    """The exact batches a group's members train on (as :func:`~.loop.train_loop` draws them)."""
    total, _ = step_budget(len(lengths), train)
    shapes: Counter[tuple[int, int]] = Counter()
    tokens = padded = 0
    for _, rows in training_batches(
        lengths,
        batch_size=train.batch_size,
        total=total,
        seed=seed,
        group_by_length=group_by_length,
    ):
        width = padded_width(int(lengths[rows].max()), pad_multiple, max_width)
        shapes[(len(rows), width)] += 1
        tokens += int(lengths[rows].sum())
        padded += len(rows) * width
    return Batches(steps=total, tokens=tokens, padded_tokens=padded, shapes=shapes)


def eval_shapes(
    lengths: np.ndarray,
    *,
    batch_size: int,
    pad_multiple: int,
    max_width: int,
    device_type: str,
) -> Counter[tuple[int, int]]:
    """(rows, width) → number of the evaluation batches over ``lengths`` on this kind of device."""
    shapes: Counter[tuple[int, int]] = Counter()
    for batch in inference_batches(lengths, batch_size, device_type=device_type):
        shapes[(len(batch), padded_width(int(lengths[batch].max()), pad_multiple, max_width))] += 1
    return shapes


def padded_width(longest: int, multiple: int, max_width: int) -> int:
    """The width :func:`~noisegrid.backends.hf.tokens.pad_batch` pads a batch to."""
    return max(longest, min(-(-longest // multiple) * multiple, max_width))


def body_params(arch: Arch) -> int:
    """Parameters that multiply activations (all but the embedding tables, which are looked up)."""
    tables = (arch.vocab + arch.positions + arch.type_vocab) * arch.hidden
    return arch.n_params() - tables


def train_flops(arch: Arch, rows: int, width: int) -> float:
    """Floating-point operations of one member's training step (forward and backward)."""
    dense = 6.0 * body_params(arch) * rows * width
    attention = 12.0 * arch.n_layers * arch.hidden * rows * width**2
    return dense + attention


def eval_flops(arch: Arch, rows: int, width: int) -> float:
    """Floating-point operations of one member's forward pass."""
    return train_flops(arch, rows, width) / 3.0


@dataclass
class StepModel:
    """Seconds of one step of K stacked members: ``overhead + K × FLOPs / rate``."""

    overhead: float
    rate: float
    """FLOP/s."""

    def train_seconds(self, arch: Arch, k: int, rows: int, width: int) -> float:
        return self.overhead + k * train_flops(arch, rows, width) / self.rate

    def eval_seconds(self, arch: Arch, k: int, rows: int, width: int) -> float:
        return k * eval_flops(arch, rows, width) / self.rate


def peak_model(device: torch.device, *, low_precision: bool) -> tuple[StepModel, str]:
    """A :class:`StepModel` from the device's peak rate at :data:`ASSUMED_UTILISATION`."""
    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for key, v in PEAK_TFLOPS.items() if key in name), (312.0, 19.5))
        tflops = peak[0] if low_precision else peak[1]
        kind = "bf16 tensor-core" if low_precision else "fp32"
        rate = tflops * 1e12 * ASSUMED_UTILISATION
        note = (
            f"no probe: FLOPs at {ASSUMED_UTILISATION:.0%} of {tflops:g} TFLOP/s ({kind} peak "
            f"of {name}), model loads 1 s each"
        )
        return StepModel(overhead=0.0, rate=rate), note
    cores = torch.get_num_threads()
    rate = CPU_GFLOPS_PER_CORE * 1e9 * cores
    note = (
        f"no probe: FLOPs at an assumed {CPU_GFLOPS_PER_CORE:g} GFLOP/s per CPU thread "
        f"× {cores}, model loads 1 s each"
    )
    return StepModel(overhead=0.0, rate=rate), note


@dataclass
class ProbePoint:
    k: int
    rows: int
    width: int
    seconds: float


def fit_step_model(arch: Arch, points: Sequence[ProbePoint]) -> StepModel:
    """Least-squares ``overhead + FLOPs / rate`` through the timed points (overhead ≥ 0)."""
    x = np.array([p.k * train_flops(arch, p.rows, p.width) for p in points])
    y = np.array([p.seconds for p in points])
    if len(points) >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        if slope > 0 and intercept >= 0:
            return StepModel(overhead=float(intercept), rate=float(1.0 / slope))
    return StepModel(overhead=0.0, rate=float(x.sum() / max(y.sum(), 1e-12)))


def probe_steps(
    arch: Arch,
    timer: Callable[[int, int, int], float],
    *,
    k_plan: int,
    rows: int,
    widths: Sequence[int],
    budget: float,
) -> list[ProbePoint]:
    """Time a few steps within ``budget`` seconds: the cheapest first, then what fits.

    ``timer(k, width, n_steps)`` returns seconds per step of ``k`` stacked members after one
    warm-up step of its own. The first point (one member at the narrowest width) gauges the
    machine; then, in order, the widest and a middle width at the planned stack size, the same at
    one member, and the narrowest at the planned size are timed where the model fitted so far
    predicts they fit the remaining budget (3 timed steps where that fits, else 1). At least two
    points are timed when the grid has two widths or a stack, so that a per-step overhead can be
    told from the arithmetic.
    """
    widths = sorted(set(widths))
    t0 = time.perf_counter()
    points = [ProbePoint(1, rows, widths[0], timer(1, widths[0], 1))]
    middle, widest = widths[len(widths) // 2], widths[-1]
    candidates = [(k_plan, widest), (k_plan, middle), (1, widest), (1, middle), (k_plan, widths[0])]
    todo = [c for c in dict.fromkeys(candidates) if c != (1, widths[0])]
    for i, (k, width) in enumerate(todo):
        step = fit_step_model(arch, points).train_seconds(arch, k, rows, width)
        left = budget - (time.perf_counter() - t0)
        share = left / (len(todo) - i)
        if 4 * step <= share:
            points.append(ProbePoint(k, rows, width, timer(k, width, 3)))
        elif 2 * step <= left:
            points.append(ProbePoint(k, rows, width, timer(k, width, 1)))
    if len(points) == 1 and todo:
        # Nothing else fitted the budget: the cheapest second point, whatever it costs.
        k, width = min(todo, key=lambda c: c[0] * train_flops(arch, rows, c[1]))
        points.append(ProbePoint(k, rows, width, timer(k, width, 1)))
    return points


def describe_points(points: Sequence[ProbePoint]) -> str:
    parts = [f"K={p.k} × {p.rows} × {p.width} tokens {p.seconds:.3g} s" for p in points]
    return "probe: " + "; ".join(parts)


def format_rate(rate: float) -> str:
    for unit, scale in (("TFLOP/s", 1e12), ("GFLOP/s", 1e9)):
        if rate >= scale:
            return f"{rate / scale:.3g} {unit}"
    return f"{rate / 1e6:.3g} MFLOP/s"


def chunk_seconds(
    model: StepModel,
    arch: Arch,
    k: int,
    batches: Batches,
    evals: Counter[tuple[int, int]],
    load_seconds: float,
) -> float:
    """Wall time of one stacked chunk of ``k`` members: training, evaluation and its load."""
    train = sum(n * model.train_seconds(arch, k, r, w) for (r, w), n in batches.shapes.items())
    evaluation = sum(n * model.eval_seconds(arch, k, r, w) for (r, w), n in evals.items())
    return train + evaluation + load_seconds


__all__ = [
    "ASSUMED_UTILISATION",
    "PEAK_TFLOPS",
    "Batches",
    "ProbePoint",
    "StepModel",
    "chunk_seconds",
    "eval_flops",
    "eval_shapes",
    "fit_step_model",
    "group_batches",
    "peak_model",
    "probe_steps",
    "train_flops",
]
