#!/usr/bin/env bash
# Checks the deploy bundle offline: `wrangler deploy --dry-run` must build it, it must stay
# under the platform's size limit (3 MiB gzip on the free plan), and no secret may ship as a
# plain var (secrets go through `wrangler secret put`).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(npx wrangler deploy --dry-run --outdir build/deploy-check 2>&1) || { echo "$out"; exit 1; }
echo "$out" | grep -E "Total Upload|Rate Limit|KV Namespace"
gzip_kib=$(echo "$out" | sed -n 's/.*gzip: \([0-9.]*\) KiB.*/\1/p')
[ -n "$gzip_kib" ] || { echo "deploy-check: no size in wrangler's output" >&2; exit 1; }
limit_kib=3072
if awk -v s="$gzip_kib" -v l="$limit_kib" 'BEGIN { exit !(s >= l) }'; then
  echo "deploy-check: bundle is ${gzip_kib} KiB gzip, over the ${limit_kib} KiB limit" >&2
  exit 1
fi
if echo "$out" | grep -E "env\.(SESSION_SECRET|COLLECTOR_SECRET|SERVER_API_KEY|EDGEREC_DEV)\b"; then
  echo "deploy-check: a secret or the dev flag would ship as a plain var (use wrangler secret put)" >&2
  exit 1
fi
echo "deploy-check: ok (${gzip_kib} KiB gzip of ${limit_kib}; no secrets in vars)"
