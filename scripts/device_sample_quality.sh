#!/usr/bin/env bash
# Sample-quality benchmark in ONE device call (timeout 600): trains every variant CONCURRENTLY on the one GPU
# for a fixed time on data/, samples lengths 64/100/200 (n = 8 each) from each, and runs the memorisation check
# (scripts/memorise_chain.py) for flash_ipa and dense_ipa beside them; ROT_SWEEP=1 adds a small sweep of the
# sampler's exp rotation rate on the flash_ipa model. Successor of scripts/device_train_sample.sh.
# The flash variants run the FlashIPA Triton kernel (FLASH_BACKEND, default triton): the sdpa backend under
# bf16 autocast rounds the point features to bf16 (1.8 A^2 median error of the point term on a 256-residue
# crop, docs/benchmarks/point_term_precision.md); flash_sdpa is flash_ipa on that backend.
# The GPU image has no biotite: preprocess here and carry the cache, then score here:
#   flashipa-preprocess data/ --out .device_cache/structures
#   device `run` (carry [".devwt/<name>", ".whl"]): cd .devwt/<name> && cp -r ../../.whl . && bash scripts/device_sample_quality.sh
#   mkdir R && tar xzf <files_at>/results.tgz -C R && python scripts/sample_quality_report.py R
#   (scores every samples.pt, writes docs/benchmarks/sample_quality.*)
# Environment: TRAIN_SECONDS (default 450), VARIANTS (names below), MEMORISE (variants of the memorisation check),
# LENGTHS, TRAINER (gpu), FLASH_BACKEND (triton), MAX_STEPS (5000), OVERRIDES (more Hydra overrides), OUT.
# Runs longer than one call (the 10-minute entmax run): PHASE=train starts the runs in their own process
# session (setsid) and returns; a call made while the machine is still warm runs PHASE=finish, which waits for
# them, then samples and packs as usual (PHASE=all, the default, does both in one call).
# Timeline of one 600 s call: ~15 s set-up, ~25 s start-up, TRAIN_SECONDS of training, ~40 s sampling.
# CPU dry run: TRAINER=cpu TRAIN_SECONDS=20 FLASH_BACKEND=torch VARIANTS="flash_ipa dense_ipa" MEMORISE=flash_ipa \
#   LENGTHS=[16] OVERRIDES="experiment=quickstart" bash scripts/device_sample_quality.sh
# Writes $OUT/results.tgz (one file: a device call brings back only a few files) of <variant>/{samples.pt,
# train_metrics.csv,train.log}, memorise_<variant>/, [rot_rate_<r>/samples.pt,] stamp.txt, and beside it
# $OUT/weights_<variant>.ckpt.gz.partNN (below).
set -o pipefail
DETACH=""
[ "${PHASE:-all}" = train ] && DETACH=setsid  # runs that outlive this call
OUT=${OUT:-/tmp/sample_quality_out}
WORK=${WORK:-/tmp/sample_quality_work}
TRAIN_SECONDS=${TRAIN_SECONDS:-450}
FLASH_BACKEND=${FLASH_BACKEND:-triton}
mkdir -p "$OUT" "$WORK"
FINAL_OUT=$OUT
OUT=$WORK/results
mkdir -p "$OUT"
# shellcheck source=scripts/device_env.sh
source scripts/device_env.sh
device_stamp > "$OUT/stamp.txt" 2>&1
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True

flash="model/attention=flash_ipa model.attention.backend=$FLASH_BACKEND"
declare -A ATTENTION=(
  [dense_ipa]="model/attention=dense_ipa"
  [flash_ipa]="$flash"
  [inattention]="model/attention=inattention model.attention.backend=$FLASH_BACKEND"
  [flash_static_relpos]="$flash model.attention.content_relpos=false"
  [flash_no_edges]="$flash model.attention.edge_messages=false"
  [flash_no_sc_points]="$flash model.attention.sc_points=false"
  [flash_sdpa]="model/attention=flash_ipa model.attention.backend=sdpa"
  [entmax_ipa]="model/attention=entmax_ipa model.attention.backend=$FLASH_BACKEND"
  [spatial_ipa]="model/attention=spatial_ipa"
)
VARIANTS=${VARIANTS:-"dense_ipa flash_ipa inattention flash_sdpa"}
max_time=$(printf "00:00:%02d:%02d" $((TRAIN_SECONDS / 60)) $((TRAIN_SECONDS % 60)))

