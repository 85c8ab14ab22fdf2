#!/usr/bin/env bash
# The GPU check: run on a machine with an NVIDIA GPU and driver, in a copy of
# this repo that holds .device/ from scripts/build-cuda.sh (no Rust needed
# there). It runs the GPU tests, the demo, `bench` on the CPU and the GPU at
# batch 1 and 32, and a short training run on the GPU with its evaluation.
# Everything it prints also goes to $OUT/gpu-check.log (OUT defaults to
# out/gpu). docs/BENCH.md holds what it measured.
#
#   bash scripts/gpu-check.sh
#   DEVICE_TAR=bins.tar.xz bash scripts/gpu-check.sh   # unpack .device/ first
#
# The binaries link CUDA's libraries dynamically (cuBLAS, cuRAND, NVRTC, the
# runtime); PyTorch's CUDA 13 wheels carry them, so their folders go on
# LD_LIBRARY_PATH when that Python is there.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/gpu}"
mkdir -p "$OUT"
BIN=.device/vla-demo
if [[ ! -x "$BIN" && -n "${DEVICE_TAR:-}" ]]; then
    mkdir -p .device && tar -xJf "$DEVICE_TAR" -C .device || exit 1
fi
libs=$(python3 - <<'PY' 2>/dev/null
import glob, os, sys
dirs = {os.path.dirname(p) for d in sys.path if os.path.isdir(d)
        for p in glob.glob(os.path.join(d, "nvidia", "**", "lib*.so*"), recursive=True)}
print(":".join(sorted(dirs)))
PY
)
# The driver's own library, libcuda.so.1, where the loader may not look.
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
    [[ -d $d ]] && libs="$libs:$d"
done
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

section() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }
run() { # time limit in seconds, then the command
    local limit=$1
    shift
    local t0=$SECONDS
    timeout "$limit" "$@"
    local rc=$?
    echo "-- exit $rc after $((SECONDS - t0)) s: $*"
}

{
    section machine
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    echo "$(nproc) cores"
    section libraries
    ldd "$BIN" | grep -E 'libcu|nvrtc|not found'

    section "GPU tests"
    run 240 .device/gpu-test --test-threads 1

    section "the demo on the GPU"
    run 60 "$BIN" --device cuda --image examples/scenes/red_cup.png --cmd "pick up the red cup" \
        --overlay "$OUT/red_cup.overlay.png"
    run 60 "$BIN" --device auto --image examples/scenes/red_cup.png --cmd "빨간 컵을 집어라" --no-overlay

    section "bench: batch 1 and 32, GPU then CPU"
    run 120 "$BIN" bench --device cuda --batch 1,32 --runs 20 --train-steps 10
    run 180 "$BIN" bench --device cpu --batch 1,32 --runs 20 --train-steps 10

    section "training speed on the randomised world: models/randomised's config, 200 steps"
    rm -rf /tmp/rnd
    run 240 "$BIN" train --config models/randomised/train_config.json --out /tmp/rnd --device cuda --steps 200 --quiet
    grep samples_per_s /tmp/rnd/train_log.jsonl | tail -n 1

    section "a short training run on the GPU: configs/train-quick.json"
    rm -rf /tmp/quick
    timev=()
    [[ -x /usr/bin/time ]] && timev=(/usr/bin/time -v)
    run 300 "${timev[@]}" "$BIN" train --config configs/train-quick.json --out /tmp/quick --device cuda
    run 240 "$BIN" eval --device cuda --model-dir /tmp/quick --split iid --scenes 1000

    section "bench in half precision on the GPU"
    for dtype in f16 bf16; do
        run 120 "$BIN" bench --device cuda --dtype "$dtype" --batch 1,32 --runs 20
    done

    # The trained model comes back too, to be evaluated on the CPU.
    for f in config.json model.safetensors tokenizer.json train_log.jsonl; do
        cp "/tmp/quick/$f" "$OUT/quick-$f" 2>/dev/null
    done
} 2>&1 | tee "$OUT/gpu-check.log"
