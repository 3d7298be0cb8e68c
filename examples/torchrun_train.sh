#!/usr/bin/env bash
# Train SIREM on several nodes with torchrun: one torchrun per node, one process per GPU
# (NCCL), or per-node CPU processes (gloo) where there is no GPU. `sirem train` joins the
# DistributedDataParallel run that torchrun sets up (the training frames are sharded across
# processes, rank 0 writes the checkpoint and logs).
#
#   sbatch --nodes=4 --gpus-per-node=4 examples/torchrun_train.sh model.pt prepared/*.h5 -- --encoder hubert
#   NNODES=1 NPROC_PER_NODE=1 DEVICE=cpu bash examples/torchrun_train.sh model.pt prepared.h5 -- --epochs 1
#   DRY_RUN=1 ... prints this node's launch command and runs nothing.
#
# Arguments: OUT.pt, the prepared files, then after `--` any `sirem train` options.
# Environment: NNODES (default: SLURM's node count, else 1), NPROC_PER_NODE (default: the GPUs
# nvidia-smi lists, else 1), DEVICE (auto | cuda | cpu; auto takes CUDA when torch sees it),
# MASTER_ADDR / MASTER_PORT (the rendezvous host, default: the job's first node, port 29500),
# PYTHON (the interpreter with sirem installed), DRY_RUN=1.
# The prepared files must be on a file system every node sees, and writable: rank 0 caches the
# audio embeddings in them before training starts, the other ranks read them after a barrier.
#SBATCH --job-name=sirem-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --output=sirem-train-%j.log
set -euo pipefail
die() { echo "torchrun_train: $*" >&2; exit 2; }

[ $# -ge 2 ] || die "usage: $0 OUT.pt PREPARED.h5... [-- TRAIN_OPTION...]"
OUT=$1
shift
PREPARED=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  PREPARED+=("$1")
  shift
done
[ $# -eq 0 ] || shift  # the --
TRAIN_ARGS=("$@")
[ ${#PREPARED[@]} -gt 0 ] || die "give at least one prepared file"
for f in "${PREPARED[@]}"; do
  [ -f "$f" ] || [ "${DRY_RUN:-0}" = 1 ] || die "$f: no such file"
done

PYTHON=${PYTHON:-python}
DEVICE=${DEVICE:-auto}
NNODES=${NNODES:-${SLURM_JOB_NUM_NODES:-1}}
if [ -z "${NPROC_PER_NODE:-}" ]; then
  NPROC_PER_NODE=1
  if [ "$DEVICE" != cpu ] && command -v nvidia-smi >/dev/null 2>&1; then
    gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    [ "${gpus:-0}" -gt 0 ] && NPROC_PER_NODE=$gpus
  fi
fi
PORT=${MASTER_PORT:-29500}
if [ "$NNODES" -gt 1 ]; then
  HEAD=${MASTER_ADDR:-}
  if [ -z "$HEAD" ] && [ -n "${SLURM_JOB_NODELIST:-}" ]; then
    HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
  fi
  [ -n "$HEAD" ] || die "$NNODES nodes: set MASTER_ADDR to the rendezvous host (or run under SLURM)"
  RDZV=(--nnodes "$NNODES" --rdzv_backend c10d --rdzv_endpoint "$HEAD:$PORT"
        --rdzv_id "${SLURM_JOB_ID:-sirem-train}")
else
  RDZV=(--standalone --nnodes 1)
fi
LAUNCH=("$PYTHON" -m torch.distributed.run "${RDZV[@]}" --nproc_per_node "$NPROC_PER_NODE"
        -m sirem_cli train "${PREPARED[@]}" --out "$OUT" --device "$DEVICE" "${TRAIN_ARGS[@]}")
if [ "$NNODES" -gt 1 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
  LAUNCH=(srun --nodes "$NNODES" --ntasks-per-node 1 "${LAUNCH[@]}")  # one torchrun per node
fi
if [ "${DRY_RUN:-0}" = 1 ]; then
  echo "${LAUNCH[*]}"
  exit 0
fi
# CPU threads per process: the node's (or the task's) cores shared by its processes.
cores=${SLURM_CPUS_PER_TASK:-$(nproc)}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( cores / NPROC_PER_NODE > 0 ? cores / NPROC_PER_NODE : 1 ))}
exec "${LAUNCH[@]}"
