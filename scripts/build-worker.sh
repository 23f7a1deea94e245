#!/usr/bin/env bash
# Builds the worker with worker-build, pointed at local tools: worker-build would otherwise
# download wasm-bindgen, wasm-opt and esbuild from a code-hosting site (unreachable here).
# `--test`: the Miniflare test build (feature `conformance`) into worker/build-test/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
root=$(pwd)
export WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen"
export WASM_OPT_BIN="$root/node_modules/binaryen/bin/wasm-opt"
export ESBUILD_BIN="$root/node_modules/@esbuild/linux-x64/bin/esbuild"
cd worker
# Size over speed for the worker only (its own target dir, so the other wasm and native
# builds keep opt-level 3 and are not rebuilt back and forth).
export CARGO_TARGET_DIR="$root/target/worker"
export CARGO_PROFILE_RELEASE_OPT_LEVEL="${WORKER_OPT_LEVEL:-z}"
out=build
if [ "${1:-}" = "--test" ]; then
  out=build-test
  worker-build --release --out-dir "$out" --features conformance
else
  worker-build --release
fi
# worker-build's wasm-opt pass keeps the name section; shrink once more for size.
"$WASM_OPT_BIN" -Oz --strip-debug --strip-producers "$out/index_bg.wasm" -o "$out/index_bg.wasm"
echo "worker wasm ($out): $(stat -c %s "$out/index_bg.wasm") bytes raw, $(gzip -9 -c "$out/index_bg.wasm" | wc -c) gzip"
