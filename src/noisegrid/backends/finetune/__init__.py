"""``finetune``: full fine-tuning of a Hugging Face sequence-classification model (the reference).

Every cell starts from the pretrained weights (``[backend] model``: a hub id or a local folder)
with a freshly initialised classification head, and trains all weights with AdamW and a linear
learning-rate schedule for the ``[train]`` budget: ``epochs`` (default 2) or a fixed number of
``steps``. Defaults are the reference experiment's Hugging Face ``Trainer`` settings: learning rate
2e-5, batch 16, weight decay 0.01 (not on biases and normalisation weights), no warm-up, gradient
norm clipped at 1.0, truncation at the model's maximum length unless ``[train] max_length`` is set.

What makes it fast (length grouping and bf16 change the arithmetic, not the hyper-parameters: their
measured effect on accuracy is in ``docs/backends.md``; ``examples/reference.toml`` turns both off):

- each text is tokenised once per (model, max_length) and cached on disk, shared by every cell;
- batches are padded dynamically (on a GPU to multiples of 64 tokens, so that a few fixed widths
  recur), and grouped by length (random batches of similar lengths) unless
  ``group_by_length = false``;
- a lean loop: no per-step host synchronisation, logging or checkpoints (none are written); fused
  AdamW on every device;
- bf16 autocast on hardware with native bf16 (fp16 on GPUs without it), ``[train] precision``
  switches it; evaluation runs in large length-sorted batches;
- **sibling groups train stacked** (:meth:`FinetuneBackend.fit_group`): the noise rates of one
  size and seed share the texts, the seed and therefore the head's initialisation, the batches
  and the dropout masks, so K of them train as one stacked model whose every kernel does K
  models' work (:mod:`.stack`); K follows the device's free memory or ``[run] stack``. Each
  member equals its cell trained alone (on a CPU up to rounding).

A cell is deterministic for a given seed on the same hardware: the head's initialisation, dropout
and batch order come from the cell's seed only (torch's generators are forked, never left seeded).

This package holds the backend (options, per-worker setup, :meth:`FinetuneBackend.fit` and the
group methods); :mod:`.loop` the training loop and what it is made of, :mod:`.stack` the stacked
trainer, :mod:`.evaluation` batched prediction.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from .. import BACKENDS, hf
from ..base import (
    Backend,
    BackendContext,
    BackendOptions,
    CostPlan,
    FitOutput,
    GroupCost,
    PlannedGroup,
    Predictor,
)
from . import cost
from .evaluation import _FinetunedPredictor, predict_probabilities, predict_stacked
from .loop import (
    TrainStats,
    _deterministic,
    decay_parameter_groups,
    linear_schedule,
    train_loop,
    width_multiple,
)
from .stack import (
    Arch,
    StackedTrainer,
    StackedWeights,
    arch_of,
    choose_stack,
    chunk_sizes,
    member_bytes,
)
from .steps import compiled_step_cache
from .surgery import Surgery, self_check

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
    cuda_graphs: bool = False
    """Stacked training on a GPU: capture the training step once per batch width as a CUDA graph
    and replay it, so a step costs one launch instead of hundreds. Ignored elsewhere."""
    compile: Literal["auto"] | bool = "auto"
    """Stacked training and evaluation: compile each step's forward, loss and backward, and the
    evaluation's forward, with ``torch.compile``, once per worker: the batch width is a symbol
    of the graph, so every width reuses it (the kernels are cached under the cache folder for
    later runs). ``"auto"``: on for a GPU under bf16 (the fast recipe), off elsewhere — the exact
    recipe (fp32) keeps its eager arithmetic, and a CPU's compile takes minutes. A step that
    fails to compile runs eagerly, with one warning (docs/backends.md)."""


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
    uses_gpu = True

    def __init__(self, options: BackendOptions, context: BackendContext) -> None:
        super().__init__(options, context)
        self._setup: _Setup | None = None
        self._arch: Arch | None = None
        self._no_stack: str | None = None
        self._resident: StackedTrainer | None = None
        self._capacity: int | None = None
        self._evaluators: dict[int, Surgery] = {}

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
                import torch

                # cuBLAS needs this before its first call to be deterministic.
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
                # cuDNN's attention builds a plan for every new shape (179 ms a step over the
                # first 57 widths on an H200, 21 ms without it); the other SDPA kernels do not.
                torch.backends.cuda.enable_cudnn_sdp(False)
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

    @property
    def width_multiple(self) -> int:
        """Batch widths are padded to a multiple of this (:func:`~.loop.width_multiple`)."""
        return width_multiple(self.setup().device)

    def _load_model(self, *, to_device: bool = True) -> Any:
        """A fresh classifier: pretrained encoder, new head (seed torch first).

        On the device, or on the CPU with ``to_device=False`` (a stack copies the weights in).
        """
        from transformers import AutoModelForSequenceClassification

        setup = self.setup()
        k = self.context.n_classes
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
        return model.to(setup.device) if to_device else model

    def fit(self, texts: Sequence[str], labels: np.ndarray, *, seed: int) -> FitOutput:
        """Fine-tune a fresh copy of the model on one cell; ``seed`` fixes all randomness."""
        setup = self.setup()
        train = self.context.train
        ids = setup.tokens.ids(texts)
        with hf.seeded(seed, setup.device), _deterministic(setup.device):
            model = self._load_model()
            stats = train_loop(
                model,
                ids,
                np.asarray(labels),
                train=train,
                seed=seed,
                device=setup.device,
                dtype=setup.dtype,
                pad_id=setup.pad_id,
                pad_multiple=self.width_multiple,
                max_width=setup.info.max_length,
                group_by_length=self.options.group_by_length,
                max_grad_norm=self.options.max_grad_norm,
            )
        model.eval()
        predictor = _FinetunedPredictor(
            model,
            setup,
            setup.tokens,
            eval_batch_size=train.eval_batch_size,
            pad_multiple=self.width_multiple,
        )
        return FitOutput(predictor=predictor, info=self._info(ids, stats))

    def _info(self, ids: Sequence[np.ndarray], stats: TrainStats) -> dict[str, Any]:
        setup = self.setup()
        train = self.context.train
        truncated = sum(len(x) >= setup.info.max_length for x in ids)
        info: dict[str, Any] = {
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
        return info

    # -- sibling groups: stacked training -------------------------------------------------

    def stack_arch(self) -> Arch | None:
        """The stacked architecture of this worker's model, or None when it cannot stack.

        Decided once per worker by the self-check (:func:`~.surgery.self_check`: two stacked
        members against the model alone on a probe batch); fp16 autocast (its loss scale is one
        per model) never stacks. A model that cannot stack fits one cell at a time, with a
        one-line note naming the reason.
        """
        if self._arch is None and self._no_stack is None:
            setup = self.setup()
            reason = None
            model = None
            if hf.precision_name(setup.dtype) == "fp16":
                reason = "fp16 autocast (its loss scale is one per model)"
            else:
                with hf.seeded(0, setup.device):
                    model = self._load_model(to_device=False)
                reason = self_check(model, vocab=_vocab(model), pad_id=setup.pad_id)
            if reason is None and model is not None:
                self._arch = arch_of(model.config, model)
            else:
                self._no_stack = reason
                kind = getattr(model.config, "model_type", "?") if model is not None else "?"
                log.warning(
                    "note: model type '%s' does not stack (%s); training one cell at a time",
                    kind,
                    reason,
                )
        return self._arch

    def stack_size(self, n_members: int) -> int:
        """How many of ``n_members`` siblings train together (``[run] stack`` or memory).

        The memory-based capacity is worked out once per worker, before its resident stack
        takes any memory, and lowered if a stack ever runs out of device memory.
        """
        arch = self.stack_arch()
        if arch is None:
            return 1
        if self._capacity is None:
            setup = self.setup()
            self._capacity = choose_stack(
                arch,
                2**31,
                device=setup.device,
                cap=self.context.stack,
                batch_size=self.context.train.batch_size,
                width=setup.info.max_length,
                low_precision=setup.dtype is not None,
                fused_attention=arch.fused_attention(setup.device),
            )
        return max(1, min(n_members, self._capacity))

    @property
    def compiles(self) -> bool:
        """Whether stacked steps are compiled (``[backend] compile``; ``"auto"``: on a GPU under
        a low-precision dtype, see :class:`FinetuneOptions`)."""
        on = self.options.compile
        if on == "auto":
            setup = self.setup()
            on = setup.device.type == "cuda" and setup.dtype is not None
        if on:
            compiled_step_cache(self.context.cache_dir)
        return on

    def _trainer(self, k: int, model: Any) -> StackedTrainer:
        """The resident stack for a chunk of ``k`` members, built from ``model`` when needed.

        It is kept for the next chunks and groups (reset in place); a chunk of another size gets
        a new one, except that with CUDA graphs a shorter chunk trains on the larger stack
        (filler members) rather than capturing its graphs again.
        """
        resident = self._resident
        if resident is not None and (resident.k == k or (resident.cuda_graphs and resident.k > k)):
            return resident
        setup = self.setup()
        self._resident = None
        _release(setup.device)
        kwargs: dict[str, Any] = {
            "device": setup.device,
            "dtype": setup.dtype,
            "train": self.context.train,
            "max_grad_norm": self.options.max_grad_norm,
            "pad_id": setup.pad_id,
            "pad_multiple": self.width_multiple,
            "max_width": setup.info.max_length,
            "group_by_length": self.options.group_by_length,
        }
        graphs = self.options.cuda_graphs and setup.device.type == "cuda"
        kwargs["compile"] = self.compiles
        trainer = StackedTrainer(model, k, cuda_graphs=graphs, **kwargs)
        if trainer.cuda_graphs:
            import torch

            # Capturing runs warm-up steps that draw random numbers: in a fork of the
            # generators, so the cells' own random numbers do not depend on it.
            with torch.random.fork_rng(devices=[setup.device.index or 0], device_type="cuda"):
                try:
                    trainer.capture_graphs()
                except RuntimeError as exc:
                    log.warning("finetune: CUDA graphs unavailable (%s); stepping eagerly", exc)
                    del trainer
                    _release(setup.device)
                    trainer = StackedTrainer(model, k, **kwargs)
        self._resident = trainer
        return trainer

    def fit_group(
        self, texts: Sequence[str], labelings: Sequence[np.ndarray], *, seed: int
    ) -> list[FitOutput]:
        """Fine-tune one model per labeling, stacked (see :mod:`.stack`); each as :meth:`fit`.

        The labelings train in chunks of :meth:`stack_size` members on the resident stack, every
        chunk from the same start as a cell alone (the model loaded in a block seeded with
        ``seed``), on the same batches. Models that cannot stack fit one cell at a time.
        """
        setup = self.setup()
        if len(labelings) < 2 or self.stack_arch() is None:
            return super().fit_group(texts, labelings, seed=seed)
        ids = setup.tokens.ids(texts)
        while True:
            k = self.stack_size(len(labelings))
            if k == 1:  # one at a time: the per-cell path, as [run] stack = 1 trains
                return super().fit_group(texts, labelings, seed=seed)
            try:
                return self._fit_stacked(ids, labelings, seed=seed, k=k)
            except _OutOfMemory as exc:
                if not _is_device_oom(exc):
                    raise
                # The memory estimate was too generous: the whole group again, half as stacked.
                self._resident = None
                _release(setup.device)
                self._capacity = max(1, k // 2)
                log.warning(
                    "finetune: %d stacked models ran out of device memory; stacking %d from now on",
                    k,
                    self._capacity,
                )

    def _fit_stacked(
        self, ids: Sequence[np.ndarray], labelings: Sequence[np.ndarray], *, seed: int, k: int
    ) -> list[FitOutput]:
        setup = self.setup()
        sizes = chunk_sizes(len(labelings), k)
        outputs: list[FitOutput] = []
        start = 0
        for size in sizes:
            chunk = [np.asarray(y, dtype=np.int64) for y in labelings[start : start + size]]
            start += size
            with hf.seeded(seed, setup.device), _deterministic(setup.device):
                model = self._load_model(to_device=False)
                trainer = self._trainer(size, model)
                chunk += [chunk[-1]] * (trainer.k - size)  # filler members, results discarded
                trainer.reset(model)
                stats = trainer.fit(ids, np.stack(chunk), seed=seed)
            # With several chunks the earlier ones wait on the host for prediction.
            weights = trainer.snapshot(None if len(sizes) == 1 else "cpu")
            self._evaluators.setdefault(trainer.k, trainer.eval_surgery)
            for member, member_stats in enumerate(stats.members[:size]):
                info = self._info(ids, member_stats)
                info["stack_size"] = trainer.k
                info["stack_seconds"] = round(stats.seconds, 3)
                if stats.graphed:
                    info["cuda_graphs"] = True
                if trainer.compiled:
                    info["compiled"] = True
                outputs.append(FitOutput(_StackedMember(self, weights, member), info))
        return outputs

    def predict_group(self, outputs: Sequence[FitOutput], texts: Sequence[str]) -> list[np.ndarray]:
        """Every member's class probabilities; members of one stack in one stacked pass."""
        members = [o.predictor for o in outputs]
        if not all(isinstance(m, _StackedMember) and m.backend is self for m in members):
            return super().predict_group(outputs, texts)
        ids = self.setup().tokens.ids(texts)
        stacks: dict[int, tuple[StackedWeights, list[tuple[int, int]]]] = {}
        for position, m in enumerate(members):
            assert isinstance(m, _StackedMember)
            stacks.setdefault(id(m.weights), (m.weights, []))[1].append((position, m.member))
        out: list[np.ndarray] = [np.zeros(0)] * len(members)
        for weights, items in stacks.values():
            proba = self._predict(weights, ids)
            for position, member in items:
                out[position] = proba[member]
        return out

    def _predict(self, weights: StackedWeights, ids: Sequence[np.ndarray]) -> np.ndarray:
        setup = self.setup()
        arch = self.stack_arch()
        assert arch is not None
        return predict_stacked(
            self._evaluators[weights.k],
            weights.to(setup.device),
            ids,
            device=setup.device,
            dtype=setup.dtype,
            pad_id=setup.pad_id,
            batch_size=self.context.train.eval_batch_size,
            n_classes=arch.n_classes,
            pad_multiple=self.width_multiple,
            max_width=setup.info.max_length,
            compiled=self.compiles,
        )

    # -- planning --------------------------------------------------------------------------

    def plan_cost(
        self, groups: Sequence[PlannedGroup], *, probe: bool, probe_seconds: float = 60.0
    ) -> CostPlan:
        """Steps, tokens, stacked chunks, memory and projected time of each group.

        Projections follow :mod:`.cost`: the exact batches of every group, a step's FLOPs, and a
        rate from a timed probe of a few stacked steps (``probe``) or the device's peak.
        """
        import torch

        setup = self.setup()
        train = self.context.train
        stackable = self.stack_arch()
        config = hf.load_config(setup.info.ref)
        for key, value in setup.overrides.items():
            setattr(config, key, value)
        config.num_labels = self.context.n_classes
        arch = stackable or arch_of(config)
        multiple, max_width = self.width_multiple, setup.info.max_length
        low = setup.dtype is not None
        fused = arch.fused_attention(setup.device)
        planned = []
        for group in groups:
            lengths = hf.token_lengths(setup.tokens.ids(group.texts))
            batches = cost.group_batches(
                lengths,
                train=train,
                seed=group.seed,
                group_by_length=self.options.group_by_length,
                pad_multiple=multiple,
                max_width=max_width,
            )
            evals = cost.eval_shapes(
                hf.token_lengths(setup.tokens.ids(group.test_texts)),
                batch_size=train.eval_batch_size,
                pad_multiple=multiple,
                max_width=max_width,
                device_type=setup.device.type,
            )
            n = group.n_members
            sizes = chunk_sizes(n, self.stack_size(n)) if n > 1 and stackable else [1] * n
            planned.append((batches, evals, sizes))
        device = str(setup.device)
        if setup.device.type == "cuda":
            device += f" ({torch.cuda.get_device_name(setup.device)})"
        else:
            device += f" ({torch.get_num_threads()} threads)"
        padding = "to multiples of 64" if multiple > 1 else "to the longest of each batch"
        batching = "length-grouped" if self.options.group_by_length else "random"
        notes = [
            f"model {self.options.model}: {_count(arch.n_params())} parameters, "
            f"max_length {max_width}, precision {hf.precision_name(setup.dtype)}, {batching} "
            f"batches of {train.batch_size} padded {padding}"
        ]
        if stackable is None:
            notes.append(f"one cell at a time: {self._no_stack}")
        k_plan = max((max(sizes) for _, _, sizes in planned), default=1)
        if probe and planned:
            widths = sorted({w for b, _, _ in planned for (_, w) in b.shapes})
            model, load_seconds, probe_notes = self._probe(arch, k_plan, widths, probe_seconds)
            notes += probe_notes
        else:
            model, note = cost.peak_model(setup.device, low_precision=low)
            load_seconds = 1.0
            notes.append(note)
        notes.append("evaluation projected at the training rate per FLOP (a third of a step's)")
        out = []
        for i, (batches, evals, sizes) in enumerate(planned):
            seconds = sum(
                cost.chunk_seconds(model, arch, k, batches, evals, load_seconds) for k in sizes
            )
            if i == 0 and stackable is not None:
                seconds += load_seconds  # the worker builds its resident stack once
            memory = None
            if stackable is not None:
                memory = max(sizes) * member_bytes(
                    arch,
                    batch_size=train.batch_size,
                    width=max_width,
                    low_precision=low,
                    fused_attention=fused,
                )
            out.append(
                GroupCost(
                    seconds=seconds,
                    steps=batches.steps,
                    train_tokens=batches.tokens,
                    padded_tokens=batches.padded_tokens,
                    chunks=tuple(sizes),
                    memory_bytes=memory,
                )
            )
        return CostPlan(groups=out, device=device, notes=notes)

    def _probe(
        self, arch: Arch, k_plan: int, widths: Sequence[int], budget: float
    ) -> tuple[cost.StepModel, float, list[str]]:
        """Time a model load and a few stacked steps; fit the step model."""
        setup = self.setup()
        stackable = self.stack_arch() is not None
        t0 = time.perf_counter()
        with hf.seeded(0, setup.device):
            model = self._load_model(to_device=not stackable)
        load_seconds = time.perf_counter() - t0
        trainers: dict[int, StackedTrainer] = {}
        rows = self.context.train.batch_size

        def timer(k: int, width: int, n_steps: int) -> float:
            if not stackable:
                return _solo_step_seconds(self, model, width, n_steps)
            if k not in trainers:
                trainers.clear()
                _release(setup.device)
                trainers[k] = StackedTrainer(
                    model,
                    k,
                    device=setup.device,
                    dtype=setup.dtype,
                    train=self.context.train,
                    max_grad_norm=self.options.max_grad_norm,
                    pad_id=setup.pad_id,
                    pad_multiple=self.width_multiple,
                    max_width=setup.info.max_length,
                    group_by_length=self.options.group_by_length,
                    cuda_graphs=self.options.cuda_graphs,
                    # Eager steps: a compile per probed stack size would eat the probe's budget.
                    compile=False,
                )
            return trainers[k].timed_steps(width, n_steps)

        with hf.seeded(0, setup.device), _deterministic(setup.device):
            points = cost.probe_steps(
                arch,
                timer,
                k_plan=k_plan if stackable else 1,
                rows=rows,
                widths=widths,
                budget=budget,
            )
        trainers.clear()
        _release(setup.device)
        fitted = cost.fit_step_model(arch, points)
        notes = [
            cost.describe_points(points) + f"; model load {load_seconds:.2f} s",
            f"step time = {fitted.overhead * 1e3:.1f} ms + FLOPs / {cost.format_rate(fitted.rate)}"
            " (fitted to the probe)",
        ]
        if stackable and self.compiles:
            notes.append(
                "the probe timed eager steps; the run compiles them ([backend] compile), which "
                "costs one compile per worker and makes each step faster"
            )
        return fitted, load_seconds, notes


