"""``embed``: a frozen pretrained encoder's embeddings + a logistic-regression head per cell.

The encoder (``[backend] model``, default ``sentence-transformers/all-MiniLM-L6-v2``) turns each
text into one vector — the mean of its token states (``pooling = "mean"``, default) or the first
token's (``"cls"``) — and each cell trains only a logistic regression on those vectors
(``C`` sets its inverse regularisation strength). Transformer-quality features, minutes per grid
on a laptop CPU.

The encoder computes in ``[backend] precision``: ``fp32``, ``bf16`` or ``fp16`` autocast, or
``int8`` (its linear layers but the down-projections dynamically quantised, on CPUs). ``auto``
takes bf16 on CPUs with native bf16, int8 on other CPUs (faster than fp32 at a small cost in
accuracy; measured in docs/backends.md) and autocast's choice on GPUs. On a CPU, batches of at
most 2,048 tokens are encoded on every core at once, one batch per core.

Embeddings are cached on disk under the backend's ``cache_dir``, keyed by content: the model's
identity (a hash of its files, or hub id and revision), ``[train] max_length``, pooling, the
encoder's precision (so fp32 and int8 embeddings never mix) and a hash of each text. Every cell,
worker and later run reuses them. A grid encodes only the texts it can use — the largest subsample
of each seed plus the test sample — once, in length-sorted batches (:meth:`EmbedBackend.prepare`).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from ..errors import BackendError
from . import BACKENDS, hf
from .base import Backend, BackendContext, BackendOptions, FitOutput, Predictor

if TYPE_CHECKING:
    import torch
    from sklearn.pipeline import Pipeline

    from ..config import ExperimentSpec
    from ..data import Corpus

log = logging.getLogger("noisegrid")
PURPOSE = "the 'embed' backend"
LOG_EVERY_S = 30.0
"""Seconds between progress lines while encoding."""


Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]


class EmbedOptions(BackendOptions):
    """``[backend]`` options of ``embed``."""

    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    """Hugging Face hub id or local folder of the encoder."""
    pooling: Literal["mean", "cls"] = "mean"
    """``mean``: average of the token states (attention-masked); ``cls``: the first token's."""
    normalize: bool = True
    """L2-normalise each embedding before the head (as sentence-transformers models expect)."""
    C: float = Field(default=0.01, gt=0)
    """Inverse regularisation strength of the logistic regression on standardised features. The
    default was chosen by 5-fold cross-validation on IMDB training subsamples of 1,000 and 5,000
    (MiniLM embeddings), where it beat C = 1 by 1-5 accuracy points."""
    max_iter: int = Field(default=1000, ge=1)
    class_weight: Literal["balanced"] | None = None
    precision: Precision = "auto"
    """The encoder's compute precision: ``fp32``; ``bf16`` or ``fp16`` autocast; ``int8``, its
    linear layers dynamically quantised (CPUs only); ``auto``: ``[train] precision`` when that is
    set to another value, else bf16 on CPUs with native bf16 (AVX512-BF16 / AMX), int8 on other
    CPUs, bf16 or fp16 on GPUs."""


@dataclass
class _Setup(hf.ModelAssets):
    """Per-worker assets: the model's (shared by the Hugging Face backends) and the embeddings."""

    store: hf.ArrayCache
    precision: str
    """What the encoder computes in: ``fp32``, ``bf16``, ``fp16`` or ``int8-<engine>``."""


def int8_engine() -> str | None:
    """The quantised-kernel engine for int8 linear layers on this CPU, or None without one."""
    import torch

    try:
        from torch.ao.quantization import quantize_dynamic  # noqa: F401
    except ImportError:  # pragma: no cover - a torch without eager-mode quantisation
        return None
    engine = str(torch.backends.quantized.engine)
    if engine != "none":
        return engine
    engines = torch.backends.quantized.supported_engines
    preferred = [e for e in ("x86", "fbgemm", "qnnpack") if e in engines]
    return preferred[0] if preferred else None


