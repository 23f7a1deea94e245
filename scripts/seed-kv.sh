#!/usr/bin/env bash
# Publishes a rule bundle + catalog into wrangler's local CONFIG KV (what `make dev` serves):
# the release's item shards (bulk), its head, the bundle, then the pointer `config:current`.
# Usage: scripts/seed-kv.sh [bundle.json] [catalog.json] [--persist-to DIR]
# For production: `edgerec publish ... --kv remote` (the same writes with --remote, pointer last).
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=${1:-data/demo/rules.json}
catalog=${2:-data/demo/catalog.json}
shift $(( $# >= 2 ? 2 : $# )) || true
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false DO_NOT_TRACK=1
target/release/edgerec publish --bundle "$bundle" --catalog "$catalog" --out build/release --kv local "$@"
