"""Token ids and embeddings cached on disk, and the batches they are served in.

- **On-disk caches keyed by content** (:class:`ArrayCache`, :class:`TokenCache`): token ids per
  (model, max_length) and embeddings, stored as shard files under the backend's ``cache_dir`` and
  shared by every cell, worker process and later run; :func:`text_digest` and :func:`cache_key`
  name what is stored.
- **Batching** (:func:`length_grouped_batches`, :func:`sorted_batches`, :func:`pad_batch`):
  dynamic padding with batches of similar lengths.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

LENGTH_GROUP_FACTOR = 50
"""Length grouping sorts windows of ``LENGTH_GROUP_FACTOR × batch_size`` shuffled examples (as
Hugging Face's ``LengthGroupedSampler`` does): batches of similar lengths, still random."""

CPU_BATCH_TOKENS = 2048
"""The most padded tokens in one inference batch on a CPU (``[train] eval_batch_size`` still caps
its rows). Measured with MiniLM-L6 on 2 AVX2 cores at 256 tokens (300 IMDB reviews, two passes):
int8 27.7 / 29.9 / 27.3 / 21.9 reviews/s at 1,024 / 2,048 / 4,096 / 16,384 tokens per batch, fp32
21.4 / 20.0 / 19.0 / 15.9: larger batches spill a layer's activations out of the caches."""


def inference_batch_tokens(device_type: str) -> int | None:
    """The padded-token cap of an inference batch on this kind of device (None: rows only).

    >>> inference_batch_tokens("cpu"), inference_batch_tokens("cuda")
    (2048, None)
    """
    return CPU_BATCH_TOKENS if device_type == "cpu" else None


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


def sorted_batches(
    lengths: np.ndarray, batch_size: int, *, max_tokens: int | None = None
) -> list[np.ndarray]:
    """Inference batches: indices sorted by length (longest first), cut into ``batch_size``.

    With ``max_tokens``, a batch also holds at most that many padded tokens (rows × its longest
    length; one row at least), so batches of short texts are larger than those of long ones. On
    CPUs this keeps a batch's activations in the caches (:data:`CPU_BATCH_TOKENS`).

    Examples
    --------
    >>> [b.tolist() for b in sorted_batches(np.array([3, 9, 1, 7, 5]), 2)]
    [[1, 3], [4, 0], [2]]
    >>> [b.tolist() for b in sorted_batches(np.array([3, 9, 1, 7, 5]), 4, max_tokens=12)]
    [[1], [3], [4, 0], [2]]
    """
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    if max_tokens is None:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        # Longest first: the batch's first row sets its width.
        rows = max(1, min(batch_size, max_tokens // max(1, int(lengths[order[start]]))))
        batches.append(order[start : start + rows])
        start += rows
    return batches


def token_lengths(ids: Sequence[np.ndarray]) -> np.ndarray:
    """The length of every token id array, as int64."""
    return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))


def inference_batches(
    lengths: np.ndarray, batch_size: int, *, device_type: str
) -> list[np.ndarray]:
    """:func:`sorted_batches` for inference on this kind of device: at most ``batch_size`` rows,
    and on a CPU at most :data:`CPU_BATCH_TOKENS` padded tokens (:func:`inference_batch_tokens`)."""
    return sorted_batches(lengths, batch_size, max_tokens=inference_batch_tokens(device_type))


def padded_inputs(
    ids: Sequence[np.ndarray],
    *,
    device: torch.device,
    batch_size: int,
    pad_id: int,
    pad_multiple: int = 1,
    max_width: int | None = None,
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Each inference batch of ``ids`` (:func:`inference_batches`): its indices into ``ids``,
    and its padded input ids and attention mask (:func:`pad_batch`) on ``device``."""
    import torch

    for batch in inference_batches(token_lengths(ids), batch_size, device_type=device.type):
        x, m = pad_batch(
            [ids[i] for i in batch], pad_id=pad_id, multiple_of=pad_multiple, max_width=max_width
        )
        yield batch, torch.from_numpy(x).to(device), torch.from_numpy(m).to(device)


def pad_batch(
    seqs: Sequence[np.ndarray], *, pad_id: int, multiple_of: int = 1, max_width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id arrays to the batch's longest (rounded up to ``multiple_of``).

    ``max_width`` caps the rounded width (the truncation length: no sequence is longer).

    Returns
    -------
    input_ids : ndarray of int64, shape (n, L)
    attention_mask : ndarray of int64, shape (n, L)
    """
    longest = max(len(s) for s in seqs)
    width = -(-longest // multiple_of) * multiple_of
    if max_width is not None:
        width = max(longest, min(width, max_width))
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask
