#!/usr/bin/env bash
# The GPU check of stacked fine-tuning: one prepared run, a time limit per step (500 s in all, plus
# about half a minute for the kit's setup), under 9 minutes on one H100/H200. From the repository
# root, with the GPU kit in .gpu-kit/ (built here by ../shared/gpu/make-kit.sh and carried along):
#
#     bash benchmarks/gpu_check.sh               # on the GPU machine; logs under $OUT
#     bash benchmarks/gpu_check.sh --cpu-smoke   # the same steps, tiny, on a CPU (no kit needed;
#                                                # tiny random models stand in for the models)
#
# Steps (each with its own `timeout`), most important first:
#   1. environment (torch, transformers, the GPU);
#   2. benchmarks/gpu_finetune.py --check: stacked K=3 = each cell alone for every family (bert,
#      distilbert's cousins roberta, xlm-roberta, electra, deberta-v3, modernbert) and CUDA graphs
#      = eager on this device; DistilBERT at width 320, K=11: the step before bf16 working copies
#      and weight-layout gradients, eager and compiled, the compile's time, where a step's device
#      time goes and its heaviest kernels; DistilBERT at 512 tokens: stacked K=11 (bf16; and the
#      same "before") vs one model vs a plain transformers.Trainer: tokens/s, MFU, projected
#      reference grid;
#   3. noisegrid run of 2 sizes × 11 noise rates with the pretrained MiniLM of the kit
#      (benchmarks/gpu_check_minilm.toml, dataset .gpu-kit/imdb), compiled as `compile = "auto"`
#      compiles on a GPU: wall time, accuracies, whether the cells trained compiled;
#   4. benchmarks/recipes.py: the exact recipe against the fast one on MiniLM, 1,000 examples,
#      11 noise rates trained stacked per seed, 3 seeds: the paired accuracy differences;
#   5. the *-base configs of bert, roberta, xlm-roberta, electra, deberta-v3 and modernbert at
#      512 tokens: stacked K=11 (bf16, grouped) against its plain Trainer.
# Everything lands in $OUT: summary.txt (read it first), bench.log, bench.json, run.log,
# results.csv, recipes.log, arch.log, arch.json.
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
  RUN_SET=()
  BENCH=(--check --data "$DATA" --out "$OUT/bench.json" --skip-exact --skip-graphs
    --compile-width 320 --profile)
  ARCH=(--data "$DATA" --out "$OUT/arch.json" --arch-steps 6)
  # Not compiled: a compile (about half a minute) per recipe does not pay at this size.
  RECIPES=(--data "$DATA" --sizes 1000 --seeds 3 --max-length 128 --test-size 1000
    --recipes exact fast --by-noise --compile false)
  SCALE=1
else
  PY=${PY:-python3}
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
  DATA=${DATA:-../shared/data/imdb}
  SIZES="[16, 32]"
  # A tiny DistilBERT (random weights) instead of MiniLM: a CPU's MiniLM steps take seconds.
  RUN_SET=(--set "backend.model=$WORK/tiny-distilbert" --set train.max_length=32
    --set eval.test_size=40 --set train.epochs=1)
  BENCH=(--smoke --check --skip-trainer --skip-exact --data "$DATA" --out "$OUT/bench.json"
    --compile-width 64 --profile)
  ARCH=(--smoke --skip-trainer --data "$DATA" --out "$OUT/arch.json")
  RECIPES=(--data "$DATA" --model "$WORK/tiny-distilbert" --sizes 16 --seeds 2 --noise 0 0.1 0.2
    --max-length 32 --test-size 40 --epochs 1 --stack 3 --recipes exact fast --by-noise)
  SCALE=3  # a shared CPU is slow even at tiny sizes: three times the GPU's limits
fi
export NOISEGRID_CACHE="$WORK/cache" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
START=$(date +%s)

# step NAME LIMIT LOG COMMAND...: run with a time limit (× SCALE), append to LOG, one line in the
# summary.
step() {
  local name=$1 limit=$(($2 * SCALE)) log=$3
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
step environment 20 "$OUT/summary.txt" "$PY" -c "
import torch, transformers
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'
print(f'torch {torch.__version__}, transformers {transformers.__version__}, GPU {gpu}')
if torch.cuda.is_available():
    free, total = torch.cuda.mem_get_info()
    print(f'GPU memory free {free / 2**30:.1f} of {total / 2**30:.1f} GiB')
"

step benchmark 190 "$OUT/bench.log" "$PY" benchmarks/gpu_finetune.py "${BENCH[@]}"

if [ "$MODE" = cpu ]; then
  step "save a tiny DistilBERT" 30 "$OUT/run.log" "$PY" benchmarks/gpu_finetune.py --smoke \
    --save-distilbert "$WORK/tiny-distilbert"
fi
CONFIG=benchmarks/gpu_check_minilm.toml
RUNSET=(--set "dataset.source=$DATA" --set "grid.sizes=$SIZES" "${RUN_SET[@]}")
rm -f "$WORK/stacked.sqlite"
t0=$(date +%s)
step "run (2 sizes x 11 noise rates, stacked)" 110 "$OUT/run.log" \
  "$PY" -m noisegrid run "$CONFIG" "${RUNSET[@]}" --store "$WORK/stacked.sqlite" --quiet
note "  wall time of the stacked grid: $(($(date +%s) - t0))s"
step "results" 15 "$OUT/summary.txt" "$PY" - "$CONFIG" "$WORK" "$OUT/results.csv" "${RUNSET[@]}" <<'PYEOF'
import sys
import pandas as pd
import noisegrid

pd.set_option("display.width", 250)
pd.set_option("display.max_columns", 30)
config, work, out, overrides = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5::2]
table = noisegrid.load_results(config, overrides=overrides, store=f"{work}/stacked.sqlite")
table.to_csv(out, index=False)
print("stacked accuracy (rows: size, columns: noise rate):")
print(table.pivot_table(index="train_size", columns="noise_level", values="eval_accuracy").round(4))
print("fit seconds per cell, stacked:", table.groupby("train_size")["fit_seconds"].mean().round(2).to_dict())
print("compiled:", table["info"].str.contains('"compiled": true').mean())
PYEOF
rm -rf "$WORK/recipes"
step "recipes (exact vs fast, 11 noise rates stacked)" 95 "$OUT/recipes.log" \
  "$PY" benchmarks/recipes.py "${RECIPES[@]}" --out "$WORK/recipes"
step "architectures" 70 "$OUT/arch.log" "$PY" benchmarks/gpu_finetune.py "${ARCH[@]}" \
  --models roberta,modernbert,deberta-v3,electra,xlm-roberta,bert

note "total: $(($(date +%s) - START))s"
echo
echo "---- benchmark ----"
grep -E "PASS|FAIL|tokens/s|stacked K|one model|plain Trainer|projected|failed|Error|before|eager|compiled|device time|calls/step|==" "$OUT/bench.log" | head -90
echo "---- recipes ----"
grep -vE "Warning|warn" "$OUT/recipes.log" | tail -25
echo "---- architectures ----"
grep -E "tokens/s|stacked K|plain Trainer|failed|Error|==" "$OUT/arch.log" | head -40
echo "---- summary ----"
cat "$SUMMARY"
