"""The fine-tuning loop: AdamW with weight-decay groups, a linear schedule, dynamic padding.

:func:`train_loop` trains a model in place for a ``[train]`` budget and returns
:class:`TrainStats`; :class:`_deterministic` switches CUDA to deterministic kernels for a block.
torch is imported only inside functions.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..hf.device import autocast
from ..hf.tokens import length_grouped_batches, pad_batch

if TYPE_CHECKING:
    import torch

    from ...config import TrainSpec


@dataclass
class TrainStats:
    """What one training run did, for the result's ``info``."""

    steps: int
    steps_per_epoch: int
    examples: int
    tokens: int
    padded_tokens: int
    loss_first_epoch: float
    loss_last_epoch: float
    seconds: float


_NO_DECAY_PATTERNS = (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")


def decay_parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay on weights, none on biases and normalisation layers.

    The same split as the Hugging Face Trainer (``get_decay_parameter_names``).
    """
    import torch

    patterns = [re.compile(p) for p in _NO_DECAY_PATTERNS]
    no_decay: set[int] = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, torch.nn.LayerNorm)
        for name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}".lower().lstrip(".")
            if is_norm or any(p.search(full) for p in patterns):
                no_decay.add(id(param))
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) not in no_decay], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0},
    ]


def linear_schedule(total_steps: int, warmup_steps: int) -> Any:
    """Learning-rate factor per step: linear warm-up, then linear decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def train_loop(
    model: torch.nn.Module,
    ids: Sequence[np.ndarray],
    labels: np.ndarray,
    *,
    train: TrainSpec,
    seed: int,
    device: torch.device,
    dtype: torch.dtype | None,
    pad_id: int,
    pad_multiple: int = 1,
    group_by_length: bool = True,
    max_grad_norm: float = 1.0,
) -> TrainStats:
    """Train ``model`` in place on tokenised examples for ``train``'s budget.

    Parameters
    ----------
    model : torch.nn.Module
        A sequence-classification model on ``device``; called with ``input_ids``,
        ``attention_mask`` and ``labels``, it returns an output with ``loss``.
    ids : sequence of ndarray
        Token ids per example (special tokens included, already truncated).
    labels : ndarray of int, shape (n,)
    train : TrainSpec
        Budget (``epochs`` or ``steps``), learning rate, batch size, weight decay, warm-up.
    seed : int
        Batch order; torch's own randomness (dropout) must be seeded by the caller.
    device, dtype
        Where to train and the autocast dtype (None: fp32).
    pad_id : int
    pad_multiple : int, default 1
        Pad batch widths up to a multiple of this (8 suits GPU tensor cores).
    group_by_length : bool, default True
    max_grad_norm : float, default 1.0

    Returns
    -------
    TrainStats
    """
    import torch

    n = len(ids)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
    steps_per_epoch = math.ceil(n / train.batch_size)
    if train.steps is not None:
        total = train.steps
    else:
        total = max(1, math.ceil(train.epochs * steps_per_epoch))
    warmup = math.ceil(total * train.warmup_ratio)
    optimizer = torch.optim.AdamW(
        decay_parameter_groups(model, train.weight_decay),
        lr=train.learning_rate,
        betas=(0.9, 0.999),
        eps=1e-8,
        fused=device.type == "cuda",
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(total, warmup))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    y_all = torch.tensor(np.asarray(labels, dtype=np.int64))
    rng = np.random.default_rng(seed)
    model.train()
    t0 = time.perf_counter()
    step = 0
    tokens = padded = examples = 0
    epoch_losses: list[Any] = []
    while step < total:
        if group_by_length:
            batches = length_grouped_batches(lengths, train.batch_size, rng=rng)
        else:
            order = rng.permutation(n)
            batches = [order[i : i + train.batch_size] for i in range(0, n, train.batch_size)]
        loss_sum = torch.zeros((), device=device)
        n_batches = 0
        for batch in batches:
            if step >= total:
                break
            input_ids, mask = pad_batch(
                [ids[i] for i in batch], pad_id=pad_id, multiple_of=pad_multiple
            )
            examples += len(batch)
            tokens += int(lengths[batch].sum())
            padded += input_ids.size
            x = torch.from_numpy(input_ids).to(device, non_blocking=True)
            m = torch.from_numpy(mask).to(device, non_blocking=True)
            y = y_all[torch.from_numpy(batch)].to(device, non_blocking=True)
            with autocast(device, dtype):
                loss = model(input_ids=x, attention_mask=m, labels=y).loss
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            # Accumulated on the device: no host synchronisation per step.
            loss_sum += loss.detach().float()
            n_batches += 1
            step += 1
        epoch_losses.append(loss_sum / max(n_batches, 1))
    first = float(epoch_losses[0])
    last = float(epoch_losses[-1])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return TrainStats(
        steps=total,
        steps_per_epoch=steps_per_epoch,
        examples=examples,
        tokens=tokens,
        padded_tokens=padded,
        loss_first_epoch=first,
        loss_last_epoch=last,
        seconds=time.perf_counter() - t0,
    )


class _deterministic:
    """Deterministic kernels on CUDA for the block (CPU kernels already are); restored after."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.previous: tuple[bool, bool] | None = None

    def __enter__(self) -> None:
        import torch

        if self.device.type == "cuda":
            self.previous = (
                torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
            )
            torch.use_deterministic_algorithms(True, warn_only=True)

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.previous is not None:
            torch.use_deterministic_algorithms(self.previous[0], warn_only=self.previous[1])
