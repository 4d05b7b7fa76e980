#!/usr/bin/env bash
# FlashIPA kernel on the lent GPU in one call. Phases (PHASES, space-separated, in this order):
#   fp8        scripts/fp8_report.py: FP8 forward vs float64 reference (RMSE table) and vs our bf16 forward
#   tests      the GPU tests (kernel, gpu and fp8 files, untuned configs, 8 workers)
#   precision  scripts/point_term_precision.py on a crop saved on the CPU (CROP=path.pt; no biotite there)
#   profile    per-kernel breakdown of fwd+bwd (torch.profiler) and host time, flashipa / sdpa / sdpa_fa2
#   memcheck   compute-sanitizer over one fwd+bwd with every autotune config, then 30 backwards at 8192
#   bench      flashipa-bench, one process per backend (flashipa, sdpa, sdpa_fa2, flex), merged
# Each phase is its own process with its own time limit, so that a fault (sticky in CUDA) costs only
# that phase. Usage (device `run`, repo root): PHASES="tests bench" bash scripts/device_kernel.sh
# Time limits: TEST_SECONDS, FP8_SECONDS, PROFILE_SECONDS, BENCH_SECONDS (per backend) or
# BENCH_SECONDS_<backend>, all cut to end the script by DEADLINE_SECONDS (when set);
# BENCH_AUTOTUNE=0 times the first autotune config (reuses the tests' compiled kernels: no tuning cost).
# BENCH_DIMS=trunk: bench and profile time the trained trunk's dims (content_relpos: bias rank 42), not the anchor's.
# Writes under $OUT: summary.txt, logs.tar.gz and the phases' tables (8 files at most come back).
set -o pipefail
# shellcheck source=scripts/device_env.sh
source scripts/device_env.sh
OUT=${OUT:-/tmp/flashipa_out}
PHASES=${PHASES:-tests profile bench}
LENGTHS=${LENGTHS:-2048 8192 16384 32768 65536}
TESTS=${TESTS:-tests/test_flash_ipa_kernel.py tests/test_flash_ipa_gpu.py tests/test_flash_ipa_fp8.py}
BACKENDS=${BACKENDS:-flashipa sdpa sdpa_fa2 flex}
PROFILE_BACKENDS=${PROFILE_BACKENDS:-flashipa sdpa sdpa_fa2}
LOGS=$(mktemp -d)
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
device_stamp | tee "$SUMMARY"
has() { [[ " $PHASES " == *" $1 "* ]]; }
# DEADLINE_SECONDS (0: none): every phase's limit is cut so that the whole script ends by then
STARTED=$SECONDS
limit() { local left=$(( ${DEADLINE_SECONDS:-0} > 0 ? STARTED + DEADLINE_SECONDS - SECONDS - 10 : $1 ))
  (( left < 1 )) && left=1; echo $(( $1 < left ? $1 : left )); }

if has fp8; then
  FLASHIPA_AUTOTUNE=0 timeout "$(limit "${FP8_SECONDS:-120}")" python3 scripts/fp8_report.py --out "$OUT" > "$LOGS/fp8.log" 2>&1
  echo "fp8 (rc $?)" | tee -a "$SUMMARY"
  grep -E "Error|error" "$LOGS/fp8.log" | head -5 | cut -c1-400 | tee -a "$SUMMARY"
  cat "$OUT/attention_fp8.md" 2>/dev/null | grep "^|" | tee -a "$SUMMARY"
fi

if has tests; then
  # shellcheck disable=SC2086
  FLASHIPA_AUTOTUNE=0 timeout "$(limit "${TEST_SECONDS:-240}")" python3 -m pytest -n 8 -v -rs -p no:cacheprovider -s \
    $TESTS > "$LOGS/gpu_tests.log" 2>&1
  # -v names each test as it ends (xdist: "[gwN] [ x%] FAILED path::test"): a run cut by the time
  # limit still names its failures
  echo "gpu tests (rc $?): $(grep -c " PASSED " "$LOGS/gpu_tests.log") passed; $(tail -1 "$LOGS/gpu_tests.log")" \
    | tee -a "$SUMMARY"
  grep -E " FAILED | ERROR |Error|relative errors|^\{'o'" "$LOGS/gpu_tests.log" | head -16 | cut -c1-600 | tee -a "$SUMMARY"
fi