def requested_precision(backend: str, train: str) -> str:
    """``[backend] precision``, or ``[train] precision`` where only that one is set (not auto).

    Examples
    --------
    >>> requested_precision("auto", "fp32"), requested_precision("int8", "fp32")
    ('fp32', 'int8')
    """
    return train if backend == "auto" and train != "auto" else backend


def encoder_precision(requested: str, device: torch.device) -> str:
    """The precision the encoder runs in for ``[backend] precision`` on ``device``.

    Returns ``fp32``, ``bf16``, ``fp16`` or ``int8``. ``auto``: autocast's choice on GPUs; on
    CPUs bf16 where it is native, else int8 where torch has quantised kernels, else fp32.

    Raises
    ------
    BackendError
        ``int8`` on a GPU, or on a torch without quantised CPU kernels.
    """
    if requested == "int8":
        if device.type != "cpu":
            raise BackendError(
                f"[backend] precision 'int8' runs on CPUs only, and this run uses {device.type}; "
                "use precision = 'auto', 'bf16', 'fp16' or 'fp32'"
            )
        if int8_engine() is None:
            raise BackendError(
                "[backend] precision 'int8' needs torch's quantised CPU kernels, which this torch "
                "build lacks; use precision = 'auto' or 'fp32'"
            )
        return "int8"
    if requested != "auto":
        return requested
    if device.type != "cpu":
        return hf.precision_name(hf.autocast_dtype(device, "auto"))
    if hf.cpu_has_native_bf16():
        return "bf16"
    return "int8" if int8_engine() is not None else "fp32"


INT8_SCHEME = "per-channel weights; down-projections fp32"
"""Which linear layers int8 quantises, and how; part of the embedding cache key."""


def int8_layers(model: Any) -> list[str]:
    """Names of the linear layers :func:`quantize_int8` quantises: all but the down-projections.

    A down-projection (more inputs than outputs: a transformer's feed-forward output, 1536 → 384
    in MiniLM) takes the activations after GELU, whose outliers one scale per batch tensor
    resolves worst. Keeping those in fp32 lifts MiniLM's mean cosine to the fp32 embeddings on
    IMDB reviews from 0.975 to 0.989 for about 7% of int8's speed.
    """
    import torch

    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module.in_features <= module.out_features
    ]


def quantize_int8(model: Any) -> Any:
    """``model`` with its linear layers (:func:`int8_layers`) dynamically quantised to int8.

    Weights get one scale per output channel (mean cosine 0.975 to fp32 with every linear layer
    quantised, against 0.92 with one scale per layer), activations one per batch tensor: an
    embedding depends slightly on which texts share its batch (with every layer quantised, cosine
    0.977 for batches of one text, 0.976 for the default batches), and the cache keeps the first
    one computed.
    """
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    engine = int8_engine()
    if engine is not None:
        torch.backends.quantized.engine = engine
    layers = dict.fromkeys(int8_layers(model), per_channel_dynamic_qconfig)
    with warnings.catch_warnings():
        # Eager-mode quantisation is deprecated in favour of torchao, which is not a dependency.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*quantize_per_", category=UserWarning)
        return quantize_dynamic(model, layers, dtype=torch.qint8)