def _vocab(model: Any) -> int:
    return int(model.get_input_embeddings().num_embeddings)


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 10**6 else f"{n / 1e3:.1f}k"


def _solo_step_seconds(backend: FinetuneBackend, model: Any, width: int, n_steps: int) -> float:
    """Seconds per step of the per-cell loop at ``width`` (random tokens; for models that
    cannot stack)."""
    from ...config import TrainSpec

    setup = backend.setup()
    rows = backend.context.train.batch_size
    rng = np.random.default_rng(0)
    vocab = int(model.config.vocab_size)
    ids = [rng.integers(0, vocab, size=width) for _ in range(rows * (n_steps + 1))]
    labels = rng.integers(0, backend.context.n_classes, size=len(ids))
    kwargs: dict[str, Any] = {
        "device": setup.device,
        "dtype": setup.dtype,
        "pad_id": setup.pad_id,
        "pad_multiple": backend.width_multiple,
        "max_width": setup.info.max_length,
        "group_by_length": False,
        "max_grad_norm": backend.options.max_grad_norm,
    }
    train_loop(model, ids[:rows], labels[:rows], train=TrainSpec(steps=1), seed=0, **kwargs)
    stats = train_loop(model, ids, labels, train=TrainSpec(steps=n_steps), seed=0, **kwargs)
    return stats.seconds / n_steps


class _StackedMember(Predictor):
    """One member of a trained stack: its weights are a slice of the stack's snapshot."""

    def __init__(self, backend: FinetuneBackend, weights: StackedWeights, member: int) -> None:
        self.backend = backend
        self.weights = weights
        self.member = member

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        ids = self.backend.setup().tokens.ids(texts)
        return self.backend._predict(self.weights, ids)[self.member]


_OutOfMemory = RuntimeError
"""What a device running out of memory raises (torch.cuda.OutOfMemoryError is a RuntimeError)."""


def _is_device_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc)


def _release(device: Any) -> None:
    """Hand a GPU's freed memory back before a new resident stack (host memory frees itself)."""
    if device.type == "cuda":
        import gc

        import torch

        gc.collect()  # a stack's tensors held only by reference cycles
        torch.cuda.empty_cache()


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
