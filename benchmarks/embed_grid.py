"""Benchmark: the 50-cell ``embed`` laptop grid on IMDB (MiniLM, max_length 256), cold and warm.

- **cold**: an empty embedding cache (a temporary folder) and an empty store: the grid encodes the
  texts it needs once (the largest subsample plus the test sample), then fits 50 heads.
- **warm**: a fresh store, the cache from the cold run: nothing is encoded.
- **naive**: a backend that re-encodes every cell's training texts and the test sample per cell.
  Running it in full takes hours on a CPU, so its encoding cost is measured on ``--naive-texts``
  texts and extrapolated to the grid (the output says so); its head-fitting cost is the warm run's.

Targets on a 2-core CPU: cold <= 5 min, warm <= 30 s.

Usage::

    .venv/bin/python benchmarks/embed_grid.py                   # the full laptop grid
    .venv/bin/python benchmarks/embed_grid.py --quick           # a small check of the script
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "examples" / "laptop-embed.toml"))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imdb"))
    parser.add_argument("--naive-texts", type=int, default=256, help="texts timed for the naive")
    parser.add_argument("--quick", action="store_true", help="4 small cells, max_length 64")
    parser.add_argument("--set", action="append", default=[], help="extra section.key=value")
    parser.add_argument("--cache", default=None, help="reuse this cache folder (implies warm)")
    parser.add_argument("--skip-cold", action="store_true", help="with --cache: only warm/naive")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    from noisegrid.backends import hf, make_backend
    from noisegrid.config import load_spec
    from noisegrid.data import load_corpus
    from noisegrid.grid import expand_grid
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
    cells = expand_grid(spec)
    import torch

    print(
        f"embed grid: {len(cells)} cells, sizes {list(spec.grid.sizes)}, test {spec.eval.test_size}"
        f", model {spec.backend_options()['model']}, max_length {spec.train.max_length}, "
        f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, load {_load()}"
    )

    cold_s = float("nan")
    if not args.skip_cold:
        t0 = time.perf_counter()
        cold = run_experiment(spec.model_copy(update={"run": _run(spec, tmp / "cold.sqlite")}))
        cold_s = time.perf_counter() - t0
        folders = list((cache / "embeddings").iterdir())
        n_encoded = sum(len(hf.ArrayCache(f, ragged=False)) for f in folders)
        label = "cold" if not args.cache else "run with the given cache"
        print(
            f"{label}: {cold_s:7.1f} s  ({cold.n_done} done, {cold.n_failed} failed; "
            f"{n_encoded} texts in the cache)"
        )

    t0 = time.perf_counter()
    warm = run_experiment(spec.model_copy(update={"run": _run(spec, tmp / "warm.sqlite")}))
    warm_s = time.perf_counter() - t0
    print(f"warm: {warm_s:7.1f} s  ({warm.n_done} done, {warm.n_failed} failed; nothing encoded)")

    # Naive: every cell encodes its training texts and the test sample again.
    corpus = load_corpus(spec.dataset)
    texts = corpus.train.texts
    rng = np.random.default_rng(0)
    sample = [texts[int(i)] for i in rng.choice(len(texts), args.naive_texts, replace=False)]
    naive_backend = make_backend(spec, n_classes=corpus.n_classes, cache_dir=tmp / "naive-cache")
    naive_backend.setup()  # type: ignore[attr-defined]
    naive_backend._load_encoder()  # type: ignore[attr-defined]
    naive_backend.embed(texts[-8:])  # type: ignore[attr-defined]  # warm-up, not timed
    t0 = time.perf_counter()
    naive_backend.embed(sample)  # type: ignore[attr-defined]
    per_text = (time.perf_counter() - t0) / len(sample)
    texts_naive = sum(c.train_size + spec.eval.test_size for c in cells)
    naive_s = texts_naive * per_text + warm_s
    print(
        f"naive (re-encode per cell): {naive_s:7.1f} s  EXTRAPOLATED from encoding "
        f"{len(sample)} random training texts ({per_text * 1000:.1f} ms/text) × {texts_naive} "
        f"texts over {len(cells)} cells, + the warm run's head fitting"
    )
    print(f"ratio naive/cold: {naive_s / cold_s:6.1f}×   naive/warm: {naive_s / warm_s:6.1f}×")
    cold_verdict = "not run" if args.skip_cold else ("met" if cold_s <= 300 else "MISSED")
    print(
        f"targets: cold <= 300 s ({cold_verdict}), "
        f"warm <= 30 s ({'met' if warm_s <= 30 else 'MISSED'}); load after: {_load()}"
    )
    print(f"(temporary files in {tmp})")


def _run(spec, store: Path):  # type: ignore[no-untyped-def]
    return spec.run.model_copy(update={"store": str(store)})


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - platforms without getloadavg
        return "n/a"


if __name__ == "__main__":
    main()
