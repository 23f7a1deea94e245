#!/usr/bin/env bash
# Guards the decision's cost with a number that does not depend on load: the instructions
# one standard decision executes (callgrind, counted only inside `Workload::decide_one`).
# Fails when it exceeds the budget in benches/instructions.budget; prints the count either way.
# A change that makes decisions dearer on purpose raises the budget in the same commit.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "bench-guard: valgrind is not installed" >&2; exit 1; }
budget=$(grep -v '^#' benches/instructions.budget | tr -d '[:space:]')
bin=$(cargo bench -q --no-run --bench latency --message-format=json 2>/dev/null |
  grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
iters=1000
warmup=2000 # the bench's own warm-up decisions, also inside decide_one
out=$(mktemp)
trap 'rm -f "$out" "$out.log"' EXIT
ITERS=$iters valgrind --tool=callgrind --toggle-collect='edgerec::workload::Workload::decide_one' \
  --callgrind-out-file="$out" "$bin" >/dev/null 2>"$out.log"
total=$(grep -o 'Collected : [0-9]*' "$out.log" | grep -o '[0-9]*$')
per=$((total / (iters + warmup)))
echo "{\"instructions_per_decision\":$per,\"budget\":$budget}"
if [ "$per" -gt "$budget" ]; then
  echo "bench-guard: a standard decision now executes $per instructions, above the budget of $budget (benches/instructions.budget)" >&2
  exit 1
fi
