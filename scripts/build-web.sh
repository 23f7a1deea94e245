#!/usr/bin/env bash
# The browser build of the decision core: wasm-bindgen `--target web` into www/pkg/ (served at
# /edgerec/pkg/ by the demo origin), size-optimised (profile `web`, no bench workload, no JSON
# paths), then wasm-opt -Oz. Writes www/pkg/sizes.json (raw / gzip -9 / brotli bytes).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build -q -p edgerec-wasm --profile web --no-default-features --features conformance --target wasm32-unknown-unknown
rm -rf www/pkg
wasm-bindgen --target web --no-typescript --out-dir www/pkg target/wasm32-unknown-unknown/web/edgerec_wasm.wasm
node_modules/binaryen/bin/wasm-opt -Oz --strip-debug --strip-producers \
  www/pkg/edgerec_wasm_bg.wasm -o www/pkg/edgerec_wasm_bg.wasm
node -e '
const fs = require("fs"), zlib = require("zlib");
const size = (f) => { const b = fs.readFileSync(f); return { raw: b.length,
  gzip: zlib.gzipSync(b, { level: 9 }).length,
  brotli: zlib.brotliCompressSync(b, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11 } }).length }; };
const out = { wasm: size("www/pkg/edgerec_wasm_bg.wasm"), glue: size("www/pkg/edgerec_wasm.js"), tracker: size("www/tracker.js") };
fs.writeFileSync("www/pkg/sizes.json", JSON.stringify(out, null, 1));
console.log("browser build:", JSON.stringify(out));
'
