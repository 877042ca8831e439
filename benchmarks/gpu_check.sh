#!/usr/bin/env bash
# The GPU check of stacked fine-tuning: one prepared run, a time limit per step, about 6-9 minutes
# on one H100/H200. From the repository root, with the GPU kit in .gpu-kit/ (built here by
# ../shared/gpu/make-kit.sh and carried along):
#
#     bash benchmarks/gpu_check.sh               # on the GPU machine; logs under $OUT
#     bash benchmarks/gpu_check.sh --cpu-smoke   # the same steps, tiny, on a CPU (no kit needed;
#                                                # a tiny random DistilBERT stands in for the models)
#
# Steps (each with its own `timeout`):
#   1. environment (torch, transformers, the GPU);
#   2. benchmarks/gpu_finetune.py --check: stacked = alone and CUDA graphs = eager on this device,
#      then DistilBERT at 512 tokens: stacked K=11 (bf16; + CUDA graphs; fp32 exact recipe) vs one
#      model vs a plain transformers.Trainer: tokens/s, MFU, projected reference grid;
#   3. noisegrid run of 2 sizes × 11 noise rates with the pretrained MiniLM of the kit
#      (benchmarks/gpu_check_minilm.toml, dataset .gpu-kit/imdb): wall time and accuracies;
#   4. two of those cells trained one at a time ([run] stack = 1), against their stacked results;
#   5. noisegrid plan examples/reference-fast.toml and examples/reference.toml (DistilBERT from
#      its config, random weights; the reference grid needs 15,000 training reviews, so the plan
#      reads a stand-in resampled from the kit's reviews: IMDB's lengths, the grid's sizes).
# Everything lands in $OUT: summary.txt (read it first), bench.log, bench.json, run.log,
# results.csv, plan.log.
set -uo pipefail

MODE=gpu
[ "${1:-}" = "--cpu-smoke" ] && MODE=cpu
OUT=${OUT:-/tmp/noisegrid-gpu-check}
WORK=${WORK:-/tmp/noisegrid-gpu-work}
mkdir -p "$OUT" "$WORK"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }

if [ "$MODE" = gpu ]; then
  if [ ! -f .gpu-kit/setup.sh ]; then
    echo "no .gpu-kit/ here: build it with ../shared/gpu/make-kit.sh and carry it" >&2
    exit 2
  fi
  # shellcheck disable=SC1091
  source .gpu-kit/setup.sh || { note "the kit's setup failed"; exit 2; }
  PY=python3
  DATA=.gpu-kit/imdb
  SIZES="[1000, 4000]"
  SOLO_SIZES="[1000]"
  RUN_SET=()
  BENCH=(--check --data "$DATA" --out "$OUT/bench.json")
  PROBE=30
  PLAN_SMOKE=()
else
  PY=${PY:-python3}
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
  DATA=${DATA:-../shared/data/imdb}
  SIZES="[16, 32]"
  SOLO_SIZES="[16]"
  # A tiny DistilBERT (random weights) instead of MiniLM: a CPU's MiniLM steps take seconds.
  RUN_SET=(--set "backend.model=$WORK/tiny-distilbert" --set train.max_length=32
    --set eval.test_size=40 --set train.epochs=1)
  BENCH=(--smoke --check --skip-trainer --skip-exact --data "$DATA" --out "$OUT/bench.json")
  PROBE=15
  # A CPU tokenises and probes the 25,000-review reference grid for minutes: plan a slice of it.
  PLAN_SMOKE=(--set "grid.sizes=[1000, 2000]" --set eval.test_size=200)
fi
export NOISEGRID_CACHE="$WORK/cache" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
START=$(date +%s)

# step NAME LIMIT LOG COMMAND...: run with a time limit, append to LOG, one line in the summary.
step() {
  local name=$1 limit=$2 log=$3
  shift 3
  local t0
  t0=$(date +%s)
  echo "== $name (limit ${limit}s): $*" >> "$log"
  timeout -k 10 "$limit" "$@" >> "$log" 2>&1
  local rc=$?
  local took=$(($(date +%s) - t0))
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    note "$name: TIMED OUT after ${limit}s (see $(basename "$log"))"
  else
    note "$name: exit $rc in ${took}s"
  fi
  return "$rc"
}

note "noisegrid GPU check ($MODE) $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
step environment 60 "$OUT/summary.txt" "$PY" -c "
import torch, transformers
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'
print(f'torch {torch.__version__}, transformers {transformers.__version__}, GPU {gpu}')
if torch.cuda.is_available():
    free, total = torch.cuda.mem_get_info()
    print(f'GPU memory free {free / 2**30:.1f} of {total / 2**30:.1f} GiB')
"

step benchmark 200 "$OUT/bench.log" "$PY" benchmarks/gpu_finetune.py "${BENCH[@]}"

if [ "$MODE" = cpu ]; then
  step "save a tiny DistilBERT" 60 "$OUT/run.log" "$PY" benchmarks/gpu_finetune.py --smoke \
    --save-distilbert "$WORK/tiny-distilbert"
