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

Two more measurements of the laptop ``finetune`` path:

- ``--stacked``: one size × ``--rates`` noise rates (a sibling group, default 4) trained stacked
  (:meth:`FinetuneBackend.fit_group`, K = the number of rates) against the same cells one at a time
  (:meth:`FinetuneBackend.fit`, as ``[run] stack = 1`` runs them): wall time of training and
  prediction after an untimed warm-up fit and group (a grid's later groups reuse the worker's
  stack), and how far apart the two give each cell's test probabilities. On a shared machine use
  ``--threads 1``: two threads on two busy cores wait on each other at every operation;
- ``--cell N``: the first ``--cell-steps`` steps of an N-example cell at ``--max-length``, timed,
  and the whole cell (2 epochs, 2,000 test reviews) projected from them.

Usage::

    .venv/bin/python benchmarks/finetune_cpu.py            # 512 examples (several minutes)
    .venv/bin/python benchmarks/finetune_cpu.py --n 64     # a quick check
    .venv/bin/python benchmarks/finetune_cpu.py --stacked --n 64 --max-length 64
    .venv/bin/python benchmarks/finetune_cpu.py --cell 1000 --cell-steps 4
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _machine import load

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
    parser.add_argument("--stacked", action="store_true", help="stacked vs one at a time")
    parser.add_argument("--rates", default="0,0.05,0.1,0.15", help="noise rates for --stacked")
    parser.add_argument("--cell", type=int, default=0, help="time an N-example cell's first steps")
    parser.add_argument("--cell-steps", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stacked or args.cell:
        if args.stacked:
            _stacked_vs_alone(args)
        if args.cell:
            _cell_time(args)
        return
    df = pd.read_parquet(Path(args.data) / "train.parquet").sample(args.n, random_state=0)
    texts, labels = df["text"].tolist(), df["label"].to_numpy(dtype=np.int64)
    print(
        f"finetune on cpu: {args.model}, {args.n} IMDB reviews, max_length {args.max_length}, "
        f"{args.epochs:g} epoch(s), batch 16, torch threads {torch.get_num_threads()}, "
        f"load {load()}"
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
        print(f"load after: {load()}")


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


def _spec(args, n: int, **run):  # type: ignore[no-untyped-def]
    from noisegrid.config import ExperimentSpec

    return ExperimentSpec.from_dict(
        {
            "grid": {"sizes": [n], "noise_rates": [0.0]},
            "backend": {"name": "finetune", "model": args.model},
            "train": {"epochs": args.epochs, "max_length": args.max_length},
            "run": run,
        }
    )


def _stacked_vs_alone(args) -> None:  # type: ignore[no-untyped-def]
    import time

    from noisegrid.backends import make_backend
    from noisegrid.noise import inject_noise

    rates = [float(r) for r in args.rates.split(",")]
    train = pd.read_parquet(Path(args.data) / "train.parquet").sample(args.n, random_state=0)
    test = pd.read_parquet(Path(args.data) / "test.parquet").sample(200, random_state=0)
    texts, clean = train["text"].tolist(), train["label"].to_numpy(dtype=np.int64)
    labelings = [inject_noise(clean, r, seed=0, n_classes=2).labels for r in rates]
    print(
        f"stacked vs one at a time on cpu: {args.model}, {args.n} IMDB reviews × {len(rates)} "
        f"noise rates {rates}, max_length {args.max_length}, {args.epochs:g} epoch(s), batch 16, "
        f"torch threads {_threads()}, load {load()}"
    )
    with tempfile.TemporaryDirectory() as cache:
        # [run] stack set to the group's size: "auto" trains one cell at a time on a CPU.
        spec = _spec(args, args.n, stack=len(rates))
        backend = make_backend(spec, n_classes=2, cache_dir=Path(cache))
        backend.setup().tokens.ids(texts + test["text"].tolist())  # type: ignore[attr-defined]
        # Untimed: a first fit (kernels' first use), then a first group (the resident stack is
        # built once per worker); the timed group is what every later group of a grid costs.
        backend.fit(texts, labelings[0], seed=1)
        t0 = time.perf_counter()
        backend.fit_group(texts, labelings, seed=1)
        first_group = time.perf_counter() - t0
        t0 = time.perf_counter()
        outputs = backend.fit_group(texts, labelings, seed=0)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        stacked = backend.predict_group(outputs, test["text"].tolist())
        t_pred = time.perf_counter() - t0
        t0 = time.perf_counter()
        singles = [backend.fit(texts, y, seed=0) for y in labelings]
        s_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        alone = [o.predictor.predict_proba(test["text"].tolist()) for o in singles]
        s_pred = time.perf_counter() - t0
    y_test = test["label"].to_numpy()
    k = outputs[0].info["stack_size"]
    print(f"{'':28} {'train s':>8} {'predict s':>10} {'total s':>8}")
    print(f"{f'stacked (K = {k})':28} {t_fit:8.1f} {t_pred:10.1f} {t_fit + t_pred:8.1f}")
    print(f"{'one at a time':28} {s_fit:8.1f} {s_pred:10.1f} {s_fit + s_pred:8.1f}")
    print(f"(the worker's first group, which builds the resident stack: {first_group:.1f}s)")
    print(
        f"speed-up of stacking: {(s_fit + s_pred) / (t_fit + t_pred):.2f}× (training alone "
        f"{s_fit / t_fit:.2f}×)"
    )
    for rate, a, b in zip(rates, stacked, alone, strict=True):
        acc_a = (a.argmax(1) == y_test).mean()
        acc_b = (b.argmax(1) == y_test).mean()
        print(
            f"  noise {rate:5.1%}: accuracy stacked {acc_a:.3f} alone {acc_b:.3f}, "
            f"max |Δp| {np.abs(a - b).max():.1e}, same argmax {(a.argmax(1) == b.argmax(1)).all()}"
        )
    print(f"load after: {load()}")


def _cell_time(args) -> None:  # type: ignore[no-untyped-def]
    import math
    import time

    from noisegrid.backends import make_backend
    from noisegrid.config import TrainSpec

    n = args.cell
    train = pd.read_parquet(Path(args.data) / "train.parquet").sample(n, random_state=1)
    test = pd.read_parquet(Path(args.data) / "test.parquet").sample(2000, random_state=1)
    texts, labels = train["text"].tolist(), train["label"].to_numpy(dtype=np.int64)
    spec = _spec(args, n)
    with tempfile.TemporaryDirectory() as cache:
        backend = make_backend(spec, n_classes=2, cache_dir=Path(cache))
        backend.setup().tokens.ids(texts + test["text"].tolist())  # type: ignore[attr-defined]
        # The cell's own first steps: same texts, a step budget instead of 2 epochs.
        full = math.ceil(n / 16) * 2
        backend.context = dataclasses.replace(
            backend.context, train=TrainSpec(steps=args.cell_steps, max_length=args.max_length)
        )
        t0 = time.perf_counter()
        fitted = backend.fit(texts, labels, seed=0)
        load_and_train = time.perf_counter() - t0
        train_s = fitted.info["train_seconds"]
        t0 = time.perf_counter()
        fitted.predictor.predict_proba(test["text"].tolist()[:200])
        pred_200 = time.perf_counter() - t0
    per_step = train_s / args.cell_steps
    projected = (load_and_train - train_s) + per_step * full + pred_200 * 10
    print(
        f"{n}-example {args.model} cell on cpu at max_length {args.max_length} (2 epochs = "
        f"{full} steps of 16, 2,000 test reviews), torch threads {_threads()}, load {load()}:"
    )
    print(
        f"  timed: {args.cell_steps} steps in {train_s:.1f}s ({per_step:.2f} s/step), model load "
        f"{load_and_train - train_s:.1f}s, prediction of 200 test reviews {pred_200:.1f}s"
    )
    print(f"  projected cell: {projected / 60:.1f} min ({full} steps + 2,000 test reviews)")


def _threads() -> int:
    import torch

    return torch.get_num_threads()


class _PaddingCounter:
    def __init__(self) -> None:
        self.real = 0
        self.padded = 0


if __name__ == "__main__":
    main()