@BACKENDS.register("embed")
class EmbedBackend(Backend):
    """Frozen encoder (embeddings cached on disk) + logistic regression per cell."""

    Options = EmbedOptions
    train_keys = ("max_length", "precision", "eval_batch_size")
    uses_gpu = True
    options: EmbedOptions
    extra = hf.EXTRA

    def __init__(self, options: BackendOptions, context: BackendContext) -> None:
        super().__init__(options, context)
        self._setup: _Setup | None = None
        self._encoder: Any = None
        self.n_encoded = 0
        """Texts this instance ran through the encoder (0 when everything was cached)."""

    @classmethod
    def check(cls, spec: ExperimentSpec) -> None:
        """Dependencies, the model (exists, is an encoder), ``max_length`` within its limit."""
        hf.check_backend_model(cls, spec, need="encode", purpose=PURPOSE)
        requested = str(spec.backend_options().get("precision", "auto"))
        encoder_precision(requested_precision(requested, spec.train.precision), hf.choose_device())

    def setup(self) -> _Setup:
        """Resolve the model, load its tokenizer and open the embedding cache (once per worker)."""
        if self._setup is None:
            requested = requested_precision(self.options.precision, self.context.train.precision)
            precision = encoder_precision(requested, hf.choose_device())
            # Autocast for the float precisions; int8 layers take fp32 inputs.
            autocast = "fp32" if precision == "int8" else precision
            train = self.context.train.model_copy(update={"precision": autocast})
            assets = hf.load_model_assets(
                self.options.model, need="encode", train=train, purpose=PURPOSE
            )
            if precision == "int8":
                precision = f"int8-{int8_engine()}"
            parts = {
                "kind": "embeddings",
                "model": assets.identity,
                "max_length": assets.info.max_length,
                "pooling": self.options.pooling,
                "precision": precision,
            }
            if precision.startswith("int8"):
                parts["int8"] = INT8_SCHEME
            store = hf.ArrayCache(
                self.context.cache_dir / "embeddings" / hf.cache_key(**parts),
                ragged=False,
                meta={**parts, "name": self.options.model},
            )
            self._setup = _Setup(**vars(assets), store=store, precision=precision)
        return self._setup

    def prepare(
        self, corpus: Corpus, *, train_indices: np.ndarray, test_indices: np.ndarray
    ) -> None:
        """Encode (or find in the cache) every text the grid can use, once."""
        texts = [corpus.train.texts[int(i)] for i in train_indices]
        texts += [corpus.test.texts[int(i)] for i in test_indices]
        before = self.n_encoded
        t0 = time.perf_counter()
        self.embed(texts)
        log.info(
            "embed: %d texts ready (%d encoded, the rest cached) in %.1fs",
            len(texts),
            self.n_encoded - before,
            time.perf_counter() - t0,
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``, shape (n, dim), float32; encodes only what is not cached."""
        setup = self.setup()
        keys = [hf.text_digest(t) for t in texts]
        self.n_encoded += setup.store.ensure(
            keys, lambda pos: self._encode([texts[i] for i in pos])
        )
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([setup.store.get(k) for k in keys]).astype(np.float32, copy=False)

    def _load_encoder(self) -> Any:
        if self._encoder is None:
            from transformers import AutoModel

            setup = self.setup()
            # The encoder's own weights, no randomness: seeded only so nothing global is consumed.
            with hf.seeded(0, setup.device):
                model = hf.load_pretrained(AutoModel, setup.info.ref)
            model = model.to(setup.device).eval()
            if setup.precision.startswith("int8"):
                model = quantize_int8(model)
            self._encoder = model
        return self._encoder

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        import torch

        setup = self.setup()
        model = self._load_encoder()
        enc = setup.tokenizer(
            texts,
            truncation=True,
            max_length=setup.info.max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        ids = [np.asarray(x, dtype=np.int64) for x in enc["input_ids"]]
        lengths = hf.token_lengths(ids)
        out = np.zeros((len(ids), 0), dtype=np.float32)
        pad_id = setup.pad_id
        multiple = setup.pad_multiple
        log.info(
            "embed: encoding %d texts (%d tokens) with '%s' on %s (%s)",
            len(ids),
            int(lengths.sum()),
            self.options.model,
            setup.device,
            setup.precision,
        )
        device, dtype, pooling = setup.device, setup.dtype, self.options.pooling

        def encode(batch: np.ndarray) -> np.ndarray:
            input_ids, mask = hf.pad_batch(
                [ids[i] for i in batch], pad_id=pad_id, multiple_of=multiple
            )
            x = torch.from_numpy(input_ids).to(device)
            m = torch.from_numpy(mask).to(device)
            with torch.inference_mode(), hf.autocast(device, dtype):
                hidden = model(input_ids=x, attention_mask=m).last_hidden_state
            return pool(hidden.float(), m, how=pooling).cpu().numpy()

        batches = hf.inference_batches(
            lengths, self.context.train.eval_batch_size, device_type=device.type
        )
        t0 = last_log = time.perf_counter()
        done = 0
        with hf.batch_parallel(device) as mapper:
            for batch, vectors in zip(batches, mapper(encode, batches), strict=True):
                if out.shape[1] == 0:
                    out = np.zeros((len(ids), vectors.shape[1]), dtype=np.float32)
                out[batch] = vectors
                done += len(batch)
                now = time.perf_counter()
                if now - last_log > LOG_EVERY_S:
                    log.info("embed: %d/%d texts (%.0f/s)", done, len(ids), done / (now - t0))
                    last_log = now
        return list(out)

    def fit(self, texts: Sequence[str], labels: np.ndarray, *, seed: int) -> FitOutput:
        """Train a logistic regression on the (cached) embeddings of one cell's texts."""
        before = self.n_encoded
        x = self.features(texts)
        return self._fit_head(x, labels, seed=seed, encoded=self.n_encoded - before)

    def fit_group(
        self, texts: Sequence[str], labelings: Sequence[np.ndarray], *, seed: int
    ) -> list[FitOutput]:
        """Look the shared texts' embeddings up once, then fit one head per labeling.

        Each head is the one :meth:`fit` trains for that labeling; the group saves the cache
        look-ups (a hash of every text) that each cell would repeat.
        """
        before = self.n_encoded
        x = self.features(texts)
        encoded = self.n_encoded - before
        return [self._fit_head(x, labels, seed=seed, encoded=encoded) for labels in labelings]

    def predict_group(self, outputs: Sequence[FitOutput], texts: Sequence[str]) -> list[np.ndarray]:
        """Look ``texts`` up once, then score every member's head."""
        x = self.features(texts)
        probas = []
        for output in outputs:
            predictor = output.predictor
            if isinstance(predictor, _EmbedPredictor):
                probas.append(predictor.proba_of(x))
            else:
                probas.append(predictor.predict_proba(texts))
        return probas

    def _fit_head(self, x: np.ndarray, labels: np.ndarray, *, seed: int, encoded: int) -> FitOutput:
        # Imported here: validating a config registers every backend, and should stay quick.
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        o = self.options
        pipeline = Pipeline(
            [
                ("scale", StandardScaler()),
                (
                    "clf",
                    LogisticRegression(
                        C=o.C, max_iter=o.max_iter, class_weight=o.class_weight, random_state=seed
                    ),
                ),
            ]
        )
        with _head_threads():
            pipeline.fit(x, np.asarray(labels))
        setup = self.setup()
        info = {
            "dim": int(x.shape[1]),
            "pooling": o.pooling,
            "max_length": setup.info.max_length,
            "encoded_in_fit": encoded,
            "device": str(setup.device),
            "precision": setup.precision,
            "model_source": setup.info.ref.source,
        }
        return FitOutput(predictor=_EmbedPredictor(self, pipeline), info=info)

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """What the head sees: embeddings, L2-normalised if ``normalize``."""
        x = self.embed(texts)
        if self.options.normalize and len(x):
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x


def _head_threads() -> Any:
    """One BLAS thread for the head: for a few thousand rows × a few hundred features, extra
    threads cost more in synchronisation than they save (several times slower on a busy machine)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def pool(hidden: torch.Tensor, mask: torch.Tensor, *, how: str) -> torch.Tensor:
    """One vector per text from token states (batch, seq, dim): masked mean or first token."""
    if how == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class _EmbedPredictor(Predictor):
    def __init__(self, backend: EmbedBackend, pipeline: Pipeline) -> None:
        self.backend = backend
        self.pipeline = pipeline

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.proba_of(self.backend.features(texts))

    def proba_of(self, x: np.ndarray) -> np.ndarray:
        with _head_threads():
            proba = self.pipeline.predict_proba(x)
        classes = self.pipeline.classes_
        n_classes = self.backend.context.n_classes
        if len(classes) == n_classes:
            return np.asarray(proba)
        # A cell whose noisy labels miss a class: put its columns back (probability 0).
        full = np.zeros((len(x), n_classes))
        full[:, classes] = proba
        return full
