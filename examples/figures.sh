#!/usr/bin/env bash
# Redraw the README's figures 2 and 3 (docs/figures) from a finished demo with the current code,
# so they cannot go stale: `make figures` after `make demo`. Each PNG comes with a .labels.json
# sidecar; tests/test_report.py checks those labels against the code's.
# Usage: bash examples/figures.sh [DEMO_DIR] [DEST]        (default: demo_out docs/figures)
# Environment: SIREM (the sirem executable), PYTHON (the interpreter beside it, for Pillow).
set -euo pipefail
DEMO=${1:-demo_out}
DEST=${2:-docs/figures}
SIREM=${SIREM:-sirem}
PYTHON=${PYTHON:-${SIREM%sirem}python}
# The demo's reconstructions (examples/demo.sh, step 7); figure 2 is drawn against the truth.
METHODS="sirem sirem-no-audio sirem-mri gridding wavelet tv"
files=()
for m in $METHODS; do
  f="$DEMO/$m.h5"
  [ -f "$f" ] || { echo "figures: $f is missing: run 'make demo' first" >&2; exit 2; }
  files+=("$f")
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sirem-figures.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# --metrics psnr: the figures do not depend on the metrics; one cheap metric keeps this quick.
$SIREM evaluate "${files[@]}" --target truth --prepared "$DEMO/prepared.h5" --metrics psnr \
  --out "$tmp/out"
mkdir -p "$DEST"
cp "$tmp/out/figure2.labels.json" "$tmp/out/figure3.png" "$tmp/out/figure3.labels.json" "$DEST/"
# Figure 2 is mostly MRI frames and noisy error maps: as JPEG it is under half the PNG's size.
"$PYTHON" -c "import sys; from PIL import Image; Image.open(sys.argv[1]).convert('RGB').save(sys.argv[2], quality=80)" \
  "$tmp/out/figure2.png" "$DEST/figure2.jpg"
echo "wrote $DEST/figure2.jpg, $DEST/figure3.png and their .labels.json"
