"""The fine-tuning loop: AdamW with weight-decay groups, a linear schedule, dynamic padding.

:func:`train_loop` trains a model in place for a ``[train]`` budget and returns
:class:`TrainStats`; :class:`_deterministic` switches CUDA to deterministic kernels for a block.
torch is imported only inside functions.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Sequence
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


def step_budget(n: int, train: TrainSpec) -> tuple[int, int]:
    """(optimiser steps, steps per epoch) for ``n`` examples under ``train``'s budget."""
    steps_per_epoch = math.ceil(n / train.batch_size)
    if train.steps is not None:
        return train.steps, steps_per_epoch
    return max(1, math.ceil(train.epochs * steps_per_epoch)), steps_per_epoch


def training_batches(
    lengths: np.ndarray,
    *,
    batch_size: int,
    total: int,
    seed: int,
    group_by_length: bool,
) -> Iterator[tuple[int, np.ndarray]]:
    """The ``total`` training batches of one run, as (epoch, row indices), epoch by epoch.

    Each epoch visits every example once: random batches of similar lengths
    (:func:`~noisegrid.backends.hf.tokens.length_grouped_batches`) or plain random batches. The
    order depends on ``seed`` only, so every member of a stacked group sees the same batches as
    the cell trained alone.
    """
    n = len(lengths)
    rng = np.random.default_rng(seed)
    step = epoch = 0
    while step < total:
        if group_by_length:
            batches = length_grouped_batches(lengths, batch_size, rng=rng)
        else:
            order = rng.permutation(n)
            batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
        for batch in batches:
            if step >= total:
                return
            yield epoch, batch
            step += 1
        epoch += 1


def make_adamw(
    groups: list[dict[str, Any]], *, lr: Any, device: torch.device, capturable: bool = False
) -> torch.optim.Optimizer:
    """The reference's AdamW (betas 0.9/0.999, eps 1e-8), fused wherever torch has the kernel.

    Fused is the Hugging Face Trainer's default on GPUs and exists on CPUs since torch 2.4: one
    kernel per parameter group instead of a dozen per tensor, within 1.2e-7 of the unfused
    update on a CPU. ``capturable`` keeps the step count on the device (CUDA graphs).
    """
    import torch

    kwargs: dict[str, Any] = {"lr": lr, "betas": (0.9, 0.999), "eps": 1e-8}
    if capturable:
        kwargs["capturable"] = True
    try:
        return torch.optim.AdamW(groups, fused=device.type in ("cuda", "cpu", "mps"), **kwargs)
    except RuntimeError:  # pragma: no cover - a torch build without the fused kernel here
        return torch.optim.AdamW(groups, **kwargs)


def width_multiple(device: torch.device) -> int:
    """Batches are padded to a multiple of this width: 64 on GPUs, 1 elsewhere.

    On a GPU a few fixed widths (8 at 512 tokens) keep kernels' plans and CUDA graphs reusable
    and suit tensor cores; on a CPU padding only costs arithmetic.
    """
    return 64 if device.type == "cuda" else 1


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
    max_width: int | None = None,
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
        Pad batch widths up to a multiple of this (:func:`width_multiple`).
    max_width : int, optional
        Never pad wider than this (the truncation length).
    group_by_length : bool, default True
    max_grad_norm : float, default 1.0

    Returns
    -------
    TrainStats
    """
    import torch

    n = len(ids)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
    total, steps_per_epoch = step_budget(n, train)
    warmup = math.ceil(total * train.warmup_ratio)
    optimizer = make_adamw(
        decay_parameter_groups(model, train.weight_decay), lr=train.learning_rate, device=device
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(total, warmup))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    y_all = torch.tensor(np.asarray(labels, dtype=np.int64))
    model.train()
    t0 = time.perf_counter()
    tokens = padded = examples = 0
    loss_sums: list[Any] = []
    n_batches: list[int] = []
    batches = training_batches(
        lengths,
        batch_size=train.batch_size,
        total=total,
        seed=seed,
        group_by_length=group_by_length,
    )
    for epoch, batch in batches:
        if epoch == len(loss_sums):
            loss_sums.append(torch.zeros((), device=device))
            n_batches.append(0)
        input_ids, mask = pad_batch(
            [ids[i] for i in batch], pad_id=pad_id, multiple_of=pad_multiple, max_width=max_width
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
        loss_sums[epoch] += loss.detach().float()
        n_batches[epoch] += 1
    first = float(loss_sums[0]) / max(n_batches[0], 1)
    last = float(loss_sums[-1]) / max(n_batches[-1], 1)
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
