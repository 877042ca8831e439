"""Tiny randomly initialised Hugging Face models for fast backend tests (no network, no weights).

A two-layer BERT with 32 hidden units and a WordPiece tokenizer trained on a few synthetic texts,
saved with ``save_pretrained`` into a folder, as a user's local model would be.
"""

from __future__ import annotations

from pathlib import Path

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


def build_tiny_bert(folder: Path, *, max_position_embeddings: int = 64) -> Path:
    """Save a random tiny BERT encoder (no classification head) and its tokenizer to ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    texts, _ = synthetic_texts(200)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=120, special_tokens=special)
    )
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_position_embeddings,
    )
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tok.token_to_id("[PAD]"),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertModel(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
