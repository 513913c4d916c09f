#!/usr/bin/env bash
# The device benchmark of issue #19, in one call on the GPU machine, from the repository root:
# evolve's transformer training step at PixArt-XL/2's shapes (bf16, with and without gradient
# checkpointing) beside PyTorch's (eager bf16 autocast with SDPA, and torch.compile), each with
# img/s, TFLOP/s and MFU against a bf16 matrix product measured in the same process.
#
#   scripts/build-cuda.sh                       # here, on a CPU machine: target/release/evolve-cuda.xz
#   bench/device/train-throughput.sh            # there: run with carry ["target/release/evolve-cuda.xz"]
#
# Anchors measured on an H200 (issue #19): PyTorch eager 31.0% MFU (64.1 img/s at 512 px,
# batch 16), torch.compile 46.7% (96.7 img/s). Target: evolve at 50% MFU or more.
set -uo pipefail
cd "$(dirname "$0")/../.."
cases="${CASES:-pixart-xl-512 pixart-xl-256}"
evolve="${EVOLVE:-}"
if [ -z "$evolve" ] && [ -f target/release/evolve-cuda.xz ]; then
  evolve=/tmp/evolve-cuda
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    target/release/evolve-cuda.xz "$evolve"
  chmod +x "$evolve"
fi
evolve="${evolve:-target/release/evolve}"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader || true
status=0
for case in $cases; do
  echo "== $case"
  timeout 300 "$evolve" bench train-throughput --device cuda:0 --case "$case" || status=1
  timeout 300 "$evolve" bench train-throughput --device cuda:0 --case "$case" --checkpointing || status=1
  timeout 120 python3 bench/device/pixart_torch.py --case "$case" --mode eager || status=1
  timeout 300 python3 bench/device/pixart_torch.py --case "$case" --mode compile || status=1
done
exit $status
