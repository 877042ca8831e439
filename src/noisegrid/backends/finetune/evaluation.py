"""Predictions of a fine-tuned model, or of a stack of them: class probabilities in large
length-sorted batches.

torch is imported only inside functions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..base import Predictor
from ..hf.device import autocast
from ..hf.tokens import padded_inputs
from .steps import compile_step, is_compile_error, mark_width_dynamic
from .surgery import Surgery, bind, stacked_logits

if TYPE_CHECKING:
    import torch

    from ..hf.assets import ModelAssets
    from ..hf.tokens import TokenCache
    from .stack import StackedWeights

log = logging.getLogger("noisegrid")


def predict_probabilities(
    model: torch.nn.Module,
    ids: Sequence[np.ndarray],
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    pad_id: int,
    batch_size: int,
    pad_multiple: int = 1,
    max_width: int | None = None,
) -> np.ndarray:
    """Class probabilities for tokenised texts, in length-sorted batches; shape (n, n_classes)."""
    import torch

    out: np.ndarray | None = None
    model.eval()
    batches = padded_inputs(
        ids,
        device=device,
        batch_size=batch_size,
        pad_id=pad_id,
        pad_multiple=pad_multiple,
        max_width=max_width,
    )
    with torch.inference_mode():
        for batch, x, m in batches:
            with autocast(device, dtype):
                logits = model(input_ids=x, attention_mask=m).logits
            proba = torch.softmax(logits.float(), dim=-1).cpu().numpy()
            if out is None:
                out = np.zeros((len(ids), proba.shape[1]), dtype=np.float64)
            out[batch] = proba
    return out if out is not None else np.zeros((0, 0))


def predict_stacked(
    surgery: Surgery,
    weights: StackedWeights,
    ids: Sequence[np.ndarray],
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    pad_id: int,
    batch_size: int,
    n_classes: int,
    pad_multiple: int = 1,
    max_width: int | None = None,
    compiled: bool = False,
) -> np.ndarray:
    """Class probabilities of every member, shape (K, n, n_classes), in length-sorted batches.

    ``compiled``: the forward compiled with ``torch.compile`` once per ``surgery`` (every width
    and batch one graph: a short batch is filled up to ``batch_size`` with rows that attend to one
    position, their outputs dropped); a forward that does not compile runs eagerly.

    ``surgery`` (a stack of ``weights.k`` members, for evaluation) is bound to ``weights``; under a
    low-precision ``dtype`` its linear layers to copies in that dtype, cast once here rather than
    by autocast in every batch (the same values).
    """
    import torch

    tensors = weights.tensors()
    if dtype is not None and dtype != torch.float32:
        for leaf in surgery.leaves:
            if leaf.kind == "linear":
                tensors[leaf.name] = tensors[leaf.name].to(dtype)
    bind(surgery, tensors)
    out = np.zeros((weights.k, len(ids), n_classes), dtype=np.float64)
    batches = padded_inputs(
        ids,
        device=device,
        batch_size=batch_size,
        pad_id=pad_id,
        pad_multiple=pad_multiple,
        max_width=max_width,
    )
    forward = _compiled_forward(surgery) if compiled else None
    with torch.inference_mode():
        for batch, x, m in batches:
            with autocast(device, dtype):
                logits = None
                if forward is not None:
                    xf, mf = _filled_rows(x, m, batch_size)
                    mark_width_dynamic(xf, mf)
                    try:
                        logits = forward(xf, mf)[:, : len(batch)]
                    except Exception as exc:
                        if not is_compile_error(exc):
                            raise
                        log.warning(
                            "finetune: the stacked evaluation does not compile (%s); "
                            "evaluating eagerly",
                            type(exc).__name__,
                        )
                        surgery.eager_only, forward = True, None
                if logits is None:
                    logits = stacked_logits(surgery, x, m, training=False)
            out[:, batch] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return out


def _compiled_forward(surgery: Surgery) -> Any:
    """``surgery``'s evaluation forward compiled (once, kept on the surgery); None once it failed
    to compile."""
    if surgery.eager_only:
        return None
    if surgery.compiled_forward is None:

        def forward(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            return stacked_logits(surgery, x, m, training=False)

        surgery.compiled_forward = compile_step(forward)
    return surgery.compiled_forward


def _filled_rows(x: torch.Tensor, m: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and ``m`` with rows added up to ``rows``: padding that attends to its first position
    (no empty softmax), so every evaluation batch has one shape but its width."""
    import torch

    if x.shape[0] >= rows:
        return x, m
    extra = rows - x.shape[0]
    fx = torch.zeros((extra, x.shape[1]), dtype=x.dtype, device=x.device)
    fm = torch.zeros((extra, m.shape[1]), dtype=m.dtype, device=m.device)
    fm[:, 0] = 1
    return torch.cat([x, fx]), torch.cat([m, fm])


class _FinetunedPredictor(Predictor):
    """A fine-tuned model as a cell's predictor: tokenises through the cache, predicts batched."""

    def __init__(
        self,
        model: torch.nn.Module,
        setup: ModelAssets,
        tokens: TokenCache,
        *,
        eval_batch_size: int,
        pad_multiple: int | None = None,
    ) -> None:
        self.model = model
        self.setup = setup
        self.tokens = tokens
        self.eval_batch_size = eval_batch_size
        self.pad_multiple = setup.pad_multiple if pad_multiple is None else pad_multiple

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        s = self.setup
        return predict_probabilities(
            self.model,
            self.tokens.ids(texts),
            device=s.device,
            dtype=s.dtype,
            pad_id=s.pad_id,
            batch_size=self.eval_batch_size,
            pad_multiple=self.pad_multiple,
            max_width=s.info.max_length,
        )
