"""The speed-ups of one stacked training step: CUDA graphs and compiled steps.

:class:`GraphedSteps` captures :class:`~.stack.StackedTrainer`'s step once per batch width and
replays it; :func:`compile_step` compiles the step's forward, loss and backward with
``torch.compile`` (:data:`COMPILE_BACKEND`), whose kernels :func:`compiled_step_cache` keeps under
the cache folder.
torch is imported only inside functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from .stack import StackedTrainer


@dataclass
class StepBatch:
    input_ids: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    """(K, rows)"""
    weights: torch.Tensor | None = None
    """(rows,): 1/n_real for real rows, 0 for rows that only fill a fixed shape (graphs)."""


class GraphedSteps:
    """The stacked training step captured as one CUDA graph per batch width, replayed per step.

    Every step of a width has the same shapes (rows filled up to ``batch_size`` with rows of zero
    loss weight), the same parameter, gradient and optimiser-state addresses (the resident stack)
    and reads its inputs from static buffers: a replay launches the whole step, forward, backward,
    clipping and AdamW, at the cost of one launch. The graphs share one memory pool (they never run
    at once). The warm-up steps before a capture change the weights and the optimiser's state;
    both are restored after it.
    """

    def __init__(self, trainer: StackedTrainer) -> None:
        import torch

        self.trainer = trainer
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[int, Any] = {}
        self.static: dict[int, StepBatch] = {}
        self.loss = torch.zeros(trainer.k, device=trainer.device)

    def capture(self, width: int) -> None:
        import torch

        t = self.trainer
        rows, dev = t.train.batch_size, t.device
        static = StepBatch(
            torch.full((rows, width), t.pad_id, dtype=torch.int64, device=dev),
            torch.ones((rows, width), dtype=torch.int64, device=dev),
            torch.zeros((t.k, rows), dtype=torch.int64, device=dev),
            torch.full((rows,), 1.0 / rows, device=dev),
        )
        saved = t.weights.clone()
        state = {
            id(p): {key: v.clone() for key, v in s.items() if torch.is_tensor(v)}
            for p, s in t.optimizer.state.items()
        }
        stream = torch.cuda.Stream(dev)
        stream.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(stream):
            for _ in range(3):
                t._step(static, self.loss)
        torch.cuda.current_stream(dev).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            t._step(static, self.loss)
        with torch.no_grad():
            for group, tensor in t.weights.flat.items():
                tensor.copy_(saved.flat[group])
            t.refresh_working()
            for p, s in t.optimizer.state.items():
                before = state.get(id(p), {})
                for key, value in s.items():
                    if not torch.is_tensor(value):
                        continue
                    if key in before:
                        value.copy_(before[key])
                    else:  # made by the warm-up: a fresh state is zeros
                        value.zero_()
        self.graphs[width] = graph
        self.static[width] = static

    def step(self, x: np.ndarray, m: np.ndarray, y: torch.Tensor, loss_sum: torch.Tensor) -> None:
        # The batch filled up to the captured shape, as a compiled step fills it, then copied
        # into the graph's static inputs.
        filled = self.trainer.filled(x, m, y)
        static = self.static[x.shape[1]]
        assert static.weights is not None and filled.weights is not None
        static.input_ids.copy_(filled.input_ids)
        static.mask.copy_(filled.mask)
        static.labels.copy_(filled.labels)
        static.weights.copy_(filled.weights)
        self.loss.zero_()
        self.graphs[x.shape[1]].replay()
        loss_sum += self.loss


COMPILE_BACKEND = "inductor"
"""The ``torch.compile`` backend of compiled steps (the tests trace with ``aot_eager``)."""


def compile_step(fn: Any) -> Any:
    """``torch.compile(fn)``, static shapes but the ones :func:`mark_width_dynamic` marks (the
    room for more graphs is for models whose code specialises on the width anyway)."""
    import torch

    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), 64))
    return torch.compile(fn, dynamic=False, backend=COMPILE_BACKEND)


def mark_width_dynamic(*tensors: torch.Tensor) -> None:
    """Mark dimension 1 (the batch width) of ``tensors`` as a symbol for ``torch.compile``: one
    graph serves every width instead of one compile per width."""
    import torch._dynamo

    for tensor in tensors:
        torch._dynamo.mark_dynamic(tensor, 1)


def is_compile_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from ``torch.compile`` (tracing, lowering or the backend's
    compiler), not from the model's arithmetic (out of memory and the like)."""
    module = type(exc).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor", "torch.fx", "torch._subclasses"))


def compiled_step_cache(cache_dir: Any) -> None:
    """Keep torch's compiled kernels under noisegrid's cache folder, so that a later run (and
    every worker) reuses them instead of compiling again; the user's own setting wins."""
    import os
    from pathlib import Path

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(cache_dir) / "torch-compile"))
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
