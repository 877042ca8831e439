"""Benchmark: ``finetune`` on one GPU vs a plain ``transformers.Trainer``; reference projection.

Runs with no network, in a few minutes on one H100:

- **models**: a DistilBERT-shaped model (``DistilBertConfig()``, randomly initialised: throughput
  does not depend on the weights, and the hub may be unreachable) and MiniLM
  (sentence-transformers/all-MiniLM-L6-v2 from the local cache or its bundled copy; a randomly
  initialised model of the same shape when neither is there). The tokenizer is the bundled
  MiniLM's (the uncased BERT WordPiece vocabulary: the same 30,522 tokens as
  distilbert-base-uncased) or, failing that, a WordPiece tokenizer trained on the texts.
- **data**: IMDB training reviews from ``--data`` when the folder exists, else synthetic reviews
  with IMDB's length distribution (lognormal words per review, median about 175 words).
- **ours**: the ``finetune`` backend's training loop (bf16 autocast, length-grouped batches,
  dynamic padding to multiples of 8, fused AdamW, deterministic kernels);
- **Trainer**: a plain ``Trainer`` with the reference's arguments (learning rate 2e-5, batch 16,
  weight decay 0.01; fp32, as the reference set no precision), ``truncation=True`` +
  ``DataCollatorWithPadding``.

For each it prints training tokens/s (real, non-padding tokens) and model FLOP utilisation
(MFU = 6 · parameters · tokens / time / peak bf16 dense FLOP/s of the GPU), then projects the
reference grid (15 sizes × 11 noise rates, 2 epochs, 10,000 test reviews per run; DistilBERT at
512 tokens) onto one GPU: training at the measured rate, evaluation at the measured inference
rate, plus the measured per-run model load.

Usage::

    python benchmarks/gpu_finetune.py            # on the GPU machine (about 3-5 minutes)
    python benchmarks/gpu_finetune.py --smoke    # a tiny check on CPU (tiny models, few steps)
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}
REFERENCE_SIZES = list(range(1000, 15001, 1000))
REFERENCE_RATES = 11
REFERENCE_EPOCHS = 2
REFERENCE_TEST = 10_000


@dataclass
class Measured:
    name: str
    seconds: float
    steps: int
    tokens: int
    padded: int

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models, few steps (CPU check)")
    parser.add_argument("--steps", type=int, default=120, help="timed training steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imdb"))
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the GPU peak")
    parser.add_argument("--skip-trainer", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on the network

    import datasets
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()

    from noisegrid.backends import hf

    device = hf.choose_device()
    if args.smoke:
        args.steps, args.warmup = 3, 1
    elif device.type != "cuda":
        raise SystemExit("no GPU found; run with --smoke for a CPU check of this script")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = (args.peak_tflops or _peak_tflops(gpu)) * 1e12
    print(f"device: {gpu}; torch {torch.__version__}; peak bf16 dense {peak / 1e12:.0f} TFLOP/s")

    n_texts = 64 if args.smoke else 4000
    texts, labels, source = _texts(args.data, n_texts)
    tmp = Path(tempfile.mkdtemp(prefix="noisegrid-gpu-bench-"))
    tokenizer = _tokenizer(texts, tmp / "tokenizer")
    models = [
        ("distilbert (random init)", _distilbert(tokenizer, tmp / "distilbert", args.smoke), 512),
        ("minilm", _minilm(tokenizer, tmp / "minilm", args.smoke), 256),
    ]
    print(f"data: {len(texts)} {source} reviews; tmp {tmp}")

    projection: dict[str, float] = {}
    for name, folder, max_length in models:
        max_length = 64 if args.smoke else max_length
        ids = _tokenize(tokenizer, texts, max_length)
        mean_tokens = float(np.mean([len(x) for x in ids]))
        params = _n_params(folder)
        print(
            f"\n== {name}: {params / 1e6:.1f}M parameters, max_length {max_length}, "
            f"mean {mean_tokens:.0f} tokens/review =="
        )
        ours, load_s, eval_tps = _ours(folder, ids, labels, device, args)
        rows = [ours]
        if not args.skip_trainer:
            rows.append(_trainer(folder, tokenizer, texts, labels, max_length, device, args))
        for m in rows:
            mfu = 6 * params * m.tokens_per_s / peak
            print(
                f"{m.name:38} {m.tokens_per_s:10.0f} tokens/s   MFU {mfu * 100:5.1f}%   "
                f"padding {m.padded / m.tokens - 1:5.1%}   ({m.steps} steps, {m.seconds:.1f}s)"
            )
        if len(rows) == 2:
            print(f"speed-up vs plain Trainer: {rows[0].tokens_per_s / rows[1].tokens_per_s:.2f}×")
        print(
            f"evaluation (inference, batch 128): {eval_tps:.0f} tokens/s; model load {load_s:.2f}s"
        )
        if name.startswith("distilbert"):
            for m in rows:
                projection[m.name] = _project(m.tokens_per_s, eval_tps, load_s, mean_tokens)

    if projection:
        print(
            "\nprojected reference grid (165 runs: sizes 1k..15k × 11 noise rates, 2 epochs, "
            "10,000 test reviews each, DistilBERT at 512 tokens) on one GPU:"
        )
        for name, seconds in projection.items():
            print(f"  {name:38} {seconds / 3600:6.2f} h")
        if args.smoke:
            print("  (smoke run: tiny models on CPU, the projection is meaningless)")


def _peak_tflops(gpu: str) -> float:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in gpu:
            return value
    return 989.4 if gpu != "cpu" else 1.0


def _texts(data: str, n: int) -> tuple[list[str], np.ndarray, str]:
    path = Path(data) / "train.parquet"
    if path.is_file():
        import pandas as pd

        df = pd.read_parquet(path).sample(n, random_state=0)
        return df["text"].tolist(), df["label"].to_numpy(dtype=np.int64), "IMDB"
    rng = np.random.default_rng(0)
    words = ["the", "a", "movie", "film", "plot", "actor", "scene", "good", "bad", "great"]
    words += ["awful", "story", "really", "was", "is", "and", "of", "to", "it", "this", "that"]
    words += ["but", "not", "very", "one", "time", "character", "director", "music", "end"]
    counts = np.clip(rng.lognormal(mean=5.16, sigma=0.7, size=n), 10, 2500).astype(int)
    texts = [" ".join(rng.choice(words, size=c)) for c in counts]
    return texts, rng.integers(0, 2, size=n), "synthetic"


def _tokenizer(texts: list[str], folder: Path) -> Any:
    from transformers import AutoTokenizer

    from noisegrid.backends import hf

    bundled = hf.bundled_model_path(MINILM)
    if bundled is not None:
        return AutoTokenizer.from_pretrained(bundled)
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=30522, special_tokens=special)
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


def _distilbert(tokenizer: Any, folder: Path, smoke: bool) -> Path:
    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(vocab_size=len(tokenizer))
    if smoke:
        config = DistilBertConfig(
            vocab_size=len(tokenizer), dim=32, hidden_dim=64, n_layers=2, n_heads=2
        )
    return _save(DistilBertModel(config), tokenizer, folder)


def _minilm(tokenizer: Any, folder: Path, smoke: bool) -> Path:
    from transformers import BertConfig, BertModel

    from noisegrid.backends import hf

    if not smoke:
        try:
            return Path(hf.resolve_model(MINILM).location)
        except Exception as exc:  # any failure: fall back to a same-shaped random model
            print(f"MiniLM weights unavailable ({exc}); using a random model of its shape")
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
    )
    if smoke:
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        )
    return _save(BertModel(config), tokenizer, folder)


def _save(model: Any, tokenizer: Any, folder: Path) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _n_params(folder: Path) -> int:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    return sum(p.numel() for p in model.parameters())


def _tokenize(tokenizer: Any, texts: list[str], max_length: int) -> list[np.ndarray]:
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return [np.asarray(x, dtype=np.int64) for x in enc["input_ids"]]


def _ours(folder: Path, ids: list[np.ndarray], labels: np.ndarray, device: Any, args: Any):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModelForSequenceClassification

    from noisegrid.backends import hf
    from noisegrid.backends.finetune import _deterministic, predict_probabilities, train_loop
    from noisegrid.config import TrainSpec

    dtype = hf.autocast_dtype(device, "auto")
    pad = 8 if device.type == "cuda" else 1
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    ref = hf.resolve_model(str(folder))
    _sync(device)
    t0 = time.perf_counter()
    with hf.seeded(0, device), _deterministic(device):
        model = hf.load_pretrained(
            AutoModelForSequenceClassification, ref, head="classifier", num_labels=2
        ).to(device)
        _sync(device)
        load_s = time.perf_counter() - t0
        kwargs = dict(device=device, dtype=dtype, pad_id=0, pad_multiple=pad)
        train_loop(model, ids, labels, train=TrainSpec(steps=args.warmup), seed=0, **kwargs)
        stats = train_loop(model, ids, labels, train=TrainSpec(steps=args.steps), seed=1, **kwargs)
    n_eval = min(len(ids), 64 if args.smoke else 2000)
    predict_probabilities(model, ids[:64], batch_size=128, **kwargs)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    predict_probabilities(model, ids[:n_eval], batch_size=128, **kwargs)
    _sync(device)
    eval_tps = sum(len(x) for x in ids[:n_eval]) / (time.perf_counter() - t0)
    name = f"ours ({hf.precision_name(dtype)}, grouped)"
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return (
        Measured(name, stats.seconds, stats.steps, stats.tokens, stats.padded_tokens),
        load_s,
        eval_tps,
    )


def _trainer(folder, tokenizer, texts, labels, max_length, device, args) -> Measured:  # type: ignore[no-untyped-def]
    import datasets
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    ds = datasets.Dataset.from_dict({"text": texts, "label": labels.tolist()})
    ds = ds.map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=["text"],
    )
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    collator = DataCollatorWithPadding(tokenizer)
    counts = {"batches": 0, "padded": 0, "on": 0}

    def collate(features):  # type: ignore[no-untyped-def]
        batch = collator(features)
        if counts["on"]:
            counts["batches"] += 1
            counts["padded"] += int(batch["attention_mask"].numel())
        return batch

    marks: dict[str, float] = {}

    class Timer(TrainerCallback):
        # Times the steps after the warm-up; the batch of step w+1 is collated during step w.
        def on_step_end(self, targs, state, control, **kw):  # type: ignore[no-untyped-def]
            if state.global_step == args.warmup:
                _sync(device)
                marks["start"] = time.perf_counter()
                counts["on"] = 1
            elif state.global_step == args.warmup + args.steps:
                _sync(device)
                marks["end"] = time.perf_counter()
                counts["on"] = 0

    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out,
            learning_rate=2e-5,
            per_device_train_batch_size=16,
            weight_decay=0.01,
            max_steps=args.warmup + args.steps,
            report_to="none",
            disable_tqdm=True,
            logging_strategy="no",
            save_strategy="no",
            use_cpu=device.type == "cpu",
        )
        Trainer(
            model=model, args=targs, train_dataset=ds, data_collator=collate, callbacks=[Timer()]
        ).train()
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    # Real tokens per random batch are 16 × the mean review length in expectation; padding is
    # measured on the batches collated while timing (the loader runs a batch ahead).
    mean_tokens = float(np.mean([len(x) for x in ds["input_ids"]]))
    real = int(args.steps * 16 * mean_tokens)
    padded = int(counts["padded"] / max(counts["batches"], 1) * args.steps)
    name = "plain Trainer (fp32, reference args)"
    return Measured(name, marks["end"] - marks["start"], args.steps, real, padded)


def _project(train_tps: float, eval_tps: float, load_s: float, mean_tokens: float) -> float:
    train_tokens = (
        sum(REFERENCE_EPOCHS * s * mean_tokens for s in REFERENCE_SIZES) * REFERENCE_RATES
    )
    runs = len(REFERENCE_SIZES) * REFERENCE_RATES
    eval_tokens = runs * REFERENCE_TEST * mean_tokens
    return train_tokens / train_tps + eval_tokens / eval_tps + runs * load_s


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
