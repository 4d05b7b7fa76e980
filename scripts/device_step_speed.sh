#!/usr/bin/env bash
# Training-step speed on the lent GPU, in one device call (at most DEADLINE_S seconds, default 570): the
# long chain (L = 32768) with block checkpointing, and the short one (256 x 8) eager, with torch.compile
# and with CUDA graphs (compile mode reduce-overhead). PHASES picks them (default "long short"; also
# "short_eager short_graphs short_compile" one by one). Rows go to $OUT/step_speed/scaling_results.{jsonl,csv},
# a report to $OUT/step_speed.md, the log to $OUT/device.log. Carry the hydra wheels: run(carry [".whl"]) with
#   bash scripts/device_step_speed.sh
# A CPU dry run: EXPERIMENT=scaling_smoke LONG=64 SHORT=16 POINT_S=120 bash scripts/device_step_speed.sh
set -o pipefail
OUT=${OUT:-/tmp/step_speed_out}
WORK=${WORK:-/tmp/step_speed_work}
mkdir -p "$OUT" "$WORK"
# shellcheck source=scripts/device_env.sh
source scripts/device_env.sh
export FLASHIPA_AUTOTUNE=${FLASHIPA_AUTOTUNE:-0}
LOG="$OUT/device.log"
device_stamp 2>&1 | tee "$LOG"

EXPERIMENT=${EXPERIMENT:-scaling}
LONG=${LONG:-32768}
SHORT=${SHORT:-256}
SDPA="{name:flash_ipa,backend:sdpa}"
TRITON="{name:flash_ipa,backend:triton}"

DEADLINE_S=${DEADLINE_S:-570}
PHASES=${PHASES:-long short}

point() {  # point SECONDS OVERRIDES...: one training run (cut short by the deadline), its row appended
  local seconds=$1
  shift
  local left=$(( DEADLINE_S - SECONDS ))
  if [ "$left" -lt 30 ]; then echo "== skipped (deadline): $*" | tee -a "$LOG"; return; fi
  [ "$seconds" -gt "$left" ] && seconds=$left
  echo "== $* (at most ${seconds}s)" | tee -a "$LOG"
  local start=$SECONDS
  timeout --signal=KILL "$seconds" python3 -m flashipa_train.scaling.cli "experiment=$EXPERIMENT" \
    "scaling.results_dir=$OUT/step_speed" "paths.log_dir=$WORK/logs" "$@" 2>&1 \
    | grep -E "scaling point|Error|error|Graph break|Recompiling|skipping cudagraphs" | head -20 | tee -a "$LOG"
  echo "   exit ${PIPESTATUS[0]} after $(( SECONDS - start ))s" | tee -a "$LOG"
}
has() { [[ " $PHASES " == *" $1 "* || " $PHASES " == *" ${1%%_*} "* ]]; }

# Long chains: checkpointing the first N blocks trades one more forward of them for their activations.
if has long; then
  for blocks in 2 3; do
    point "${POINT_S:-60}" "model.attention=$SDPA" "data.length=$LONG" "model.checkpoint_blocks=$blocks" \
      scaling.warmup_steps=2 scaling.timed_steps=5
  done
  point "${POINT_S:-60}" "model.attention=$TRITON" "data.length=$LONG" model.checkpoint_blocks=2 \
    scaling.warmup_steps=2 scaling.timed_steps=5
fi

# Short chains: host-bound in eager mode. Compiled points warm up longer (every self-conditioning path
# compiles its own graph).
SHORT_STEPS=(scaling.warmup_steps=12 scaling.timed_steps=30)
has short_eager && point "${POINT_S:-60}" "model.attention=$SDPA" "data.length=$SHORT" "${SHORT_STEPS[@]}"
if has short_graphs; then
  point "${COMPILE_S:-240}" "model.attention=$SDPA" "data.length=$SHORT" "compile={mode:reduce-overhead}" \
    "${SHORT_STEPS[@]}"
  point "${COMPILE_S:-240}" "model.attention=$TRITON" "data.length=$SHORT" "compile={mode:reduce-overhead}" \
    "${SHORT_STEPS[@]}"
fi
if has short_compile; then
  TORCH_LOGS=graph_breaks,recompiles point "${COMPILE_S:-240}" "model.attention=$SDPA" "data.length=$SHORT" \
    compile=true "${SHORT_STEPS[@]}"
fi

python3 scripts/scaling_report.py "$OUT/step_speed" --out "$OUT/step_speed.md" --figures-dir "$WORK/figures" \
  2>&1 | tail -2 | tee -a "$LOG"
cut -d, -f1-9,14,15 "$OUT/step_speed/scaling_results.csv"
