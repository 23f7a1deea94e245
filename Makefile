# edgerec — the two commands a newcomer needs: `make dev` and `make test`.
SHELL := /bin/bash
# A pipe fails when any command in it fails (benches piped into `tail`).
.SHELLFLAGS := -o pipefail -c
export PATH := $(HOME)/.cargo/bin:$(PATH)
# Keep wrangler from calling out (no network here, and none wanted in tests).
export WRANGLER_SEND_METRICS := false
export CLOUDFLARE_CF_FETCH_ENABLED := false
export DO_NOT_TRACK := 1

WASM_OUT := target/wasm32-unknown-unknown/release/edgerec_wasm.wasm
DEV_STATE := .wrangler/state

.PHONY: dev dev-bins test tools tools-dev lint unit alerts-check shoppers bench-guard bench-baseline bench-compare bench-peers wasm wasm-node wasm-test cli worker worker-test-build worker-test deploy-check e2e api-test www browser-test bench bench-worker bench-scale eval fuzz fuzz-smoke mutants mutants-worker clean

## dev: the demo — edge worker under wrangler dev on 127.0.0.1:8787 (local KV seeded with the
## demo rules and catalog) in front of the demo origin on 127.0.0.1:8788, shipping aggregates
## to the collector on 127.0.0.1:8789 (records in data/collector/records.jsonl), and the trainer
## turning those records into related lists published back into the edge's KV every 20 s. Every
## session is traced and every decision shadowed here (1% each by default), so `simulate` and
## the dashboard's live/shadow panel have data from one shopper.
dev: tools-dev dev-bins worker www
	scripts/seed-kv.sh data/demo/rules.json data/demo/catalog.json --persist-to $(DEV_STATE)
	@echo "edge: http://127.0.0.1:8787  origin: http://127.0.0.1:8788  collector: http://127.0.0.1:8789/metrics  (Ctrl-C stops all)"
	@node www/origin/server.mjs 8788 & origin=$$!; \
	  COLLECTOR_ADDR=127.0.0.1:8789 COLLECTOR_SECRET=dev-collector-secret EXPERIMENTS_REPORT=data/trainer/experiments.json \
	    target/release/edgerec-collector & collector=$$!; \
	  target/release/edgerec-trainer records --follow --interval 20s --base-catalog data/demo/catalog.json \
	    --kv local --persist-to $(DEV_STATE) & trainer=$$!; \
	  trap "kill $$origin $$collector $$trainer" EXIT; \
	  npx wrangler dev --local --ip 127.0.0.1 --port 8787 --persist-to $(DEV_STATE) --show-interactive-dev-session=false \
	    --var EDGEREC_DEV:1 --var COLLECTOR_URL:http://127.0.0.1:8789/v1/aggregates \
	    --var TRACE_RATE_PPM:1000000 --var SHADOW_RATE_PPM:1000000

## shoppers: with `make dev` running, 1,200 simulated shoppers with a known, hidden taste
## (scripts/shoppers.mjs) for the demo's experiment (the model with exposure feedback against
## the model without); prints the CTR lift the truth implies; then `edgerec experiments report`
## or the dashboard
shoppers:
	node scripts/shoppers.mjs 1200 http://127.0.0.1:8787

## demo-cli: the decision core alone, explaining each decision of a scripted shopper
demo-cli: tools
	cargo run --release -q -p edgerec-cli -- demo

## test: every test (lint; native unit/property/conformance; wasm conformance; the worker in
## workerd via Miniflare; end to end through wrangler dev; the storefront and the conformance
## corpus in Chromium)
test: tools lint unit alerts-check bench-guard fuzz-smoke wasm-test worker-test deploy-check e2e api-test browser-test

## tools: everything `make test` uses; tools-dev: only what the demo runs (no Kafka broker,
## browser, fuzzer or schemathesis)
tools:
	@scripts/ensure-tools.sh test

tools-dev:
	@scripts/ensure-tools.sh dev

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -q -- -D warnings
	cargo clippy -p edgerec-collector -p edgerec-trainer --no-default-features --all-targets -q -- -D warnings

unit:
	cargo test --workspace -q

## alerts-check: the Prometheus alerting rules shipped with the Grafana dashboard, checked and
## unit-tested by promtool (Debian's prometheus package)
alerts-check:
	promtool check rules collector/prometheus/alerts.yml
	promtool test rules collector/prometheus/alerts.test.yml

cli:
	cargo build -q --release -p edgerec-cli -p edgerec-collector -p edgerec-trainer

# The demo's binaries: the collector on its file sink and the trainer on its records file, so
# librdkafka is not built (`make cli` builds them with Kafka for the tests).
dev-bins:
	cargo build -q --release -p edgerec-cli -p edgerec-collector -p edgerec-trainer --no-default-features

# The core builds for wasm32 on its own (no platform types), and so do the bindings.
wasm:
	cargo build -q -p edgerec --target wasm32-unknown-unknown
	cargo build -q -p edgerec-wasm --release --target wasm32-unknown-unknown

# -O3 for speed (the browser and worker builds optimise for size instead): ~6% faster
# decisions under Node than wasm-bindgen's output alone (BENCHMARKS.md, issue 14).
wasm-node: wasm tools-dev
	wasm-bindgen --target nodejs --out-dir build/wasm-node $(WASM_OUT)
	node_modules/binaryen/bin/wasm-opt -O3 build/wasm-node/edgerec_wasm_bg.wasm -o build/wasm-node/edgerec_wasm_bg.wasm
	echo '{"type":"commonjs"}' > build/wasm-node/package.json

wasm-test: wasm-node cli
	node --test wasm/test/

worker:
	scripts/build-worker.sh

