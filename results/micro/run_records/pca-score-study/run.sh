#!/usr/bin/env bash
# The PCA score forms at micro: stage 1 (supernet pretraining with PCA-guided growth) only, with the
# paper's 10 growth epochs at micro's total pretraining steps (10 x 12 = 2 x 60), rotten_tomatoes,
# fp32, seeds 0-2, pca_score=count and pca_score=normalized; two jobs at once, one thread each.
#   bash results/micro/run_records/pca-score-study/run.sh [RUN_ROOT]     (default runs/pca-score-study)
# Then: python results/micro/run_records/pca-score-study/summarise.py RUN_ROOT
set -euo pipefail
cd "$(dirname "$0")/../../../.."
root=${1:-runs/pca-score-study}
one() {  # FORM SEED
  OMP_NUM_THREADS=1 .venv/bin/python -m elmlib search --scale micro --task rotten_tomatoes --stages pretrain \
    --no-progress --set pretrain_epochs=10 --set pretrain_steps=12 --set pca_score="$1" --set seed="$2" \
    --run-dir "$root/$1-seed$2"
}
(for s in 0 1 2; do one count "$s"; done) &
(for s in 0 1 2; do one normalized "$s"; done) &
wait
