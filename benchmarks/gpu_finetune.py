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
    parser.add_argument("--train-rows", type=int, default=16, help="batch per model")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=16, help="untimed steps first")
    parser.add_argument(
        "--models",
        default="distilbert",
        help="comma-separated: distilbert, minilm, " + ", ".join(BASE_CONFIGS),
    )
    parser.add_argument("--arch-steps", type=int, default=16, help="timed steps, other models")
    parser.add_argument(
        "--compile-width", type=int, default=0, help="eager vs compiled steps at this width"
    )
    parser.add_argument("--profile", action="store_true", help="device time by kind, one step")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imdb"))
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the GPU peak")
    parser.add_argument("--skip-trainer", action="store_true")
    parser.add_argument("--skip-exact", action="store_true", help="no fp32 stacked row")
    parser.add_argument("--skip-graphs", action="store_true", help="no CUDA graphs row")
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
        args.steps, args.warmup, args.k, args.arch_steps = 3, 1, 3, 2
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
    if args.compile_width:
        _compiled_steps(tokenizer, texts, tmp, device, args, peak)
    for model_name in args.models.split(","):
        if model_name == "distilbert":
            folder, max_length = _distilbert(tokenizer, tmp / "distilbert", args.smoke), 512
        elif model_name == "minilm":
            folder, max_length = _minilm(tokenizer, tmp / "minilm", args.smoke), 256
        else:
            folder, max_length = _base_model(model_name, tokenizer, tmp / model_name, args.smoke)
        max_length = 64 if args.smoke else max_length
        ids = _tokenize(tokenizer, texts, max_length)
        mean_tokens = float(np.mean([len(x) for x in ids]))
        params = _n_params(folder)
        print(
            f"\n== {model_name}: {params / 1e6:.1f}M parameters, max_length {max_length}, "
            f"mean {mean_tokens:.0f} tokens/review =="
        )
        if model_name in ("distilbert", "minilm"):
            rows = _rows(folder, ids, labels, tokenizer, texts, max_length, device, args)
        else:
            rows = _arch_rows(folder, ids, labels, tokenizer, texts, max_length, device, args)
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
    if device.type == "cuda" or args.smoke:
        # The same step before bf16 working copies and weight-layout gradients (for comparison).
        rows.append(
            _safe(_stacked, folder, ids, device, args, precision=low, grouped=True, before=True)
        )
    if device.type == "cuda" and not args.skip_graphs:
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
    folder,
    ids,
    device,
    args,
    *,
    precision,
    grouped,
    graphs=False,
    steps=None,
    warmup=None,
    compile=False,
    before=False,
    n_eval_default=2000,
):  # type: ignore[no-untyped-def]
    from noisegrid.backends import hf
    from noisegrid.backends.finetune.loop import _deterministic, width_multiple
    from noisegrid.backends.finetune.stack import StackedTrainer

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
            compile=compile,
            working_copies=not before,
        )
        t0 = time.perf_counter()
        trainer = StackedTrainer(
            model, k, train=_spec_train(warmup, precision, max_length), **kwargs
        )
        trainer.surgery.context.layout_gradients = not before
        if graphs:
            trainer.capture_graphs()
        _sync(device)
        setup_s = time.perf_counter() - t0
        trainer.fit(ids, labelings, seed=0)  # warm-up steps
        trainer.train = _spec_train(steps, precision, max_length)
        stats = trainer.fit(ids, labelings, seed=1)
    n_eval = min(len(ids), 64 if args.smoke else n_eval_default)
    weights = trainer.weights
    trainer.predict(weights, ids[:64], batch_size=128)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    trainer.predict(weights, ids[:n_eval], batch_size=128)
    _sync(device)
    eval_tps = k * sum(len(x) for x in ids[:n_eval]) / (time.perf_counter() - t0)
    member = stats.members[0]
    label = f"stacked K={k} ({precision}, {'grouped' if grouped else 'random'})"
    if graphs:
        label += " + graphs"
    if compile:
        label += " compiled"
    if before:
        label += " before"
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


