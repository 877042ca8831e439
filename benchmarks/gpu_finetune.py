"""Benchmark: stacked fine-tuning (K sibling models at once) vs one model vs a plain ``Trainer``.

Runs with no network, in about two minutes on one H100/H200:

- **model**: DistilBERT as ``DistilBertConfig()`` builds it (random weights: throughput does not
  depend on them, and the hub may be unreachable) at 512 tokens; MiniLM (the bundled
  sentence-transformers/all-MiniLM-L6-v2, or a random model of its shape) at 256 with
  ``--models distilbert,minilm``. The tokenizer is the bundled MiniLM's (the uncased BERT
  vocabulary, the same 30,522 tokens as distilbert-base-uncased), or one trained on the texts.
- **data**: IMDB training reviews from ``--data`` when there, else synthetic reviews with IMDB's
  length distribution.
- **rows**:

  - ``stacked K=11 (bf16, grouped)``: the ``finetune`` backend's stacked trainer, eleven models
    (the noise rates of one size) in one step: bf16 autocast, length-grouped batches padded to
    multiples of 64, fused attention, fused AdamW, per-model clipping;
  - the same with CUDA graphs (``[backend] cuda_graphs``): every step width captured once;
  - ``stacked K=11 (fp32, random)``: the exact reference recipe, stacked;
  - ``one model (bf16, grouped)``: the per-cell loop (:func:`train_loop`);
  - ``plain Trainer (fp32)``: ``transformers.Trainer`` with the reference's arguments.

For each: training tokens/s (real tokens, summed over the stacked models), model FLOP utilisation
(MFU = 6 · parameters · tokens/s / peak bf16 dense FLOP/s, the convention of issue 9's table),
padding, and the projected reference grid (15 sizes × 11 noise rates, 2 epochs, 10,000 test
reviews per cell, DistilBERT at 512 tokens) on one GPU: training at the measured rate, evaluation
at the measured stacked (or single-model) inference rate, plus one model load per group (per cell
unstacked). ``--check`` first verifies on this device that a stacked model equals models trained
alone, and that CUDA-graph replay equals eager steps (dropout off, fp32: deterministic).

Usage::

    python3 benchmarks/gpu_finetune.py --check           # on the GPU machine
    python3 benchmarks/gpu_finetune.py --smoke --check   # a tiny run on CPU (tiny models)
    python3 benchmarks/gpu_finetune.py --save-distilbert DIR   # write the random DistilBERT, exit
                                                         # (with --smoke: a tiny one)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
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
class Row:
    name: str
    seconds: float
    steps: int
    tokens: int
    """Real training tokens, summed over the stacked models."""
    padded: int
    k: int
    eval_tokens_per_s: float
    load_seconds: float
    setup_seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models, few steps (CPU check)")
    parser.add_argument("--check", action="store_true", help="stacked = alone, graphs = eager")
    parser.add_argument("--k", type=int, default=11, help="models stacked")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=16, help="untimed steps first")
    parser.add_argument("--models", default="distilbert", help="distilbert,minilm")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imdb"))
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the GPU peak")
    parser.add_argument("--skip-trainer", action="store_true")
    parser.add_argument("--skip-exact", action="store_true", help="no fp32 stacked row")
    parser.add_argument("--save-distilbert", default=None, help="write the model folder, exit")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on the network

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    from noisegrid.backends import hf

    if args.save_distilbert:
        tokenizer = _tokenizer(["a film"], Path(args.save_distilbert))
        print(_distilbert(tokenizer, Path(args.save_distilbert), smoke=args.smoke))
        return
    device = hf.choose_device()
    if args.smoke:
        args.steps, args.warmup, args.k = 3, 1, 3
    elif device.type != "cuda":
        raise SystemExit("no GPU found; run with --smoke for a CPU check of this script")
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cuda.enable_cudnn_sdp(False)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = (args.peak_tflops or _peak_tflops(gpu)) * 1e12
    print(
        f"device: {gpu}; torch {torch.__version__}, transformers {transformers.__version__}; "
        f"peak bf16 dense {peak / 1e12:.0f} TFLOP/s; stacked K = {args.k}"
    )
    n_texts = 96 if args.smoke else 4000
    texts, labels, source = _texts(args.data, n_texts)
    tmp = Path(tempfile.mkdtemp(prefix="noisegrid-gpu-bench-"))
    tokenizer = _tokenizer(texts, tmp / "tokenizer")
    print(f"data: {len(texts)} {source} reviews; tmp {tmp}")
    if args.check:
        _checks(tokenizer, texts, tmp, device, args)

    results: dict[str, Any] = {"device": gpu, "k": args.k, "models": {}}
    for model_name in args.models.split(","):
        if model_name == "distilbert":
            folder, max_length = _distilbert(tokenizer, tmp / "distilbert", args.smoke), 512
        else:
            folder, max_length = _minilm(tokenizer, tmp / "minilm", args.smoke), 256
        max_length = 64 if args.smoke else max_length
        ids = _tokenize(tokenizer, texts, max_length)
        mean_tokens = float(np.mean([len(x) for x in ids]))
        params = _n_params(folder)
        print(
            f"\n== {model_name}: {params / 1e6:.1f}M parameters, max_length {max_length}, "
            f"mean {mean_tokens:.0f} tokens/review =="
        )
        rows = _rows(folder, ids, labels, tokenizer, texts, max_length, device, args)
        rows = [r for r in rows if r is not None]
        base = next((r for r in rows if r.name.startswith("plain Trainer")), None)
        print(
            f"{'':34} {'tokens/s':>10} {'MFU':>6} {'padding':>8} {'steps':>6} {'s':>6} "
            f"{'vs Trainer':>10} {'grid (h)':>9}"
        )
        table = []
        for r in rows:
            mfu = 6 * params * r.tokens_per_s / peak
            speedup = r.tokens_per_s / base.tokens_per_s if base else float("nan")
            grid = _project(r, mean_tokens) if model_name == "distilbert" else float("nan")
            padding = r.padded / r.tokens - 1
            print(
                f"{r.name:34} {r.tokens_per_s:10.0f} {mfu * 100:5.1f}% {padding:8.1%}"
                f" {r.steps:6d} {r.seconds:6.1f} {speedup:9.2f}× {grid / 3600:9.2f}"
            )
            table.append({**asdict(r), "mfu": mfu, "vs_trainer": speedup, "grid_seconds": grid})
        for r in rows:
            extra = f", setup (graph capture) {r.setup_seconds:.1f}s" if r.setup_seconds else ""
            print(
                f"  {r.name}: evaluation {r.eval_tokens_per_s:.0f} tokens/s (all models), "
                f"model load {r.load_seconds:.2f}s{extra}"
            )
        if model_name == "distilbert":
            print(
                "projected reference grid: 165 cells (15 sizes × 11 noise rates, 2 epochs, 10,000 "
                "test reviews each) on one GPU; stacked rows load once per size; 'grid (h)' above"
            )
            if args.smoke:
                print("  (smoke run: tiny models on CPU, the projection is meaningless)")
        results["models"][model_name] = {
            "params": params,
            "max_length": max_length,
            "mean_tokens": mean_tokens,
            "rows": table,
        }
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


# -- rows ------------------------------------------------------------------------------------


def _rows(folder, ids, labels, tokenizer, texts, max_length, device, args):  # type: ignore[no-untyped-def]
    import torch

    rows: list[Row | None] = []
    low = "bf16" if device.type == "cuda" else "fp32"  # bf16 is emulated on most CPUs
    rows.append(_safe(_stacked, folder, ids, device, args, precision=low, grouped=True))
    if device.type == "cuda":
        rows.append(
            _safe(_stacked, folder, ids, device, args, precision=low, grouped=True, graphs=True)
        )
    if not args.skip_exact:
        # fp32 steps are several times slower: fewer of them.
        steps, warmup = max(2, args.steps // 4), min(args.warmup, 3)
        exact = dict(precision="fp32", grouped=False, steps=steps, warmup=warmup)
        rows.append(_safe(_stacked, folder, ids, device, args, **exact))
    rows.append(_safe(_single, folder, ids, labels, device, args, precision=low))
    if not args.skip_trainer:
        rows.append(_safe(_trainer, folder, tokenizer, texts, labels, max_length, device, args))
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def _safe(fn, *a, **kw):  # type: ignore[no-untyped-def]
    """One row; a failure prints its reason and leaves the row out (the others still run)."""
    try:
        return fn(*a, **kw)
    except Exception as exc:
        print(f"  {fn.__name__} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        return None


def _spec_train(steps: int, precision: str, max_length: int) -> Any:
    from noisegrid.config import TrainSpec

    return TrainSpec(steps=steps, precision=precision, max_length=max_length)  # type: ignore[arg-type]


def _stacked(
    folder, ids, device, args, *, precision, grouped, graphs=False, steps=None, warmup=None
):  # type: ignore[no-untyped-def]
    from noisegrid.backends import hf
    from noisegrid.backends.finetune.loop import _deterministic, width_multiple
    from noisegrid.backends.finetune.stack import StackedTrainer, predict_stacked

    steps = steps or args.steps
    warmup = warmup or args.warmup
    dtype = hf.autocast_dtype(device, precision)
    k = args.k
    max_length = max(len(x) for x in ids)
    rng = np.random.default_rng(0)
    labelings = rng.integers(0, 2, size=(k, len(ids)))
    with hf.seeded(0, device), _deterministic(device):
        t0 = time.perf_counter()
        model = _load(folder)
        load_s = time.perf_counter() - t0
        kwargs = dict(
            device=device,
            dtype=dtype,
            max_grad_norm=1.0,
            pad_id=0,
            pad_multiple=width_multiple(device),
            max_width=max_length,
            group_by_length=grouped,
            cuda_graphs=graphs,
        )
        t0 = time.perf_counter()
        trainer = StackedTrainer(
            model, k, train=_spec_train(warmup, precision, max_length), **kwargs
        )
        if graphs:
            trainer.capture_graphs()
        _sync(device)
        setup_s = time.perf_counter() - t0
        trainer.fit(ids, labelings, seed=0)  # warm-up steps
        trainer.train = _spec_train(steps, precision, max_length)
        stats = trainer.fit(ids, labelings, seed=1)
    n_eval = min(len(ids), 64 if args.smoke else 2000)
    weights = trainer.weights
    ekw = dict(device=device, dtype=dtype, pad_id=0, batch_size=128)
    ekw["pad_multiple"] = width_multiple(device)
    predict_stacked(trainer.arch, weights, ids[:64], **ekw)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    predict_stacked(trainer.arch, weights, ids[:n_eval], **ekw)
    _sync(device)
    eval_tps = k * sum(len(x) for x in ids[:n_eval]) / (time.perf_counter() - t0)
    member = stats.members[0]
    label = f"stacked K={k} ({precision}, {'grouped' if grouped else 'random'})"
    if graphs:
        label += " + graphs"
    del trainer, weights, model
    _release(device)
    return Row(
        label,
        stats.seconds,
        member.steps,
        k * member.tokens,
        k * member.padded_tokens,
        k,
        eval_tps,
        load_s,
        setup_s if graphs else 0.0,
    )


def _single(folder, ids, labels, device, args, *, precision):  # type: ignore[no-untyped-def]
    from noisegrid.backends import hf
    from noisegrid.backends.finetune.evaluation import predict_probabilities
    from noisegrid.backends.finetune.loop import _deterministic, train_loop, width_multiple

    dtype = hf.autocast_dtype(device, precision)
    max_length = max(len(x) for x in ids)
    kwargs = dict(device=device, dtype=dtype, pad_id=0, pad_multiple=width_multiple(device))
    with hf.seeded(0, device), _deterministic(device):
        t0 = time.perf_counter()
        model = _load(folder).to(device)
        _sync(device)
        load_s = time.perf_counter() - t0
        warm = _spec_train(args.warmup, precision, max_length)
        train_loop(model, ids, labels, train=warm, seed=0, max_width=max_length, **kwargs)
        timed = _spec_train(args.steps, precision, max_length)
        stats = train_loop(model, ids, labels, train=timed, seed=1, max_width=max_length, **kwargs)
    n_eval = min(len(ids), 64 if args.smoke else 2000)
    predict_probabilities(model, ids[:64], batch_size=128, **kwargs)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    predict_probabilities(model, ids[:n_eval], batch_size=128, **kwargs)
    _sync(device)
    eval_tps = sum(len(x) for x in ids[:n_eval]) / (time.perf_counter() - t0)
    del model
    _release(device)
    name = f"one model ({precision}, grouped)"
    return Row(
        name, stats.seconds, stats.steps, stats.tokens, stats.padded_tokens, 1, eval_tps, load_s
    )


def _trainer(folder, tokenizer, texts, labels, max_length, device, args) -> Row:  # type: ignore[no-untyped-def]
    import datasets
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    datasets.disable_progress_bars()
    ds = datasets.Dataset.from_dict({"text": texts, "label": labels.tolist()})
    ds = ds.map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=["text"],
    )
    t0 = time.perf_counter()
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    load_s = time.perf_counter() - t0
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
    _release(device)
    # Real tokens per random batch are 16 × the mean review length in expectation; padding is
    # measured on the batches collated while timing (the loader runs a batch ahead).
    mean_tokens = float(np.mean([len(x) for x in ds["input_ids"]]))
    real = int(args.steps * 16 * mean_tokens)
    padded = int(counts["padded"] / max(counts["batches"], 1) * args.steps)
    name = "plain Trainer (fp32)"
    return Row(
        name, marks["end"] - marks["start"], args.steps, real, padded, 1, float("nan"), load_s
    )


def _project(row: Row, mean_tokens: float) -> float:
    """Seconds for the reference grid at this row's rates (see the module docstring)."""
    runs = len(REFERENCE_SIZES) * REFERENCE_RATES
    train_tokens = (
        sum(REFERENCE_EPOCHS * s * mean_tokens for s in REFERENCE_SIZES) * REFERENCE_RATES
    )
    eval_tokens = runs * REFERENCE_TEST * mean_tokens
    eval_tps = row.eval_tokens_per_s
    if not np.isfinite(eval_tps):  # the Trainer row: evaluate as one model of ours would
        eval_tps = row.tokens_per_s * 3
    loads = len(REFERENCE_SIZES) * -(-REFERENCE_RATES // row.k) if row.k > 1 else runs
    return (
        train_tokens / row.tokens_per_s + eval_tokens / eval_tps + loads * row.load_seconds
    ) + row.setup_seconds


# -- checks ----------------------------------------------------------------------------------


def _checks(tokenizer, texts, tmp, device, args) -> None:  # type: ignore[no-untyped-def]
    """Stacked = alone and graphs = eager on this device (dropout off, fp32: deterministic)."""
    from transformers import BertConfig, BertModel

    from noisegrid.backends import hf
    from noisegrid.backends.finetune.evaluation import predict_probabilities
    from noisegrid.backends.finetune.loop import _deterministic, train_loop, width_multiple
    from noisegrid.backends.finetune.stack import StackedTrainer, predict_stacked

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    folder = _save(BertModel(config), tokenizer, tmp / "check-bert")
    ids = _tokenize(tokenizer, texts[:256], 128)
    labelings = np.random.default_rng(3).integers(0, 2, size=(3, len(ids)))
    train = _spec_train(12, "fp32", 128)
    multiple = width_multiple(device)
    pad = dict(device=device, dtype=None, pad_id=0, pad_multiple=multiple)
    loop = dict(max_width=128, group_by_length=True, max_grad_norm=1.0)
    print("\n== checks on this device (dropout off, fp32) ==")
    alone = []
    for y in labelings:
        with hf.seeded(5, device), _deterministic(device):
            model = _load(folder).to(device)
            train_loop(model, ids, y, train=train, seed=5, **pad, **loop)
        alone.append(predict_probabilities(model, ids[:128], batch_size=64, **pad))
    results = {}
    for graphs in [False, True] if device.type == "cuda" else [False]:
        # Built (and captured) first, then started as the cells alone start: as the backend does.
        with hf.seeded(0, device), _deterministic(device):
            trainer = StackedTrainer(
                _load(folder), 3, train=train, cuda_graphs=graphs, **pad, **loop
            )
            if graphs:
                trainer.capture_graphs()
        with hf.seeded(5, device), _deterministic(device):
            trainer.reset(_load(folder))
            trainer.fit(ids, labelings, seed=5)
        proba = predict_stacked(trainer.arch, trainer.weights, ids[:128], batch_size=64, **pad)
        results[graphs] = proba
        diff = max(float(np.abs(proba[i] - alone[i]).max()) for i in range(3))
        same = all((proba[i].argmax(1) == alone[i].argmax(1)).all() for i in range(3))
        verdict = "PASS" if diff <= 1e-4 and same else "FAIL"
        label = "stacked K=3" + (" + CUDA graphs" if graphs else "")
        print(f"{label} vs alone: max |Δp| {diff:.2e}, same argmax {same}: {verdict}")
    if True in results:
        diff = float(np.abs(results[True] - results[False]).max())
        print(f"CUDA graphs vs eager: max |Δp| {diff:.2e}: {'PASS' if diff <= 1e-4 else 'FAIL'}")
    _release(device)


# -- models and data -------------------------------------------------------------------------


def _load(folder: Path) -> Any:
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)


def _peak_tflops(gpu: str) -> float:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in gpu:
            return value
    return 989.4 if gpu != "cpu" else 1.0


def _texts(data: str, n: int) -> tuple[list[str], np.ndarray, str]:
    path = Path(data) / "train.parquet"
    if path.is_file():
        import pandas as pd

        df = pd.read_parquet(path)
        df = df.sample(min(n, len(df)), random_state=0)
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
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(vocab_size=len(tokenizer))
    if smoke:
        config = DistilBertConfig(
            vocab_size=len(tokenizer), dim=32, hidden_dim=64, n_layers=2, n_heads=2
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
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
    return sum(p.numel() for p in _load(folder).parameters())


def _tokenize(tokenizer: Any, texts: list[str], max_length: int) -> list[np.ndarray]:
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return [np.asarray(x, dtype=np.int64) for x in enc["input_ids"]]


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _release(device: Any) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
