"""Benchmark: ``finetune`` on CPU against a plain ``transformers.Trainer``, same examples.

MiniLM (sentence-transformers/all-MiniLM-L6-v2, a fresh 2-class head) at max_length 256 on
``--n`` IMDB training reviews (default 512), one epoch each unless ``--epochs``:

- **ours**: the ``finetune`` backend's loop (length-grouped batches, dynamic padding, no per-step
  host work, autocast only where the CPU has native bf16);
- **Trainer**: a plain ``Trainer`` with the reference's arguments (learning rate 2e-5, batch 16,
  weight decay 0.01), the Hugging Face text-classification recipe (``truncation=True`` and
  ``DataCollatorWithPadding``: padding to the longest text of each random batch).

Both are timed on training only (tokenisation and model loading excluded) and report examples/s
and tokens/s, counting real (non-padding) tokens. Target: ours >= 2× the Trainer.

Usage::

    .venv/bin/python benchmarks/finetune_cpu.py            # 512 examples (several minutes)
    .venv/bin/python benchmarks/finetune_cpu.py --n 64     # a quick check
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="training examples")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imdb"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--skip-trainer", action="store_true")
    parser.add_argument("--no-grouping", action="store_true", help="also time ours unbatched")
    parser.add_argument(
        "--no-attention-dropout",
        action="store_true",
        help="also time ours with [backend] attention_dropout = 0 (fused attention on CPU)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    df = pd.read_parquet(Path(args.data) / "train.parquet").sample(args.n, random_state=0)
    texts, labels = df["text"].tolist(), df["label"].to_numpy(dtype=np.int64)
    print(
        f"finetune on cpu: {args.model}, {args.n} IMDB reviews, max_length {args.max_length}, "
        f"{args.epochs:g} epoch(s), batch 16, torch threads {torch.get_num_threads()}, "
        f"load {_load()}"
    )
    rows = [("ours", *_ours(texts, labels, args, group=True))]
    if args.no_grouping:
        rows.append(("ours, random batches", *_ours(texts, labels, args, group=False)))
    if args.no_attention_dropout:
        rows.append(("ours, attn dropout 0", *_ours(texts, labels, args, group=True, attn=0.0)))
    if not args.skip_trainer:
        rows.append(("plain Trainer", *_trainer(texts, labels, args)))
    print(f"{'':22} {'seconds':>8} {'examples/s':>11} {'tokens/s':>9} {'padded tok/s':>13}")
    for name, seconds, examples, tokens, padded in rows:
        print(
            f"{name:22} {seconds:8.1f} {examples / seconds:11.2f} {tokens / seconds:9.0f} "
            f"{padded / seconds:13.0f}"
        )
    if len(rows) > 1 and rows[-1][0] == "plain Trainer":
        base = rows[-1][2] / rows[-1][1]
        for name, seconds, examples, _, _ in rows[:-1]:
            ratio = (examples / seconds) / base
            verdict = "met" if ratio >= 2 else "MISSED"
            print(f"speed-up of {name} vs plain Trainer: {ratio:.2f}× (target >= 2×: {verdict})")
        print(f"load after: {_load()}")


def _ours(texts, labels, args, *, group: bool, attn: float | None = None):  # type: ignore[no-untyped-def]
    from noisegrid.backends import make_backend
    from noisegrid.config import ExperimentSpec

    spec = ExperimentSpec.from_dict(
        {
            "grid": {"sizes": [args.n], "noise_rates": [0.0]},
            "backend": {
                "name": "finetune",
                "model": args.model,
                "group_by_length": group,
                **({} if attn is None else {"attention_dropout": attn}),
            },
            "train": {"epochs": args.epochs, "max_length": args.max_length},
        }
    )
    with tempfile.TemporaryDirectory() as cache:
        backend = make_backend(spec, n_classes=2, cache_dir=Path(cache))
        backend.setup().tokens.ids(texts)  # type: ignore[attr-defined]  # tokenise outside the timing
        info = backend.fit(texts, labels, seed=0).info
    print(
        f"  ours ({'length-grouped' if group else 'random'} batches): device {info['device']}, "
        f"precision {info['precision']}, loss {info['train_loss_first_epoch']:.3f} -> "
        f"{info['train_loss_last_epoch']:.3f}"
    )
    examples = round(info["epochs"] * len(texts))
    return info["train_seconds"], examples, info["train_tokens"], info["padded_tokens"]


def _trainer(texts, labels, args):  # type: ignore[no-untyped-def]
    import datasets
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from noisegrid.backends import hf

    ref = hf.resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(ref.location, **ref.load_kwargs())
    ds = datasets.Dataset.from_dict({"text": texts, "label": labels.tolist()})
    ds = ds.map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_length),
        batched=True,
        remove_columns=["text"],
    )
    model = AutoModelForSequenceClassification.from_pretrained(
        ref.location, num_labels=2, **ref.load_kwargs()
    )
    counter = _PaddingCounter()
    collator = DataCollatorWithPadding(tokenizer)

    def collate(features):  # type: ignore[no-untyped-def]
        batch = collator(features)
        counter.real += int(batch["attention_mask"].sum())
        counter.padded += int(batch["attention_mask"].numel())
        return batch

    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out,
            learning_rate=2e-5,
            per_device_train_batch_size=16,
            per_device_eval_batch_size=16,
            num_train_epochs=args.epochs,
            weight_decay=0.01,
            report_to="none",
            disable_tqdm=True,
            logging_strategy="no",
        )
        trainer = Trainer(
            model=model,
            args=targs,
            train_dataset=ds,
            data_collator=collate,
        )
        seconds = trainer.train().metrics["train_runtime"]
    steps = trainer.state.global_step
    examples = min(steps * 16, round(args.epochs * len(texts)))
    return seconds, examples, counter.real, counter.padded


class _PaddingCounter:
    def __init__(self) -> None:
        self.real = 0
        self.padded = 0


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


if __name__ == "__main__":
    main()
