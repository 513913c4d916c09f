#!/usr/bin/env bash
# `evolve bench plugin-overhead` on the probe plugins of this repository: builds the probe
# operator as a native library and as a wasm component (tests/plugins/probe-*), and the Python
# `banlist` component when componentize-py is on PATH, then times them against the built-in.
# Usage: bash bench/plugin-overhead.sh   (from anywhere; extra arguments go to evolve)
# EVOLVE=path/to/evolve uses that binary instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$PWD/target/plugins"
cargo build --release --quiet --target-dir "$target" -p evolve-probe-native
cargo build --release --quiet --target-dir "$target" -p evolve-probe-wasm --target wasm32-wasip2
case "$(uname)" in
  Darwin) lib=libevolve_probe_native.dylib ;;
  *) lib=libevolve_probe_native.so ;;
esac
probes=(--probe "native=$target/release/$lib" --probe "wasm=$target/wasm32-wasip2/release/evolve_probe_wasm.wasm")
if command -v componentize-py >/dev/null; then
  mkdir -p "$target/python"
  bash examples/plugins/python-operator/build.sh "$target/python/banlist.wasm"
  probes+=(--probe "python=$target/python/banlist.wasm")
else
  echo "python: skipped (componentize-py is not on PATH: pip install componentize-py)" >&2
fi
if [ -n "${EVOLVE:-}" ]; then
  "$EVOLVE" bench plugin-overhead "${probes[@]}" "$@"
else
  cargo run --release --quiet --bin evolve -- bench plugin-overhead "${probes[@]}" "$@"
fi
