#!/usr/bin/env bash
# Prepare the USC 75-speaker corpus (about 570 GB) on a SLURM cluster, one subject per array task.
#
#   bash examples/slurm_prepare.sh --list ROOT             # the subjects, numbered from 0
#   sbatch --array=0-74%16 examples/slurm_prepare.sh ROOT OUT_DIR [ANNOT_DIR]
#
# Task i prepares the i-th subject (sorted ids of the *_raw.h5 files under ROOT) into
# OUT_DIR/<subject>.h5; every sirem reader takes the files together as one dataset
# (sirem baseline OUT_DIR/*.h5 ..., sirem train OUT_DIR/*.h5 ...). The subject split is computed
# from all subjects under ROOT with one seed, so every task gives a subject the same split.
# A subject whose file exists is skipped (resubmit the array after a failure; OVERWRITE=1 redoes
# it). prepare writes to a temporary name and renames it when complete.
#
# Dry run on any machine (prints the task's command, runs nothing):
#   SLURM_ARRAY_TASK_ID=3 SIREM="echo sirem" bash examples/slurm_prepare.sh ROOT OUT_DIR
# Environment: SIREM (the sirem command), PREPARE_ARGS (more prepare options, word-split,
# e.g. "--coil-window 20"), OVERWRITE=1. The resources below are a starting point: prepare
# reads one utterance at a time, so memory follows the longest utterance, not the corpus.
#SBATCH --job-name=sirem-prepare
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --output=sirem-prepare-%A_%a.log
set -euo pipefail
SIREM=${SIREM:-sirem}
die() { echo "slurm_prepare: $*" >&2; exit 2; }

subjects() {  # the subject ids (first 6 characters of the USC prefix) of every *_raw.h5 file
  find -L "$1" -name '*_raw.h5' -not -path '*/.*' -printf '%f\n' | cut -c1-6 | sort -u
}

if [ "${1:-}" = "--list" ]; then
  [ -d "${2:-}" ] || die "usage: $0 --list ROOT (ROOT: a folder)"
  subjects "$2" | nl -v 0 -w 2 -s ' '
  exit 0
fi
[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: sbatch --array=0-N $0 ROOT OUT_DIR [ANNOT_DIR]"
ROOT=$1
OUT=$2
ANNOT=${3:-}
[ -d "$ROOT" ] || die "$ROOT: no such folder"
[ -z "$ANNOT" ] || [ -d "$ANNOT" ] || die "$ANNOT: no such folder"
mapfile -t SUBJECTS < <(subjects "$ROOT")
n=${#SUBJECTS[@]}
[ "$n" -gt 0 ] || die "$ROOT: no *_raw.h5 files found"
TASK=${SLURM_ARRAY_TASK_ID:-}
[ -n "$TASK" ] || die "not an array task: submit with sbatch --array=0-$((n - 1)) (or set SLURM_ARRAY_TASK_ID)"
[[ "$TASK" =~ ^[0-9]+$ ]] && [ "$TASK" -lt "$n" ] || die "task $TASK: $ROOT has $n subjects (tasks 0-$((n - 1)))"
SUBJECT=${SUBJECTS[$TASK]}
FILE="$OUT/$SUBJECT.h5"
if [ -e "$FILE" ] && [ "${OVERWRITE:-0}" != 1 ]; then
  echo "slurm_prepare: $FILE exists, skipped (OVERWRITE=1 redoes it)" >&2
  exit 0
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
# shellcheck disable=SC2086  # SIREM and PREPARE_ARGS are word lists on purpose
set -- $SIREM prepare "$ROOT" "$FILE" --subject "$SUBJECT" ${ANNOT:+--annot "$ANNOT"} \
  ${PREPARE_ARGS:-} --overwrite
mkdir -p "$OUT"
echo "slurm_prepare: task $TASK of $n: $SUBJECT" >&2
exec "$@"
