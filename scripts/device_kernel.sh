#!/usr/bin/env bash
# FlashIPA kernel on the lent GPU: memcheck of one fwd+bwd, GPU tests, then the attention benchmark.
# Writes logs and attention.{json,md,png} under $OUT.
# Usage (device `run`, repo root): bash scripts/device_kernel.sh [extra flashipa-bench args]
# FLASHIPA_VARIANT picks the backward code-generation variant (kernels/flash_ipa/launch.py);
# scripts/device_backward_probe.sh finds one that memcheck passes.
set -o pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/flashipa_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.used --format=csv | tee "$OUT/device.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/device.txt"
FLASHIPA_AUTOTUNE=0 compute-sanitizer --tool memcheck --print-limit 3 python3 scripts/device_memcheck.py \
  > "$OUT/memcheck.log" 2>&1
if ! grep -q "ERROR SUMMARY: 0 errors" "$OUT/memcheck.log"; then
  grep -m6 "Invalid\|at _ipa\|ERROR SUMMARY" "$OUT/memcheck.log"
  echo "memcheck failed for backward variant ${FLASHIPA_VARIANT:-default}: run scripts/device_backward_probe.sh"
  exit 1
fi
FLASHIPA_AUTOTUNE=0 python3 -m pytest -q -rs --durations=8 -p no:logging \
  tests/test_flash_ipa_kernel.py tests/test_flash_ipa_gpu.py 2>&1 | grep -v DEBUG | tee "$OUT/gpu_tests.log" | tail -30
TRITON_PRINT_AUTOTUNING=1 python3 -m kernels.flash_ipa.benchmark --out "$OUT" "$@" 2>&1 \
  | tee "$OUT/bench.log" | grep -v "^Autotuning kernel"
