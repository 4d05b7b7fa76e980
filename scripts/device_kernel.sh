#!/usr/bin/env bash
# FlashIPA kernel on the lent GPU: GPU tests, then the attention benchmark. Writes under $OUT.
# Usage (device `run`, repo root): bash scripts/device_kernel.sh [tests|bench|all] [extra benchmark args]
set -o pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/flashipa_out}
mkdir -p "$OUT"
what=${1:-all}
shift || true
nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.used --format=csv | tee "$OUT/device.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/device.txt"
if [[ $what == tests || $what == all ]]; then
  FLASHIPA_AUTOTUNE=0 python3 -m pytest -q -rs --durations=8 tests/test_flash_ipa_kernel.py tests/test_flash_ipa_gpu.py 2>&1 | tee "$OUT/gpu_tests.log"
fi
if [[ $what == bench || $what == all ]]; then
  TRITON_PRINT_AUTOTUNING=1 python3 -m kernels.flash_ipa.benchmark --out "$OUT" "$@" 2>&1 | tee "$OUT/bench.log"
fi
