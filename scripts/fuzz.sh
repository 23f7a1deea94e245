#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for SECONDS each, starting from the seeds
# in fuzz/seeds/<target>/ plus what earlier runs found (fuzz/corpus/, not committed), and
# prints executions and crashes per target. Exits non-zero on any crash (the reproducer is in
# fuzz/artifacts/<target>/). Usage: scripts/fuzz.sh SECONDS [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
seconds=${1:-60}
shift || true
cd fuzz
cargo +nightly fuzz build -O >/dev/null 2>&1 || cargo +nightly fuzz build -O
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
total=0
crashed=0
printf '%-20s %14s %10s %s\n' target executions exec/s result
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  rc=0
  cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  execs=${execs:-0}
  result=ok
  if [ "$rc" != 0 ]; then
    result="CRASH (exit $rc; see fuzz/artifacts/$t/)"
    crashed=$((crashed + 1))
    grep -E "panicked|ERROR: AddressSanitizer|SUMMARY|deadly signal" "$log" | head -5 || true
  fi
  total=$((total + execs))
  printf '%-20s %14s %10s %s\n' "$t" "$execs" "$((execs / (seconds > 0 ? seconds : 1)))" "$result"
  rm -f "$log"
done
echo "fuzz: ${#targets[@]} targets, ${seconds} s each, ${total} executions, ${crashed} crashed"
[ "$crashed" = 0 ]
