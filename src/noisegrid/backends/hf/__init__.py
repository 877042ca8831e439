"""Shared machinery of the Hugging Face backends (``finetune`` and ``embed``); not a backend.

- :mod:`.models`: where a model comes from (hub, local Hugging Face cache, bundled copy, folder),
  the checks before any work, its content identity, and loading config, tokenizer and weights.
- :mod:`.tokens`: token ids and embeddings cached on disk by content, and length-grouped or
  length-sorted, dynamically padded batches.
- :mod:`.device`: device and precision choice (bf16 where native), autocast, per-cell seeding.
- :mod:`.assets`: the setup both backends run once per worker (:func:`load_model_assets`).

The backends use these names as ``hf.<name>`` (``from . import hf``).
"""

from .assets import ModelAssets, load_model_assets
from .device import (
    autocast,
    autocast_dtype,
    batch_parallel,
    choose_device,
    cpu_has_native_bf16,
    precision_name,
    seeded,
)
from .models import (
    BUNDLED_MODELS,
    DEFAULT_MAX_LENGTH,
    EXTRA,
    BundledModel,
    Capability,
    ModelInfo,
    ModelRef,
    ModelSource,
    bundled_model_path,
    check_backend_model,
    folder_identity,
    hub_online,
    inspect_model,
    load_config,
    load_pretrained,
    load_tokenizer,
    model_identity,
    model_max_length,
    require_hf,
    resolve_model,
)
from .tokens import (
    CPU_BATCH_TOKENS,
    LENGTH_GROUP_FACTOR,
    ArrayCache,
    TokenCache,
    cache_key,
    inference_batch_tokens,
    inference_batches,
    length_grouped_batches,
    pad_batch,
    padded_inputs,
    sorted_batches,
    text_digest,
    token_lengths,
)

__all__ = [
    "BUNDLED_MODELS",
    "CPU_BATCH_TOKENS",
    "DEFAULT_MAX_LENGTH",
    "EXTRA",
    "LENGTH_GROUP_FACTOR",
    "ArrayCache",
    "BundledModel",
    "Capability",
    "ModelAssets",
    "ModelInfo",
    "ModelRef",
    "ModelSource",
    "TokenCache",
    "autocast",
    "autocast_dtype",
    "batch_parallel",
    "bundled_model_path",
    "cache_key",
    "check_backend_model",
    "choose_device",
    "cpu_has_native_bf16",
    "folder_identity",
    "hub_online",
    "inference_batch_tokens",
    "inference_batches",
    "inspect_model",
    "length_grouped_batches",
    "load_config",
    "load_model_assets",
    "load_pretrained",
    "load_tokenizer",
    "model_identity",
    "model_max_length",
    "pad_batch",
    "padded_inputs",
    "precision_name",
    "require_hf",
    "resolve_model",
    "seeded",
    "sorted_batches",
    "text_digest",
    "token_lengths",
]
