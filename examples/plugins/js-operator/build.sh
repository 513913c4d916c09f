#!/usr/bin/env bash
# Builds add-constraint.wasm from app.js with componentize-js
# (npm install @bytecodealliance/componentize-js; its bin folder on PATH).
# Usage: build.sh [OUT.wasm]   (default: add-constraint.wasm beside this script)
# `--disable http fetch-event`: evolve gives plugins no wasi:http; HTTP goes through the host's `http`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/add-constraint.wasm}"
cd "$here"
componentize-js app.js --wit ../../../sdk/wit --world-name operator-plugin --disable http fetch-event -o "$out"
