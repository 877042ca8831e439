"""``finetune``: full fine-tuning of a Hugging Face sequence-classification model (the reference).

Every cell starts from the pretrained weights (``[backend] model``: a hub id or a local folder)
with a freshly initialised classification head, and trains all weights with AdamW and a linear
learning-rate schedule for the ``[train]`` budget: ``epochs`` (default 2) or a fixed number of
``steps``. Defaults are the reference experiment's Hugging Face ``Trainer`` settings: learning rate
2e-5, batch 16, weight decay 0.01 (not on biases and normalisation weights), no warm-up, gradient
norm clipped at 1.0, truncation at the model's maximum length unless ``[train] max_length`` is set.

What makes it fast, without changing what is trained:

- each text is tokenised once per (model, max_length) and cached on disk, shared by every cell;
- batches are padded dynamically, and grouped by length (random batches of similar lengths);
- a lean loop: no per-step host synchronisation, logging or checkpoints (none are written);
- bf16 autocast on hardware with native bf16 (fp16 on GPUs without it), ``[train] precision``
  switches it; evaluation runs in large length-sorted batches.

A cell is deterministic for a given seed on the same hardware: the head's initialisation, dropout
and batch order come from the cell's seed only (torch's generators are forked, never left seeded).

This package holds the backend (options, per-worker setup, :meth:`FinetuneBackend.fit`);
:mod:`.loop` the training loop and what it is made of, :mod:`.evaluation` batched prediction.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from .. import BACKENDS, hf
from ..base import Backend, BackendContext, BackendOptions, FitOutput
from .evaluation import _FinetunedPredictor, predict_probabilities
from .loop import (
    TrainStats,
    _deterministic,
    decay_parameter_groups,
    linear_schedule,
    train_loop,
)

if TYPE_CHECKING:
    from ...config import ExperimentSpec
    from ...data import Corpus

log = logging.getLogger("noisegrid")
PURPOSE = "the 'finetune' backend"
TRAIN_KEYS = (
    "epochs",
    "steps",
    "learning_rate",
    "batch_size",
    "weight_decay",
    "warmup_ratio",
    "max_length",
    "precision",
    "eval_batch_size",
)
"""Every ``[train]`` setting: fine-tuning reads them all."""


class FinetuneOptions(BackendOptions):
    """``[backend]`` options of ``finetune`` (the hyper-parameters live under ``[train]``)."""

    model: str = "distilbert-base-uncased"
    """Hugging Face hub id or local folder of a model with a sequence-classification head."""
    max_grad_norm: float = Field(default=1.0, gt=0)
    """Gradient norm clipping, as the Hugging Face Trainer does by default."""
    group_by_length: bool = True
    """Batch examples of similar lengths together (less padding); False: plain random batches."""
    attention_dropout: float | None = Field(default=None, ge=0, lt=1)
    """Dropout on attention probabilities; None keeps the model's own (0.1 for BERT-like models,
    as in the reference). 0 lets CPUs use the fused attention kernel: about 1.7× faster training
    on a CPU, at the cost of a small change to the training recipe. GPUs fuse it either way."""


@dataclass
class _Setup(hf.ModelAssets):
    """Per-worker assets: the model's (shared by the Hugging Face backends) and the token cache."""

    tokens: hf.TokenCache
    overrides: dict[str, Any]
    """Config values changed when loading the model (``attention_dropout``)."""