def _arch_rows(folder, ids, labels, tokenizer, texts, max_length, device, args):  # type: ignore[no-untyped-def]
    """A model other than DistilBERT: stacked (bf16, grouped) against its plain Trainer."""
    low = "bf16" if device.type == "cuda" else "fp32"
    steps, warmup = args.arch_steps, max(2, args.arch_steps // 2)
    n_eval = 64 if args.smoke else 500
    rows = []
    for k in (args.k, args.k // 2):  # half as many members where K does not fit
        stacked_args = argparse.Namespace(**{**vars(args), "k": k})
        row = _safe(
            _stacked,
            folder,
            ids,
            device,
            stacked_args,
            precision=low,
            grouped=True,
            steps=steps,
            warmup=warmup,
            n_eval_default=n_eval,
        )
        _release(device)
        if row is not None:
            rows.append(row)
            break
    if not args.skip_trainer:
        quick = argparse.Namespace(**{**vars(args), "steps": steps, "warmup": warmup})
        rows.append(_safe(_trainer, folder, tokenizer, texts, labels, max_length, device, quick))
    _release(device)
    return rows


BASE_CONFIGS: dict[str, dict[str, Any]] = {
    # The *-base configurations of the encoders people fine-tune (random weights).
    "bert": {"model_type": "bert"},
    "roberta": {
        "model_type": "roberta",
        "vocab_size": 50265,
        "max_position_embeddings": 514,
        "pad_token_id": 1,
        "type_vocab_size": 1,
    },
    "xlm-roberta": {
        "model_type": "xlm-roberta",
        "vocab_size": 250002,
        "max_position_embeddings": 514,
        "pad_token_id": 1,
        "type_vocab_size": 1,
    },
    "electra": {
        # electra-base-discriminator (ElectraConfig() is the small one)
        "model_type": "electra",
        "embedding_size": 768,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
    "deberta-v3": {
        # deberta-v3-base (DebertaV2Config() is the xlarge one)
        "model_type": "deberta-v2",
        "vocab_size": 128100,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": 512,
        "relative_attention": True,
        "position_buckets": 256,
        "max_relative_positions": -1,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "pos_att_type": ["p2c", "c2p"],
        "layer_norm_eps": 1e-7,
        "position_biased_input": False,
        "type_vocab_size": 0,
        "pad_token_id": 0,
    },
    "modernbert": {"model_type": "modernbert", "vocab_size": 50368},
}


def _base_model(name: str, tokenizer: Any, folder: Path, smoke: bool) -> tuple[Path, int]:
    """A random model of the *-base configuration ``name`` (tiny with ``smoke``), at 512."""
    width = 32 if smoke else None
    return _family_model(name, tokenizer, folder, width=width, dropout=True), 512


def _family_model(
    name: str, tokenizer: Any, folder: Path, *, width: int | None, dropout: bool
) -> Path:
    """A random model of family ``name`` saved to ``folder``: its *-base shape, or two layers
    ``width`` wide; with ``dropout`` False, every dropout off."""
    import torch
    from transformers import CONFIG_MAPPING, AutoModel

    options = dict(BASE_CONFIGS[name])
    kind = options.pop("model_type")
    if width is not None:
        options.update(
            hidden_size=width,
            num_hidden_layers=2,
            num_attention_heads=max(2, width // 32),
            intermediate_size=2 * width,
            vocab_size=max(options.get("vocab_size", 0), len(tokenizer)),
        )
        if "embedding_size" in options:
            options["embedding_size"] = width
        if kind == "deberta-v2":
            options["position_buckets"] = 16
    if not dropout:
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "attention_dropout"):
            options[key] = 0.0
        if kind == "modernbert":
            options.update(embedding_dropout=0.0, mlp_dropout=0.0, classifier_dropout=0.0)
    config = CONFIG_MAPPING[kind](**options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _save(AutoModel.from_config(config), tokenizer, folder)


def _compiled_steps(tokenizer, texts, tmp, device, args, peak) -> None:  # type: ignore[no-untyped-def]
    """Stacked steps at one width (DistilBERT, K members, bf16): ``before`` (autocast casting every
    weight each step, autograd's transposed weight gradients), ``eager`` (bf16 working copies,
    weight-layout gradients), ``compiled`` and on a GPU ``compiled + graphs`` (the compiled step
    captured as a CUDA graph); the compile's time, and with ``--profile`` where each step's device
    time goes and its heaviest kernels."""
    import torch

    from noisegrid.backends import hf
    from noisegrid.backends.finetune.loop import _deterministic, width_multiple
    from noisegrid.backends.finetune.stack import StackedTrainer
    from noisegrid.backends.finetune.steps import GraphedSteps

    width = 64 if args.smoke else args.compile_width
    if args.smoke:  # a CPU's C++ compile takes minutes: trace and run the graph uncompiled
        from noisegrid.backends.finetune import steps

        steps.COMPILE_BACKEND = "aot_eager"
    folder = _distilbert(tokenizer, tmp / "distilbert", args.smoke)
    precision = "bf16" if device.type == "cuda" else "fp32"
    dtype = hf.autocast_dtype(device, precision)
    params = _n_params(folder)
    n = 3 if args.smoke else 20
    print(f"\n== DistilBERT stacked K={args.k} at width {width}, {precision}: eager vs compiled ==")
    variants = [("before", False, True, False), ("eager", False, False, False)]
    variants.append(("compiled", True, False, False))
    if device.type == "cuda":
        variants.append(("compiled + graphs", True, False, True))
    for label, compiled, before, graphed in variants:
        with hf.seeded(0, device), _deterministic(device):
            trainer = StackedTrainer(
                _load(folder),
                args.k,
                device=device,
                dtype=dtype,
                train=_spec_train(1, precision, width),
                max_grad_norm=1.0,
                pad_id=0,
                pad_multiple=width_multiple(device),
                max_width=width,
                group_by_length=True,
                compile=compiled,
                cuda_graphs=graphed,
                per_member=False,  # the GPU's batched forward, also in a CPU smoke run
                working_copies=not before,
            )
            trainer.surgery.context.layout_gradients = not before
            t0 = time.perf_counter()
            if graphed:  # this width only (the run captures every width)
                trainer._graphs = GraphedSteps(trainer)
                trainer._graphs.capture(width)
            trainer.timed_steps(width, 1, warmup=2)  # the compile happens here
            first = time.perf_counter() - t0
            seconds = trainer.timed_steps(width, n, warmup=1)
        tokens = args.k * args.train_rows * width / seconds
        mfu = 6 * params * tokens / peak
        print(
            f"{label:17} {seconds * 1e3:8.1f} ms/step  {tokens:10.0f} padded tokens/s  "
            f"MFU {mfu * 100:5.1f}%  (first 3 steps {first:.1f} s: the compile)"
        )
        if compiled and not graphed:  # another width: the same graph, no compile
            t0 = time.perf_counter()
            trainer.timed_steps(width // 2, 1, warmup=0)
            print(f"{'':17} a step at width {width // 2}: {time.perf_counter() - t0:.2f} s")
        if args.profile and device.type == "cuda" and not graphed:
            _profile_step(trainer, width)
        del trainer
        _release(device)
    del torch


KINDS = (
    ("matrix products", ("gemm", "cutlass", "sm90_", "cublas", "matmul", "dot")),
    ("attention", ("fmha", "flash", "attention", "efficient")),
    ("copies and casts", ("copy", "cast", "to_copy", "elementwise_kernel_with_index")),
    ("AdamW", ("adam", "multi_tensor")),
    ("layer norm", ("layer_norm", "layernorm")),
    ("fused (compiled)", ("triton_",)),
)


def _profile_step(trainer, width: int) -> None:  # type: ignore[no-untyped-def]
    """Device time of one stacked step by kind of kernel (torch profiler, kernels only)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    trainer.timed_steps(width, 2, warmup=0)
    n = 3
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        trainer.timed_steps(width, n, warmup=0)
    totals: dict[str, float] = {}
    kernels: dict[str, list[float]] = {}
    for event in prof.events():
        if event.device_type != DeviceType.CUDA:
            continue
        us = float(getattr(event, "device_time_total", 0.0) or 0.0)
        name = str(event.name).lower()
        kind = next((k for k, keys in KINDS if any(x in name for x in keys)), "other")
        totals[kind] = totals.get(kind, 0.0) + us
        kernels.setdefault(str(event.name), []).append(us)
    total = sum(totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda item: -item[1])
    parts = ", ".join(f"{kind} {us / total:.0%}" for kind, us in ranked)
    print(f"  device time per step {total / n / 1e3:.1f} ms: {parts}")
    heaviest = sorted(kernels.items(), key=lambda item: -sum(item[1]))[:10]
    for name, times in heaviest:
        print(
            f"    {sum(times) / total:5.1%} {len(times) / n:6.0f} calls/step "
            f"{sum(times) / len(times):8.1f} µs/call  {name[:110]}"
        )


# -- checks ----------------------------------------------------------------------------------


def _checks(tokenizer, texts, tmp, device, args) -> None:  # type: ignore[no-untyped-def]
    """Stacked = alone on this device for every family (dropout off, fp32: deterministic), and
    CUDA graphs = eager for BERT."""
    ids = _tokenize(tokenizer, texts[:256], 128)
    print("\n== checks on this device (dropout off, fp32; K = 3 against each cell alone) ==")
    for name in ("bert", *[n for n in BASE_CONFIGS if n != "bert"]):
        folder = _family_model(name, tokenizer, tmp / f"check-{name}", width=128, dropout=False)
        graphs = [False, True] if device.type == "cuda" and name == "bert" else [False]
        _safe(_check, name, folder, ids, device, graphs)
    _release(device)


def _check(name, folder, ids, device, graph_modes) -> None:  # type: ignore[no-untyped-def]
    from noisegrid.backends import hf
    from noisegrid.backends.finetune.evaluation import predict_probabilities
    from noisegrid.backends.finetune.loop import _deterministic, train_loop, width_multiple
    from noisegrid.backends.finetune.stack import StackedTrainer

    labelings = np.random.default_rng(3).integers(0, 2, size=(3, len(ids)))
    train = _spec_train(12, "fp32", 128)
    pad = dict(device=device, dtype=None, pad_id=0, pad_multiple=width_multiple(device))
    loop = dict(max_width=128, group_by_length=True, max_grad_norm=1.0)
    alone = []
    for y in labelings:
        with hf.seeded(5, device), _deterministic(device):
            model = _load(folder).to(device)
            train_loop(model, ids, y, train=train, seed=5, **pad, **loop)
        alone.append(predict_probabilities(model, ids[:128], batch_size=64, **pad))
    results = {}
    for graphs in graph_modes:
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
        proba = trainer.predict(trainer.weights, ids[:128], batch_size=64)
        results[graphs] = proba
        diff = max(float(np.abs(proba[i] - alone[i]).max()) for i in range(3))
        same = all((proba[i].argmax(1) == alone[i].argmax(1)).all() for i in range(3))
        verdict = "PASS" if diff <= 1e-4 and same else "FAIL"
        label = f"{name}: stacked K=3" + (" + CUDA graphs" if graphs else "")
        print(f"{label:32} vs alone: max |Δp| {diff:.2e}, same argmax {same}: {verdict}")
    if True in results:
        diff = float(np.abs(results[True] - results[False]).max())
        print(f"CUDA graphs vs eager: max |Δp| {diff:.2e}: {'PASS' if diff <= 1e-4 else 'FAIL'}")
    del trainer
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
