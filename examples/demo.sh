#!/usr/bin/env bash
# The whole sirem pipeline on the built-in synthetic corpus, offline, in one folder.
# Usage: bash examples/demo.sh [OUT_DIR]        (make demo runs it with OUT_DIR=demo_out)
# Environment: SIREM (the sirem executable), DEMO_SUBJECTS, DEMO_UTTERANCES, DEMO_SECONDS,
# DEMO_EPOCHS to scale it; DEMO_PRIOR=0 skips the speech prior at 2 arms per frame (steps 9-11). Every step passes --overwrite so that the demo can run again into the
# same folder (sirem never replaces an existing output without it).
set -euo pipefail
OUT=${1:-demo_out}
SIREM=${SIREM:-sirem}
SUBJECTS=${DEMO_SUBJECTS:-6}
UTTERANCES=${DEMO_UTTERANCES:-2}
SECONDS_PER_UTT=${DEMO_SECONDS:-8}
EPOCHS=${DEMO_EPOCHS:-20}
PRIOR=${DEMO_PRIOR:-1}
mkdir -p "$OUT"
start=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - start )) s] $*"; }

step "1/11 synthesize a corpus: $SUBJECTS speakers x $UTTERANCES utterances x $SECONDS_PER_UTT s"
$SIREM synth "$OUT/corpus" --subjects "$SUBJECTS" --utterances "$UTTERANCES" \
  --seconds "$SECONDS_PER_UTT" --seed 0 --overwrite

step "2/11 prepare it (splits by subject)"
$SIREM prepare "$OUT/corpus" "$OUT/prepared.h5" --overwrite

step "3/11 baselines on the test subjects: gridding, wavelet and TV (lambda chosen on validation)"
$SIREM baseline "$OUT/prepared.h5" "$OUT/gridding.h5" --method gridding --overwrite
$SIREM baseline "$OUT/prepared.h5" "$OUT/wavelet.h5" --method wavelet --lam auto --overwrite
$SIREM baseline "$OUT/prepared.h5" "$OUT/tv.h5" --method tv --lam auto --overwrite

# The paper's hyperparameters; only the 13 arm logits get a larger learning rate (--arm-lr
# 0.05, the default), because this small corpus gives ~10^3 steps where the paper has ~10^5.
step "4/11 train SIREM with the mel encoder, with audio"
$SIREM train "$OUT/prepared.h5" --encoder mel --epochs "$EPOCHS" --out "$OUT/sirem.pt" \
  --overwrite

step "5/11 train the w/o-audio ablation"
$SIREM train "$OUT/prepared.h5" --encoder mel --epochs "$EPOCHS" --no-audio \
  --out "$OUT/sirem-no-audio.pt" --overwrite

step "6/11 reconstruct the test subjects with both models"
$SIREM reconstruct --ckpt "$OUT/sirem.pt" "$OUT/prepared.h5" "$OUT/sirem.h5" --overwrite
$SIREM reconstruct --ckpt "$OUT/sirem-no-audio.pt" "$OUT/prepared.h5" "$OUT/sirem-no-audio.h5" \
  --overwrite
# the MRI branch alone: gridding of the same learned arm-weighted k-space
$SIREM reconstruct --ckpt "$OUT/sirem.pt" "$OUT/prepared.h5" "$OUT/sirem-mri.h5" --branch mri \
  --overwrite

step "7/11 evaluate against the ground truth and the reference; tables and figures"
# (examples/figures.sh redraws the README's figures from the same files: make figures)
$SIREM evaluate "$OUT/sirem.h5" "$OUT/sirem-no-audio.h5" "$OUT/sirem-mri.h5" "$OUT/gridding.h5" "$OUT/wavelet.h5" "$OUT/tv.h5" \
  --target truth --target reference --prepared "$OUT/prepared.h5" --out "$OUT/report" \
  --overwrite

step "8/11 export one test utterance as a video with its sound"
PREFIX=$("${SIREM%sirem}python" -c "
import sys
from sirem_cli.io.prepared import ReconSet
print(ReconSet(sys.argv[1]).utterances[0].prefix)" "$OUT/sirem.h5" 2>/dev/null || true)
if [ -n "$PREFIX" ]; then
  $SIREM export "$OUT/sirem.h5" "$OUT/$PREFIX.mp4" --prepared "$OUT/prepared.h5" --utterance "$PREFIX" \
    --overwrite
fi

if [ "$PRIOR" != "0" ]; then
  # The speech prior (issue 14) works where MRI alone fails: frames of 2 arms (83 frames/s,
  # USC's own rate), where gridding is about 10 dB from the truth. Its solve is temporal TV
  # plus a prior image predicted from the audio and the utterance's time-averaged image, so
  # it is compared with ttv at the same iterations, both tuned on the validation speakers.
  step "9/11 prepare the same corpus at 2 arms per frame; gridding and temporal TV (lambda on validation)"
  $SIREM prepare "$OUT/corpus" "$OUT/prepared-n2.h5" --arms-per-frame 2 --overwrite
  $SIREM baseline "$OUT/prepared-n2.h5" "$OUT/gridding-n2.h5" --method gridding --overwrite
  $SIREM baseline "$OUT/prepared-n2.h5" "$OUT/ttv-n2.h5" --method ttv --lam auto --iters 60 \
    --overwrite
  step "10/11 train the speech prior against the truth (weights of its solve chosen on validation) and reconstruct"
  TTV_LAMS=$("${SIREM%sirem}python" -c "
import sys
from sirem_cli.io.prepared import ReconSet
c = ReconSet(sys.argv[1]).config
print(c['lam'], c['lam_spatial'])" "$OUT/ttv-n2.h5")
  read -r LAM LAM_S <<< "$TTV_LAMS"
  $SIREM train "$OUT/prepared-n2.h5" --model prior --epochs "$EPOCHS" --iters 60 --lam "$LAM" \
    --lam-spatial "$LAM_S" --out "$OUT/prior.pt" --overwrite
  $SIREM reconstruct --ckpt "$OUT/prior.pt" "$OUT/prepared-n2.h5" "$OUT/prior.h5" --overwrite
  step "11/11 the speech prior beside temporal TV and gridding at 2 arms per frame, against the truth"
  $SIREM evaluate "$OUT/prior.h5" "$OUT/ttv-n2.h5" "$OUT/gridding-n2.h5" --target truth \
    --prepared "$OUT/prepared-n2.h5" --metrics classic --out "$OUT/report-n2" --overwrite
fi

step "done: outputs in $OUT/ (report/metrics.md, report/figure2.png, report/figure3.png, report-n2/)"
