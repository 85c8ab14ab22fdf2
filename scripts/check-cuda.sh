#!/usr/bin/env bash
# Compile-checks the `cuda` and `cudnn` features on a machine with no GPU and
# no CUDA toolkit (issue 15). The default build is CPU only, so without this
# check the GPU code paths (src/device.rs, src/model/flash.rs) and candle's
# CUDA back end would only be compiled when someone has a GPU at hand.
#
# It only runs `cargo check`: nothing is linked or run. A real build also links
# against the CUDA runtime library, and running it needs the NVIDIA driver and
# a GPU; that is for a GPU machine (docs/BENCH.md).
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
# to 13.4 and its build script refuses the nvcc of 13.5. The `-cu12` wheels
# have no nvcc. crt holds headers nvcc's front end needs, nvvm holds cicc (the
# device code generator), and cccl holds libcu++'s headers, which cuda_fp16.h
# and cuda_bf16.h include. No cuDNN wheel: cudarc loads cuDNN at run time and
# ships its own bindings, so the `cudnn` feature needs no cuDNN headers to
# compile. --no-deps with every package pinned keeps the toolkit the same from
# one machine to the next.
CUDA_VERSION=13.4.92
WHEELS=(
    "nvidia-cuda-nvcc==$CUDA_VERSION"
    "nvidia-cuda-runtime==$CUDA_VERSION"
    "nvidia-cuda-crt==$CUDA_VERSION"
    "nvidia-nvvm==$CUDA_VERSION"
    "nvidia-cuda-cccl==13.3.5.0.6"
)

CACHE="${VLA_DEMO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vla-demo}"
TOOLKIT="$CACHE/cuda-$CUDA_VERSION"
# The wheels unpack into one tree shaped like a CUDA install (bin, include,
# lib, nvvm); its bundled nvcc.profile finds the rest relative to bin/.
export CUDA_HOME="$TOOLKIT/nvidia/cu13"
start=$SECONDS

# ---- 1. The toolkit, installed once ---------------------------------------
# wheels.txt records what was installed; a changed pin reinstalls.
if [[ ! -x "$CUDA_HOME/bin/nvcc" || "$(cat "$TOOLKIT/wheels.txt" 2>/dev/null)" != "${WHEELS[*]}" ]]; then
    if python3 -m pip --version >/dev/null 2>&1; then
        pip=(python3 -m pip)
    elif command -v pip >/dev/null; then
        pip=(pip)
    else
        echo "check-cuda: pip is missing (Debian: apt-get install python3-pip)" >&2
        exit 1
    fi
    echo "check-cuda: installing the CUDA $CUDA_VERSION wheels into $TOOLKIT"
    # --target installs into a plain directory, not into Python's own
    # site-packages, so Debian's "externally managed environment" guard
    # (PEP 668) does not apply and no --break-system-packages is needed.
    # Installing into a side directory and renaming it at the end means an
    # interrupted install never leaves a half toolkit behind.
    mkdir -p "$CACHE"
    rm -rf "$TOOLKIT.partial"
    # (PIP_ROOT_USER_ACTION: CI runs as root, and the root warning is about
    # site-packages, which this does not touch.)
    PIP_ROOT_USER_ACTION=ignore "${pip[@]}" install --quiet --disable-pip-version-check \
        --no-deps --target "$TOOLKIT.partial" "${WHEELS[@]}"
    # candle-kernels' build helper looks for the libraries in lib64, the usual
    # Linux toolkit layout; the wheels put them in lib.
    [[ -e "$TOOLKIT.partial/nvidia/cu13/lib64" ]] || ln -s lib "$TOOLKIT.partial/nvidia/cu13/lib64"
    echo "${WHEELS[*]}" >"$TOOLKIT.partial/wheels.txt"
    rm -rf "$TOOLKIT"
    mv "$TOOLKIT.partial" "$TOOLKIT"
fi

# ---- 2. The environment cargo's build scripts read ------------------------
export PATH="$CUDA_HOME/bin:$PATH"
# candle-kernels compiles its kernels for one GPU architecture, found with
# nvidia-smi when there is a GPU. There is none here, so name one: 90 is
# Hopper (H100/H200). Any value nvcc 13 accepts would check the same Rust.
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
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
