#!/usr/bin/env bash
# Installs the PyTorch eager reference for `evolve bench train-throughput` into bench/.venv.
# PyTorch comes from PyPI (the CUDA build; it runs on the CPU as well).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet torch numpy
.venv/bin/python -c "import torch; print('torch', torch.__version__)"
