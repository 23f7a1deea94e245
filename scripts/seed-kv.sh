#!/usr/bin/env bash
# Publishes a rule bundle + catalog into wrangler's local CONFIG KV (what `make dev` serves).
# Usage: scripts/seed-kv.sh [bundle.json] [catalog.json] [--persist-to DIR]
# For production, the same three `wrangler kv key put` commands with --remote (pointer last).
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=${1:-data/demo/rules.json}
catalog=${2:-data/demo/catalog.json}
shift $(( $# >= 2 ? 2 : $# )) || true
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false DO_NOT_TRACK=1
out=build/release
target/release/edgerec publish --bundle "$bundle" --catalog "$catalog" --out "$out"
# keys.json lists the pointer last.
node -e 'for (const k of JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))) console.log(k.key + " " + k.file)' "$out/keys.json" |
while read -r key file; do
  npx wrangler kv key put --local --binding CONFIG "$@" "$key" --path "$out/$file" >/dev/null
  echo "seeded $key"
done
