"""Stacked fine-tuning: the cells of a sibling group trained together, K models in one kernel set.

Sibling cells (the noise rates of one size and seed) train on the same texts with the same training
seed: the same head initialisation, the same batches, the same dropout masks. Only their labels
differ. :class:`StackedTrainer` holds K copies of a BERT-family classifier as *grouped weights*:
every parameter is one ``(K, ...)`` tensor, every linear layer one batched matrix product over the
K members (``baddbmm``), attention runs with the members folded into its batch dimension, and one
fused AdamW steps all members at once. Each member keeps :func:`~.loop.train_loop`'s recipe
exactly: its own batch of ``batch_size`` (the same rows for every member), the learning rate and
its linear schedule, its own gradient-norm clipping at ``max_grad_norm``, the same weight-decay
split (:func:`~.loop.decay_parameter_groups`), the same head initialisation.

**Same as alone.** On a CPU a member reproduces the cell trained alone up to floating-point
rounding: its dropout masks are drawn with the same shapes, in the same order, from the same
generator, and shared by every member (one mask per step, broadcast over K). On a GPU attention
runs in the fused kernel (SDPA), which draws each member's attention-dropout mask itself: members
then follow the solo recipe in distribution, not bit for bit, and share every other mask.

**Why grouped weights, not ``torch.func``.** ``stack_module_state`` + ``functional_call`` +
``vmap`` with ``randomness="same"`` cannot run SDPA on CUDA (vmap refuses same randomness on a
batched input), so it needs eager attention, which materialises K × batch × heads × L² scores; and
it gives no control over where parameters live. Grouped weights keep fused attention, keep every
parameter in three flat member-major buffers (so per-member clipping is one reduction per buffer
and AdamW one fused kernel per buffer), and give static addresses for CUDA graphs. On a 2-core CPU
the two ran alike (MiniLM, batch 16 × 64 tokens, K = 4: 7.0 s vs 8.7 s per member-step against
10.1 s alone, on a loaded machine); the GPU is what decides.

**Memory.** Each member costs its parameters, gradients and AdamW moments (16 bytes per parameter
in fp32), a snapshot of its trained weights kept for prediction (4 bytes), autocast's
low-precision weight copies, and the activations of one batch (:func:`member_bytes`);
:func:`choose_stack` fits K to the device's free memory.

**One resident stack.** A worker keeps one :class:`StackedTrainer` and resets its weights in place
for every group (:meth:`StackedTrainer.reset`: the freshly loaded model's state copied into every
member, the optimiser's moments zeroed), so CUDA graphs captured once (``[backend] cuda_graphs``)
serve every group.

Supported architectures (:func:`stack_support`): BERT (MiniLM, bert-base, ...) and DistilBERT;
other models fit one cell at a time. torch is imported only inside functions.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..hf.device import autocast
from ..hf.tokens import pad_batch, padded_inputs
from .loop import (
    TrainStats,
    decay_parameter_groups,
    linear_schedule,
    make_adamw,
    step_budget,
    training_batches,
)

if TYPE_CHECKING:
    import torch

    from ...config import TrainSpec

log = logging.getLogger("noisegrid")

STACKABLE = ("bert", "distilbert")
"""Model types whose classifiers can train stacked (see :func:`stack_support`)."""

CPU_STACK_CAP = 1
"""The most members stacked on a CPU by ``[run] stack = "auto"``: one, so a CPU trains one cell
at a time. A CPU's arithmetic is the bound, and batched matrix products over K members ran slower
than K plain ones: MiniLM at 128 tokens, 128 IMDB reviews × 4 noise rates on 2 quiet AVX2 cores,
stacked 101.9 s against 90.3 s one at a time (0.89×; training alone 0.88×). Only models so small
that per-operation overhead dominates gain (a 2-layer, 32-wide test model: 2.4× in training);
``[run] stack = N`` stacks on a CPU all the same."""

_ACTIVATIONS = ("gelu", "relu")
_GROUPS = ("embed", "decay", "nodecay", "frozen")


# ---------------------------------------------------------------------------------------------
# Architecture


@dataclass(frozen=True)
class Arch:
    """What the stacked forward needs to know about a model (read from its config)."""

    kind: str
    """``bert`` or ``distilbert``."""
    n_layers: int
    hidden: int
    n_heads: int
    intermediate: int
    activation: str
    eps: float
    p_hidden: float
    """Dropout on embeddings and after each sub-layer's output projection."""
    p_attention: float
    """Dropout on attention probabilities."""
    p_head: float
    """Dropout before the classifier."""
    vocab: int
    positions: int
    type_vocab: int
    n_classes: int

    @property
    def prefix(self) -> str:
        return self.kind

    def qkv(self, layer: int) -> tuple[str, str, str]:
        """The query, key and value projections of ``layer`` (Hugging Face module names)."""
        if self.kind == "bert":
            base = f"bert.encoder.layer.{layer}.attention.self."
            return (base + "query", base + "key", base + "value")
        base = f"distilbert.transformer.layer.{layer}.attention."
        return (base + "q_lin", base + "k_lin", base + "v_lin")

    def n_params(self) -> int:
        """Parameters of one member (embeddings, encoder, pooler or pre-classifier, head)."""
        h, i = self.hidden, self.intermediate
        layer = 4 * (h * h + h) + 2 * h * i + i + h + 4 * h
        head = (h * h + h) + (h * self.n_classes + self.n_classes)
        embeddings = (self.vocab + self.positions + self.type_vocab) * h + 2 * h
        return embeddings + self.n_layers * layer + head


