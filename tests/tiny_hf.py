"""Tiny randomly initialised Hugging Face models for fast backend tests (no network, no weights).

Two-layer encoders with 32 hidden units — BERT, DistilBERT, and every family the stacked trainer
is tested on (:func:`build_tiny`) — with a WordPiece tokenizer of a fixed vocabulary (the words of
the synthetic texts), saved with ``save_pretrained`` into a folder, as a user's local model would
be.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

POSITIVE = ["good", "great", "excellent", "wonderful", "superb", "lovely"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "dreadful", "poor"]
FILLER = ["the", "film", "movie", "plot", "actor", "scene", "story", "was", "and", "a", "very"]


def synthetic_texts(n: int, *, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``n`` texts of varied length; label 1 texts use positive words, label 0 negative ones."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        cue = POSITIVE if label else NEGATIVE
        length = int(rng.integers(3, 40))
        words = [
            str(rng.choice(cue)) if rng.random() < 0.3 else str(rng.choice(FILLER))
            for _ in range(length)
        ]
        words[int(rng.integers(length))] = str(rng.choice(cue))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, np.array(labels)


def _tiny_tokenizer(max_position_embeddings: int) -> Any:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    # A fixed vocabulary (not a trained one, whose ties break differently from run to run): the
    # special tokens, every word of the synthetic texts, letters and word pieces, 120 in all.
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = special + sorted(set(POSITIVE + NEGATIVE + FILLER)) + letters
    tokens += ["##" + c for c in letters]
    tokens += [f"[unused{i}]" for i in range(120 - len(tokens))]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_position_embeddings,
    )


def _save(model_class: Any, config: Any, tokenizer: Any, folder: Path) -> Path:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = model_class(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_bert(folder: Path, *, max_position_embeddings: int = 64) -> Path:
    """Save a random tiny BERT encoder (no classification head) and its tokenizer to ``folder``."""
    from transformers import BertConfig, BertModel

    tokenizer = _tiny_tokenizer(max_position_embeddings)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
    )
    return _save(BertModel, config, tokenizer, folder)


def build_tiny_distilbert(folder: Path, *, max_position_embeddings: int = 64) -> Path:
    """Save a random tiny DistilBERT encoder and the tiny tokenizer to ``folder``."""
    from transformers import DistilBertConfig, DistilBertModel

    tokenizer = _tiny_tokenizer(max_position_embeddings)
    config = DistilBertConfig(
        vocab_size=len(tokenizer),
        dim=32,
        hidden_dim=64,
        n_layers=2,
        n_heads=2,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
    )
    return _save(DistilBertModel, config, tokenizer, folder)


def build_tiny(folder: Path, model_type: str, *, max_length: int = 64) -> Path:
    """Save a random tiny encoder of ``model_type`` (two layers, 32 wide, dropout 0.1 everywhere)
    with the tiny tokenizer: one of :data:`TINY_TYPES`."""
    from transformers import CONFIG_MAPPING, AutoModel

    tokenizer = _tiny_tokenizer(max_length)
    common: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": max_length,
        "pad_token_id": tokenizer.pad_token_id,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
    }
    special = {
        "bos_token_id": tokenizer.cls_token_id,
        "eos_token_id": tokenizer.sep_token_id,
        "cls_token_id": tokenizer.cls_token_id,
        "sep_token_id": tokenizer.sep_token_id,
    }
    extra: dict[str, dict[str, Any]] = {
        # RoBERTa-style positions start after the padding index.
        "roberta": {"max_position_embeddings": max_length + 2},
        "xlm-roberta": {"max_position_embeddings": max_length + 2},
        "electra": {"embedding_size": 16},
        "albert": {"embedding_size": 16, "num_hidden_groups": 1, "classifier_dropout_prob": 0.1},
        "deberta-v2": {
            "relative_attention": True,
            "position_buckets": 8,
            "max_relative_positions": 16,
            "pos_att_type": ["p2c", "c2p"],
            "norm_rel_ebd": "layer_norm",
            "share_att_key": True,
            "position_biased_input": False,
            "type_vocab_size": 0,
        },
        "modernbert": {
            **special,
            "attention_dropout": 0.1,
            "embedding_dropout": 0.1,
            "mlp_dropout": 0.1,
            "global_attn_every_n_layers": 2,
            "local_attention": 16,
        },
    }
    if model_type == "distilbert":
        return build_tiny_distilbert(folder, max_position_embeddings=max_length)
    config = CONFIG_MAPPING[model_type](**{**common, **extra.get(model_type, {})})
    return _save(AutoModel.from_config, config, tokenizer, folder)


from noisegrid.backends.finetune.surgery import TESTED_TYPES as TINY_TYPES  # noqa: E402

__all__ = [
    "TINY_TYPES",
    "build_tiny",
    "build_tiny_bert",
    "build_tiny_distilbert",
    "synthetic_texts",
]