@BACKENDS.register("finetune")
class FinetuneBackend(Backend):
    """Full fine-tuning with a lean PyTorch loop (AdamW, linear schedule, dynamic padding)."""

    Options = FinetuneOptions
    options: FinetuneOptions
    extra = hf.EXTRA
    train_keys = TRAIN_KEYS

    def __init__(self, options: BackendOptions, context: BackendContext) -> None:
        super().__init__(options, context)
        self._setup: _Setup | None = None

    @classmethod
    def check(cls, spec: ExperimentSpec) -> None:
        """Dependencies, the model (exists, can classify), ``max_length`` within its limit."""
        hf.check_backend_model(cls, spec, need="classify", purpose=PURPOSE)

    # -- setup -----------------------------------------------------------------------------

    def setup(self) -> _Setup:
        """Resolve the model, load its tokenizer and open the token cache (once per worker)."""
        if self._setup is None:
            assets = hf.load_model_assets(
                self.options.model, need="classify", train=self.context.train, purpose=PURPOSE
            )
            if assets.device.type == "cuda":
                # cuBLAS needs this before its first call to be deterministic.
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            overrides: dict[str, Any] = {}
            if self.options.attention_dropout is not None:
                config = hf.load_config(assets.info.ref)
                # The attribute's name differs between architectures.
                for key in ("attention_probs_dropout_prob", "attention_dropout"):
                    if hasattr(config, key):
                        overrides[key] = self.options.attention_dropout
            self._setup = _Setup(
                **vars(assets),
                tokens=assets.token_cache(self.context.cache_dir),
                overrides=overrides,
            )
        return self._setup

    def prepare(
        self, corpus: Corpus, *, train_indices: np.ndarray, test_indices: np.ndarray
    ) -> None:
        """Tokenise (or load from the cache) every text the grid can use, once."""
        setup = self.setup()
        texts = [corpus.train.texts[int(i)] for i in train_indices]
        texts += [corpus.test.texts[int(i)] for i in test_indices]
        t0 = time.perf_counter()
        before = setup.tokens.n_tokenized
        setup.tokens.ids(texts)
        log.info(
            "finetune: %d texts ready (%d tokenised, the rest cached) in %.1fs",
            len(texts),
            setup.tokens.n_tokenized - before,
            time.perf_counter() - t0,
        )

    # -- training --------------------------------------------------------------------------

    def fit(self, texts: Sequence[str], labels: np.ndarray, *, seed: int) -> FitOutput:
        """Fine-tune a fresh copy of the model on one cell; ``seed`` fixes all randomness."""
        from transformers import AutoModelForSequenceClassification

        setup = self.setup()
        train = self.context.train
        ids = setup.tokens.ids(texts)
        k = self.context.n_classes
        with hf.seeded(seed, setup.device), _deterministic(setup.device):
            model = hf.load_pretrained(
                AutoModelForSequenceClassification,
                setup.info.ref,
                head="classifier",
                num_labels=k,
                id2label={i: str(i) for i in range(k)},
                label2id={str(i): i for i in range(k)},
                problem_type="single_label_classification",
                **setup.overrides,
            )
            if getattr(model.config, "pad_token_id", None) is None:
                model.config.pad_token_id = setup.pad_id
            model.to(setup.device)
            stats = train_loop(
                model,
                ids,
                np.asarray(labels),
                train=train,
                seed=seed,
                device=setup.device,
                dtype=setup.dtype,
                pad_id=setup.pad_id,
                pad_multiple=setup.pad_multiple,
                group_by_length=self.options.group_by_length,
                max_grad_norm=self.options.max_grad_norm,
            )
        model.eval()
        truncated = sum(len(x) >= setup.info.max_length for x in ids)
        info = {
            "budget": train.budget,
            "epochs": round(stats.steps / stats.steps_per_epoch, 4),
            "steps": stats.steps,
            "batch_size": train.batch_size,
            "learning_rate": train.learning_rate,
            "weight_decay": train.weight_decay,
            "max_length": setup.info.max_length,
            "truncated_fraction": round(truncated / max(len(ids), 1), 4),
            "train_loss_first_epoch": round(stats.loss_first_epoch, 5),
            "train_loss_last_epoch": round(stats.loss_last_epoch, 5),
            "train_tokens": stats.tokens,
            "padded_tokens": stats.padded_tokens,
            "train_seconds": round(stats.seconds, 3),
            "device": str(setup.device),
            "precision": hf.precision_name(setup.dtype),
            "model_source": setup.info.ref.source,
        }
        if setup.overrides:
            info["attention_dropout"] = self.options.attention_dropout
        predictor = _FinetunedPredictor(
            model, setup, setup.tokens, eval_batch_size=train.eval_batch_size
        )
        return FitOutput(predictor=predictor, info=info)


__all__ = [
    "PURPOSE",
    "FinetuneBackend",
    "FinetuneOptions",
    "TrainStats",
    "decay_parameter_groups",
    "linear_schedule",
    "predict_probabilities",
    "train_loop",
]
