#!/usr/bin/env bash
# A short GPU training run on data/ and samples of it, in one device call (timeout 600): the GPU half of
# comparing the samples of a GPU-trained model with those of the README's CPU model and the training set.
# The GPU image has no biotite: preprocess here and carry the cache and hydra's wheels, once, here:
#   flashipa-preprocess data/ --out .device_cache/structures
#   echo /.whl/ >> .git/info/exclude; echo /.device_cache/ >> .git/info/exclude
#   mkdir -p .whl; cp ../shared/device-wheels/*.whl .whl/
# then the device `run` (carry [".whl", ".device_cache"]): bash scripts/device_train_sample.sh
# and, back here, structures and metrics next to the training set's:
#   flashipa-sample from_samples=<files_at>/samples.pt out=samples/gpu training_set=data
# Environment: MAX_TIME (Lightning's DD:HH:MM:SS, default 00:00:08:30), OVERRIDES (more Hydra overrides).
# CPU dry run: TRAINER=cpu MAX_TIME=00:00:00:20 OVERRIDES="experiment=quickstart" bash scripts/device_train_sample.sh
# Writes under $OUT: samples.pt, train.log, metrics.csv (the CSV log of the run).
set -o pipefail
OUT=${OUT:-/tmp/train_sample_out}
WORK=${WORK:-/tmp/train_sample_work}
mkdir -p "$OUT" "$WORK"
# shellcheck source=scripts/device_env.sh
source scripts/device_env.sh
# shellcheck disable=SC2086
python3 -m flashipa_train.train.cli "trainer=${TRAINER:-gpu}" data.pdb_dir=null data.data_dir=.device_cache/structures \
  "+trainer.max_time=${MAX_TIME:-00:00:08:30}" trainer.max_steps=1000000 callbacks.progress_bar=null trainer.enable_progress_bar=false \
  callbacks.validation_sampling=null sample.lengths=[] logger=csv "paths.log_dir=$WORK/logs" $OVERRIDES \
  2>&1 | tee "$OUT/train.log" | grep -v "^DEBUG" | tail -15
ckpt=$(ls -t "$WORK"/logs/*/runs/*/checkpoints/last.ckpt | head -1)
cp "$(dirname "$(dirname "$ckpt")")/csv/metrics.csv" "$OUT/metrics.csv" 2>/dev/null
python3 -m flashipa_train.sampling.cli "ckpt_path=$ckpt" "lengths=${LENGTHS:-[64,100,200]}" n=8 "out=$WORK/samples" \
  progress=false 2>&1 | tail -4
cp "$WORK/samples/samples.pt" "$OUT/" 2>/dev/null || cp -r "$WORK/samples" "$OUT/"
