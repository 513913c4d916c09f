#!/usr/bin/env bash
# Builds chat-judge.wasm from app.py with componentize-py (pip install componentize-py).
# Usage: build.sh [OUT.wasm]   (default: chat-judge.wasm beside this script)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/chat-judge.wasm}"
cd "$here"
componentize-py -d ../../../sdk/wit -w judge-plugin componentize app -o "$out"
