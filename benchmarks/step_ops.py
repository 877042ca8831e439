"""Benchmark: operator calls, and copy/cast calls, per stacked training step — eager vs compiled.

What a CPU can measure of what a GPU pays per step: every operator call is a kernel launch there
(about 17 µs each on an H200), and every copy or cast moves the step's tensors once more. One
stacked step (K members folded into the batch, the GPU's batched forward, bf16 autocast as the
fast recipe trains) is profiled with ``torch.profiler`` after warm-up steps:

- ``autocast``: the eager step with autocast casting every fp32 weight to bf16 on every step
  (the stack before its bf16 working copies; ``working_copies=False``);
- ``eager``: the step as the stacked trainer runs it without ``[backend] compile``;
- ``compiled``: forward, loss and backward compiled by ``torch.compile`` (inductor), as on a GPU.

Printed per row: operator calls (top-level ``aten::`` calls, what dispatches a kernel), of which
copies and casts (``aten::copy_``, ``aten::to``/``_to_copy``, ``aten::clone``, ``contiguous``;
an ``aten::to`` that returns its input is no call) and the millions of elements those move, then
whether the compiled step equals the eager one (dropout on, inductor drawing its random numbers
as eager does).

Usage::

    python3 benchmarks/step_ops.py               # MiniLM-shaped random BERT (6 × 384), K = 11
    python3 benchmarks/step_ops.py --tiny        # a 2 × 32 BERT, K = 3 (seconds to compile)
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter

import numpy as np

COPY_OPS = ("aten::copy_", "aten::to", "aten::_to_copy", "aten::clone", "aten::contiguous")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model (fast compile)")
    parser.add_argument("--k", type=int, default=None, help="members (default 11, tiny 3)")
    parser.add_argument("--width", type=int, default=128, help="tokens per row")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    args = parser.parse_args()

    import torch
    import torch._inductor.config as inductor_config
    from transformers import BertConfig, BertForSequenceClassification

    from noisegrid.backends.finetune.stack import StackedTrainer
    from noisegrid.config import TrainSpec

    inductor_config.fallback_random = True  # random numbers drawn as eager draws them
    torch.set_num_threads(1)
    k = args.k or (3 if args.tiny else 11)
    if args.tiny:
        shape = dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
        )
    else:
        shape = dict(
            hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
        )
    config = BertConfig(vocab_size=30522, num_labels=2, **shape)
    dtype = torch.bfloat16 if args.precision == "bf16" else None
    rng = np.random.default_rng(0)
    rows = 16
    ids = [rng.integers(5, 30000, size=args.width) for _ in range(rows * 4)]
    labelings = rng.integers(0, 2, size=(k, len(ids)))
    train = TrainSpec(steps=4, batch_size=rows, learning_rate=2e-5)
    kwargs = dict(
        device=torch.device("cpu"),
        dtype=dtype,
        train=train,
        max_grad_norm=1.0,
        pad_id=0,
        pad_multiple=64,
        max_width=args.width,
        group_by_length=False,
        per_member=False,  # the GPU's batched forward
    )
    print(
        f"BERT {shape['num_hidden_layers']} × {shape['hidden_size']}, K = {k}, batch {rows} × "
        f"{args.width} tokens, {args.precision}; torch {torch.__version__}"
    )
    print(
        f"{'':10} {'operator calls':>15} {'copies/casts':>13} {'M elements copied':>18} "
        f"{'s/step (CPU)':>13}"
    )
    probas = {}
    rows_run = [("eager", False, True), ("compiled", True, True)]
    if dtype is not None:
        rows_run.insert(0, ("autocast", False, False))
    for label, compiled, working in rows_run:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = BertForSequenceClassification(config)
            trainer = StackedTrainer(model, k, compile=compiled, working_copies=working, **kwargs)
            t0 = time.perf_counter()
            trainer.fit(ids, labelings, seed=0)  # warm-up (and compile)
            warm = time.perf_counter() - t0
            counts, moved, seconds = _profile(trainer, args.width)
        probas[label] = trainer.predict(trainer.snapshot(), ids[:32], batch_size=32)
        ops = sum(n for name, n in counts.items() if name.startswith("aten::"))
        copies = sum(counts[name] for name in COPY_OPS)
        print(f"{label:10} {ops:15d} {copies:13d} {moved / 1e6:18.1f} {seconds:13.3f}")
        if compiled:
            print(f"  compile + first steps: {warm:.1f} s for one width")
    diff = float(np.abs(probas["compiled"] - probas["eager"]).max())
    print(f"compiled vs eager after 8 steps (dropout on): max |Δp| {diff:.1e}")
    if "autocast" in probas:
        diff = float(np.abs(probas["autocast"] - probas["eager"]).max())
        print(f"working copies vs autocast's casts after 8 steps: max |Δp| {diff:.1e}")


def _profile(trainer, width):  # type: ignore[no-untyped-def]
    """Top-level operator counts of one step (the profiler's events without a parent), and the
    elements the copies and casts among them move."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    rng = np.random.default_rng(1)
    rows = trainer.train.batch_size
    ids = [rng.integers(5, 30000, size=width) for _ in range(rows)]
    y = rng.integers(0, 2, size=(trainer.k, rows))
    from noisegrid.config import TrainSpec

    trainer.train = TrainSpec(steps=1, batch_size=rows, learning_rate=2e-5)
    trainer.fit(ids, y, seed=1)
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        trainer.fit(ids, y, seed=2)
    seconds = time.perf_counter() - t0
    counts: Counter[str] = Counter()
    moved = 0
    for event in prof.events():
        name = str(event.name)
        parent = event.cpu_parent
        if name.startswith("aten::") and (
            parent is None or not str(parent.name).startswith("aten::")
        ):
            if name == "aten::to" and not event.cpu_children:
                continue  # already of that dtype and device: returns its input, no kernel
            counts[name] += 1
            if name in COPY_OPS and event.input_shapes and event.input_shapes[0]:
                moved += math.prod(event.input_shapes[0])
    del torch
    return counts, moved, seconds


if __name__ == "__main__":
    main()
