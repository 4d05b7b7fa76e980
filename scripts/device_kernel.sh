#!/usr/bin/env bash
# FlashIPA kernel on the lent GPU in one call (about 9 minutes: give it timeout_s 600): compute-sanitizer
# over one fwd+bwd with every autotune config, a stress run without it (L = 8192, 30 backwards), the GPU
# tests, then the attention benchmark at the anchor and small-head dims. Each phase is its own process
# with its own time limit, so that a fault (sticky in CUDA) costs only that phase, and the benchmark
# runs the kernel apart from the other backends for the same reason.
# Usage (device `run`, repo root): bash scripts/device_kernel.sh
# Writes under $OUT (8 files at most come back): logs.tar.gz, summary.txt, attention.{json,md,png},
# attention_small_head.{json,md,png}.
set -o pipefail
# shellcheck source=scripts/device_env.sh
source scripts/device_env.sh
OUT=${OUT:-/tmp/flashipa_out}
LOGS=$(mktemp -d)
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.used --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } | tee "$SUMMARY"

FLASHIPA_AUTOTUNE=1 timeout 90 compute-sanitizer --tool memcheck --print-limit 3 \
  python3 scripts/device_memcheck.py --repeat 20 > "$LOGS/memcheck.log" 2>&1
echo "memcheck: $(grep -c 'backward ok' "$LOGS/memcheck.log") backward ok; $(grep -m1 'ERROR SUMMARY' "$LOGS/memcheck.log")" \
  | tee -a "$SUMMARY"
grep -m3 -A2 "Invalid\|Out-of-range" "$LOGS/memcheck.log" | tee -a "$SUMMARY"
CUDA_LAUNCH_BLOCKING=1 FLASHIPA_AUTOTUNE=1 timeout 40 \
  python3 scripts/device_memcheck.py --length 8192 --repeat 30 > "$LOGS/stress.log" 2>&1
echo "stress (L 8192, 30 backwards): $(grep -c 'backward ok' "$LOGS/stress.log") backward ok; $(grep -m1 'Error' "$LOGS/stress.log")" \
  | tee -a "$SUMMARY"

# 8 workers (pytest-xdist is on the image): compiling the kernels for every test's dims dominates
FLASHIPA_AUTOTUNE=0 timeout 160 python3 -m pytest -n 8 -q -rs -p no:cacheprovider \
  tests/test_flash_ipa_kernel.py tests/test_flash_ipa_gpu.py > "$LOGS/gpu_tests.log" 2>&1
echo "gpu tests (rc $?): $(tail -1 "$LOGS/gpu_tests.log")" | tee -a "$SUMMARY"
grep -E "^FAILED|Error" "$LOGS/gpu_tests.log" | head -5 | tee -a "$SUMMARY"

bench() {  # bench NAME KERNEL_SECONDS OTHERS_SECONDS ARGS...: the kernel alone, then the other backends
  local name=$1 seconds=$2 others_seconds=$3
  shift 3
  timeout "$seconds" python3 -m kernels.flash_ipa.benchmark --backends flashipa --out "$LOGS" --name "${name}_kernel" "$@" \
    > "$LOGS/${name}_kernel.log" 2>&1
  echo "bench $name kernel: rc $?" | tee -a "$SUMMARY"
  timeout "$others_seconds" python3 -m kernels.flash_ipa.benchmark --backends dense sdpa flex --out "$LOGS" --name "${name}_others" "$@" \
    > "$LOGS/${name}_others.log" 2>&1
  echo "bench $name others: rc $?" | tee -a "$SUMMARY"
  python3 - "$LOGS" "$name" "$OUT" <<'PY'
import json, sys
from pathlib import Path
from kernels.flash_ipa import benchmark
logs, name, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
rows, stamp = [], None
for part in ("kernel", "others"):
    js = logs / f"{name}_{part}.json"
    if js.exists():
        data = json.loads(js.read_text())
        rows += data["rows"]
        stamp = data["stamp"]
    else:  # a process that died: take the rows it printed
        for line in (logs / f"{name}_{part}.log").read_text().splitlines():
            if line.startswith("{"):
                rows.append(json.loads(line))
if stamp is None:
    sys.exit("no stamp: both benchmark processes died")
(out / f"{name}.json").write_text(json.dumps(dict(stamp=stamp, rows=rows), indent=1))
benchmark.write_markdown(rows, stamp, out / f"{name}.md")
benchmark.write_plot(rows, stamp, out / f"{name}.png")
print((out / f"{name}.md").read_text())
PY
}
bench attention 100 120 --lengths 512 2048 8192 16384 32768 65536 --token-budget 16384 --max-dense-length 2048 \
  --flex-lengths 8192 32768 2>&1 | tee -a "$SUMMARY"
bench attention_small_head 30 30 --dims small_head --lengths 2048 8192 32768 --max-dense-length 0 \
  --flex-lengths 2>&1 | tail -12 | tee -a "$SUMMARY"
tar -czf "$OUT/logs.tar.gz" -C "$LOGS" .
