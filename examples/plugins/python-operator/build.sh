#!/usr/bin/env bash
# Builds banlist.wasm from app.py with componentize-py (pip install componentize-py).
# Usage: build.sh [OUT.wasm]   (default: banlist.wasm beside this script)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/banlist.wasm}"
cd "$here"
componentize-py -d ../../../sdk/wit -w operator-plugin componentize app -o "$out"