## deploy-check: `wrangler deploy --dry-run` builds the deploy bundle, under the size limit, with
## no secret shipped as a plain var
deploy-check: worker
	scripts/deploy-check.sh

# The Miniflare tests run the test build: the production worker plus the conformance route.
worker-test-build:
	scripts/build-worker.sh --test

worker-test: worker-test-build wasm-node cli
	node --test --test-concurrency=1 worker/test/

e2e: worker cli
	node --test tests/e2e/

## api-test: schemathesis (PyPI, in build/venv) generates requests from schema/edge.openapi.json
## and schema/collector.openapi.json against wrangler dev and the collector (30 s each)
api-test: worker cli
	node --test --test-concurrency=1 tests/api/

## fuzz: every cargo-fuzz target (fuzz/fuzz_targets: events JSON/MessagePack, session blob,
## cookies and URLs, rule bundle, catalog/model snapshot, aggregate batch, collector request,
## browser report, whole decisions) for FUZZ_SECONDS each from the seeds in fuzz/seeds/;
## prints executions and crashes. `make test` runs a 3-second smoke of each.
FUZZ_SECONDS ?= 60
fuzz: tools
	scripts/fuzz.sh $(FUZZ_SECONDS)

## mutants: cargo-mutants over the core (its test kits excluded: .cargo/mutants.toml), tested by
## the core's own unit, property and corpus tests; results in mutants.out/. 1,345 mutants, about
## 100 minutes on 2 cores, so not part of `make test`. MUTANTS_ARGS narrows or spreads it
## (`--file src/experiment.rs`, `--shard 1/4`, `--iterate` to re-test only what a run missed).
MUTANTS_ARGS ?=
mutants:
	@cargo mutants --version >/dev/null 2>&1 || cargo install cargo-mutants --version 27.1.0 --locked
	cargo mutants --package edgerec --jobs 2 --no-shuffle $(MUTANTS_ARGS)

## mutants-worker: the same over the worker's plain state machines (outbox, breaker, copies),
## tested by their native unit tests; results in mutants.out/ (about 10 minutes).
mutants-worker:
	@cargo mutants --version >/dev/null 2>&1 || cargo install cargo-mutants --version 27.1.0 --locked
	cargo mutants --package edgerec-worker --jobs 2 --no-shuffle -f worker/src/outbox/mod.rs \
		-f worker/src/breaker.rs -f worker/src/copies.rs $(MUTANTS_ARGS)

fuzz-smoke: tools
	scripts/fuzz.sh 3

## www: the browser build of the core (www/pkg: wasm-bindgen --target web, size-optimised)
www:
	scripts/build-web.sh

browser-test: www worker cli
	node --test --test-concurrency=1 tests/browser/

## bench: criterion benches, per-call latency native vs wasm (same workload, same run), our
## wasm decision vs json-rules-engine, zen-engine and json-logic-js on the same 100 rules, the
## browser build in Chromium vs the Node wasm build, the worker's HTTP latency under wrangler
## dev, and the collector against a raw Kafka producer
bench: tools wasm-node worker cli www
	cargo bench -q --bench decide
	@echo "--- per-call latency, same workload, same run ---"
	@cargo bench -q --bench latency 2>/dev/null | tail -1
	@cargo bench -q --bench latency_mimalloc 2>/dev/null | tail -1
	@node wasm/bench.mjs
	@$(MAKE) -s bench-peers
	@node tests/browser/bench.mjs
	@cargo run -q --release --example workload_info
	node worker/bench.mjs
	node worker/bench-limits.mjs
	cargo run -q --release -p edgerec-collector --example throughput

## bench-guard: instructions per standard decision (callgrind: the same on a busy or idle
## machine) against benches/instructions.budget; part of `make test`
bench-guard: tools
	scripts/bench-guard.sh

## bench-baseline / bench-compare: criterion's own regression check of the decision benches
## (save a baseline on main, compare a branch against it on the same machine; fails when a
## bench is slower beyond noise, MAX_SLOWDOWN=0.05)
bench-baseline:
	cargo bench -q --bench decide -- --save-baseline main
bench-compare:
	scripts/bench-compare.sh

## bench-peers: the same 100 rules in edgerec (wasm, full decision) and in json-rules-engine,
## zen-engine and json-logic-js, one Node process (the peers install into wasm/peers/)
bench-peers: wasm-node
	npm install --prefix wasm/peers --no-package-lock --no-audit --no-fund --silent
	@echo "--- the same 100 rules: edgerec (wasm, full decision) vs npm rule engines, one Node process ---"
	node wasm/peers/bench.mjs
	@echo "--- the same workload natively under callgrind (instructions, noise-free) ---"
	scripts/peers-instructions.sh

## eval: replay evaluation on the YOOCHOOSE sample (next-item HR/MRR@10,20 vs POP, session-POP),
## each bundle also with exposure feedback learned by serving the newest 20% of training sessions
EVAL_DATA ?= ../shared/data/yoochoose-100k
## bench-scale: the sharded model at 20k, 1M and 10M items natively (`edgerec scale`), and at
## 20k and 1M items under wrangler dev (cold vs warm first decision, workerd memory); the 1M
## catalog takes minutes to seed into local KV the first time (kept under build/bench-scale-*)
bench-scale: tools cli worker
	target/release/edgerec scale --items 20000,1000000,10000000
	node tests/e2e/bench-scale.mjs

eval:
	cargo run -q --release -p edgerec-trainer -- eval \
	  --train $(EVAL_DATA)/yoochoose-clicks-100k_train_tr.txt --test $(EVAL_DATA)/yoochoose-clicks-100k_train_valid.txt \
	  --bundle data/eval/default.json --bundle data/eval/return-aware.json --feedback 0.2

clean:
	rm -rf build target worker/build worker/build-test .wrangler www/pkg artifacts
