#!/usr/bin/env bash
# FlashIPA kernel on the lent GPU: memcheck of one fwd+bwd over every autotune config, GPU tests, then
# the attention benchmark. Writes logs and attention.{json,md,png} under $OUT.
# Usage (device `run`, repo root): bash scripts/device_kernel.sh [extra flashipa-bench args]
# scripts/device_backward_probe.sh is the short version (candidate configs side by side, two lengths).
set -o pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/flashipa_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.used --format=csv | tee "$OUT/device.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
  | tee -a "$OUT/device.txt"
FLASHIPA_AUTOTUNE=1 compute-sanitizer --tool memcheck --print-limit 3 python3 scripts/device_memcheck.py \
  > "$OUT/memcheck.log" 2>&1
if ! grep -q "ERROR SUMMARY: 0 errors" "$OUT/memcheck.log"; then
  grep -m6 "Invalid\|Out-of-range\|at _ipa\|ERROR SUMMARY" "$OUT/memcheck.log"
  echo "memcheck failed: run scripts/device_backward_probe.sh to compare configs"
  exit 1
fi
FLASHIPA_AUTOTUNE=0 python3 -m pytest -q -rs --durations=8 -p no:logging \
  tests/test_flash_ipa_kernel.py tests/test_flash_ipa_gpu.py 2>&1 | grep -v DEBUG | tee "$OUT/gpu_tests.log" | tail -30
TRITON_PRINT_AUTOTUNING=1 python3 -m kernels.flash_ipa.benchmark --out "$OUT" "$@" 2>&1 \
  | tee "$OUT/bench.log" | grep -v "^Autotuning kernel"
