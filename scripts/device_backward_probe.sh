#!/usr/bin/env bash
# FlashIPA on the lent GPU in one short call (about 3 minutes): compute-sanitizer over candidate kernel
# configs in parallel (scripts/device_memcheck.py), then the GPU tests and, with the first clean
# candidate, fwd and fwd+bwd timings at L = 8192 and 32768 against sdpa. Candidates: launch.py's own
# configs (every one, timed by the autotuner), the same in float32, and three single configs: the
# earlier 64-row tiles on 8 warps (expected to fault: the rule in launch.py's _configs), 64-row tiles
# on 4 warps and launch.py's first configs with one pipeline stage.
# Writes under $OUT: summary.txt, memcheck.tar.gz, gpu_tests.log, probe.{json,md}.
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/flashipa_out}
LOGS=$(mktemp -d)
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } > "$SUMMARY"
NAMES=(library fp32 rows64_8warps rows64_4warps stages1)
declare -A ARGS=(
  [library]=""
  [fp32]="--dtype fp32"
  [rows64_8warps]="--configs fwd=64,32,8,2 dkdv=32,64,8,2 dq=64,32,8,2"
  [rows64_4warps]="--configs fwd=64,32,4,2 dkdv=32,64,4,2 dq=64,32,4,2"
  [stages1]="--configs fwd=128,32,8,1 dkdv=32,128,8,1 dq=128,32,8,1"
)
for name in "${NAMES[@]}"; do
  # shellcheck disable=SC2086
  FLASHIPA_AUTOTUNE=1 timeout 80 compute-sanitizer --tool memcheck --print-limit 3 \
    python3 scripts/device_memcheck.py ${ARGS[$name]} > "$LOGS/memcheck_$name.log" 2>&1 &
done
wait
CHOSEN=""
for name in "${NAMES[@]}"; do
  log="$LOGS/memcheck_$name.log"
  verdict="$(grep -c 'backward ok' "$log") backward ok; $(grep -m1 'ERROR SUMMARY' "$log" || echo 'no summary (timeout?)')"
  echo "memcheck $name: $verdict; first fault: $(grep -m1 -A1 'Invalid\|Out-of-range' "$log" | tr -s ' =' ' ' | tr '\n' ' ')" \
    | tee -a "$SUMMARY"
  if [[ -z $CHOSEN && $name != fp32 ]] && grep -q "ERROR SUMMARY: 0 errors" "$log" && grep -q "backward ok" "$log"; then
    CHOSEN=$name
  fi
done
tar -czf "$OUT/memcheck.tar.gz" -C "$LOGS" .
echo "chosen: ${CHOSEN:-none}" | tee -a "$SUMMARY"
[[ -z $CHOSEN ]] && exit 1
if [[ $CHOSEN == library ]]; then
  FLASHIPA_AUTOTUNE=0 timeout 60 python3 -m pytest -q -rs -p no:logging -p no:cacheprovider \
    tests/test_flash_ipa_kernel.py tests/test_flash_ipa_gpu.py > "$OUT/gpu_tests.log" 2>&1
  echo "gpu tests (rc $?): $(tail -1 "$OUT/gpu_tests.log")" | tee -a "$SUMMARY"
fi
# shellcheck disable=SC2086
timeout 55 python3 - ${ARGS[$CHOSEN]} <<'EOF' 2>&1 | grep -v "^Autotuning" | tail -14 | tee -a "$SUMMARY"
import os, sys
sys.path.insert(0, "scripts")
from device_memcheck import use_configs
from kernels.flash_ipa import benchmark
specs = sys.argv[sys.argv.index("--configs") + 1:] if "--configs" in sys.argv else []
use_configs(specs)
benchmark.main(["--lengths", "8192", "32768", "--backends", "sdpa", "flashipa", "--warmup", "2",
                "--repeat", "10", "--out", os.environ["OUT"], "--name", "probe"])
EOF
rm -f "$OUT/probe.png"
