#!/usr/bin/env bash
# Builds `target/release/evolve` with `--features cuda` on a machine without a GPU or a CUDA
# install, for the device machine (an H200: compute capability 9.0, CUDA 13.0, driver 580).
#
#   scripts/build-cuda.sh            # then copy target/release/evolve to the GPU machine
#   scripts/build-cuda.sh --nccl     # the same with NCCL, for `evolve run --gpus N`
#
# What it needs, and where it comes from:
# - nvcc, its front ends and headers: NVIDIA's pip wheels, pinned to the device's CUDA (13.0),
#   unpacked once into $EVOLVE_CUDA_HOME (default ~/.cache/evolve-cuda/13.0). candle's kernels
#   are compiled by it to PTX (and a few to sm_90 code) at build time.
# - libcuda, libcublas, libcublasLt, libcurand, libnvrtc to link against: candle links them
#   dynamically (cudarc's `dynamic-linking`), and the wheels lack the driver library and its
#   link stubs. The script writes stubs: shared objects with the real sonames that define every
#   function cudarc declares (and do nothing). At run time the loader finds the GPU machine's
#   real libraries by soname; the stubs never travel.
#
# With --nccl the binary also links libnccl.so.2 (cudarc's bindings declare NCCL 2.30's
# functions; the machine's NCCL must have them), so it is a separate build: the plain one runs
# on a GPU machine without NCCL, and its ranks average over TCP.
#
# Took 60 minutes on this project's 2-core machine from an empty release dir (beside other
# work; candle's CUDA kernels about 10 of them), a minute or two after a change to evolve. It replaces a CPU build at the same path: build that again with `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."

features=cuda packed=evolve-cuda.xz
if [ "${1:-}" = "--nccl" ]; then
  features=nccl packed=evolve-cuda-nccl.xz
elif [ -n "${1:-}" ]; then
  echo "usage: $0 [--nccl]" >&2
  exit 2
fi

CUDA_SERIES=13.0
WHEELS=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88
        nvidia-nvvm==13.0.88 nvidia-cuda-cccl==13.0.85)
home="${EVOLVE_CUDA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/evolve-cuda/$CUDA_SERIES}"

if [ ! -x "$home/bin/nvcc" ]; then
  echo "fetching nvcc $CUDA_SERIES (pip wheels) into $home"
  staging="$(mktemp -d)"
  trap 'rm -rf "$staging"' EXIT
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 \
    -d "$staging/wheels" "${WHEELS[@]}"
  for wheel in "$staging"/wheels/*.whl; do
    python3 -m zipfile -e "$wheel" "$staging/unpacked"
  done
  mkdir -p "$(dirname "$home")"
  rm -rf "$home"
  mv "$staging/unpacked/nvidia/cu13" "$home"
  chmod +x "$home"/bin/* "$home"/nvvm/bin/* 2>/dev/null || true
fi
"$home/bin/nvcc" --version | tail -1

# Link stubs, from the function names of the cudarc version in Cargo.lock.
cudarc_version="$(awk '/^name = "cudarc"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)"
cargo fetch -q
cudarc_src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$cudarc_version" | head -1)"
stubs="$home/lib/stubs"
mkdir -p "$stubs"
stub() { # module, library name, soname
  local c="$stubs/$2.c"
  grep -ohE 'pub unsafe fn [A-Za-z0-9_]+\(' "$cudarc_src/src/$1/sys/mod.rs" | sort -u \
    | sed -E 's/pub unsafe fn ([A-Za-z0-9_]+)\(/int \1(void) { return 999; }/' >"$c"
  cc -shared -fPIC -o "$stubs/$2.so" -Wl,-soname,"$3" "$c"
}
stub driver libcuda libcuda.so.1
stub cublas libcublas libcublas.so.13
stub cublaslt libcublasLt libcublasLt.so.13
stub curand libcurand libcurand.so.10
stub nvrtc libnvrtc libnvrtc.so.13
stub nccl libnccl libnccl.so.2
# The runtime wheel ships libcudart.so.13 without the unversioned name the linker looks for
# (candle's MoE kernels are linked with -lcudart).
ln -sf libcudart.so.13 "$home/lib/libcudart.so"

export CUDA_ROOT="$home" CUDA_PATH="$home" PATH="$home/bin:$PATH"
# cudarc searches $CUDA_ROOT/lib/stubs itself.
export CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000
cargo build --release -p evolve-core --features "$features" --bin evolve
echo "built target/release/evolve with CUDA $CUDA_SERIES (sm_90), features: $features"
ls -l target/release/evolve
if command -v readelf >/dev/null; then readelf -d target/release/evolve | grep NEEDED; fi
# Stripped and xz-compressed (about 16 MB from 330), it fits what the device tool carries:
# `carry: ["target/release/evolve-cuda.xz"]`; bench/device/train-throughput.sh unpacks it.
# (--nccl: target/release/evolve-cuda-nccl.xz.)
strip -o target/release/evolve-cuda target/release/evolve
python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(open(sys.argv[1], "rb"), lzma.open(sys.argv[2], "wb", preset=6))' \
  target/release/evolve-cuda "target/release/$packed"
rm target/release/evolve-cuda
ls -l "target/release/$packed"
