#!/usr/bin/env bash
# FlashIPA on the lent GPU in one call (3-7 minutes: give it timeout_s 600): compute-sanitizer over
# candidate kernel configs in parallel (scripts/device_memcheck.py at L = 200, backward run 20 times),
# a stress run of each candidate without the sanitizer (L = 8192, backward 30 times), then, with the
# first candidate clean in both, in the order below, the GPU tests and fwd and fwd+bwd timings at
# L = 8192 and 32768 against sdpa. Candidates: (BLOCK_M, BLOCK_N, num_warps, num_stages) per kernel;
# "library" is launch.py's own list, every config timed by the autotuner; fp32 checks the float32
# fallback config.
# Writes under $OUT: summary.txt, logs.tar.gz, gpu_tests.log, bench.log, probe.{json,md}.
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/flashipa_out}
LOGS=$(mktemp -d)
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } > "$SUMMARY"
NAMES=(rows128_s2 rows128_s3 dq_s1 dq_4warps rows128_s1 rows64_4warps rows64_8warps library fp32)
declare -A ARGS=(
  [rows128_s2]="--configs fwd=128,32,8,2 dkdv=32,128,8,2 dq=128,32,8,2"
  [rows128_s3]="--configs fwd=128,32,8,3 dkdv=32,128,8,3 dq=128,32,8,3"
  [dq_s1]="--configs fwd=128,32,8,2 dkdv=32,128,8,2 dq=128,32,8,1"
  [dq_4warps]="--configs fwd=128,32,8,2 dkdv=32,128,8,2 dq=64,32,4,2"
  [rows128_s1]="--configs fwd=128,32,8,1 dkdv=32,128,8,1 dq=128,32,8,1"
  [rows64_4warps]="--configs fwd=64,32,4,2 dkdv=32,64,4,2 dq=64,32,4,2"
  [rows64_8warps]="--configs fwd=64,32,8,2 dkdv=32,64,8,2 dq=64,32,8,2"
  [library]=""
  [fp32]="--dtype fp32"
)
for name in "${NAMES[@]}"; do
  # shellcheck disable=SC2086
  FLASHIPA_AUTOTUNE=1 timeout 80 compute-sanitizer --tool memcheck --print-limit 3 \
    python3 scripts/device_memcheck.py --repeat 20 ${ARGS[$name]} > "$LOGS/memcheck_$name.log" 2>&1 &
done
wait
for name in "${NAMES[@]}"; do
  # shellcheck disable=SC2086
  CUDA_LAUNCH_BLOCKING=1 FLASHIPA_AUTOTUNE=1 timeout 100 \
    python3 scripts/device_memcheck.py --length 8192 --repeat 30 ${ARGS[$name]} > "$LOGS/stress_$name.log" 2>&1 &
done
wait
CHOSEN=""
for name in "${NAMES[@]}"; do
  log="$LOGS/memcheck_$name.log"
  summary=$(grep -m1 'ERROR SUMMARY' "$log" || echo 'no summary (timeout?)')
  verdict="$(grep -c 'backward ok' "$log") backward ok; $summary"
  fault=$(grep -m1 -A1 'Invalid\|Out-of-range' "$log" | tr -s ' =' ' ' | tr '\n' ' ')
  echo "memcheck $name: $verdict; first fault: $fault" | tee -a "$SUMMARY"
  stress="$LOGS/stress_$name.log"
  echo "stress $name: $(grep -c 'backward ok' "$stress") backward ok; $(grep -m1 'Error' "$stress")" | tee -a "$SUMMARY"
  if [[ -z $CHOSEN && $name != fp32 ]] && grep -q "ERROR SUMMARY: 0 errors" "$log" && grep -q "backward ok" "$log" \
      && grep -q "backward ok" "$stress"; then
    CHOSEN=$name
  fi
done
tar -czf "$OUT/logs.tar.gz" -C "$LOGS" .
echo "chosen: ${CHOSEN:-none}" | tee -a "$SUMMARY"
[[ -z $CHOSEN ]] && exit 1
# the chosen configs, then pytest or the benchmark
PRELUDE='import os, sys; sys.path.insert(0, "scripts"); from device_memcheck import use_configs
a = sys.argv[1:]; use_configs(a[a.index("--configs") + 1:] if "--configs" in a else [])'
# shellcheck disable=SC2086
FLASHIPA_AUTOTUNE=0 timeout 150 python3 -c "$PRELUDE
import pytest; sys.exit(pytest.main(['-q', '-rs', '-p', 'no:cacheprovider', 'tests/test_flash_ipa_kernel.py',
                                     'tests/test_flash_ipa_gpu.py']))" ${ARGS[$CHOSEN]} > "$OUT/gpu_tests.log" 2>&1
echo "gpu tests (rc $?): $(tail -1 "$OUT/gpu_tests.log")" | tee -a "$SUMMARY"
# shellcheck disable=SC2086
timeout 120 python3 -c "$PRELUDE
from kernels.flash_ipa import benchmark
benchmark.main(['--lengths', '8192', '32768', '--backends', 'sdpa', 'flashipa', '--warmup', '2', '--repeat', '10',
                '--out', os.environ['OUT'], '--name', 'probe'])" ${ARGS[$CHOSEN]} 2>&1 \
  | grep -v "^Autotuning" > "$OUT/bench.log"
tail -14 "$OUT/bench.log" | tee -a "$SUMMARY"
rm -f "$OUT/probe.png"
