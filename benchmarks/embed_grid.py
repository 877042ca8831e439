"""Benchmark: the 50-cell ``embed`` laptop grid on IMDB (MiniLM, max_length 256), cold and warm, in
the encoder precision ``auto`` picks on this machine against fp32.

Prints this machine's CPU (cores, load, bf16/int8-relevant flags), then:

- **throughput**: reviews per second through the encoder at 256 tokens, on ``--throughput-texts``
  random training reviews (batches of ``[train] eval_batch_size`` texts sorted by length, at most
  2,048 tokens on a CPU, one batch per core at a time), in each
  precision worth measuring here (bf16 only where it is native; emulated bf16 is several times
  slower than fp32);
- **cold**: an empty embedding cache (a temporary folder) and an empty store, in the precision
  ``auto`` picks: the grid encodes the texts it needs once (the largest subsample plus the test
  sample), then fits 50 heads;
- **warm**: a fresh store, the cache from the cold run: nothing is encoded;
- **fp32 cold** (unless ``--compare none``): the same grid with ``--set backend.precision=fp32``
  (its own cache folder: the precision is part of the cache key), and the per-cell accuracy
  difference against it (target: within 0.5 points).

Targets on a 2-core CPU (issue 12): cold <= 300 s, warm <= 10 s.

Usage::

    .venv/bin/python benchmarks/embed_grid.py                  # the full laptop grid (long: fp32)
    .venv/bin/python benchmarks/embed_grid.py --compare none   # without the fp32 cold run
    .venv/bin/python benchmarks/embed_grid.py --quick          # 4 small cells, max_length 64
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _machine import cpu_report, cpu_seconds, load, native_bf16

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "examples" / "laptop-embed.toml"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imdb"))
    parser.add_argument("--quick", action="store_true", help="4 small cells, max_length 64")
    parser.add_argument("--set", action="append", default=[], help="extra section.key=value")
    parser.add_argument("--compare", default="fp32", help="precision to compare with, or none")
    parser.add_argument("--throughput-texts", type=int, default=128, help="0: skip")
    parser.add_argument("--cache", default=None, help="reuse this cache folder for the cold run")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    import torch

    from noisegrid.backends import make_backend
    from noisegrid.backends.embed import EmbedBackend, encoder_precision, requested_precision
    from noisegrid.backends.hf import choose_device, inference_batch_tokens
    from noisegrid.config import load_spec
    from noisegrid.data import load_corpus
    from noisegrid.results import load_results
    from noisegrid.runner import run_experiment

    overrides = [f"dataset.source={args.data}"]
    if args.quick:
        overrides += [
            "grid.sizes=[100, 200]",
            "grid.noise_rates=[0.0, 0.2]",
            "eval.test_size=100",
            "train.max_length=64",
        ]
    overrides += args.set
    tmp = Path(tempfile.mkdtemp(prefix="noisegrid-embed-bench-"))
    cache = Path(args.cache) if args.cache else tmp / "cache"
    spec = load_spec(args.config, overrides=[*overrides, f"run.cache_dir={cache}"])
    options = spec.backend_options()
    requested = requested_precision(str(options.get("precision", "auto")), spec.train.precision)
    chosen = encoder_precision(requested, choose_device())
    print(cpu_report())
    print(
        f"embed grid: {spec.grid.n_cells_total} cells, sizes {list(spec.grid.sizes)}, test "
        f"{spec.eval.test_size}, model {options['model']}, max_length {spec.train.max_length}, "
        f"batches of <= {spec.train.eval_batch_size} texts and <= "
        f"{inference_batch_tokens(choose_device().type)} tokens, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads; precision {options.get('precision', 'auto')!r} -> "
        f"{chosen}",
        flush=True,
    )

    if args.throughput_texts:
        corpus = load_corpus(spec.dataset)
        rng = np.random.default_rng(0)
        picks = rng.choice(len(corpus.train.texts), args.throughput_texts, replace=False)
        sample = [corpus.train.texts[int(i)] for i in picks]
        precisions = ["fp32", "int8", *(["bf16"] if native_bf16() else [])]
        for precision in precisions:
            backend = make_backend(
                load_spec(args.config, overrides=[*overrides, f"backend.precision={precision}"]),
                n_classes=corpus.n_classes,
                cache_dir=tmp / f"throughput-{precision}",
            )
            assert isinstance(backend, EmbedBackend)
            backend._load_encoder()
            backend.embed(sample[:4])  # warm-up, not timed
            t0 = time.perf_counter()
            backend.embed(sample[4:])
            rate = (len(sample) - 4) / (time.perf_counter() - t0)
            print(f"throughput {precision:>5}: {rate:6.2f} reviews/s (load {load()})", flush=True)
        if not native_bf16():
            print("throughput  bf16: not measured (emulated on this CPU: no avx512_bf16/amx_bf16)")

    def grid(name: str, extra: list[str], cache_dir: Path) -> tuple[float, pd.Series]:
        store = tmp / f"{name}.sqlite"
        run_spec = load_spec(
            args.config,
            overrides=[*overrides, *extra, f"run.cache_dir={cache_dir}", f"run.store={store}"],
        )
        t0, c0 = time.perf_counter(), cpu_seconds()
        summary = run_experiment(run_spec)
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds() - c0
        table = load_results(run_spec)
        print(
            f"{name:>10}: {seconds:7.1f} s wall, {cpu:7.1f} s cpu  ({summary.n_done} done, "
            f"{summary.n_failed} failed; load {load()})",
            flush=True,
        )
        return seconds, table.set_index(["train_size", "noise_level"])["eval_accuracy"]

    cold_s, accuracy = grid("cold", [], cache)
    warm_s, _ = grid("warm", [], cache)
    verdicts = [
        f"cold <= 300 s: {'met' if cold_s <= 300 else 'MISSED'}",
        f"warm <= 10 s: {'met' if warm_s <= 10 else 'MISSED'}",
    ]
    if args.compare != "none":
        other_s, other = grid(
            f"{args.compare} cold", [f"backend.precision={args.compare}"], tmp / "compare-cache"
        )
        print(f"ratio {args.compare} cold / {chosen} cold: {other_s / cold_s:5.2f}x")
        diff = ((accuracy - other) * 100).rename("diff")
        table = diff.reset_index().pivot(index="train_size", columns="noise_level", values="diff")
        print(
            f"accuracy difference, {chosen} - {args.compare} (points; rows: train size, "
            "columns: noise rate):"
        )
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(table.round(2).to_string())
        worst = float(diff.abs().max())
        print(f"mean difference {diff.mean():+.2f} points, max |difference| {worst:.2f}")
        verdicts.append(f"accuracy within 0.5: {'met' if worst <= 0.5 else 'MISSED'}")
    print(f"targets: {'; '.join(verdicts)} (load {load()})")
    print(f"(temporary files in {tmp})")


if __name__ == "__main__":
    main()
