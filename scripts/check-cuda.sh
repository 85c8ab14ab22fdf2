#!/usr/bin/env bash
# Compile-checks the `cuda` and `cudnn` features on a machine with no GPU and
# no CUDA toolkit (issue 15). The default build is CPU only, so without this
# check the GPU code paths (src/device.rs, src/model/flash.rs) and candle's
# CUDA back end would only be compiled when someone has a GPU at hand.
#
# It only runs `cargo check`: nothing is linked or run. A real build also links
# against CUDA's libraries, and running it needs the NVIDIA driver and a GPU:
# scripts/build-cuda.sh builds for a GPU machine (docs/BENCH.md).
#
# The toolkit comes from NVIDIA's PyPI wheels, installed with pip into a cache
# outside the clone, with cargo's target directory next to it, so only the
# first run on a machine pays for compiling candle's CUDA kernels (16 minutes on
# 2 quiet cores, 44 on 2 busy ones); later runs take
# about a second when nothing changed, and seconds after a change in src/.
#
#   bash scripts/check-cuda.sh
#   VLA_DEMO_CACHE=/some/dir bash scripts/check-cuda.sh   # cache elsewhere
#
# Needs python3 with pip, network access to PyPI and crates.io on the first
# run, and about 1.7 GB of disk in the cache.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned at 13.4: cudarc 0.19 (candle's CUDA bindings) knows CUDA versions up
# to 13.4 and its build script refuses the nvcc of 13.5. No cuDNN wheel:
# cudarc loads cuDNN at run time and ships its own bindings, so the `cudnn`
# feature needs no cuDNN headers to compile.
CUDA_VERSION=13.4.92
CCCL_VERSION=13.3.5.0.6
EXTRA_WHEELS=()
start=$SECONDS

# ---- 1. The toolkit, installed once, and the environment cargo reads -------
source scripts/cuda-toolkit.sh

# ---- 2. The build's own settings --------------------------------------------
# (Any CUDA_COMPUTE_CAP nvcc 13 accepts would check the same Rust.)
# A target directory of its own, in the cache: the CUDA build shares nothing
# with the CPU build in ./target, and keeping it warm is what makes reruns fast.
export CARGO_TARGET_DIR="$CACHE/target-cuda"
# Warnings fail the check. -D warnings turns every rustc warning into an error,
# but only in this crate: cargo compiles crates.io dependencies with
# --cap-lints allow, so their warnings are silenced whatever RUSTFLAGS says.
# (Messages that dependencies' build scripts print as "warning: candle-kernels@..."
# come from cargo, not rustc, and do not fail the check.)
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-D warnings"

echo "check-cuda: $(nvcc --version | tail -n 1), CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, target dir $CARGO_TARGET_DIR"

# ---- 3. The checks ----------------------------------------------------------
# --all-targets covers the library, binaries, tests, examples and benches.
# --locked: check exactly the dependency versions in Cargo.lock.
# `cudnn` implies `cuda`, and adds candle's cuDNN convolution paths.
for feature in cuda cudnn; do
    echo "check-cuda: cargo check --features $feature --all-targets"
    cargo check --locked --features "$feature" --all-targets || {
        echo "check-cuda: FAILED: cargo check --features $feature --all-targets (errors or warnings above)" >&2
        exit 1
    }
done

elapsed=$((SECONDS - start))
printf 'check-cuda: OK, the cuda and cudnn features compile with no error or warning (CUDA %s, %dm%02ds)\n' \
    "$CUDA_VERSION" $((elapsed / 60)) $((elapsed % 60))
