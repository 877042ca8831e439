"""Stacked fine-tuning: the cells of a sibling group trained together, K models in one kernel set.

Sibling cells (the noise rates of one size and seed) train on the same texts with the same training
seed: the same head initialisation, the same batches, the same dropout masks. Only their labels
differ. :class:`StackedTrainer` holds K copies of the user's own classifier, stacked by module
surgery (:mod:`.surgery`): every parameterised leaf holds ``(K, ...)`` weights, the members are
folded into the batch, and the model's own forward runs unchanged — any encoder, not a
re-implementation per architecture. Each member keeps :func:`~.loop.train_loop`'s recipe exactly:
its own batch of ``batch_size`` (the same rows for every member), the learning rate and its linear
schedule, its own gradient-norm clipping at ``max_grad_norm``, the same weight-decay split
(:func:`~.loop.decay_parameter_groups`), the same head initialisation.

**Same as alone.** On a CPU a member reproduces the cell trained alone up to floating-point
rounding: its dropout masks are drawn with the same shapes, in the same order, from the same
generator, and shared by every member (one mask per step, broadcast over K). On a GPU attention
runs in the fused kernel (SDPA), which draws each member's attention-dropout mask itself: members
then follow the solo recipe in distribution, not bit for bit, and share every other mask.

**Why module surgery, not ``torch.func``.** ``stack_module_state`` + ``functional_call`` + ``vmap``
with ``randomness="same"`` cannot run SDPA on CUDA (vmap refuses same randomness on a batched
input), so it needs eager attention, which materialises K × batch × heads × L² scores, and it
gives no control over where parameters live (measured on an H200: 2.5× one model, 19% MFU).
Stacked leaves keep fused attention, keep every parameter in a few flat member-major buffers (so
per-member clipping is one reduction per buffer and AdamW one fused kernel per buffer), and give
static addresses for CUDA graphs and compiled steps. The one catch — code that reads a weight
directly — is handled where known (DeBERTa) and detected everywhere else by the load-time
:func:`~.surgery.self_check`.

**Memory.** Each member costs its parameters, gradients and AdamW moments (16 bytes per parameter
in fp32), a snapshot of its trained weights kept for prediction (4 bytes), the low-precision
working copies of its linear layers and their gradients (4 bytes), and the activations of one
batch (:func:`member_bytes`); :func:`choose_stack` fits K to the device's free memory.

**One resident stack.** A worker keeps one :class:`StackedTrainer` and resets its weights in place
for every group (:meth:`StackedTrainer.reset`: the freshly loaded model's state copied into every
member, the optimiser's moments zeroed), so CUDA graphs captured once (``[backend] cuda_graphs``)
serve every group.

torch is imported only inside functions.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..hf.device import autocast
from ..hf.tokens import pad_batch
from .evaluation import predict_stacked
from .loop import (
    TrainStats,
    decay_parameter_groups,
    linear_schedule,
    make_adamw,
    step_budget,
    training_batches,
)
from .steps import GraphedSteps, StepBatch, compile_step, is_compile_error, mark_width_dynamic
from .surgery import Surgery, bind, stack_model, stacked_logits

if TYPE_CHECKING:
    import torch

    from ...config import TrainSpec

log = logging.getLogger("noisegrid")

CPU_STACK_CAP = 1
"""The most members stacked on a CPU by ``[run] stack = "auto"``: one, so a CPU trains one cell
at a time. A CPU's arithmetic is the bound, and batched matrix products over K members ran slower
than K plain ones: MiniLM at 128 tokens, 128 IMDB reviews × 4 noise rates on 2 quiet AVX2 cores,
stacked 101.9 s against 90.3 s one at a time (0.89×; training alone 0.88×). Only models so small
that per-operation overhead dominates gain (a 2-layer, 32-wide test model: 2.4× in training);
``[run] stack = N`` stacks on a CPU all the same."""


# ---------------------------------------------------------------------------------------------
# Architecture (for costs and memory)


@dataclass(frozen=True)
class Arch:
    """What the cost model and the memory estimate need to know about a model (its config)."""

    kind: str
    n_layers: int
    hidden: int
    n_heads: int
    intermediate: int
    activation: str
    p_attention: float
    """Dropout on attention probabilities."""
    vocab: int
    positions: int
    type_vocab: int
    n_classes: int
    params: int = 0
    """Parameters of one member, counted on the loaded model (0: estimated from the config)."""
    attention: str = "sdpa"
    """How the model computes attention: ``sdpa`` (a fused kernel on GPUs) or the model's own
    ``eager`` code (DeBERTa's relative attention), which keeps batch × heads × width² scores."""

    def fused_attention(self, device: Any) -> bool:
        """Whether training keeps no attention scores in memory: a GPU's fused kernel, or a model
        without attention dropout on a CPU."""
        if self.attention not in ("sdpa", "flash_attention_2", "flex_attention"):
            return False
        return device.type == "cuda" or self.p_attention == 0

    def n_params(self) -> int:
        """Parameters of one member (embeddings, encoder, pooler or pre-classifier, head)."""
        if self.params:
            return self.params
        h, i = self.hidden, self.intermediate
        layer = 4 * (h * h + h) + 2 * h * i + i + h + 4 * h
        head = (h * h + h) + (h * self.n_classes + self.n_classes)
        embeddings = (self.vocab + self.positions + self.type_vocab) * h + 2 * h
        return embeddings + self.n_layers * layer + head


def arch_of(config: Any, model: Any = None) -> Arch:
    """The :class:`Arch` of a config, read from the usual attribute names of encoders; with
    ``model``, its parameters counted exactly."""

    def get(*names: str, default: Any = 0) -> Any:
        return next((getattr(config, n) for n in names if getattr(config, n, None)), default)

    hidden = int(get("hidden_size", "dim", "d_model", default=768))
    return Arch(
        kind=str(getattr(config, "model_type", "")),
        n_layers=int(get("num_hidden_layers", "n_layers", "num_layers", default=12)),
        hidden=hidden,
        n_heads=int(get("num_attention_heads", "n_heads", default=12)),
        intermediate=int(get("intermediate_size", "hidden_dim", "ffn_dim", default=4 * hidden)),
        activation=str(get("hidden_act", "activation", default="gelu")),
        p_attention=float(get("attention_probs_dropout_prob", "attention_dropout", default=0.0)),
        vocab=int(get("vocab_size", default=30522)),
        positions=int(get("max_position_embeddings", default=512)),
        type_vocab=int(get("type_vocab_size", default=0)),
        n_classes=int(config.num_labels),
        params=0 if model is None else sum(p.numel() for p in model.parameters()),
        attention=str(getattr(config, "_attn_implementation", None) or "sdpa"),
    )


# ---------------------------------------------------------------------------------------------
# Where each parameter lives


@dataclass(frozen=True)
class _Slot:
    group: str
    offset: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass
class Layout:
    """Where every stacked parameter lives in the stack's flat member-major buffers (K, n).

    Groups: ``decay``, ``nodecay`` (the split of :func:`decay_parameter_groups`), the same two
    for the linear layers' weights and biases (``decay:linear``, ``nodecay:linear``: the weights a
    low-precision step reads in bf16, :attr:`low`), ``frozen`` (weights that do not train) and one
    ``embed:<name>`` buffer per trainable embedding table, so that a table's K copies are one
    contiguous (K·V, D) matrix (one lookup for every member).
    """

    slots: dict[str, _Slot]
    """Hugging Face parameter name → its place."""
    sizes: dict[str, int]
    decayed: frozenset[str]
    """The groups trained with weight decay."""
    low: frozenset[str] = frozenset()
    """The trainable groups of linear layers: under bf16 autocast, every step reads them in bf16
    (the matrix products), nothing else does (layer norms and embeddings run in fp32)."""

    @classmethod
    def of(cls, model: Any, surgery: Surgery) -> Layout:
        """The layout of ``surgery``'s leaves, split into groups as ``model``'s parameters are."""
        named = dict(model.named_parameters())
        decay_ids = {id(p) for p in decay_parameter_groups(model, 1.0)[0]["params"]}
        sizes: dict[str, int] = {"decay": 0, "nodecay": 0, "frozen": 0}
        slots: dict[str, _Slot] = {}
        decayed = {"decay"}
        low = set()
        for leaf in surgery.leaves:
            param = named[leaf.name]
            decays = id(param) in decay_ids
            if not param.requires_grad:
                group = "frozen"
            elif leaf.kind == "embedding":
                group = f"embed:{leaf.name}"
            else:
                group = "decay" if decays else "nodecay"
                if leaf.kind == "linear":
                    group += ":linear"
                    low.add(group)
            sizes.setdefault(group, 0)
            if decays and group != "frozen":
                decayed.add(group)
            slots[leaf.name] = _Slot(group, sizes[group], leaf.shape)
            sizes[group] += math.prod(leaf.shape)
        return cls(slots=slots, sizes=sizes, decayed=frozenset(decayed), low=frozenset(low))

    @property
    def trainable(self) -> list[str]:
        return [g for g in self.sizes if g != "frozen"]


class StackedWeights:
    """K members' weights in the flat buffers of a :class:`Layout` (one tensor per group)."""

    def __init__(self, layout: Layout, flat: dict[str, torch.Tensor]) -> None:
        self.layout = layout
        self.flat = flat

    @classmethod
    def zeros(cls, layout: Layout, k: int, device: torch.device) -> StackedWeights:
        import torch

        flat = {g: torch.zeros(k, max(n, 1), device=device) for g, n in layout.sizes.items()}
        return cls(layout, flat)

    @property
    def k(self) -> int:
        return int(next(iter(self.flat.values())).shape[0])

    def view(self, slot: _Slot, source: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        buffer = (source or self.flat)[slot.group]
        return buffer[:, slot.offset : slot.offset + slot.size].view(buffer.shape[0], *slot.shape)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every parameter's (K, ...) stack, as views (no autograd)."""
        return {name: self.view(slot) for name, slot in self.layout.slots.items()}

    def clone(self) -> StackedWeights:
        return StackedWeights(self.layout, {g: t.detach().clone() for g, t in self.flat.items()})

    def to(self, device: Any) -> StackedWeights:
        return StackedWeights(self.layout, {g: t.to(device) for g, t in self.flat.items()})

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Copy one model's state (Hugging Face names) into every member, in place."""
        import torch

        with torch.no_grad():
            for name, slot in self.layout.slots.items():
                buffer = self.flat[slot.group]
                src = state[name].detach().reshape(1, -1).to(buffer.device, buffer.dtype)
                buffer[:, slot.offset : slot.offset + slot.size].copy_(src.expand(self.k, -1))

    def member_state(self, member: int) -> dict[str, torch.Tensor]:
        """One member's weights under their Hugging Face names (views into the buffers)."""
        out = {}
        for name, slot in self.layout.slots.items():
            buffer = self.flat[slot.group]
            out[name] = buffer[member, slot.offset : slot.offset + slot.size].view(slot.shape)
        return out


# ---------------------------------------------------------------------------------------------
# Memory


def member_bytes(
    arch: Arch,
    *,
    batch_size: int,
    width: int,
    low_precision: bool,
    fused_attention: bool,
) -> int:
    """Device memory one stacked member needs to train a batch of ``batch_size`` × ``width``.

    Parameters, gradients and AdamW moments in fp32 (16 bytes per parameter), the snapshot kept
    for prediction (4), the bf16 working copies of the weights and their gradients (4), and per
    token and layer the tensors autograd saves: the fp32 layer-norm inputs (8H bytes), the
    low-precision inputs of the four projections and two feed-forward matrices and the GELU
    (about 7H + 2I values), and with explicit attention the fp32 probabilities and their dropped
    copy (2 × heads × width values).
    An estimate: :func:`choose_stack` leaves a margin.
    """
    a = 2 if low_precision else 4
    n = arch.n_params()
    weights = n * (16 + 4 + (4 if low_precision else 0))
    per_token = 8 * arch.hidden + a * (7 * arch.hidden + 2 * arch.intermediate)
    if not fused_attention:
        per_token += (4 + 4 + a) * arch.n_heads * width
    tokens = batch_size * width
    embedding_grad = 4 * arch.vocab * arch.hidden  # the dense gradient of the lookup
    return int(weights + embedding_grad + tokens * (arch.n_layers * per_token + 12 * arch.hidden))


def device_free_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` (None when unknown)."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        try:
            with open("/proc/meminfo", encoding="ascii") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:  # pragma: no cover - not Linux
            return None
    return None


def choose_stack(
    arch: Arch,
    n_members: int,
    *,
    device: torch.device,
    cap: int | None,
    batch_size: int,
    width: int,
    low_precision: bool,
    fused_attention: bool,
    free_bytes: int | None = None,
) -> int:
    """How many members to stack: ``[run] stack``'s cap, else what the free memory holds.

    On a GPU, 85% of the free memory less 1 GiB of workspace over :func:`member_bytes`; on a CPU
    the same against half the available memory, and at most :data:`CPU_STACK_CAP`.
    """
    if cap is not None:
        return max(1, min(cap, n_members))
    free = device_free_bytes(device) if free_bytes is None else free_bytes
    per = member_bytes(
        arch,
        batch_size=batch_size,
        width=width,
        low_precision=low_precision,
        fused_attention=fused_attention,
    )
    if device.type == "cuda":
        budget = None if free is None else 0.85 * free - 2**30
        most = n_members
    else:
        budget = None if free is None else 0.5 * free
        most = min(n_members, CPU_STACK_CAP)
    if budget is None:
        return max(1, most)
    return max(1, min(most, int(budget // per)))


def chunk_sizes(n_members: int, k: int) -> list[int]:
    """Split ``n_members`` into the fewest chunks of at most ``k``, as equal as possible.

    Examples
    --------
    >>> chunk_sizes(11, 4), chunk_sizes(11, 11), chunk_sizes(3, 8)
    ([4, 4, 3], [11], [3])
    """
    n_chunks = -(-n_members // max(k, 1))
    base, extra = divmod(n_members, n_chunks)
    return [base + (1 if i < extra else 0) for i in range(n_chunks)]


# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class StackStats:
    """What a stacked run did: :class:`~.loop.TrainStats` per member, and the stack's time."""

    members: list[TrainStats]
    seconds: float
    graphed: bool = False


class StackedTrainer:
    """K stacked members of one model, trained together; kept resident and reset per group.

    Parameters
    ----------
    model : transformers model
        A loaded classifier (on the CPU): the structure of the stack, and every member's first
        state.
    k : int
        Members.
    device, dtype
        Where to train and the autocast dtype (None: fp32; fp16 is not supported).
    train : TrainSpec
    max_grad_norm : float
    pad_id, pad_multiple, max_width
        Padding of batches, as :func:`~.loop.train_loop` pads them.
    group_by_length : bool
    cuda_graphs : bool, default False
        Capture the training step once per batch width as a CUDA graph and replay it (GPUs only;
        :meth:`capture_graphs` before the first run).
    compile : bool, default False
        Compile the step's forward, loss and backward with ``torch.compile`` (once per batch
        width; :func:`~.steps.compiled_step_cache`): the copies, casts and elementwise chains
        between the matrix products fuse. Dropout masks then come from the compiler's generator (the
        same distribution, other draws); with ``cuda_graphs`` the compiled step is captured.
    per_member : bool, optional
        Compute member by member with the solo kernels (:func:`~.surgery.stack_model`); default:
        on a CPU (exact), not on a GPU (batched).
    working_copies : bool, optional
        Under a low-precision ``dtype``, keep the linear layers' weights also in that dtype
        (:attr:`Layout.low`): the forward reads them without autocast's cast of every weight on
        every step, their gradients land in low-precision buffers, and each step casts those to
        the fp32 master gradients and refreshes the copies from the fp32 master weights after
        AdamW, one kernel per buffer. The arithmetic is autocast's: the same bf16 matrix products
        on the same bf16 values, fp32 master weights, moments and clipping. Default: on with a
        low-precision ``dtype``.
    """

    def __init__(
        self,
        model: Any,
        k: int,
        *,
        device: torch.device,
        dtype: torch.dtype | None,
        train: TrainSpec,
        max_grad_norm: float,
        pad_id: int,
        pad_multiple: int,
        max_width: int,
        group_by_length: bool,
        cuda_graphs: bool = False,
        compile: bool = False,
        per_member: bool | None = None,
        working_copies: bool | None = None,
    ) -> None:
        import torch

        self.k = k
        self.device = device
        self.dtype = dtype
        self.train = train
        self.max_grad_norm = max_grad_norm
        self.pad_id = pad_id
        self.pad_multiple = pad_multiple
        self.max_width = max_width
        self.group_by_length = group_by_length
        self.cuda_graphs = bool(cuda_graphs) and device.type == "cuda"
        self.arch = arch_of(model.config, model)
        # A CPU computes member by member with the kernels of the model alone (exact); a GPU
        # batches every operation over the members.
        if per_member is None:
            per_member = device.type == "cpu"
        self.surgery = stack_model(model, k, per_member=per_member)
        self.surgery.model.to(device)
        self.eval_surgery = stack_model(model, k, per_member=per_member)
        self.eval_surgery.model.to(device).eval()
        self.layout = Layout.of(model, self.surgery)
        self.weights = StackedWeights.zeros(self.layout, k, device)
        self.grads = {g: torch.zeros_like(self.weights.flat[g]) for g in self.layout.trainable}
        if working_copies is None:
            working_copies = dtype is not None and dtype != torch.float32
        low = sorted(self.layout.low) if working_copies and dtype is not None else []
        # The low-precision copies of the linear layers and their gradients (see the class).
        self.working = {g: self.weights.flat[g].to(dtype) for g in low}
        self.working_grads = {g: torch.zeros_like(w) for g, w in self.working.items()}
        bound = {**self.weights.flat, **self.working}
        bound_grads = {**self.grads, **self.working_grads}
        tensors = {n: self.weights.view(slot, bound) for n, slot in self.layout.slots.items()}
        grads = {
            name: self.weights.view(slot, bound_grads)
            for name, slot in self.layout.slots.items()
            if slot.group != "frozen"
        }
        bind(self.surgery, tensors, grads)
        # What backward accumulates into (zeroed before each step); a master gradient with a
        # low-precision copy is written whole by its cast.
        self._accumulated = list(self.working_grads.values()) + [
            grad for group, grad in self.grads.items() if group not in self.working
        ]
        # Rows of padding tokens get no gradient, as nn.Embedding(padding_idx=...) gives none:
        # (group, first, last) columns of that row in the group's buffer.
        self._padding_columns = []
        for leaf in self.surgery.leaves:
            if leaf.padding_idx is not None and leaf.name in grads:
                slot = self.layout.slots[leaf.name]
                dim = math.prod(slot.shape[1:])
                first = slot.offset + (leaf.padding_idx % slot.shape[0]) * dim
                self._padding_columns.append((slot.group, first, first + dim))
        for group, grad in self.grads.items():
            self.weights.flat[group].grad = grad
        self.optimizer = self._optimizer()
        self._graphs: GraphedSteps | None = None
        self.compiled = bool(compile)
        self._losses = compile_step(self._member_losses) if self.compiled else self._member_losses
        self._clip = compile_step(self._clip_gradients) if self.compiled else self._clip_gradients
        self._compile_tried = not self.compiled
        self.reset(model)

    # -- state ---------------------------------------------------------------------------------

    def _optimizer(self) -> torch.optim.Optimizer:
        import torch

        wd = self.train.weight_decay
        flat = self.weights.flat
        decayed = [flat[g] for g in self.layout.trainable if g in self.layout.decayed]
        plain = [flat[g] for g in self.layout.trainable if g not in self.layout.decayed]
        groups = [{"params": decayed, "weight_decay": wd}, {"params": plain, "weight_decay": 0.0}]
        lr: Any = self.train.learning_rate
        if self.cuda_graphs:
            lr = torch.tensor(lr, device=self.device)  # set in place per step, read by the graph
        return make_adamw(groups, lr=lr, device=self.device, capturable=self.cuda_graphs)

    def reset(self, model: Any) -> None:
        """Start every member from ``model``'s weights, in place; zero the optimiser's state."""
        import torch

        self.weights.load_state(dict(model.named_parameters()))
        self.refresh_working()
        with torch.no_grad():
            for grad in self.grads.values():
                grad.zero_()
            for state in self.optimizer.state.values():
                for value in state.values():
                    if torch.is_tensor(value):
                        value.zero_()

    def refresh_working(self) -> None:
        """The low-precision copies from the fp32 master weights (after every change of those)."""
        import torch

        with torch.no_grad():
            for group, copy in self.working.items():
                copy.copy_(self.weights.flat[group])

    def snapshot(self, device: Any = None) -> StackedWeights:
        """A copy of the members' current weights, on ``device`` (default: the stack's).

        Always a copy, also on the stack's own device: prediction outlives the next reset.
        """
        flat = {
            g: t.detach().to(device or t.device, copy=True) for g, t in self.weights.flat.items()
        }
        return StackedWeights(self.layout, flat)

    def predict(
        self,
        weights: StackedWeights,
        ids: Sequence[np.ndarray],
        *,
        batch_size: int,
    ) -> np.ndarray:
        """Class probabilities of every member of ``weights``, shape (K, n, n_classes)."""
        return predict_stacked(
            self.eval_surgery,
            weights.to(self.device),
            ids,
            device=self.device,
            dtype=self.dtype,
            pad_id=self.pad_id,
            batch_size=batch_size,
            pad_multiple=self.pad_multiple,
            max_width=self.max_width,
            n_classes=self.arch.n_classes,
            compiled=self.compiled,
        )

    # -- one step ------------------------------------------------------------------------------

    def _set_lr(self, factor: float) -> None:
        value = self.train.learning_rate * factor
        for group in self.optimizer.param_groups:
            if self.cuda_graphs:
                group["lr"].fill_(value)
            else:
                group["lr"] = value

    def _step(self, batch: StepBatch, loss_sum: torch.Tensor) -> None:
        """Forward, backward, per-member clipping and one AdamW step of every member."""
        for grad in self._accumulated:
            grad.zero_()
        self.surgery.context.rows = int(batch.input_ids.shape[0])
        if not self.surgery.model.training:  # outside the compiled graph
            self.surgery.model.train(True)
        if self.compiled:  # one graph for every width (the width is a symbol in it)
            mark_width_dynamic(batch.input_ids, batch.mask)
        first = not self._compile_tried
        args = (batch.input_ids, batch.mask, batch.labels, batch.weights)
        losses = self._compiled("_losses", *args) if first else self._losses(*args)
        with warnings.catch_warnings():
            # The grads are strided views into flat buffers on purpose (see the class).
            warnings.filterwarnings("ignore", message="grad and param do not obey")
            losses.sum().backward()
        if first:
            self._compiled("_clip")
            self._compile_tried = True
        else:
            self._clip()
        self.optimizer.step()
        self.refresh_working()
        loss_sum += losses.detach().float()

    def _compiled(self, part: str, *args: Any) -> Any:
        """The first call of a compiled part (``_losses`` or ``_clip``: where it compiles). A
        model or torch build that does not compile trains eagerly from here on (the same
        arithmetic; dropout masks then come from the eager generator), with one warning; the
        compiler fails before it runs anything, so nothing was changed yet."""
        try:
            return getattr(self, part)(*args)
        except Exception as exc:  # the compiler's errors have no common public base class
            if not is_compile_error(exc):
                raise
            log.warning(
                "finetune: the stacked step does not compile (%s: %s); training eagerly",
                type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "",
            )
            self.compiled = False
            self._losses, self._clip = self._member_losses, self._clip_gradients
            return getattr(self, part)(*args)

    def _clip_gradients(self) -> None:
        """The fp32 master gradients from the bf16 working ones, no gradient for padding tokens'
        rows, and ``clip_grad_norm_`` per member (coefficient max_norm / (norm + 1e-6), at most
        1). Compiled with the step: the cast, the norms and the scaling fuse into two passes over
        the gradients."""
        import torch

        for group, grad in self.working_grads.items():
            self.grads[group].copy_(grad)
        for group, first, last in self._padding_columns:
            self.grads[group][:, first:last] = 0
        norms = [torch.linalg.vector_norm(g, dim=1) for g in self.grads.values()]
        norm = torch.linalg.vector_norm(torch.stack(norms), dim=0)
        coef = (self.max_grad_norm / (norm + 1e-6)).clamp(max=1.0)
        for grad in self.grads.values():
            grad.mul_(coef.unsqueeze(1))

    def _member_losses(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor | None,
    ) -> torch.Tensor:
        """Each member's loss, shape (K,): the forward and the loss of one step (compiled as one
        graph with ``compile``, its backward with it)."""
        import torch.nn.functional as F

        with autocast(self.device, self.dtype):
            logits = stacked_logits(self.surgery, input_ids, mask, training=True)
            ce = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none"
            ).view(self.k, -1)
        # Each member's loss is its own batch mean; their sum has each member's own gradient.
        return ce.mean(1) if weights is None else (ce * weights).sum(1)

    # -- a run ---------------------------------------------------------------------------------

    def fit(self, ids: Sequence[np.ndarray], labelings: np.ndarray, *, seed: int) -> StackStats:
        """Train every member for the budget on the same batches, member m on labeling m.

        Parameters
        ----------
        ids : sequence of ndarray
            Token ids of the shared texts.
        labelings : ndarray of int, shape (K, n)
        seed : int
            Batch order. torch's generators (dropout) must be seeded by the caller after the
            model was loaded, exactly as for the cell trained alone.
        """
        import torch

        if labelings.shape[0] != self.k:
            raise ValueError(f"{labelings.shape[0]} labelings for a stack of {self.k}")
        n = len(ids)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
        total, steps_per_epoch = step_budget(n, self.train)
        schedule = linear_schedule(total, math.ceil(total * self.train.warmup_ratio))
        labels = torch.as_tensor(np.asarray(labelings, dtype=np.int64))
        graphs = self.capture_graphs() if self.cuda_graphs else None
        t0 = time.perf_counter()
        tokens = padded = examples = 0
        loss_sums: list[torch.Tensor] = []
        n_batches: list[int] = []
        batches = training_batches(
            lengths,
            batch_size=self.train.batch_size,
            total=total,
            seed=seed,
            group_by_length=self.group_by_length,
        )
        for step, (epoch, rows) in enumerate(batches):
            if epoch == len(loss_sums):
                loss_sums.append(torch.zeros(self.k, device=self.device))
                n_batches.append(0)
            x, m = pad_batch(
                [ids[i] for i in rows],
                pad_id=self.pad_id,
                multiple_of=self.pad_multiple,
                max_width=self.max_width,
            )
            examples += len(rows)
            tokens += int(lengths[rows].sum())
            padded += x.size
            self._set_lr(schedule(step))
            y = labels[:, torch.from_numpy(rows)]
            if graphs is not None:
                graphs.step(x, m, y, loss_sums[epoch])
            elif self.compiled:
                # Every batch weighted per row, a short one filled up to the full shape with rows
                # of no weight: one compiled graph, whatever the batch's length and width.
                self._step(self.filled(x, m, y), loss_sums[epoch])
            else:
                batch = StepBatch(
                    torch.from_numpy(x).to(self.device, non_blocking=True),
                    torch.from_numpy(m).to(self.device, non_blocking=True),
                    y.to(self.device, non_blocking=True),
                )
                self._step(batch, loss_sums[epoch])
            n_batches[epoch] += 1
        first = (loss_sums[0] / max(n_batches[0], 1)).tolist()
        last = (loss_sums[-1] / max(n_batches[-1], 1)).tolist()
        _sync(self.device)
        seconds = time.perf_counter() - t0
        members = [
            TrainStats(
                steps=total,
                steps_per_epoch=steps_per_epoch,
                examples=examples,
                tokens=tokens,
                padded_tokens=padded,
                loss_first_epoch=first[i],
                loss_last_epoch=last[i],
                seconds=seconds / self.k,
            )
            for i in range(self.k)
        ]
        return StackStats(members=members, seconds=seconds, graphed=graphs is not None)

    def filled(self, x: np.ndarray, m: np.ndarray, y: torch.Tensor) -> StepBatch:
        """A batch of ``batch_size`` rows on the device: the real ones, then filler rows of zero
        loss weight that attend to one position (no empty softmax): the one shape of a width
        for compiled steps and CUDA graphs."""
        import torch

        rows, full = x.shape[0], self.train.batch_size
        xf = np.full((full, x.shape[1]), self.pad_id, dtype=x.dtype)
        mf = np.zeros((full, x.shape[1]), dtype=m.dtype)
        mf[:, 0] = 1  # filler rows attend to one position: no empty softmax
        xf[:rows], mf[:rows] = x, m
        yf = torch.zeros((self.k, full), dtype=y.dtype)
        yf[:, :rows] = y
        w = torch.zeros(full)
        w[:rows] = 1.0 / rows
        dev = self.device
        return StepBatch(
            torch.from_numpy(xf).to(dev), torch.from_numpy(mf).to(dev), yf.to(dev), w.to(dev)
        )

    def widths(self) -> list[int]:
        """Every batch width a run can meet (multiples of ``pad_multiple`` up to ``max_width``)."""
        step = self.pad_multiple
        out = list(range(step, self.max_width + 1, step))
        if not out or out[-1] != self.max_width:
            out.append(self.max_width)
        return out

    def capture_graphs(self) -> GraphedSteps:
        """Capture the step at every width (once per trainer); call outside seeded blocks.

        Capturing runs warm-up steps, which draw random numbers: done before the first group,
        it leaves every cell's result independent of which cells ran before it in the worker.
        """
        if self._graphs is None:
            graphs = GraphedSteps(self)
            t0 = time.perf_counter()
            for width in self.widths():
                graphs.capture(width)
            log.info(
                "finetune: captured %d CUDA graphs of the stacked step (K = %d) in %.1fs",
                len(graphs.graphs),
                self.k,
                time.perf_counter() - t0,
            )
            self._graphs = graphs
        return self._graphs

    def timed_steps(self, width: int, n_steps: int, *, warmup: int = 1) -> float:
        """Seconds per stacked training step at ``width`` on random tokens (a probe, not a run).

        The members' weights and optimiser state change: :meth:`reset` before training.
        """
        import torch

        rng = np.random.default_rng(0)
        rows = self.train.batch_size
        x = rng.integers(0, self.arch.vocab, size=(rows, width)).astype(np.int64)
        m = np.ones((rows, width), dtype=np.int64)
        y = torch.as_tensor(rng.integers(0, self.arch.n_classes, size=(self.k, rows)))
        loss = torch.zeros(self.k, device=self.device)
        graphs = self.capture_graphs() if self.cuda_graphs else None
        self._set_lr(1.0)

        def run() -> None:
            if graphs is not None:
                graphs.step(x, m, y, loss)
            elif self.compiled:
                self._step(self.filled(x, m, y), loss)
            else:
                batch = StepBatch(
                    torch.from_numpy(x).to(self.device),
                    torch.from_numpy(m).to(self.device),
                    y.to(self.device),
                )
                self._step(batch, loss)

        for _ in range(warmup):
            run()
        _sync(self.device)
        t0 = time.perf_counter()
        for _ in range(n_steps):
            run()
        _sync(self.device)
        return (time.perf_counter() - t0) / max(n_steps, 1)


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