fi
CONFIG=benchmarks/gpu_check_minilm.toml
RUNSET=(--set "dataset.source=$DATA" --set "grid.sizes=$SIZES" "${RUN_SET[@]}")
rm -f "$WORK/stacked.sqlite" "$WORK/solo.sqlite"
t0=$(date +%s)
step "run (2 sizes x 11 noise rates, stacked)" 150 "$OUT/run.log" \
  "$PY" -m noisegrid run "$CONFIG" "${RUNSET[@]}" --store "$WORK/stacked.sqlite" --quiet
note "  wall time of the stacked grid: $(($(date +%s) - t0))s"
step "run (2 of its cells one at a time)" 60 "$OUT/run.log" \
  "$PY" -m noisegrid run "$CONFIG" "${RUNSET[@]}" --set "grid.sizes=$SOLO_SIZES" \
  --set "grid.noise_rates=[0.0, 0.25]" --set run.stack=1 --store "$WORK/solo.sqlite" --quiet
step "results" 60 "$OUT/summary.txt" "$PY" - "$CONFIG" "$WORK" "$OUT/results.csv" "${RUNSET[@]}" <<'PYEOF'
import sys
import pandas as pd
import noisegrid

pd.set_option("display.width", 250)
pd.set_option("display.max_columns", 30)
config, work, out, overrides = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5::2]
tables = []
for name in ("stacked", "solo"):
    try:
        t = noisegrid.load_results(config, overrides=overrides, store=f"{work}/{name}.sqlite")
    except noisegrid.NoisegridError as exc:
        print(f"{name}: no results ({exc})")
        continue
    tables.append(t.assign(path=name))
table = pd.concat(tables)
table.to_csv(out, index=False)
stacked = table[table.path == "stacked"]
print("stacked accuracy (rows: size, columns: noise rate):")
print(stacked.pivot(index="train_size", columns="noise_level", values="eval_accuracy").round(4))
print("fit seconds per cell, stacked:", stacked.groupby("train_size")["fit_seconds"].mean().round(2).to_dict())
solo = table[table.path == "solo"]
if len(solo):
    both = solo.merge(stacked, on=["train_size", "noise_level"], suffixes=("_alone", "_stacked"))
    print("the same cells trained alone vs stacked:")
    print(both[["train_size", "noise_level", "eval_accuracy_alone", "eval_accuracy_stacked",
                "fit_seconds_alone", "fit_seconds_stacked"]].round(4).to_string(index=False))
PYEOF

# The reference grid's plan: DistilBERT from its config, and on the GPU a stand-in corpus.
if [ "$MODE" = gpu ]; then
  step "save DistilBERT" 60 "$OUT/plan.log" "$PY" benchmarks/gpu_finetune.py --save-distilbert "$WORK/distilbert"
  PLANMODEL="$WORK/distilbert"
else
  PLANMODEL="$WORK/tiny-distilbert"
fi
PLANDATA=$DATA
if [ "$MODE" = gpu ]; then
  PLANDATA="$WORK/imdb-reference"
  step "stand-in corpus" 60 "$OUT/plan.log" "$PY" - "$DATA" "$PLANDATA" <<'PYEOF'
import sys
from pathlib import Path
import pandas as pd

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
for split in ("train", "test"):
    df = pd.read_parquet(src / f"{split}.parquet")
    parts = []
    for label, rows in df.groupby("label"):
        rows = rows.sample(12500, replace=True, random_state=0).reset_index(drop=True)
        rows["text"] = rows["text"] + " " + rows.index.astype(str)  # distinct texts
        parts.append(rows)
    pd.concat(parts).sample(frac=1, random_state=1).to_parquet(dst / f"{split}.parquet")
print(f"{dst}: 25,000 train and 25,000 test reviews resampled from {src}")
PYEOF
fi
PLANSET=(--set "backend.model=$PLANMODEL" --set "dataset.source=$PLANDATA" "${PLAN_SMOKE[@]}")
step "plan reference-fast" 150 "$OUT/plan.log" "$PY" -m noisegrid plan examples/reference-fast.toml \
  "${PLANSET[@]}" --probe-seconds "$PROBE" --gpu-hour-cost 3.5
step "plan reference (exact)" 90 "$OUT/plan.log" "$PY" -m noisegrid plan examples/reference.toml \
  "${PLANSET[@]}" --probe-seconds "$PROBE" --gpu-hour-cost 3.5

note "total: $(($(date +%s) - START))s"
echo
echo "---- benchmark ----"
grep -E "PASS|FAIL|tokens/s|stacked K|one model|plain Trainer|projected|failed|Error" "$OUT/bench.log" | head -40
echo "---- plan ----"
grep -E "^plan for|^device|probe|step time|projected wall|^cost|TIMED|rror" "$OUT/plan.log" | head -20
echo "---- summary ----"
cat "$SUMMARY"
