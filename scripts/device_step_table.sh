#!/usr/bin/env bash
# The training-step table in one device call of at most DEADLINE_S seconds (default 180): this branch's eager
# points (256 x 8 sdpa and triton, the default GPU run's callbacks with the sync probe, torch.profiler
# reports, 4096 x 1 and 32768 x 1), then main's 256 x 8 points as "before" when time is left, all on cores
# 0-3; meanwhile the CUDA-graph point (compile=auto) compiles on cores 4-15 and is cut at the deadline.
# Run from this tree on the device (carry it and .whl):  OUT=$OUT BEFORE_TREE=../.. bash scripts/device_step_table.sh
# (BEFORE_TREE unset: no before points; POINTS: the eager points, default the list below).
# CPU dry run: SMOKE=--smoke TRITON_INTERPRET=1 BEFORE_TREE=/work/main OUT=/tmp/t bash scripts/device_step_table.sh
# Results: $OUT/step_table.tgz (before/ after/ graphs/ rows, syncs.txt, profile_256x8.txt, logs); then here
#   python scripts/step_table_report.py DIR --out docs/benchmarks/train_step
set -o pipefail
OUT=${OUT:-/tmp/step_table_out}
RES=${WORK:-/tmp/step_table_work}/step_table  # outside $OUT: only the archive comes back
rm -rf "$RES" && mkdir -p "$RES"  # this script's own work folder: rows of an earlier run would mix in
STEP=$PWD
BEFORE_TREE=${BEFORE_TREE:+$(cd "$BEFORE_TREE" && pwd)}  # unset: no before points
# shellcheck source=scripts/device_env.sh
source scripts/device_env.sh
export FLASHIPA_AUTOTUNE=${FLASHIPA_AUTOTUNE:-0}  # 1: the triton points tune their configs in the warm-up (as training does)
SITE=${PYTHONPATH#"$STEP:"}  # the carried wheels (hydra), without this tree
END=$(( $(date +%s) + ${DEADLINE_S:-180} ))
left() { echo $(( END - $(date +%s) > 1 ? END - $(date +%s) : 1 )); }  # seconds to the deadline (>= 1)
# cores 0-3 for the timed eager points, 4-15 for the compile (where taskset exists and the cores do)
EAGER_CPUS="" GRAPH_CPUS="" DETACH=""
taskset -c 4-15 true 2> /dev/null && EAGER_CPUS="taskset -c 0-3" GRAPH_CPUS="taskset -c 4-15"
command -v setsid > /dev/null && DETACH=setsid
device_stamp > "$RES/device.log" 2>&1
cat "$RES/device.log"

# its own process group (setsid), so that the cut at the deadline also ends its compile workers
TORCH_LOGS=graph_breaks,recompiles TORCHINDUCTOR_COMPILE_THREADS=12 $DETACH $GRAPH_CPUS \
  python3 scripts/step_table.py "$RES/graphs" graphs_256x8 --deadline "$END" --tag after $SMOKE > "$RES/graphs.log" 2>&1 &
GRAPHS=$!

timeout --signal=KILL "$(left)" $EAGER_CPUS python3 scripts/step_table.py "$RES/after" --tag after --deadline $(( END - 5 )) $SMOKE \
  ${POINTS:-default_256x8 sdpa_256x8 triton_256x8 profile_256x8 sdpa_32768x1 sdpa_4096x1 profile_32768x1} > "$RES/after.log" 2>&1
grep "step_table:" "$RES/after.log"
[ -n "$BEFORE_TREE" ] && (cd "$BEFORE_TREE" && PYTHONPATH=$BEFORE_TREE${SITE:+:$SITE} timeout --signal=KILL "$(left)" $EAGER_CPUS python3 "$STEP/scripts/step_table.py" \
  "$RES/before" --tag before --deadline $(( END - 5 )) $SMOKE sdpa_256x8 triton_256x8) > "$RES/before.log" 2>&1
grep "step_table:" "$RES/before.log"

while kill -0 "$GRAPHS" 2> /dev/null && [ "$(date +%s)" -lt "$END" ]; do sleep 1; done
if kill -0 "$GRAPHS" 2> /dev/null; then
  echo "graphs point cut at the deadline" | tee -a "$RES/graphs.log"
  kill -- -"$GRAPHS" 2> /dev/null || kill "$GRAPHS"
fi
grep -E "step_table:|first .* training steps|Graph break|Recompil|skipping cudagraphs" "$RES/graphs.log" | head -12
grep -A12 "compilation metrics" "$RES/graphs.log" | head -14
head -c 3000 "$RES"/*/syncs.txt 2> /dev/null
echo "eager cores: ${EAGER_CPUS:-all}; compile cores: ${GRAPH_CPUS:-all}" >> "$RES/device.log"
date -u >> "$RES/device.log"
mkdir -p "$OUT" && tar czf "$OUT/step_table.tgz" -C "$(dirname "$RES")" step_table
