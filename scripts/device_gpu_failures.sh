#!/usr/bin/env bash
# The two GPU-only failures in one device call (docs/kernel_notes.md v6, docs/benchmarks/entmax.md): the entmax
# kernel tests and the bias tile's test, compiled with LLVM at O3 (Triton's default) and at O1
# (FLASHIPA_LLVM_OPT, kernels/llvm_opt_level.py: no jump threading), each from an empty Triton cache; then the
# entmax threshold search traced on the GPU next to the interpreter's (the interpreter runs here too).
# Usage (device `run`, repo root, carry .whl):  OUT=$OUT bash scripts/device_gpu_failures.sh
set -o pipefail
# shellcheck source=scripts/device_env.sh
source scripts/device_env.sh
OUT=${OUT:-/tmp/gpu_failures}
mkdir -p "$OUT"
TESTS="tests/test_entmax_kernel.py tests/test_flash_ipa_kernel.py::test_bias_in_its_own_tile_matches_float64_reference"
for level in O3 O1; do
  # shellcheck disable=SC2086
  FLASHIPA_LLVM_OPT=$level TRITON_CACHE_DIR=$(mktemp -d) FLASHIPA_AUTOTUNE=0 timeout "${TEST_SECONDS:-180}" \
    python3 -m pytest -q -p no:cacheprovider --runxfail --tb=line $TESTS > "$OUT/tests_$level.log" 2>&1
  echo "LLVM $level: $(tail -1 "$OUT/tests_$level.log")"
  grep -E "^FAILED|Error" "$OUT/tests_$level.log" | head -8 | cut -c1-240
done
TRITON_INTERPRET=1 ENTMAX_IPA_BLOCK=64,32,8 timeout 90 python3 scripts/entmax_gpu_diagnose.py --trace --save "$OUT/interp.pt" \
  > "$OUT/interp.log" 2>&1
ENTMAX_IPA_BLOCK=64,32,8 timeout 90 python3 scripts/entmax_gpu_diagnose.py --trace --compare "$OUT/interp.pt" 2>&1 \
  | tee "$OUT/trace.txt" | head -40 | cut -c1-300
