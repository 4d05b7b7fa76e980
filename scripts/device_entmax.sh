#!/usr/bin/env bash
# alpha-entmax IPA on the lent GPU in one call (give it timeout_s 600): the interpreter tests compiled
# for the GPU, then the timing benchmark against the softmax FlashIPA kernel and SDPA (random and chain
# inputs, L = 2048 ... 65536, bf16, anchor dims). Each phase is its own process with its own time limit.
# Usage (device `run`, repo root of the copied tree): bash scripts/device_entmax.sh
# Shorter: TEST_SECONDS, BENCH_SECONDS, LENGTHS and BACKENDS (e.g. BACKENDS=entmax when the dense rows stand).
# Writes under $OUT: summary.txt, logs.tar.gz, entmax.json, entmax.md, entmax.png (when matplotlib is there;
# else render it back here: python -c "from flashipa_kernels.entmax_ipa.benchmark import render_markdown as r; r('docs/benchmarks')").
set -o pipefail
# shellcheck source=scripts/device_env.sh
source scripts/device_env.sh
OUT=${OUT:-/tmp/entmax_out}
LOGS=$(mktemp -d)
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
device_stamp | tee "$SUMMARY"
# the CPU results travel with the tree: entmax.md shows both
cp docs/benchmarks/entmax_cpu.json "$OUT/" 2>/dev/null

timeout "${TEST_SECONDS:-150}" python3 -m pytest -q -rs -p no:cacheprovider tests/test_entmax_kernel.py > "$LOGS/gpu_tests.log" 2>&1
echo "entmax kernel tests on the GPU (rc $?): $(tail -1 "$LOGS/gpu_tests.log")" | tee -a "$SUMMARY"
grep -E "^FAILED|Error" "$LOGS/gpu_tests.log" | head -5 | tee -a "$SUMMARY"

# shellcheck disable=SC2086
timeout "${BENCH_SECONDS:-400}" python3 -m flashipa_kernels.entmax_ipa.benchmark --lengths ${LENGTHS:-2048 8192 32768 65536} \
  --backends ${BACKENDS:-entmax flashipa sdpa} --out "$OUT" > "$LOGS/bench.log" 2>&1
echo "benchmark (rc $?)" | tee -a "$SUMMARY"
if [ ! -f "$OUT/entmax.json" ]; then  # a process that died: keep the rows it printed
  python3 - "$LOGS/bench.log" "$OUT" <<'PY'
import json, sys
from pathlib import Path
rows = [json.loads(l) for l in Path(sys.argv[1]).read_text().splitlines() if l.startswith("{")]
Path(sys.argv[2], "entmax.json").write_text(json.dumps(dict(stamp="partial run (died or timed out)", rows=rows), indent=1))
from flashipa_kernels.entmax_ipa.benchmark import render_markdown
render_markdown(sys.argv[2])
PY
fi
cat "$OUT/entmax.md" >> "$SUMMARY" 2>/dev/null
tar -czf "$OUT/logs.tar.gz" -C "$LOGS" .
