"""Any encoder, stacked: K copies of the user's own model in one module tree (module surgery).

Horizontal fusion (as in HFTA, Wang et al., MLSys 2021) applied to a loaded Hugging Face model:
every parameterised leaf — ``nn.Linear``, ``nn.LayerNorm``, ``nn.Embedding`` — is replaced by a
*stacked* leaf holding ``(K, ...)`` weights, the K members are folded into the batch (``K·B``
rows, member-major: rows ``m·B … m·B + B − 1`` are member m's), and the model's own forward runs
unchanged. Parameter-free parts (attention kernels, activations, masks, rotary embeddings) need
nothing. A stacked linear layer is one batched matrix product over the members, a stacked
embedding one lookup into the members' tables laid end to end.

Every dropout mask is drawn once per step at one member's shape and shared by all members (common
random numbers, as a cell trained alone draws it): ``nn.Dropout`` modules are replaced by
``SharedDropout``. On a CPU (``per_member``) every layer runs member by member with the kernels
the model alone uses, and SDPA attention runs once per member from the same generator state
(:func:`_member_sdpa`), so each member draws the attention-dropout mask its cell alone draws; a
model with attention code of its own shares its functional dropout through
:func:`shared_functional_dropout`. A GPU batches every layer over the members and runs attention
in the fused kernel, which draws each member's attention-dropout mask itself.

Code that reads a weight directly instead of calling its module is the catch: DeBERTa-v2/v3 reads
its relative-position table as ``.weight`` and shares it across the batch, so its attention bias
gets a stacked form here (:func:`_stack_deberta_attention`). Whatever else is not covered is found
by :func:`self_check`: K = 2 on a probe batch against the model alone; a model that differs trains
one cell at a time.

torch is imported only inside functions, and the module classes are built on first use.
"""

from __future__ import annotations

import copy
import functools
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..hf.device import active_autocast_dtype

if TYPE_CHECKING:
    import torch

TESTED_TYPES = (
    "bert",
    "distilbert",
    "roberta",
    "xlm-roberta",
    "electra",
    "deberta-v2",
    "modernbert",
    "albert",
)
"""Model types whose stacked members are tested to equal the models trained alone (tiny random
configs, dropout on, CPU). Any other model stacks when it passes :func:`self_check`."""

SELF_CHECK_TOLERANCE = 1e-4
"""Largest |logit difference| between a stacked member and the model alone that passes (fp32)."""


@dataclass
class StackContext:
    """What the stacked leaves of one stacked model share."""

    k: int
    per_member: bool = False
    """Member by member, with the solo kernels (exact on a CPU), not batched over members."""
    rows: int = 0
    """Rows of the current forward pass per member (B); ``K·B`` rows in all."""
    layout_gradients: bool = True
    """Batched linear layers through ``StackedMatmul`` (weight gradients in the weights' layout);
    False: autograd's own derivative of ``bmm`` (benchmarks compare the two)."""


@dataclass
class Leaf:
    """One stacked parameter: where the original model kept it and what it is."""

    name: str
    """The Hugging Face parameter name (``bert.encoder.layer.0.attention.self.query.weight``)."""
    module: str
    attr: str
    shape: tuple[int, ...]
    """One member's shape."""
    kind: str
    """``linear``, ``norm`` or ``embedding``."""
    requires_grad: bool = True
    padding_idx: int | None = None


@dataclass
class Surgery:
    """The stacked module tree of a model and the parameters it expects to be bound."""

    model: Any
    leaves: list[Leaf]
    context: StackContext
    functional_dropout: bool = False
    """Share the functional (attention) dropout masks while training (CPU, eager attention)."""
    compiled_forward: Any = None
    """The evaluation forward compiled by ``torch.compile`` (kept for every later evaluation)."""
    eager_only: bool = False
    """The forward failed to compile once: evaluate eagerly from then on."""


class NotStackable(Exception):
    """A model (or one of its modules) the surgery does not cover; the message says which."""


# ---------------------------------------------------------------------------------------------
# The stacked leaves


