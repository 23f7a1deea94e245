#!/usr/bin/env bash
# Installs what the build needs, each only when missing or at the wrong version.
#   scripts/ensure-tools.sh dev    what `make dev` runs: the wasm32 target, wasm-bindgen-cli
#                                  pinned to the wasm-bindgen version in Cargo.lock (the two must
#                                  match exactly), worker-build, Node and the npm packages;
#   scripts/ensure-tools.sh [test] all of that, plus what only the tests use: the Kafka-protocol
#                                  broker, Chromium, cargo-fuzz, schemathesis.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
scope=${1:-test}
case "$scope" in dev|test) ;; *) echo "usage: $0 [dev|test]" >&2; exit 2 ;; esac

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ -z "$want" ]; then
  echo "ensure-tools: no wasm-bindgen in Cargo.lock" >&2
  exit 1
fi
if [ "$want" != "$have" ]; then
  echo "ensure-tools: installing wasm-bindgen-cli $want (found: ${have:-none}; ~4 min cold)"
  # Without --locked: its lockfile names a crate version this registry mirror lacks.
  cargo install wasm-bindgen-cli --version "$want"
fi

if [ "$(worker-build --version 2>/dev/null)" != "0.8.7" ]; then
  echo "ensure-tools: installing worker-build 0.8.7 (~9 min cold)"
  cargo install worker-build --version 0.8.7 --locked
fi

if ! command -v node >/dev/null 2>&1; then
  echo "ensure-tools: installing Node.js (Debian package)"
  apt-get update -qq && apt-get install -y -qq nodejs
fi

# JS tooling pinned in package-lock.json (wrangler/workerd, miniflare, wasm-opt, esbuild).
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

[ "$scope" = dev ] && exit 0

# --- test-only tools ---

# The Kafka-protocol broker the collector's tests run against (Apache Kafka cannot be fetched
# here). Cold build ≈ 17 min, so only when missing or at another version.
if ! tansu --version 2>/dev/null | grep -q "0.6.0"; then
  echo "ensure-tools: installing tansu 0.6.0 (~17 min cold)"
  cargo install tansu --version 0.6.0 --locked --no-default-features --features dynostore
fi

# Browser tests: Debian's Chromium driven by npm playwright-core (never a downloaded browser).
if [ ! -x /usr/bin/chromium ]; then
  echo "ensure-tools: installing chromium (Debian package, ~1 min)"
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# Alerting rules are checked by promtool, and a test scrapes the collector with a real
# Prometheus (Debian prometheus).
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  echo "ensure-tools: installing prometheus (Debian package)"
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# The decision-cost guard counts instructions with callgrind (Debian valgrind).
if ! command -v valgrind >/dev/null; then
  echo "ensure-tools: installing valgrind (Debian package)"
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi

# Fuzzing: cargo-fuzz on the nightly toolchain of the machine image (toolchains cannot be
# downloaded here, so a missing nightly is reported, not installed).
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "ensure-tools: no nightly toolchain (cargo +nightly fuzz needs one)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "ensure-tools: installing cargo-fuzz (~2 min)"
  cargo install cargo-fuzz --version 0.13.2 --locked
fi

# Property-based API tests from the OpenAPI documents (PyPI schemathesis, pinned), in a venv
# under build/ so the system Python stays untouched.
ST_VERSION=4.32.5
if ! build/venv/bin/st --version 2>/dev/null | grep -q "$ST_VERSION"; then
  echo "ensure-tools: installing schemathesis $ST_VERSION (PyPI, into build/venv)"
  if ! python3 -m venv build/venv >/dev/null 2>&1; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv build/venv
  fi
  build/venv/bin/pip install -q "schemathesis==$ST_VERSION"
fi
