#!/usr/bin/env bash
# The peer benchmark's workload replayed natively under callgrind (`make bench-peers`): exact
# instructions per decision with the 100 rules, the 100 inert rules and none, and the rules'
# share (inert − none). Also prints a hash of every decision's JSON and blob, so a change that
# must not alter decisions can be checked on 768 of them.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/peers
PEERS_DUMP=$dir ROUNDS=1 FACT_SETS=256 node wasm/peers/bench.mjs >/dev/null
cargo build -q --release --example peers_replay
bin=target/release/examples/peers_replay
declare -A per
for b in bundle bundle-inert bundle-0; do
  hash=$("$bin" "$dir" "$b.json" 1 | grep -o 'hash [0-9a-f]*')
  valgrind --tool=callgrind --callgrind-out-file="$dir/$b.cg" \
    --toggle-collect=peers_replay::replay --toggle-collect=peers_replay::fold \
    "$bin" "$dir" "$b.json" 1 >/dev/null 2>"$dir/$b.log"
  total=$(grep -o 'Collected : [0-9]*' "$dir/$b.log" | grep -o '[0-9]*$')
  per[$b]=$((total / 256))
  echo "{\"bundle\":\"$b\",\"instructions_per_decision\":${per[$b]},\"output\":\"$hash\"}"
done
share=$((per[bundle-inert] - per[bundle-0]))
echo "{\"rules_share_instructions\":$share,\"per_rule\":$((share / 100))}"
