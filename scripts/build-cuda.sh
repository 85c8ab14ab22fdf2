#!/usr/bin/env bash
# Builds the `cuda` release binary and the GPU test (tests/gpu.rs) on a
# machine with no GPU and no CUDA install, to be run on a GPU machine.
#
#   bash scripts/build-cuda.sh                       # into .device/
#   CUDA_VERSION=13.0.88 CCCL_VERSION=13.0.85 bash scripts/build-cuda.sh
#
# Pick the toolkit to match the GPU machine's driver, not the newest one:
# candle compiles its kernels to PTX at build time, and the driver refuses PTX
# from a toolkit newer than itself (CUDA_ERROR_UNSUPPORTED_PTX_VERSION). The
# default, 13.0, is what driver 580 runs. cudarc 0.19 accepts 13.0 to 13.4.
#
# candle links CUDA's libraries dynamically. cuBLAS, cuRAND, NVRTC and the
# runtime come from NVIDIA's wheels, the same versions as the toolkit. The
# driver library, libcuda.so.1, has no wheel: the link is made against a stub
# generated from cudarc's own declarations of the driver API, and the real
# library, which comes with the driver, is the one loaded at run time.
#
# The outputs go to .device/ (git-ignored): vla-demo and gpu-test. On the GPU
# machine, put the wheels' libraries (cuBLAS, cuRAND, NVRTC, the runtime) on
# LD_LIBRARY_PATH; PyTorch's CUDA 13 wheels carry the same ones.
set -euo pipefail
cd "$(dirname "$0")/.."

CUDA_VERSION="${CUDA_VERSION:-13.0.88}"
CCCL_VERSION="${CCCL_VERSION:-13.0.85}"
EXTRA_WHEELS=(
    "nvidia-cublas==${CUBLAS_VERSION:-13.0.2.14}"
    "nvidia-curand==${CURAND_VERSION:-10.4.0.35}"
    "nvidia-cuda-nvrtc==$CUDA_VERSION"
)
start=$SECONDS
source scripts/cuda-toolkit.sh
export CARGO_TARGET_DIR="$CACHE/target-cuda-$CUDA_VERSION"
LIB="$CUDA_HOME/lib"

# The linker wants unversioned names (-lcublas); the wheels ship sonames.
for so in "$LIB"/lib{cublas,cublasLt,curand,nvrtc,cudart}.so.*; do
    base="${so%%.so.*}.so"
    [[ -e "$base" ]] || ln -s "$(basename "$so")" "$base"
done

# The stub driver library: one empty function per driver entry point cudarc
# declares. Only its symbol names matter to the linker.
if [[ ! -e "$LIB/libcuda.so" ]]; then
    cudarc=$(cargo metadata --locked --features cuda --format-version 1 |
        python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc").rsplit("/",1)[0])')
    stub=$(mktemp -d)
    grep -oE 'pub unsafe fn cu[A-Za-z0-9_]+\(' "$cudarc/src/driver/sys/mod.rs" |
        sed -E 's/pub unsafe fn (.*)\(/void \1(void) {}/' | sort -u >"$stub/cuda.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$LIB/libcuda.so" "$stub/cuda.c"
    rm -rf "$stub"
fi

echo "build-cuda: $(nvcc --version | tail -n 1), CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, target dir $CARGO_TARGET_DIR"
mkdir -p .device "$CARGO_TARGET_DIR"
cargo build --locked --release --features cuda --bin vla-demo --test gpu \
    --message-format=json-render-diagnostics >"$CARGO_TARGET_DIR/build.json"
python3 - "$CARGO_TARGET_DIR/build.json" <<'PY'
import json, shutil, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        name = {"vla-demo": "vla-demo", "gpu": "gpu-test"}.get(m["target"]["name"])
        if name:
            shutil.copy(m["executable"], f".device/{name}")
            print(f"build-cuda: .device/{name}")
PY
strip .device/vla-demo .device/gpu-test
elapsed=$((SECONDS - start))
printf 'build-cuda: done (CUDA %s, %dm%02ds)\n' "$CUDA_VERSION" $((elapsed / 60)) $((elapsed % 60))
