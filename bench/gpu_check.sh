#!/usr/bin/env bash
# The checks that need a GPU, in one go: the CUDA tests, the NUFFT backends side by side, and the
# model benchmark on CUDA, then the rest of the suite on the GPU machine (where device "auto" now
# means CUDA). Usage: bash bench/gpu_check.sh OUT_DIR   (python3 must see torch with CUDA,
# cufinufft and sirem's other dependencies; every step's log lands in OUT_DIR).
set -u
out=${1:?usage: bash bench/gpu_check.sh OUT_DIR}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE
status=0
step() {  # step NAME SECONDS CMD...: run with a time limit, log to OUT_DIR/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$out/$name.log"
    echo "== $name: exit $rc"
    [ "$rc" -eq 0 ] || status=1
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
$py -c "import torch; from sirem_cli.nufft import backend; print('torch', torch.__version__, 'cufinufft:', backend.cuda_status())"
step pytest_cuda 300 $py -m pytest -q -p no:cacheprovider -m cuda -rs tests/test_nufft.py tests/test_cuda.py
step bench_nufft 120 $py bench/bench_nufft.py --sweep --out "$out"
step bench_model_cuda 240 $py bench/bench_model.py --device cuda --out "$out"
# REST_ARGS: extra pytest arguments, e.g. -k "not video" where imageio-ffmpeg is missing
step pytest_rest "${REST_LIMIT:-240}" env OMP_NUM_THREADS=2 $py -m pytest -q -p no:cacheprovider -n 8 -m "not cuda" ${REST_ARGS:-}
exit $status
