#!/usr/bin/env bash
# The whole sirem pipeline on the built-in synthetic corpus, offline.
# Usage: bash examples/demo.sh [OUT_DIR]   (make demo runs it with OUT_DIR=demo_out)
set -euo pipefail
OUT=${1:-demo_out}
SIREM=${SIREM:-sirem}
mkdir -p "$OUT"
echo "== 1/2 synthesize a corpus (6 speakers x 2 utterances x 8 s)"
$SIREM synth "$OUT/corpus" --subjects 6 --utterances 2 --seconds 8 --seed 0 --overwrite
echo "== 2/2 prepare it"
$SIREM prepare "$OUT/corpus" "$OUT/prepared.h5" --overwrite
echo "demo outputs are in $OUT/"