@functools.cache
def _classes() -> types.SimpleNamespace:
    """The stacked module classes (defined here so that torch loads only when used)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class StackedMatmul(torch.autograd.Function):
        """``x Wᵀ + b`` for K members at once, (K, R, in) → (K, R, out), under autocast's rules
        (the matrix product in the autocast dtype), with each weight's gradient computed in the
        weight's own layout: ``gyᵀ x`` is (K, out, in) like the weight, so it accumulates into the
        stack's member-major buffer as a plain elementwise add. Autograd's own derivative of
        ``bmm(x, Wᵀ)`` is ``(xᵀ gy)ᵀ``, a transposed tensor whose accumulation (and cast) reads
        memory across rows, for every weight on every step."""

        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: Any) -> torch.Tensor:
            kind = x.device.type
            dt = active_autocast_dtype(kind) or torch.promote_types(x.dtype, w.dtype)
            xc, wc = x.to(dt), w.to(dt)
            with torch.autocast(kind, enabled=False):
                if b is None:
                    y = torch.bmm(xc, wc.transpose(1, 2))
                else:
                    y = torch.baddbmm(b.to(dt).unsqueeze(1), xc, wc.transpose(1, 2))
            ctx.save_for_backward(xc, wc)
            ctx.dtypes = (x.dtype, w.dtype, None if b is None else b.dtype)
            return y

        @staticmethod
        def backward(ctx: Any, gy: torch.Tensor) -> tuple[Any, Any, Any]:
            xc, wc = ctx.saved_tensors
            x_dtype, w_dtype, b_dtype = ctx.dtypes
            need_x, need_w, need_b = ctx.needs_input_grad
            gx = torch.bmm(gy, wc).to(x_dtype) if need_x else None
            gw = torch.bmm(gy.transpose(1, 2), xc).to(w_dtype) if need_w else None
            gb = gy.sum(1).to(b_dtype) if b_dtype is not None and need_b else None
            return gx, gw, gb

    class StackedLinear(nn.Module):
        """K linear layers: one batched matrix product over member-major rows."""

        def __init__(self, context: StackContext, has_bias: bool) -> None:
            super().__init__()
            self.context = context
            self.has_bias = has_bias
            self.weight: Any = None
            self.bias: Any = None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            k = self.context.k
            if self.context.per_member:
                w, b = self.weight, self.bias
                return torch.cat(
                    [
                        F.linear(xm, w[m], None if b is None else b[m])
                        for m, xm in enumerate(x.chunk(k))
                    ]
                )
            lead = x.shape[:-1]
            x3 = x.reshape(k, -1, x.shape[-1])
            if self.context.layout_gradients:
                y = StackedMatmul.apply(x3, self.weight, self.bias)
            elif self.bias is None:
                y = torch.bmm(x3, self.weight.transpose(1, 2))
            else:
                y = torch.baddbmm(self.bias.unsqueeze(1), x3, self.weight.transpose(1, 2))
            return y.view(*lead, y.shape[-1])

    class StackedLayerNorm(nn.Module):
        """K layer norms: the shared normalisation, then each member's scale and shift."""

        def __init__(self, context: StackContext, normalized_shape: tuple[int, ...], eps: float):
            super().__init__()
            self.context = context
            self.normalized_shape = normalized_shape
            self.eps = eps
            self.weight: Any = None
            self.bias: Any = None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            k = self.context.k
            if self.context.per_member and self.weight is not None:
                w, b = self.weight, self.bias
                ns = self.normalized_shape
                return torch.cat(
                    [
                        F.layer_norm(xm, ns, w[m], None if b is None else b[m], self.eps)
                        for m, xm in enumerate(x.chunk(k))
                    ]
                )
            y = F.layer_norm(x, self.normalized_shape, None, None, self.eps)
            if self.weight is None:
                return y
            y3 = y.reshape(k, -1, *self.normalized_shape)
            w = self.weight.view(k, 1, *self.normalized_shape)
            out = (
                y3 * w
                if self.bias is None
                else torch.addcmul(self.bias.view(k, 1, *self.normalized_shape), y3, w)
            )
            return out.view(y.shape)

    class StackedEmbedding(nn.Module):
        """K embedding tables laid end to end: member m's rows start at m·V (one lookup).

        Ids with one row (positions shared by a batch) are looked up in every member's table and
        repeated over the member's rows.
        """

        def __init__(self, context: StackContext, n_embeddings: int, dim: int) -> None:
            super().__init__()
            self.context = context
            self.n_embeddings = n_embeddings
            self.dim = dim
            self.weight: Any = None

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            k, v = self.context.k, self.n_embeddings
            table = self.weight.reshape(k * v, self.dim)
            offsets = torch.arange(k, device=ids.device).view(k, 1) * v
            n = ids.shape[0]
            if n % k == 0:
                out = F.embedding(ids.reshape(k, -1) + offsets, table)
                return out.view(*ids.shape, self.dim)
            if n == 1:
                rows = self.context.rows
                out = F.embedding(ids.reshape(1, -1) + offsets, table)  # (K, L·…, D)
                out = out.view(k, 1, *ids.shape[1:], self.dim)
                out = out.expand(k, rows, *ids.shape[1:], self.dim)
                return out.reshape(k * rows, *ids.shape[1:], self.dim)
            raise RuntimeError(f"a stacked embedding got {n} rows for {k} members")

    class SharedDropout(nn.Module):
        """Dropout whose mask is drawn at one member's shape and shared by every member."""

        def __init__(self, context: StackContext, p: float) -> None:
            super().__init__()
            self.context = context
            self.p = p

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or self.p == 0:
                return x
            return shared_dropout(x, self.p, self.context.k)

    return types.SimpleNamespace(
        StackedMatmul=StackedMatmul,
        StackedLinear=StackedLinear,
        StackedLayerNorm=StackedLayerNorm,
        StackedEmbedding=StackedEmbedding,
        SharedDropout=SharedDropout,
    )


