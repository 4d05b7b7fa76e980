#!/usr/bin/env bash
# Probe the backward code-generation variants (FLASHIPA_VARIANT) under compute-sanitizer in parallel,
# then time fwd and fwd+bwd at L = 8192 and 32768 with the first clean variant. Writes under $OUT.
export PYTHONPATH=. PYTHONUNBUFFERED=1 FLASHIPA_AUTOTUNE=0
OUT=${OUT:-/tmp/flashipa_out}
mkdir -p "$OUT"
for v in ${FLASHIPA_VARIANTS:-2 3 6 7 4 0}; do
  FLASHIPA_VARIANT=$v compute-sanitizer --tool memcheck --print-limit 2 python3 scripts/device_memcheck.py \
    > "$OUT/memcheck_$v.log" 2>&1 &
done
wait
for v in ${FLASHIPA_VARIANTS:-2 3 6 7 4 0}; do
  echo "variant $v: $(grep -c 'backward ok' "$OUT/memcheck_$v.log") $(grep -m1 'ERROR SUMMARY' "$OUT/memcheck_$v.log")"
  grep -q "ERROR SUMMARY: 0 errors" "$OUT/memcheck_$v.log" && [[ -z ${FLASHIPA_VARIANT:-} ]] && export FLASHIPA_VARIANT=$v
done
echo "chosen variant: ${FLASHIPA_VARIANT:-none}"
[[ -n ${FLASHIPA_VARIANT:-} ]] && python3 -m kernels.flash_ipa.benchmark --lengths 8192 32768 --backends sdpa flashipa \
  --warmup 2 --repeat 10 --out "$OUT" --name probe 2>&1 | tail -12
