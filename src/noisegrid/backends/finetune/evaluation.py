"""Predictions of a fine-tuned model: class probabilities in large length-sorted batches.

torch is imported only inside functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..base import Predictor
from ..hf.device import autocast
from ..hf.tokens import padded_inputs

if TYPE_CHECKING:
    import torch

    from ..hf.assets import ModelAssets
    from ..hf.tokens import TokenCache


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
