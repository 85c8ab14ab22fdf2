# Sourced by check-cuda.sh and build-cuda.sh: installs NVIDIA's PyPI wheels
# into a cache outside the clone, once, and exports what candle's and
# cudarc's build scripts read. Set CUDA_VERSION, CCCL_VERSION and
# EXTRA_WHEELS (an array, may be empty) before sourcing.
#
# The wheels unpack into one tree shaped like a CUDA install (bin, include,
# lib, nvvm); its bundled nvcc.profile finds the rest relative to bin/.
# crt holds headers nvcc's front end needs, nvvm holds cicc (the device code
# generator), and cccl holds libcu++'s headers, which cuda_fp16.h and
# cuda_bf16.h include. The `-cu12` wheels have no nvcc. --no-deps with every
# package pinned keeps the toolkit the same from one machine to the next.

CACHE="${VLA_DEMO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vla-demo}"
TOOLKIT="$CACHE/cuda-$CUDA_VERSION"
WHEELS=(
    "nvidia-cuda-nvcc==$CUDA_VERSION"
    "nvidia-cuda-runtime==$CUDA_VERSION"
    "nvidia-cuda-crt==$CUDA_VERSION"
    "nvidia-nvvm==$CUDA_VERSION"
    "nvidia-cuda-cccl==$CCCL_VERSION"
    "${EXTRA_WHEELS[@]}"
)
export CUDA_HOME="$TOOLKIT/nvidia/cu13"

# wheels.txt records what was installed; a changed pin reinstalls.
if [[ ! -x "$CUDA_HOME/bin/nvcc" || "$(cat "$TOOLKIT/wheels.txt" 2>/dev/null)" != "${WHEELS[*]}" ]]; then
    if python3 -m pip --version >/dev/null 2>&1; then
        pip=(python3 -m pip)
    elif command -v pip >/dev/null; then
        pip=(pip)
    else
        echo "cuda-toolkit: pip is missing (Debian: apt-get install python3-pip)" >&2
        exit 1
    fi
    echo "cuda-toolkit: installing the CUDA $CUDA_VERSION wheels into $TOOLKIT"
    # --target installs into a plain directory, not into Python's own
    # site-packages, so Debian's "externally managed environment" guard
    # (PEP 668) does not apply and no --break-system-packages is needed.
    # Installing into a side directory and renaming it at the end means an
    # interrupted install never leaves a half toolkit behind.
    # (PIP_ROOT_USER_ACTION: CI runs as root, and the root warning is about
    # site-packages, which this does not touch.)
    mkdir -p "$CACHE"
    rm -rf "$TOOLKIT.partial"
    PIP_ROOT_USER_ACTION=ignore "${pip[@]}" install --quiet --disable-pip-version-check \
        --no-deps --target "$TOOLKIT.partial" "${WHEELS[@]}"
    # candle-kernels' build helper looks for the libraries in lib64, the usual
    # Linux toolkit layout; the wheels put them in lib.
    [[ -e "$TOOLKIT.partial/nvidia/cu13/lib64" ]] || ln -s lib "$TOOLKIT.partial/nvidia/cu13/lib64"
    echo "${WHEELS[*]}" >"$TOOLKIT.partial/wheels.txt"
    rm -rf "$TOOLKIT"
    mv "$TOOLKIT.partial" "$TOOLKIT"
fi

export PATH="$CUDA_HOME/bin:$PATH"
# candle-kernels compiles its kernels for one GPU architecture, found with
# nvidia-smi when there is a GPU. There is none here, so name one: 90 is
# Hopper (H100/H200).
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
