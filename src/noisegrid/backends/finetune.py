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
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from . import BACKENDS
from . import _hf as hf
from .base import Backend, BackendContext, BackendOptions, FitOutput, Predictor

if TYPE_CHECKING:
    import torch

    from ..config import ExperimentSpec, TrainSpec
    from ..data import Corpus

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
class _Setup:
    """Per-worker assets, loaded once: resolved model, tokenizer, token cache, device."""

    info: hf.ModelInfo
    tokens: hf.TokenCache
    device: torch.device
    dtype: torch.dtype | None
    pad_id: int
    pad_multiple: int
    overrides: dict[str, Any]
    """Config values changed when loading the model (``attention_dropout``)."""


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
            train = self.context.train
            info = hf.inspect_model(
                self.options.model, need="classify", max_length=train.max_length, purpose=PURPOSE
            )
            tokenizer = hf.load_tokenizer(info.ref)
            tokens = hf.TokenCache(
                tokenizer,
                max_length=info.max_length,
                cache_dir=self.context.cache_dir,
                identity=hf.model_identity(info.ref),
            )
            device = hf.choose_device()
            if device.type == "cuda":
                # cuBLAS needs this before its first call to be deterministic.
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            overrides: dict[str, Any] = {}
            if self.options.attention_dropout is not None:
                config = hf.load_config(info.ref)
                # The attribute's name differs between architectures.
                for key in ("attention_probs_dropout_prob", "attention_dropout"):
                    if hasattr(config, key):
                        overrides[key] = self.options.attention_dropout
            self._setup = _Setup(
                info=info,
                tokens=tokens,
                device=device,
                dtype=hf.autocast_dtype(device, train.precision),
                pad_id=int(tokenizer.pad_token_id),
                pad_multiple=8 if device.type == "cuda" else 1,
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
        hf.log.info(
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
        predictor = _FinetunedPredictor(model, setup, eval_batch_size=train.eval_batch_size)
        return FitOutput(predictor=predictor, info=info)


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
            batches = hf.length_grouped_batches(lengths, train.batch_size, rng=rng)
        else:
            order = rng.permutation(n)
            batches = [order[i : i + train.batch_size] for i in range(0, n, train.batch_size)]
        loss_sum = torch.zeros((), device=device)
        n_batches = 0
        for batch in batches:
            if step >= total:
                break
            input_ids, mask = hf.pad_batch(
                [ids[i] for i in batch], pad_id=pad_id, multiple_of=pad_multiple
            )
            examples += len(batch)
            tokens += int(lengths[batch].sum())
            padded += input_ids.size
            x = torch.from_numpy(input_ids).to(device, non_blocking=True)
            m = torch.from_numpy(mask).to(device, non_blocking=True)
            y = y_all[torch.from_numpy(batch)].to(device, non_blocking=True)
            with hf.autocast(device, dtype):
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


def predict_probabilities(
    model: torch.nn.Module,
    ids: Sequence[np.ndarray],
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    pad_id: int,
    batch_size: int,
    pad_multiple: int = 1,
) -> np.ndarray:
    """Class probabilities for tokenised texts, in length-sorted batches; shape (n, n_classes)."""
    import torch

    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    out: np.ndarray | None = None
    model.eval()
    with torch.inference_mode():
        for batch in hf.sorted_batches(lengths, batch_size):
            input_ids, mask = hf.pad_batch(
                [ids[i] for i in batch], pad_id=pad_id, multiple_of=pad_multiple
            )
            x = torch.from_numpy(input_ids).to(device)
            m = torch.from_numpy(mask).to(device)
            with hf.autocast(device, dtype):
                logits = model(input_ids=x, attention_mask=m).logits
            proba = torch.softmax(logits.float(), dim=-1).cpu().numpy()
            if out is None:
                out = np.zeros((len(ids), proba.shape[1]), dtype=np.float64)
            out[batch] = proba
    return out if out is not None else np.zeros((0, 0))


class _FinetunedPredictor(Predictor):
    def __init__(self, model: torch.nn.Module, setup: _Setup, *, eval_batch_size: int) -> None:
        self.model = model
        self.setup = setup
        self.eval_batch_size = eval_batch_size

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        s = self.setup
        return predict_probabilities(
            self.model,
            s.tokens.ids(texts),
            device=s.device,
            dtype=s.dtype,
            pad_id=s.pad_id,
            batch_size=self.eval_batch_size,
            pad_multiple=s.pad_multiple,
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