def shared_dropout(x: torch.Tensor, p: float, k: int) -> torch.Tensor:
    """``F.dropout(x, p)`` with one member's mask (drawn as the member alone draws it) for all.

    ``x`` has K member-major blocks along its first dimension.
    """
    import torch

    n = x.shape[0]
    member = (n // k, *x.shape[1:])
    keep = torch.dropout(torch.ones(member, dtype=x.dtype, device=x.device), p, True)
    return (x.view(k, *member) * keep).view(x.shape)


def shared_functional_dropout(k: int) -> Any:
    """A torch function mode in which ``F.dropout`` shares one member's mask (see module doc)."""
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    class _Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is F.dropout:
                x = args[0]
                p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
                training = kwargs.get("training", args[2] if len(args) > 2 else True)
                if training and p > 0 and x.dim() > 0 and x.shape[0] % k == 0:
                    return shared_dropout(x, p, k)
            return func(*args, **kwargs)

    return _Mode()


# ---------------------------------------------------------------------------------------------
# Surgery


def stack_model(model: Any, k: int, *, per_member: bool = False) -> Surgery:
    """K stacked copies of ``model`` (a module tree without weights: bind them with :func:`bind`).

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The loaded classifier (its weights are not copied; its structure and buffers are).
    k : int
        Members.
    per_member : bool, default False
        Compute linear layers, layer norms and attention member by member, with the kernels the
        model alone uses (a CPU: each member then equals its cell trained alone up to the last
        bit, not only up to rounding; a GPU uses the batched kernels).

    Raises
    ------
    NotStackable
        A module holds parameters the surgery has no stacked form for.
    """
    from torch import nn

    cls = _classes()
    context = StackContext(k=k, per_member=per_member)
    # The copy keeps the structure and buffers; its weights are dropped with the replaced leaves.
    meta = _without_parameters(model)
    leaves: list[Leaf] = []
    replaced: dict[int, nn.Module] = {}
    for name, module in list(meta.named_modules()):
        if id(module) in replaced:
            continue
        original = _module(model, name)
        new: nn.Module | None = None
        kind = None
        if isinstance(original, nn.Linear):
            new = cls.StackedLinear(context, original.bias is not None)
            kind = "linear"
        elif isinstance(original, nn.LayerNorm):
            new = cls.StackedLayerNorm(context, tuple(original.normalized_shape), original.eps)
            kind = "norm"
        elif isinstance(original, nn.Embedding):
            if original.max_norm is not None:
                raise NotStackable(f"{name}: an embedding with max_norm")
            new = cls.StackedEmbedding(context, original.num_embeddings, original.embedding_dim)
            kind = "embedding"
        elif isinstance(original, nn.Dropout):
            new = cls.SharedDropout(context, original.p)
        else:
            own = list(original.named_parameters(recurse=False))
            if own:
                names = ", ".join(n for n, _ in own)
                raise NotStackable(
                    f"{name} ({type(original).__name__}) holds parameters ({names}) that have no "
                    "stacked form"
                )
        if new is None:
            continue
        new.train(original.training)
        replaced[id(module)] = new
        if kind is not None:
            for attr, param in original.named_parameters(recurse=False):
                leaves.append(
                    Leaf(
                        name=f"{name}.{attr}" if name else attr,
                        module=name,
                        attr=attr,
                        shape=tuple(param.shape),
                        kind=kind,
                        requires_grad=param.requires_grad,
                        padding_idx=getattr(original, "padding_idx", None),
                    )
                )
    _replace(meta, replaced)
    surgery = Surgery(model=meta, leaves=leaves, context=context)
    if per_member:
        impl = getattr(getattr(meta, "config", None), "_attn_implementation", None)
        if impl == "sdpa" and _register_member_attention():
            for module in meta.modules():
                module._noisegrid_members = k
            _set_attention(meta, MEMBER_ATTENTION)
        else:  # the model's own attention; share its functional dropout masks
            surgery.functional_dropout = True
    _stack_deberta_attention(meta, context)
    return surgery


def _without_parameters(model: Any) -> Any:
    """A deep copy of ``model`` whose parameters are empty placeholders (no weight memory)."""
    import torch

    memo: dict[int, Any] = {}
    for param in model.parameters():
        memo[id(param)] = torch.nn.Parameter(
            torch.empty(0, dtype=param.dtype), requires_grad=param.requires_grad
        )
    return copy.deepcopy(model, memo)


def _module(root: Any, name: str) -> Any:
    return root.get_submodule(name) if name else root


def _replace(root: Any, replaced: dict[int, Any]) -> None:
    """Put each replacement where its original sat (under every parent that holds it)."""
    for module in list(root.modules()):
        for child_name, child in list(module.named_children()):
            if id(child) in replaced:
                setattr(module, child_name, replaced[id(child)])


def _set_attention(model: Any, name: str) -> None:
    setter = getattr(model, "set_attn_implementation", None)
    if setter is not None:
        setter(name)
    else:  # pragma: no cover - older transformers
        model.config._attn_implementation = name


def bind(surgery: Surgery, tensors: dict[str, torch.Tensor], grads: dict | None = None) -> None:
    """Give every stacked leaf its ``(K, ...)`` tensor (views, no copy), and its gradient view.

    ``tensors[name]`` is the stack of parameter ``name``; with ``grads``, trainable leaves require
    gradients that accumulate in place into ``grads[name]``.
    """
    from torch import nn

    for leaf in surgery.leaves:
        module = _module(surgery.model, leaf.module)
        trainable = grads is not None and leaf.requires_grad
        param = nn.Parameter(tensors[leaf.name], requires_grad=trainable)
        if trainable:
            param.grad = grads[leaf.name]  # type: ignore[index]
        # Registered as a parameter, so that the module tree's parameters are the stack's.
        module._parameters[leaf.attr] = param
        if leaf.attr in module.__dict__:
            del module.__dict__[leaf.attr]


def stacked_logits(
    surgery: Surgery, input_ids: torch.Tensor, mask: torch.Tensor, *, training: bool
) -> torch.Tensor:
    """Logits of every member, shape (K, batch, n_classes), for inputs shared by all members."""
    import contextlib

    k = surgery.context.k
    b = input_ids.shape[0]
    surgery.context.rows = b
    model = surgery.model
    if model.training != training:
        model.train(training)
    ids = input_ids.repeat(k, 1)
    m = mask.repeat(k, 1)
    mode = (
        shared_functional_dropout(k)
        if training and surgery.functional_dropout
        else contextlib.nullcontext()
    )
    with mode:
        logits = model(input_ids=ids, attention_mask=m).logits
    return logits.view(k, b, -1)


# ---------------------------------------------------------------------------------------------
# Model-specific code that reads weights directly


def _stack_deberta_attention(model: Any, context: StackContext) -> None:
    """DeBERTa-v2/v3: the relative-position table is read as ``.weight`` (K, 2S, H) and shared by
    the batch; its attention bias projects each member's table and repeats it over its rows."""
    for module in model.modules():
        if type(module).__name__ == "DisentangledSelfAttention" and hasattr(
            module, "disentangled_attention_bias"
        ):
            module.disentangled_attention_bias = types.MethodType(
                functools.partial(_deberta_bias, context=context), module
            )


def _deberta_bias(
    self: Any,
    query_layer: torch.Tensor,
    key_layer: torch.Tensor,
    relative_pos: torch.Tensor | None,
    rel_embeddings: torch.Tensor,
    scale_factor: int,
    *,
    context: StackContext,
) -> torch.Tensor:
    """``DisentangledSelfAttention.disentangled_attention_bias`` with per-member tables."""
    import torch
    from transformers.models.deberta_v2 import modeling_deberta_v2 as deberta

    if relative_pos is None:
        relative_pos = deberta.build_relative_position(
            query_layer,
            key_layer,
            bucket_size=self.position_buckets,
            max_position=self.max_relative_positions,
        )
    if relative_pos.dim() == 2:
        relative_pos = relative_pos.unsqueeze(0).unsqueeze(0)
    elif relative_pos.dim() == 3:
        relative_pos = relative_pos.unsqueeze(1)
    elif relative_pos.dim() != 4:
        raise ValueError(f"Relative position ids must be of dim 2 or 3 or 4. {relative_pos.dim()}")
    att_span = self.pos_ebd_size
    relative_pos = relative_pos.to(device=query_layer.device, dtype=torch.long)
    k, heads = context.k, self.num_attention_heads
    rows = query_layer.size(0) // heads // k
    rel = rel_embeddings.view(k, -1, rel_embeddings.shape[-1])[:, 0 : att_span * 2, :]

    def project(proj: Any) -> torch.Tensor:
        layer = self.transpose_for_scores(proj(rel), heads)  # (K·heads, 2S, d)
        layer = layer.view(k, 1, heads, *layer.shape[1:])
        return layer.expand(k, rows, *layer.shape[2:]).reshape(k * rows * heads, *layer.shape[3:])

    if self.share_att_key:
        pos_query_layer = project(self.query_proj)
        pos_key_layer = project(self.key_proj)
    else:
        if "c2p" in self.pos_att_type:
            pos_key_layer = project(self.pos_key_proj)
        if "p2c" in self.pos_att_type:
            pos_query_layer = project(self.pos_query_proj)
    score: Any = 0
    if "c2p" in self.pos_att_type:
        scale = deberta.scaled_size_sqrt(pos_key_layer, scale_factor)
        c2p_att = torch.bmm(query_layer, pos_key_layer.transpose(-1, -2))
        c2p_pos = torch.clamp(relative_pos + att_span, 0, att_span * 2 - 1)
        c2p_att = torch.gather(
            c2p_att,
            dim=-1,
            index=c2p_pos.squeeze(0).expand(
                [query_layer.size(0), query_layer.size(1), relative_pos.size(-1)]
            ),
        )
        score += c2p_att / scale.to(dtype=c2p_att.dtype)
    if "p2c" in self.pos_att_type:
        scale = deberta.scaled_size_sqrt(pos_query_layer, scale_factor)
        r_pos = deberta.build_rpos(
            query_layer, key_layer, relative_pos, self.max_relative_positions, self.position_buckets
        )
        p2c_pos = torch.clamp(-r_pos + att_span, 0, att_span * 2 - 1)
        p2c_att = torch.bmm(key_layer, pos_query_layer.transpose(-1, -2))
        p2c_att = torch.gather(
            p2c_att,
            dim=-1,
            index=p2c_pos.squeeze(0).expand(
                [query_layer.size(0), key_layer.size(-2), key_layer.size(-2)]
            ),
        ).transpose(-1, -2)
        score += p2c_att / scale.to(dtype=p2c_att.dtype)
    return score


# ---------------------------------------------------------------------------------------------
# The self-check


def self_check(model: Any, *, vocab: int, pad_id: int) -> str | None:
    """Why ``model`` does not stack, or None: K = 2 on a probe batch against the model alone.

    The first member holds ``model``'s weights, the second the same weights nudged (so that a
    member reading the other's weights shows); each must give the logits its weights give in the
    model alone (CPU, fp32, dropout off), within :data:`SELF_CHECK_TOLERANCE`.
    """
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    b, width = 3, 12
    ids = torch.as_tensor(rng.integers(min(5, vocab - 1), vocab, size=(b, width)))
    mask = torch.ones(b, width, dtype=torch.int64)
    mask[1, 8:] = 0
    ids[1, 8:] = pad_id
    state = {n: p.detach().float().cpu() for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    nudged = {n: t + 0.02 * torch.randn(t.shape, generator=gen) for n, t in state.items()}
    try:
        surgery = stack_model(model, 2)
    except NotStackable as exc:
        return str(exc)
    tensors = {
        leaf.name: torch.stack([state[leaf.name], nudged[leaf.name]]) for leaf in surgery.leaves
    }
    bind(surgery, tensors)
    surgery.model.float().eval()
    second = copy.deepcopy(model).float().eval()
    with torch.no_grad():
        for name, param in second.named_parameters():
            param.copy_(nudged[name])
        try:
            stacked = stacked_logits(surgery, ids, mask, training=False).float()
        except Exception as exc:  # the model's own code failed on stacked leaves: say how
            return f"its forward fails when stacked ({type(exc).__name__}: {exc})"
        was_training = model.training
        model.eval()
        try:
            solo = [m(input_ids=ids, attention_mask=mask).logits.float() for m in (model, second)]
        finally:
            model.train(was_training)
    for member, expected in enumerate(solo):
        diff = float((stacked[member] - expected).abs().max())
        if not diff <= SELF_CHECK_TOLERANCE:
            return f"member {member} differs from the model alone by {diff:.2g} in logits"
    return None


# ---------------------------------------------------------------------------------------------
# Attention member by member (CPU)

MEMBER_ATTENTION = "noisegrid_member_sdpa"
"""The attention a CPU stack trains with under attention dropout (:func:`_member_sdpa`)."""


@functools.cache
def _register_member_attention() -> bool:
    """Register :data:`MEMBER_ATTENTION` with transformers (its masks are SDPA's); False where
    this transformers has no attention interface."""
    try:
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
        from transformers.modeling_utils import AttentionInterface
    except ImportError:  # pragma: no cover - transformers before the attention interface
        return False
    AttentionInterface.register(MEMBER_ATTENTION, _member_sdpa)
    AttentionMaskInterface.register(MEMBER_ATTENTION, sdpa_mask)
    return True


def _member_sdpa(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, one member at a time, each from the same random state.

    SDPA draws its attention-dropout mask inside the kernel; replaying the generator's state
    for every member gives each member the mask the cell alone draws, at the cost of K calls.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    k = module._noisegrid_members
    start = torch.get_rng_state()
    outs = []
    for q, kk, v, m in zip(
        query.chunk(k),
        key.chunk(k),
        value.chunk(k),
        _chunks(attention_mask, k),
        strict=True,
    ):
        torch.set_rng_state(start)
        outs.append(sdpa_attention_forward(module, q, kk, v, m, **kwargs)[0])
    return torch.cat(outs), None


def _chunks(mask: torch.Tensor | None, k: int) -> list[Any]:
    if mask is None or mask.shape[0] == 1:
        return [mask] * k
    return list(mask.chunk(k))
