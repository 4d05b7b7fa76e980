#!/usr/bin/env bash
# Where one training step's time goes at a short length (host-bound there): one experiment=scaling point
# under Lightning's simple profiler (per hook) and cProfile (per Python function), results under $OUT.
# Usage (device `run`, carry [".whl"]): bash scripts/device_profile_step.sh
# CPU dry run: EXPERIMENT=scaling_smoke LENGTH=32 STEPS=3 bash scripts/device_profile_step.sh
# Environment: ATTENTION (default {name:flash_ipa,backend:sdpa}), LENGTH (256), STEPS (timed steps, 60),
# OVERRIDES (more Hydra overrides, e.g. compile=true).
# Writes: profile.log (the run and the simple profiler's table), cprofile_{tottime,cumtime}.txt.
set -o pipefail
OUT=${OUT:-/tmp/profile_out}
mkdir -p "$OUT"
# shellcheck source=scripts/device_env.sh
source scripts/device_env.sh
# shellcheck disable=SC2086
python3 -m cProfile -o "$OUT/step.prof" -m flashipa_train.scaling.cli "experiment=${EXPERIMENT:-scaling}" \
  "model.attention=${ATTENTION:-{name:flash_ipa,backend:sdpa\}}" "data.length=${LENGTH:-256}" \
  scaling.warmup_steps=5 "scaling.timed_steps=${STEPS:-60}" +trainer.profiler=simple \
  "paths.log_dir=${WORK:-/tmp/profile_work}" $OVERRIDES > "$OUT/profile.log" 2>&1
echo "run exit $?; $(grep -m1 'scaling point' "$OUT/profile.log")"
python3 - "$OUT" <<'PY'
import pstats, sys
out = sys.argv[1]
with open(f"{out}/cprofile_tottime.txt", "w") as f:  # imports and compiles included: read per step
    pstats.Stats(f"{out}/step.prof", stream=f).sort_stats("tottime").print_stats(60)
with open(f"{out}/cprofile_cumtime.txt", "w") as f:  # the project's own functions
    pstats.Stats(f"{out}/step.prof", stream=f).sort_stats("cumtime").print_stats("flashipa_train", 60)
PY
rm -f "$OUT/step.prof"
grep -E "run_training_batch|optimizer_step|training_step|backward|next|Action|Total" "$OUT/profile.log" | head -14
sed -n '1,34p' "$OUT/cprofile_tottime.txt" | tail -24
sed -n '1,40p' "$OUT/cprofile_cumtime.txt" | tail -28