if has precision; then
  timeout 60 python3 scripts/point_term_precision.py --structure "${CROP:?CROP=crop.pt}" --out "$OUT" \
    > "$LOGS/precision.log" 2>&1
  echo "precision (rc $?)" | tee -a "$SUMMARY"
  tail -9 "$LOGS/precision.log" | tee -a "$SUMMARY"
fi

if has profile; then
  for b in $PROFILE_BACKENDS; do
    FLASHIPA_AUTOTUNE=${BENCH_AUTOTUNE:-1} timeout "$(limit "${PROFILE_SECONDS:-120}")" \
      python3 -m flashipa_kernels.flash_ipa.benchmark --backends "$b" --lengths 8192 --modes fwd --dims "${BENCH_DIMS:-anchor}" \
      --repeat 3 --profile 8192 32768 --out "$LOGS" --name "profile_$b" > "$LOGS/profile_$b.log" 2>&1
    echo "profile $b (rc $?)" | tee -a "$SUMMARY"
    cat "$LOGS/profile_${b}_kernels.md" 2>/dev/null | grep "^- " | tee -a "$SUMMARY"
  done
  cat "$LOGS"/profile_*_kernels.md > "$OUT/attention_kernels.md" 2>/dev/null
fi

if has memcheck; then
  FLASHIPA_AUTOTUNE=1 timeout 120 compute-sanitizer --tool memcheck --print-limit 3 \
    python3 scripts/device_memcheck.py --repeat 5 > "$LOGS/memcheck.log" 2>&1
  echo "memcheck: $(grep -c 'backward ok' "$LOGS/memcheck.log") backward ok; $(grep -m1 'ERROR SUMMARY' "$LOGS/memcheck.log")" \
    | tee -a "$SUMMARY"
  grep -m3 -A2 "Invalid\|Out-of-range" "$LOGS/memcheck.log" | tee -a "$SUMMARY"
  CUDA_LAUNCH_BLOCKING=1 FLASHIPA_AUTOTUNE=1 timeout 40 \
    python3 scripts/device_memcheck.py --length 8192 --repeat 30 > "$LOGS/stress.log" 2>&1
  echo "stress (L 8192, 30 backwards): $(grep -c 'backward ok' "$LOGS/stress.log") backward ok; $(grep -m1 'Error' "$LOGS/stress.log")" \
    | tee -a "$SUMMARY"
fi

if has bench; then
  # shellcheck disable=SC2086
  for b in $BACKENDS; do
    seconds_var="BENCH_SECONDS_$b"
    FLASHIPA_AUTOTUNE=${BENCH_AUTOTUNE:-1} timeout "$(limit "${!seconds_var:-${BENCH_SECONDS:-100}}")" \
      python3 -m flashipa_kernels.flash_ipa.benchmark --backends "$b" --lengths $LENGTHS --dims "${BENCH_DIMS:-anchor}" \
      --flex-lengths ${FLEX_LENGTHS:-8192 32768} --out "$LOGS" --name "attention_$b" > "$LOGS/attention_$b.log" 2>&1
    echo "bench $b: rc $?" | tee -a "$SUMMARY"
  done
  python3 - "$LOGS" "$OUT" <<'PY' 2>&1 | tee -a "$SUMMARY"
import json, sys
from pathlib import Path
from flashipa_kernels.flash_ipa import benchmark
logs, out = Path(sys.argv[1]), Path(sys.argv[2])
rows, stamp = [], None
for b in ("flashipa", "sdpa", "sdpa_fa2", "flex"):
    js = logs / f"attention_{b}.json"
    if js.exists():
        data = json.loads(js.read_text())
        rows += data["rows"]
        stamp = data["stamp"]
    elif (logs / f"attention_{b}.log").exists():  # a process that died: take the rows it printed
        printed = [json.loads(line) for line in (logs / f"attention_{b}.log").read_text().splitlines()
                   if line.startswith("{")]
        rows += [r for r in printed if "backend" in r]
        stamp = stamp or next((r["stamp"] for r in printed if "stamp" in r), None)
if stamp is None:
    sys.exit("no stamp: every benchmark process died")
(out / "attention.json").write_text(json.dumps(dict(stamp=stamp, rows=rows), indent=1))
benchmark.write_markdown(rows, stamp, out / "attention.md")
benchmark.write_plot(rows, stamp, out / "attention.png")
print((out / "attention.md").read_text())
PY
fi
tar -czf "$OUT/logs.tar.gz" -C "$LOGS" .
