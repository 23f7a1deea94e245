#!/usr/bin/env bash
# Criterion's comparison as a pass/fail (`make bench-compare`): runs the decision benches against
# the baseline `make bench-baseline` saved (same machine, e.g. on main before a change) and fails
# when a bench got slower beyond noise — the lower end of criterion's 95% interval of the median
# change above MAX_SLOWDOWN (default 0.05 = 5%). Prints one JSON line per bench.
# Timing needs a quiet machine; `make test` guards the same decision by instruction count
# (scripts/bench-guard.sh), which load does not move.
set -euo pipefail
cd "$(dirname "$0")/.."
max=${MAX_SLOWDOWN:-0.05}
dir=target/criterion
if ! ls "$dir"/*/main/estimates.json >/dev/null 2>&1; then
  echo "no saved baseline: run 'make bench-baseline' first (on the code to compare against)" >&2
  exit 2
fi
cargo bench -q --bench decide -- --baseline main >/dev/null 2>&1
python3 - "$dir" "$max" <<'PY'
import json, os, sys
root, limit = sys.argv[1], float(sys.argv[2])
bad = 0
for name in sorted(os.listdir(root)):
    f = os.path.join(root, name, "change", "estimates.json")
    if not os.path.exists(f):
        continue
    m = json.load(open(f))["median"]
    lo, mid, hi = m["confidence_interval"]["lower_bound"], m["point_estimate"], m["confidence_interval"]["upper_bound"]
    slower = lo > limit
    bad += slower
    print(json.dumps({"bench": name, "median_change": round(mid, 4), "ci95": [round(lo, 4), round(hi, 4)], "regressed": slower}))
if bad:
    print(f"{bad} bench(es) slower than the baseline by more than {limit:.0%} (95% interval)", file=sys.stderr)
    sys.exit(1)
PY
