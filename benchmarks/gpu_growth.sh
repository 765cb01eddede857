#!/usr/bin/env bash
# PCA-guided growth at the paper's widths on a GPU: stage 1 of `elmlib search --scale paper` for the paper's
# 10 epochs (60 steps each: the offline corpus holds 63 batches of 256 x 128), bf16, under both PCA score
# forms, so the grown FFN profile of the real ELM-Small supernet can be set beside Fig. 5. Offline teacher
# and corpus from the carry folder (benchmarks/gpu_carry.py). Writes $OUT/growth.tgz and $OUT/log.txt.
#   bash benchmarks/gpu_growth.sh "$OUT"        (SCALE=smoke EXTRA="--set device=cpu" to try it on a CPU)
set -u
OUT=${1:?usage: gpu_growth.sh OUT}
ROOT=$(pwd); WORK=${WORK:-/tmp/gpu_growth}; PY=${PY:-python3}; SCALE=${SCALE:-paper}; EXTRA=${EXTRA:-}
EPOCHS=${EPOCHS:-10}; STEPS=${STEPS:-60}; LIMIT=${LIMIT:-150}
rm -rf "$WORK"; mkdir -p "$WORK" "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
echo "[$(date +%T)] unpacking"; "$PY" benchmarks/gpu_carry.py unpack --src .gpu --dest "$WORK/site" || exit 1
export PYTHONPATH="$WORK/site:$ROOT" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export ELMLIB_CACHE="$WORK/cache" ELMLIB_RESULTS="$WORK/results" ELMLIB_FIGURES="$WORK/figures"
for form in normalized count; do
  echo "[$(date +%T)] $form"
  timeout -k 10 "$LIMIT" "$PY" -m elmlib search --scale "$SCALE" --stages pretrain --no-progress \
    --set teacher=teacher --set corpus=offline --set precision=bf16 --set pretrain_epochs="$EPOCHS" \
    --set pretrain_steps="$STEPS" --set pca_score="$form" $EXTRA --run-dir "$WORK/runs/$form"
  echo "[$(date +%T)] $form rc=$?"
  (cd "$WORK" && tar -czf "$OUT/growth.tgz" --exclude='*.pt' --exclude='*.ckpt' --exclude='*.lock' runs)
done
