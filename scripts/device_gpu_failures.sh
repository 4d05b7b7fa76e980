#!/usr/bin/env bash
# The two GPU-only failures in one device call (docs/kernel_notes.md v6, docs/benchmarks/entmax.md): the entmax
# kernel tests and the bias tile's test, compiled with LLVM at O3 (Triton's default) and at O1
# (FLASHIPA_LLVM_OPT, kernels/llvm_opt_level.py: no jump threading), each from an empty Triton cache; then the
# entmax threshold search traced on the GPU next to the interpreter's (the interpreter runs here too).
# Last, the bias tile with its forward forced to v4's fault config and to (128, 32, 2), checked and under memcheck.
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
# the bias tile with the forward at v4's fault config (128, 64, 3 stages; now dropped by the pruner) and at
# (128, 32, 2), against the float64 reference, then under compute-sanitizer
for fwd in 128,64,8,3 128,32,8,2; do
  M="python3 scripts/device_memcheck.py --dims bias_tile --length 45 --batch 2 --check --configs fwd=$fwd dk=32,128,8,2 dv=32,128,8,3 dq=128,32,8,2"
  echo "bias tile bf16, fwd $fwd: $(FLASHIPA_AUTOTUNE=0 timeout 60 $M 2>&1 | grep -E 'relative|Error' | tr '\n' ' ')"
  FLASHIPA_AUTOTUNE=0 timeout 90 compute-sanitizer --tool memcheck --print-limit 3 $M > "$OUT/memcheck_fwd_$fwd.log" 2>&1
  echo "  memcheck: $(grep -m1 'ERROR SUMMARY' "$OUT/memcheck_fwd_$fwd.log")"; grep -m2 -A3 "Invalid" "$OUT/memcheck_fwd_$fwd.log" | cut -c1-200
done
