"""The one setup sequence of the Hugging Face backends: what a worker loads once, before any cell.

:func:`load_model_assets` resolves and checks the model, chooses the device and the autocast
precision, and loads the tokenizer; ``embed`` adds its embedding cache and ``finetune`` its token
cache (:meth:`ModelAssets.token_cache`) and config overrides.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .device import autocast_dtype, choose_device
from .models import Capability, ModelInfo, inspect_model, load_tokenizer, model_identity
from .tokens import TokenCache

if TYPE_CHECKING:
    import torch

    from ...config import TrainSpec


@dataclass
class ModelAssets:
    """What a Hugging Face backend loads once per worker (see :func:`load_model_assets`).

    Attributes
    ----------
    info : ModelInfo
        Where the model comes from and its truncation length.
    tokenizer : transformers tokenizer
        With a padding token.
    identity : str
        The model's content identity, for cache keys (:func:`~.models.model_identity`).
    device : torch.device
    dtype : torch.dtype or None
        The autocast dtype for ``[train] precision`` (None: plain fp32).
    """

    info: ModelInfo
    tokenizer: Any
    identity: str
    device: torch.device
    dtype: torch.dtype | None

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def pad_multiple(self) -> int:
        """Batch widths are padded to a multiple of this: 8 suits GPU tensor cores."""
        return 8 if self.device.type == "cuda" else 1

    def token_cache(self, cache_dir: Path) -> TokenCache:
        """The on-disk token ids of this model at its truncation length, under ``cache_dir``."""
        return TokenCache(
            self.tokenizer,
            max_length=self.info.max_length,
            cache_dir=cache_dir,
            identity=self.identity,
        )


def load_model_assets(
    model: str, *, need: Capability, train: TrainSpec, purpose: str
) -> ModelAssets:
    """Resolve and check ``[backend] model``, choose device and precision, load the tokenizer.

    Parameters
    ----------
    model : str
        ``[backend] model``: a hub id or a local folder.
    need : {"classify", "encode"}
        What the backend needs the model to do (see :func:`~.models.inspect_model`).
    train : TrainSpec
        ``[train]``: ``max_length`` and ``precision`` are read.
    purpose : str
        The backend, for messages, e.g. ``"the 'embed' backend"``.

    Returns
    -------
    ModelAssets

    Raises
    ------
    MissingDependencyError
        torch or transformers is not installed.
    BackendError
        The model cannot be found, loaded or used as needed, or the precision is unsupported.
    """
    info = inspect_model(model, need=need, max_length=train.max_length, purpose=purpose)
    device = choose_device()
    dtype = autocast_dtype(device, train.precision)
    return ModelAssets(
        info=info,
        tokenizer=load_tokenizer(info.ref),
        identity=model_identity(info.ref),
        device=device,
        dtype=dtype,
    )