def stack_support(config: Any) -> str | None:
    """Why a model cannot train stacked, or None when it can.

    Parameters
    ----------
    config : transformers.PretrainedConfig
        The model's config, with the overrides it will be loaded with.
    """
    kind = getattr(config, "model_type", "")
    if kind not in STACKABLE:
        return f"model type '{kind}' (stacked training supports {', '.join(STACKABLE)})"
    if kind == "bert":
        if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
            return "a BERT decoder"
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            return f"position embeddings '{config.position_embedding_type}'"
        activation = config.hidden_act
    else:
        activation = config.activation
    if activation not in _ACTIVATIONS:
        return f"activation '{activation}'"
    return None


def arch_of(config: Any) -> Arch:
    """The :class:`Arch` of a config: exact for BERT and DistilBERT (see :func:`stack_support`),
    read from the usual attribute names for other encoders (enough to count their FLOPs)."""
    if config.model_type not in STACKABLE:

        def get(*names: str, default: Any = 0) -> Any:
            return next((getattr(config, n) for n in names if getattr(config, n, None)), default)

        hidden = int(get("hidden_size", "dim", "d_model", default=768))
        return Arch(
            kind=str(config.model_type),
            n_layers=int(get("num_hidden_layers", "n_layers", "num_layers", default=12)),
            hidden=hidden,
            n_heads=int(get("num_attention_heads", "n_heads", default=12)),
            intermediate=int(get("intermediate_size", "hidden_dim", "ffn_dim", default=4 * hidden)),
            activation=str(get("hidden_act", "activation", default="gelu")),
            eps=1e-12,
            p_hidden=0.0,
            p_attention=0.0,
            p_head=0.0,
            vocab=int(get("vocab_size", default=30522)),
            positions=int(get("max_position_embeddings", default=512)),
            type_vocab=int(get("type_vocab_size", default=0)),
            n_classes=int(config.num_labels),
        )
    if config.model_type == "bert":
        head = config.classifier_dropout
        return Arch(
            kind="bert",
            n_layers=config.num_hidden_layers,
            hidden=config.hidden_size,
            n_heads=config.num_attention_heads,
            intermediate=config.intermediate_size,
            activation=config.hidden_act,
            eps=config.layer_norm_eps,
            p_hidden=config.hidden_dropout_prob,
            p_attention=config.attention_probs_dropout_prob,
            p_head=config.hidden_dropout_prob if head is None else head,
            vocab=config.vocab_size,
            positions=config.max_position_embeddings,
            type_vocab=config.type_vocab_size,
            n_classes=config.num_labels,
        )
    return Arch(
        kind="distilbert",
        n_layers=config.n_layers,
        hidden=config.dim,
        n_heads=config.n_heads,
        intermediate=config.hidden_dim,
        activation=config.activation,
        eps=1e-12,
        p_hidden=config.dropout,
        p_attention=config.attention_dropout,
        p_head=config.seq_classif_dropout,
        vocab=config.vocab_size,
        positions=config.max_position_embeddings,
        type_vocab=0,
        n_classes=config.num_labels,
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
    """Where every Hugging Face parameter lives in the stack's flat buffers.

    Four member-major buffers of shape (K, n): ``embed`` (the word embeddings, decayed, alone so
    that one embedding lookup serves every member), ``decay``, ``nodecay`` and ``frozen`` (weights
    that do not train). Within a buffer parameters follow the model's order, so a layer's query,
    key and value weights are adjacent and one (K, 3H, H) view multiplies all three at once.
    """

    slots: dict[str, _Slot]
    """Hugging Face parameter name → its place."""
    leaves: dict[str, _Slot]
    """The tensors the forward uses: the parameters, with each layer's q, k, v fused."""
    sizes: dict[str, int]

    @classmethod
    def of(cls, model: Any, arch: Arch) -> Layout:
        """The layout of ``model``'s parameters (the split of :func:`decay_parameter_groups`)."""
        groups = decay_parameter_groups(model, 1.0)
        decay = {id(p) for p in groups[0]["params"]}
        named = list(model.named_parameters())
        word = f"{arch.prefix}.embeddings.word_embeddings.weight"
        fused: dict[str, tuple[str, ...]] = {}
        for layer in range(arch.n_layers):
            names = arch.qkv(layer)
            for suffix in ("weight", "bias"):
                fused[f"{names[0]}.{suffix}"] = tuple(f"{n}.{suffix}" for n in names)
        follower = {n for members in fused.values() for n in members[1:]}
        shapes = {name: tuple(p.shape) for name, p in named}
        group_of = {}
        for name, p in named:
            if not p.requires_grad:
                group_of[name] = "frozen"
            elif name == word:
                group_of[name] = "embed"
            else:
                group_of[name] = "decay" if id(p) in decay else "nodecay"
        for members in fused.values():
            if len({group_of[m] for m in members}) > 1:
                raise ValueError("query, key and value weights train differently")
        sizes = dict.fromkeys(_GROUPS, 0)
        slots: dict[str, _Slot] = {}
        leaves: dict[str, _Slot] = {}
        for name, _ in named:
            if name in follower:
                continue
            members = fused.get(name, (name,))
            group = group_of[name]
            start = sizes[group]
            for member in members:
                slots[member] = _Slot(group, sizes[group], shapes[member])
                sizes[group] += math.prod(shapes[member])
            if len(members) > 1:
                shape = (len(members) * shapes[name][0], *shapes[name][1:])
                module, suffix = name.rsplit(".", 1)
                leaves[f"{module.rsplit('.', 1)[0]}.qkv.{suffix}"] = _Slot(group, start, shape)
            else:
                leaves[name] = _Slot(group, start, shapes[name])
        return cls(slots=slots, leaves=leaves, sizes=sizes)


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
        return int(self.flat["decay"].shape[0])

    def view(self, slot: _Slot, source: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        buffer = (source or self.flat)[slot.group]
        return buffer[:, slot.offset : slot.offset + slot.size].view(buffer.shape[0], *slot.shape)

    def leaves(self) -> dict[str, torch.Tensor]:
        """The forward's tensors as views (no autograd)."""
        return {name: self.view(slot) for name, slot in self.layout.leaves.items()}

    def member(self, member: int) -> StackedWeights:
        """One member alone, as a stack of one (views, no copy)."""
        return StackedWeights(
            self.layout, {g: t[member : member + 1] for g, t in self.flat.items()}
        )

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
# The stacked forward


def stacked_logits(
    arch: Arch,
    p: dict[str, torch.Tensor],
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    *,
    training: bool,
    fused_attention: bool,
) -> torch.Tensor:
    """Logits of every member, shape (K, batch, n_classes), for inputs shared by all members.

    The same operations, in the same order and precision, as the Hugging Face module of one
    member, with each dropout mask drawn once at one member's shape and shared by all.

    Parameters
    ----------
    arch : Arch
    p : dict of str to Tensor
        The stack's leaves (:attr:`Layout.leaves`), each (K, ...).
    input_ids, mask : Tensor of int, shape (batch, width)
    training : bool
        Dropout on (training) or off.
    fused_attention : bool
        Scaled dot-product attention (SDPA; its dropout is drawn per member inside the kernel)
        or the explicit softmax with a shared dropout mask (exactly the solo computation).
    """
    import torch
    import torch.nn.functional as F

    k = next(iter(p.values())).shape[0]
    b, width = input_ids.shape
    h, n_heads = arch.hidden, arch.n_heads
    d = h // n_heads

    def dropout(x: torch.Tensor, prob: float) -> torch.Tensor:
        if not training or prob == 0:
            return x
        # One member's mask, as F.dropout would draw it alone, shared by every member.
        keep = F.dropout(torch.ones(x.shape[1:], dtype=x.dtype, device=x.device), prob, True)
        return x * keep

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        return torch.baddbmm(p[name + ".bias"].unsqueeze(1), x, p[name + ".weight"].transpose(1, 2))

    def layer_norm(x: torch.Tensor, name: str) -> torch.Tensor:
        y = F.layer_norm(x, (h,), eps=arch.eps)
        return torch.addcmul(p[name + ".bias"].unsqueeze(1), y, p[name + ".weight"].unsqueeze(1))

    def activation(x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x) if arch.activation == "gelu" else F.relu(x)

    def tokens(x: torch.Tensor) -> torch.Tensor:
        return x.view(k, b, width, h)

    def rows(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(k, b * width, h)

    pre = f"{arch.prefix}.embeddings."
    word = p[pre + "word_embeddings.weight"]
    # Member m's rows of the (K·V, H) table start at m·V: one lookup serves every member.
    offsets = torch.arange(k, device=input_ids.device).view(k, 1) * arch.vocab
    x = F.embedding(input_ids.reshape(1, -1) + offsets, word.reshape(k * arch.vocab, h))
    if arch.kind == "bert":
        x = x + p[pre + "token_type_embeddings.weight"][:, :1]
    x = tokens(x) + p[pre + "position_embeddings.weight"][:, :width].unsqueeze(1)
    x = rows(dropout(tokens(layer_norm(rows(x), pre + "LayerNorm")), arch.p_hidden))

    keep = mask.bool()
    if fused_attention:
        attend = keep.view(1, b, 1, 1, width).expand(k, b, 1, 1, width).reshape(k * b, 1, 1, width)
    else:
        bias = torch.zeros(b, 1, 1, width, device=input_ids.device)
        bias.masked_fill_(~keep.view(b, 1, 1, width), torch.finfo(torch.float32).min)
    scale = d**-0.5
    for layer in range(arch.n_layers):
        module = arch.qkv(layer)[0].rsplit(".", 1)[0]
        qkv = linear(x, module + ".qkv").view(k, b, width, 3, n_heads, d)
        q, key, value = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each (K, B, heads, L, d)
        if fused_attention:
            out = F.scaled_dot_product_attention(
                q.reshape(k * b, n_heads, width, d),
                key.reshape(k * b, n_heads, width, d),
                value.reshape(k * b, n_heads, width, d),
                attn_mask=attend,
                dropout_p=arch.p_attention if training else 0.0,
                scale=scale,
            ).view(k, b, n_heads, width, d)
        else:
            scores = torch.matmul(q, key.transpose(-1, -2)) * scale + bias
            weights = dropout(F.softmax(scores, dim=-1), arch.p_attention)
            out = torch.matmul(weights, value)
        out = out.permute(0, 1, 3, 2, 4).reshape(k, b * width, h)
        if arch.kind == "bert":
            base = f"bert.encoder.layer.{layer}."
            a = rows(dropout(tokens(linear(out, base + "attention.output.dense")), arch.p_hidden))
            x = layer_norm(a + x, base + "attention.output.LayerNorm")
            f = linear(activation(linear(x, base + "intermediate.dense")), base + "output.dense")
            x = layer_norm(rows(dropout(tokens(f), arch.p_hidden)) + x, base + "output.LayerNorm")
        else:
            base = f"distilbert.transformer.layer.{layer}."
            x = layer_norm(linear(out, base + "attention.out_lin") + x, base + "sa_layer_norm")
            f = linear(activation(linear(x, base + "ffn.lin1")), base + "ffn.lin2")
            x = layer_norm(rows(dropout(tokens(f), arch.p_hidden)) + x, base + "output_layer_norm")
    first = tokens(x)[:, :, 0]  # (K, B, H): the [CLS] token
    if arch.kind == "bert":
        pooled = torch.tanh(linear(first, "bert.pooler.dense"))
    else:
        pooled = F.relu(linear(first, "pre_classifier"))
    return linear(dropout(pooled, arch.p_head), "classifier")


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
    for prediction (4), autocast's bf16 weight copies (2), and per token and layer the tensors
    autograd saves: the fp32 layer-norm inputs (8H bytes), the low-precision inputs of the four
    projections and two feed-forward matrices and the GELU (about 7H + 2I values), and with
    explicit attention the fp32 probabilities and their dropped copy (2 × heads × width values).
    An estimate: :func:`choose_stack` leaves a margin.
    """
    a = 2 if low_precision else 4
    n = arch.n_params()
    weights = n * (16 + 4 + (2 if low_precision else 0))
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


@dataclass
class _Batch:
    input_ids: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    """(K, rows)"""
    weights: torch.Tensor | None = None
    """(rows,): 1/n_real for real rows, 0 for rows that only fill a fixed shape (graphs)."""


class StackedTrainer:
    """K stacked members of one model, trained together; kept resident and reset per group.

    Parameters
    ----------
    model : transformers model
        A loaded classifier of the architecture: its layout, and every member's first state.
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
        self.arch = arch_of(model.config)
        self.layout = Layout.of(model, self.arch)
        self.weights = StackedWeights.zeros(self.layout, k, device)
        self.grads = {
            g: torch.zeros_like(self.weights.flat[g]) for g in ("embed", "decay", "nodecay")
        }
        # Fused attention draws its dropout inside the kernel; where it has none, or on a GPU
        # (where the explicit scores would cost K × batch × heads × width² values), use it.
        self.fused_attention = device.type == "cuda" or self.arch.p_attention == 0
        self.params: dict[str, torch.Tensor] = {}
        for name, slot in self.layout.leaves.items():
            leaf = self.weights.view(slot).detach()
            if slot.group != "frozen":
                leaf.requires_grad_(True)
                # Gradients accumulate in place into views of one flat buffer per group.
                leaf.grad = self.weights.view(slot, self.grads)
            self.params[name] = leaf
        for group, grad in self.grads.items():
            self.weights.flat[group].grad = grad
        self.optimizer = self._optimizer()
        self._graphs: _GraphedSteps | None = None
        self.reset(model)

    # -- state ---------------------------------------------------------------------------------

    def _optimizer(self) -> torch.optim.Optimizer:
        import torch

        wd = self.train.weight_decay
        flat = self.weights.flat
        groups = [
            {"params": [flat["embed"], flat["decay"]], "weight_decay": wd},
            {"params": [flat["nodecay"]], "weight_decay": 0.0},
        ]
        lr: Any = self.train.learning_rate
        if self.cuda_graphs:
            lr = torch.tensor(lr, device=self.device)  # set in place per step, read by the graph
        return make_adamw(groups, lr=lr, device=self.device, capturable=self.cuda_graphs)

    def reset(self, model: Any) -> None:
        """Start every member from ``model``'s weights, in place; zero the optimiser's state."""
        import torch

        self.weights.load_state(model.state_dict())
        with torch.no_grad():
            for grad in self.grads.values():
                grad.zero_()
            for state in self.optimizer.state.values():
                for value in state.values():
                    if torch.is_tensor(value):
                        value.zero_()

    def snapshot(self, device: Any = None) -> StackedWeights:
        """A copy of the members' current weights, on ``device`` (default: the stack's).

        Always a copy, also on the stack's own device: prediction outlives the next reset.
        """
        flat = {
            g: t.detach().to(device or t.device, copy=True) for g, t in self.weights.flat.items()
        }
        return StackedWeights(self.layout, flat)

    # -- one step ------------------------------------------------------------------------------

    def _set_lr(self, factor: float) -> None:
        value = self.train.learning_rate * factor
        for group in self.optimizer.param_groups:
            if self.cuda_graphs:
                group["lr"].fill_(value)
            else:
                group["lr"] = value

    def _step(self, batch: _Batch, loss_sum: torch.Tensor) -> None:
        """Forward, backward, per-member clipping and one AdamW step of every member."""
        import torch
        import torch.nn.functional as F

        for grad in self.grads.values():
            grad.zero_()
        with autocast(self.device, self.dtype):
            logits = stacked_logits(
                self.arch,
                self.params,
                batch.input_ids,
                batch.mask,
                training=True,
                fused_attention=self.fused_attention,
            )
            ce = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), batch.labels.reshape(-1), reduction="none"
            ).view(self.k, -1)
        # Each member's loss is its own batch mean; their sum has each member's own gradient.
        losses = ce.mean(1) if batch.weights is None else (ce * batch.weights).sum(1)
        with warnings.catch_warnings():
            # The grads are strided views into flat buffers on purpose (see the class).
            warnings.filterwarnings("ignore", message="grad and param do not obey")
            losses.sum().backward()
        # clip_grad_norm_ per member: coefficient max_norm / (norm + 1e-6), at most 1.
        norms = [torch.linalg.vector_norm(g, dim=1) for g in self.grads.values()]
        norm = torch.linalg.vector_norm(torch.stack(norms), dim=0)
        coef = (self.max_grad_norm / (norm + 1e-6)).clamp(max=1.0)
        for grad in self.grads.values():
            grad.mul_(coef.unsqueeze(1))
        self.optimizer.step()
        loss_sum += losses.detach().float()

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
            else:
                batch = _Batch(
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

    def widths(self) -> list[int]:
        """Every batch width a run can meet (multiples of ``pad_multiple`` up to ``max_width``)."""
        step = self.pad_multiple
        out = list(range(step, self.max_width + 1, step))
        if not out or out[-1] != self.max_width:
            out.append(self.max_width)
        return out

    def capture_graphs(self) -> _GraphedSteps:
        """Capture the step at every width (once per trainer); call outside seeded blocks.

        Capturing runs warm-up steps, which draw random numbers: done before the first group,
        it leaves every cell's result independent of which cells ran before it in the worker.
        """
        if self._graphs is None:
            graphs = _GraphedSteps(self)
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
            else:
                batch = _Batch(
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


class _GraphedSteps:
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
        self.static: dict[int, _Batch] = {}
        self.loss = torch.zeros(trainer.k, device=trainer.device)

    def capture(self, width: int) -> None:
        import torch

        t = self.trainer
        rows, dev = t.train.batch_size, t.device
        static = _Batch(
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
        import torch

        rows, width = x.shape
        static = self.static[width]
        static.input_ids.fill_(self.trainer.pad_id)
        static.mask.zero_()
        static.mask[:, 0] = 1  # filler rows attend to one position: no empty softmax
        static.labels.zero_()
        static.input_ids[:rows].copy_(torch.from_numpy(x), non_blocking=True)
        static.mask[:rows].copy_(torch.from_numpy(m), non_blocking=True)
        static.labels[:, :rows].copy_(y, non_blocking=True)
        assert static.weights is not None
        static.weights.zero_()
        static.weights[:rows] = 1.0 / rows
        self.loss.zero_()
        self.graphs[width].replay()
        loss_sum += self.loss


# ---------------------------------------------------------------------------------------------
# Prediction


def predict_stacked(
    arch: Arch,
    weights: StackedWeights,
    ids: Sequence[np.ndarray],
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    pad_id: int,
    batch_size: int,
    pad_multiple: int = 1,
    max_width: int | None = None,
) -> np.ndarray:
    """Class probabilities of every member, shape (K, n, n_classes), in length-sorted batches."""
    import torch

    out = np.zeros((weights.k, len(ids), arch.n_classes), dtype=np.float64)
    params = weights.leaves()
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
                logits = stacked_logits(
                    arch,
                    params,
                    x,
                    m,
                    training=False,
                    fused_attention=True,
                )
            out[:, batch] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return out


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def iter_chunks(items: Sequence[Any], sizes: Sequence[int]) -> Iterator[Sequence[Any]]:
    """Consecutive slices of ``items`` of the given sizes."""
    start = 0
    for size in sizes:
        yield items[start : start + size]
        start += size