PHASE=${PHASE:-all}
if [ "$PHASE" != finish ]; then
for v in $VARIANTS; do
  mkdir -p "$OUT/$v"
  # shellcheck disable=SC2086
  $DETACH timeout $((TRAIN_SECONDS + 90)) python3 -m flashipa_train.train.cli "trainer=${TRAINER:-gpu}" data.pdb_dir=null data.data_dir=.device_cache/structures \
    data.num_workers=1 "+trainer.max_time=$max_time" trainer.max_steps=${MAX_STEPS:-5000} trainer.val_check_interval=250 \
    scheduler.warmup_steps=100 callbacks.ema.decay=0.995 callbacks.progress_bar=null trainer.enable_progress_bar=false \
    callbacks.validation_sampling=null sample.lengths=[] logger=csv "paths.log_dir=$WORK/logs_$v" ${ATTENTION[$v]} $OVERRIDES \
    > "$OUT/$v/train.log" 2>&1 &
done
example=$(ls .device_cache/structures/examples/4zey_*_A_0.npz | head -1)
for v in ${MEMORISE-flash_ipa dense_ipa}; do
  $DETACH timeout $((TRAIN_SECONDS + 55)) python3 scripts/memorise_chain.py train --example "$example" --variant $v \
    --backend "$([ $v = dense_ipa ] && echo auto || echo "$FLASH_BACKEND")" --seconds "$((TRAIN_SECONDS - 10))" \
    --out "$OUT/memorise_$v" > "$WORK/memorise_$v.log" 2>&1 &
done
fi
[ "$PHASE" = train ] && { echo "started: $VARIANTS"; exit 0; }
# the runs (this call's children, or the detached ones of an earlier call on this machine) have ended
wait
while pgrep -f "paths.log_dir=$WORK/logs_" > /dev/null; do sleep 2; done
nvidia-smi --query-gpu=memory.used --format=csv >> "$OUT/stamp.txt" 2>&1

for v in $VARIANTS; do
  ckpt=$(ls -t "$WORK"/logs_$v/*/runs/*/checkpoints/last.ckpt 2>/dev/null | head -1)
  [ -n "$ckpt" ] || { echo "$v: no checkpoint"; tail -5 "$OUT/$v/train.log"; continue; }
  cp "$(dirname "$(dirname "$ckpt")")/csv/metrics.csv" "$OUT/$v/train_metrics.csv" 2>/dev/null
  timeout 60 python3 -m flashipa_train.sampling.cli "ckpt_path=$ckpt" "lengths=${LENGTHS:-[64,100,200]}" n=8 "out=$OUT/$v" overwrite=true \
    progress=false > "$WORK/sample_$v.log" 2>&1 &
done
flash_ckpt=$(ls -t "$WORK"/logs_flash_ipa/*/runs/*/checkpoints/last.ckpt 2>/dev/null | head -1)
# the trained weights come back as $FINAL_OUT/weights_<variant>.ckpt.gz.partNN (a call brings back files of 16 MiB,
# 64 MiB in all; `cat parts | gunzip` joins them): the
# EMA weights in bf16 with the run config (scripts/spatial_assumption.py --ckpt, scripts/entmax_report.py --ckpt)
for v in $VARIANTS; do
  ckpt=$(ls -t "$WORK"/logs_$v/*/runs/*/checkpoints/last.ckpt 2>/dev/null | head -1)
  [ -n "$ckpt" ] && python3 scripts/slim_checkpoint.py "$ckpt" "$WORK/weights_$v.ckpt" \
    && gzip -1 -c "$WORK/weights_$v.ckpt" | split -b 15m -d - "$FINAL_OUT/weights_$v.ckpt.gz.part"
done
[ -n "${ROT_SWEEP:-}" ] && [ -n "$flash_ckpt" ] && timeout 60 python3 scripts/rot_rate_sweep.py "$flash_ckpt" "$OUT" ${SWEEP_ARGS:-} > "$WORK/sweep.log" 2>&1 &
wait
for v in $VARIANTS; do grep -E "Epoch|val/loss|Error|error" "$OUT/$v/train.log" | tail -2; tail -2 "$WORK/sample_$v.log"; done
tail -3 "$WORK"/memorise_*.log "$WORK"/sweep.log 2>/dev/null
ls -R "$OUT" | head -60
mkdir -p "$OUT/logs" && cp "$WORK"/*.log "$OUT/logs/" 2>/dev/null
tar czf "$FINAL_OUT/results.tgz" -C "$OUT" .
