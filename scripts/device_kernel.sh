#!/usr/bin/env bash
# FlashIPA kernel on the lent GPU: memcheck of one fwd+bwd, GPU tests, then the attention benchmark.
# Writes logs and attention.{json,md,png} under $OUT.
# Usage (device `run`, repo root): bash scripts/device_kernel.sh [extra flashipa-bench args]
set -o pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/flashipa_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.used --format=csv | tee "$OUT/device.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/device.txt"
# backward code-generation variant (FLASHIPA_VARIANT, see launch.py): the first that memcheck passes
for v in ${FLASHIPA_VARIANTS:-1 2 0}; do
  FLASHIPA_AUTOTUNE=0 FLASHIPA_VARIANT=$v compute-sanitizer --tool memcheck --print-limit 3 \
    python3 scripts/device_memcheck.py > "$OUT/memcheck.log" 2>&1
  if grep -q "ERROR SUMMARY: 0 errors" "$OUT/memcheck.log"; then export FLASHIPA_VARIANT=$v; break; fi
  grep -m3 "Invalid\|at _ipa" "$OUT/memcheck.log"
done
echo "backward variant: ${FLASHIPA_VARIANT:-none passed memcheck}" | tee -a "$OUT/device.txt"
FLASHIPA_AUTOTUNE=0 python3 -m pytest -q -rs --durations=8 -p no:logging \
  tests/test_flash_ipa_kernel.py tests/test_flash_ipa_gpu.py 2>&1 | grep -v DEBUG | tee "$OUT/gpu_tests.log" | tail -40
modes="fwd fwdbwd"
[[ -z ${FLASHIPA_VARIANT:-} ]] && modes="fwd"
TRITON_PRINT_AUTOTUNING=1 python3 -m kernels.flash_ipa.benchmark --out "$OUT" --modes $modes "$@" 2>&1 \
  | tee "$OUT/bench.log" | grep -v "^Autotuning kernel"
