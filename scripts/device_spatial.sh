#!/usr/bin/env bash
# Spatially sparse IPA on the lent GPU in one call (give it timeout_s 600): the spatial tests on CUDA,
# then the scaling benchmark (fwd+bwd time and memory vs L up to 262144 beside the FlashIPA kernel,
# relative error vs exact attention up to 16384, bf16 and fp32) and one anchor training step at
# L = 262144. Each phase is its own process with its own time limit.
# Usage (device `run`, from the copied tree): bash scripts/device_spatial.sh
# Writes under $OUT: summary.txt, spatial.{json,md,png}, spatial_fp32.{json,md,png}, logs.tar.gz.
set -o pipefail
# shellcheck source=scripts/device_env.sh
source scripts/device_env.sh
OUT=${OUT:-/tmp/spatial_out}
LOGS=$(mktemp -d)
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
device_stamp | tee "$SUMMARY"

timeout 120 python3 -m pytest -q -rs -p no:cacheprovider tests/test_spatial_ipa.py > "$LOGS/tests.log" 2>&1
echo "spatial tests on CUDA (rc $?): $(tail -1 "$LOGS/tests.log")" | tee -a "$SUMMARY"
grep -E "^FAILED|Error" "$LOGS/tests.log" | head -5 | tee -a "$SUMMARY"

timeout 300 python3 scripts/spatial_benchmark.py --dtype bf16 --lengths 4096 16384 65536 131072 262144 \
  --flash-max-length 65536 --error-max-length 16384 --train-step-length 262144 --out "$OUT" --name spatial \
  > "$LOGS/bench_bf16.log" 2>&1
echo "bench bf16: rc $?" | tee -a "$SUMMARY"
tail -16 "$LOGS/bench_bf16.log" | tee -a "$SUMMARY"
timeout 120 python3 scripts/spatial_benchmark.py --dtype fp32 --lengths 4096 16384 65536 \
  --flash-max-length 16384 --error-max-length 16384 --out "$OUT" --name spatial_fp32 > "$LOGS/bench_fp32.log" 2>&1
echo "bench fp32: rc $?" | tee -a "$SUMMARY"
tail -10 "$LOGS/bench_fp32.log" | tee -a "$SUMMARY"
tar -czf "$OUT/logs.tar.gz" -C "$LOGS" .
