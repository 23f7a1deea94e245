#!/usr/bin/env bash
# Builds the worker with worker-build, pointed at local tools: worker-build would otherwise
# download wasm-bindgen, wasm-opt and esbuild from a code-hosting site (unreachable here).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
root=$(pwd)
export WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen"
export WASM_OPT_BIN="$root/node_modules/binaryen/bin/wasm-opt"
export ESBUILD_BIN="$root/node_modules/@esbuild/linux-x64/bin/esbuild"
cd worker
worker-build --release
ls -l build/index_bg.wasm
