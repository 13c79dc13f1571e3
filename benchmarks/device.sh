#!/bin/bash
# Every GPU figure of benchmarks/RESULTS.md in one command, sized to finish in about 10 minutes on an
# H100/H200 (issue #22): the DM/AVDD loop against a per-class loop, the real-mean cache's effect, an
# evaluation's networks one by one and together, the evaluation network's training step; at the
# paper's shapes (224×224 frames) and at avdigits'. Random data: nothing needs preparing.
#
#   bash benchmarks/device.sh OUT_DIR [DEVICE]      (DEVICE: cuda by default)
#
# Each benchmark's output goes to OUT_DIR/NAME.log as well as to the terminal; a failing one is
# reported and the others still run (the exit status is 1 if any failed).
set -u -o pipefail
out=${1:?usage: bash benchmarks/device.sh OUT_DIR [DEVICE]}
device=${2:-cuda}
cd "$(dirname "$0")/.." || exit 1
mkdir -p "$out"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
status=0

bench() {  # NAME SCRIPT ARGS...: run one benchmark, keep its output
    local name=$1 script=$2
    shift 2
    echo "== $name: $script $*"
    "$python" "benchmarks/$script" "$@" 2>&1 | tee "$out/$name.log" || { echo "!! $name failed"; status=1; }
}

"$python" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no cuda")' \
    | tee "$out/device.log"
bench distill-reference distill_speed.py --shapes reference --device "$device" --real-batch 128 --iterations 10
bench distill-avdigits distill_speed.py --shapes avdigits --device "$device" --real-batch 64 --iterations 10
bench real-cache real_cache_speed.py --shapes reference --device "$device" --real-batch 128 --iterations 5 --repeats 2
bench eval-avdigits bench_parallel_eval.py --shapes avdigits --device "$device" --samples 40,400 --networks 5 --epochs 5
bench eval-reference bench_parallel_eval.py --shapes reference --device "$device" --samples 40,400 --networks 5 --epochs 2
bench encoder-step encoder_speed.py --shapes reference --device "$device" --batch 32 --steps 10
exit "$status"
