#!/usr/bin/env bash
# The scaling sweep and the maximum-length bisection on the lent GPU, in about 9 minutes, results under $OUT.
# The GPU image lacks hydra: carry its wheels (they are in /work/shared/device-wheels), once, here:
#   echo /.whl/ >> .git/info/exclude; mkdir -p .whl; cp /work/shared/device-wheels/*.whl .whl/
# then the device `run` (carry [".whl"], timeout 600):
#   bash scripts/device_scaling.sh
# Phase budgets (seconds) are environment variables: FLASH_S, INATT_S, DENSE_S, TRITON_S (sweep, one
# process each, the Triton kernel last: a crashed kernel poisons only its own process), MAXLEN_S
# (bisection; MAXLEN_VARIANTS, MAXLEN_START, MAXLEN_LIMIT, MAXLEN_RESOLUTION), COMPILE=1 adds flash_ipa/sdpa at 256 x 8 with torch.compile (inductor; minutes to compile).
# Writes (8 files at most come back): sweep/scaling_results.{jsonl,csv}, max_length.json, scaling.md,
# scaling_{step_time,peak_memory,throughput}.png, device.log. Training reads synthetic chains: no biotite.
set -o pipefail
OUT=${OUT:-/tmp/scaling_out}
WORK=${WORK:-/tmp/scaling_work}
mkdir -p "$OUT/sweep" "$WORK"
# shellcheck source=scripts/device_env.sh
source scripts/device_env.sh
export FLASHIPA_AUTOTUNE=${FLASHIPA_AUTOTUNE:-0}
LOG="$OUT/device.log"
{
  device_stamp
  python3 -c "import hydra; print('hydra', hydra.__version__)"
} 2>&1 | tee "$LOG"

# a CPU dry run: EXPERIMENT=scaling_smoke LENGTHS=16,32 DENSE_LENGTHS=16 MAXLEN_START=16 MAXLEN_LIMIT=64 \
#   MAXLEN_RESOLUTION=16 bash scripts/device_scaling.sh
EXPERIMENT=${EXPERIMENT:-scaling}
ALL_L=${LENGTHS:-128,256,512,1024,2048,4096,8192,16384,32768,65536}
COMMON=("experiment=$EXPERIMENT" "scaling.results_dir=$OUT/sweep" scaling.warmup_steps=2 scaling.timed_steps=5
        "paths.log_dir=$WORK/logs")

sweep() {  # sweep LABEL SECONDS ATTENTION LENGTHS [overrides...]
  local label=$1 seconds=$2 attention=$3 lengths=$4
  shift 4
  echo "== sweep $label (L=$lengths, at most ${seconds}s)" | tee -a "$LOG"
  timeout --signal=KILL "$seconds" python3 -m flashipa_train.scaling.cli -m "${COMMON[@]}" \
    "model.attention=$attention" "data.length=$lengths" "hydra.sweep.dir=$WORK/sweep_$label" "$@" 2>&1 \
    | grep -E "scaling point|Error|error" | tee -a "$LOG"
  echo "   exit ${PIPESTATUS[0]}" | tee -a "$LOG"
}

sweep flash_sdpa "${FLASH_S:-150}" "{name:flash_ipa,backend:sdpa}" "$ALL_L"
sweep inattention_sdpa "${INATT_S:-110}" "{name:inattention,backend:sdpa}" "$ALL_L"
sweep dense "${DENSE_S:-60}" "{name:dense_ipa,backend:torch}" "${DENSE_LENGTHS:-128,256,512,1024,2048,4096,8192}"
sweep flash_triton "${TRITON_S:-70}" "{name:flash_ipa,backend:triton}" "$ALL_L"
if [ "${COMPILE:-0}" = 1 ]; then
  sweep flash_sdpa_compiled 240 "{name:flash_ipa,backend:sdpa}" 256 compile=true scaling.warmup_steps=5
fi

echo "== longest L (bisection, at most ${MAXLEN_S:-120}s)" | tee -a "$LOG"
timeout --signal=KILL $(( ${MAXLEN_S:-120} + 30 )) python3 scripts/find_max_length.py \
  --variants ${MAXLEN_VARIANTS:-flash_ipa:sdpa inattention:sdpa} --start "${MAXLEN_START:-65536}" --limit "${MAXLEN_LIMIT:-262144}" --resolution "${MAXLEN_RESOLUTION:-16384}" \
  --probe-timeout 90 --budget "${MAXLEN_S:-120}" --work-dir "$WORK/max_length" --out "$OUT/max_length.json" \
  -- "experiment=$EXPERIMENT" "paths.log_dir=$WORK/logs" 2>&1 | tee -a "$LOG"

python3 scripts/scaling_report.py "$OUT/sweep" --out "$OUT/scaling.md" --figures-dir "$OUT" \
  $( [ -f "$OUT/max_length.json" ] && echo --max-length "$OUT/max_length.json" ) 2>&1 | tee -a "$LOG"
cut -d, -f1-9 "$OUT/sweep/scaling_results.csv"
